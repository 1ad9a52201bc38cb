package vscsifront_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsifront"
)

// TestSCSIConformance runs the SCSI conformance suite through the
// frontend: every command of every case is a LUN.ExecSCSI, on the ring
// to vscsiback and the emulation behind it, status, sense, residual and
// data back. Each nexus a case speaks as is a vhost of its own on one
// simulated host, all LUNs on the one engine. The two cases vscsiback's
// own suite excepts are excepted here too, for the same reason: the
// backend refuses their commands (host ERROR) before any engine, and the
// frontend gives that as a *HostError.
func TestSCSIConformance(t *testing.T) {
	scsitest.RunExcept(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		e := emulate.New(dev, emulate.Config{Identity: "suite", Log: quiet})
		return &frontTarget{h: newSimHost(t), engine: e, luns: map[scsi.Nexus]*vscsifront.LUN{}}
	}, map[string]string{
		"SPC4_ShortCDBIsRefused": "a cmd_len under 6 is vscsiback's to refuse (host ERROR) before any engine: " +
			"vscsiback/testdata/requests.txt, \"cmd_len 0 (no CDB) or under 6\"",
		"SBC3_TransferLongerThanBufferIsRefused": "READ(10) with data-out contradicts the CDB's direction, which vscsiback refuses " +
			"(host ERROR) before any engine: vscsiback/testdata/requests.txt, \"The direction against the segments and the CDB\"",
	})
}

// frontTarget is scsitest's Target through a vhost per nexus.
type frontTarget struct {
	h      *simHost
	engine *emulate.Engine
	luns   map[scsi.Nexus]*vscsifront.LUN
}

func (ft *frontTarget) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	t := ft.h.t
	l, ok := ft.luns[n]
	if !ok {
		r := ft.h.vhost(uint32(len(ft.luns)), rigConfig{sgGrant: 1024, front: vscsifront.Config{MaxSegments: 1024},
			disks:  map[string]storage.Device{"/suite": nil},
			engine: func(string, storage.Device) scsiengine.Engine { return ft.engine }}, "/suite, 0:0:0:0")
		l = r.lun(addr("0:0:0:0"))
		ft.luns[n] = l
	}
	got, err := l.ExecSCSI(ctxFor(t), cmd.CDB, cmd.Dir, cmd.Data)
	if err != nil {
		t.Fatalf("%s: %v", scsi.OpName(cmd.CDB[0]), err)
	}
	*res = got
}
