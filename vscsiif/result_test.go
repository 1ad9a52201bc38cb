package vscsiif

import (
	"testing"

	"github.com/xenblk/xenblk/xenbus"
)

func TestResultEncoding(t *testing.T) {
	for _, c := range []struct {
		host   Host
		status uint8
		rslt   int32
	}{
		{HostOK, 0, 0},
		{HostOK, 0x02, 0x02},        // CHECK CONDITION
		{HostOK, 0x18, 0x18},        // RESERVATION CONFLICT
		{HostNoConnect, 0, 0x10000}, // what scsiback answers for a LUN not attached
		{HostError, 0, 0x70000},
		{HostTransportMarginal, 0x40, 0x140040},
	} {
		if got := Result(c.host, c.status); got != c.rslt {
			t.Errorf("Result(%d, %#x) = %#x, want %#x", c.host, c.status, got, c.rslt)
		}
		if HostOf(c.rslt) != c.host || StatusOf(c.rslt) != c.status {
			t.Errorf("%#x: host %d status %#x", c.rslt, HostOf(c.rslt), StatusOf(c.rslt))
		}
	}
	// The macros mask: bits 8..15 and 24..31 belong to neither.
	if HostOf(-1) != 0xff || StatusOf(-1) != 0xff || HostOf(0x7f00ff00) != 0 || StatusOf(0x7f00ff00) != 0 {
		t.Error("masks")
	}
	// The task-management answers read as host OK: scsifront compares rslt
	// whole for them.
	if HostOf(ResetSuccess) != HostOK || HostOf(ResetFailed) != HostOK || ResetSuccess == ResetFailed {
		t.Error("reset results")
	}
}

// TestStatesAreXenbusStates pins the protocol's state names to the
// XenbusState values they stand for.
func TestStatesAreXenbusStates(t *testing.T) {
	for got, want := range map[xenbus.State]xenbus.State{
		LUNStateNew:             xenbus.Initialising,
		LUNStateAttached:        xenbus.Initialised,
		LUNStateConnected:       xenbus.Connected,
		LUNStateRemove:          xenbus.Closing,
		LUNStateRemoved:         xenbus.Closed,
		VhostStateReconfiguring: xenbus.Reconfiguring,
		VhostStateReconfigured:  xenbus.Reconfigured,
	} {
		if got != want {
			t.Errorf("state %d stands for %v", got, want)
		}
	}
	if DevPath(0) != "vscsi-devs/dev-0" || DevPath(12) != "vscsi-devs/dev-12" {
		t.Error("DevPath")
	}
}
