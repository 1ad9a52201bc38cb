package vscsifront_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsiif"
)

// TestSCSIConformance runs the SCSI conformance suite through the
// frontend: every command of every case is a LUN.ExecSCSI, on the ring
// to vscsiback and the emulation behind it, status, sense, residual and
// data back. Each nexus a case speaks as is a vhost of its own on one
// simulated host, all LUNs on the one engine. The commands the transport
// refuses before any engine must be refused, each exactly so: an empty
// CDB by the frontend (it never reaches the ring), a CDB under 6 bytes
// and data against the CDB's direction by vscsiback, with host status
// ERROR and nothing else in rslt (vscsiback/testdata/requests.txt pins
// the backend's side).
func TestSCSIConformance(t *testing.T) {
	scsitest.RunTransport(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		e := emulate.New(dev, emulate.Config{Identity: "suite", Log: quiet})
		return &frontTarget{h: newSimHost(t), engine: e, luns: map[scsi.Nexus]*vscsifront.LUN{}}
	}, scsitest.Refusals{
		scsitest.NoCDB:            isErr(vscsifront.ErrCDBLength),
		scsitest.ShortCDB:         isHostError(vscsiif.HostError),
		scsitest.AgainstDirection: isHostError(vscsiif.HostError),
	})
}

// isErr accepts a refusal that is target.
func isErr(target error) func(error) error {
	return func(err error) error {
		if !errors.Is(err, target) {
			return fmt.Errorf("want %v", target)
		}
		return nil
	}
}

// isHostError accepts a *vscsifront.HostError whose rslt is host status
// h and nothing else (no SCSI status).
func isHostError(h vscsiif.Host) func(error) error {
	return func(err error) error {
		var he *vscsifront.HostError
		if !errors.As(err, &he) || he.Host != h || he.Rslt != vscsiif.Result(h, 0) {
			return fmt.Errorf("want a host error with rslt %#x", vscsiif.Result(h, 0))
		}
		return nil
	}
}

// frontTarget is scsitest's Transport through a vhost per nexus.
type frontTarget struct {
	h      *simHost
	engine *emulate.Engine
	luns   map[scsi.Nexus]*vscsifront.LUN
}

func (ft *frontTarget) Deliver(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) error {
	l, ok := ft.luns[n]
	if !ok {
		r := ft.h.vhost(uint32(len(ft.luns)), rigConfig{sgGrant: 1024, front: vscsifront.Config{MaxSegments: 1024},
			disks:  map[string]storage.Device{"/suite": nil},
			engine: func(string, storage.Device) scsiengine.Engine { return ft.engine }}, "/suite, 0:0:0:0")
		l = r.lun(addr("0:0:0:0"))
		ft.luns[n] = l
	}
	got, err := l.ExecSCSI(ctxFor(ft.h.t), cmd.CDB, cmd.Dir, cmd.Data)
	if err != nil {
		return err
	}
	*res = got
	return nil
}

func (ft *frontTarget) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	if err := ft.Deliver(n, cmd, res); err != nil {
		ft.h.t.Fatalf("% x: %v", cmd.CDB, err)
	}
}
