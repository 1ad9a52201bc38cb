package vscsiback_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// TestConformanceThroughVscsi runs the SCSI conformance suite through
// the ring: every command of every case travels as a vscsiif request
// with its data in the guest's granted pages and comes back as a
// response, the emulation behind one LUN. Each nexus a case speaks as is
// a vhost of its own (the suite's fresh nexuses are fresh vhosts), all
// on the one engine. What the transport refuses itself, as Linux's
// scsiback does, before the engine could (no CDB or one under 6 bytes,
// data against the CDB's direction) must be refused with host status
// ERROR, no SCSI status and no sense; testdata/requests.txt pins each
// refusal's reason.
func TestConformanceThroughVscsi(t *testing.T) {
	hostError := func(err error) error {
		var r refusal
		if !errors.As(err, &r) || r.Rslt != vscsiif.Result(vscsiif.HostError, 0) || r.SenseLen != 0 {
			return fmt.Errorf("want rslt %#x with no sense", vscsiif.Result(vscsiif.HostError, 0))
		}
		return nil
	}
	scsitest.RunTransport(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		return &ringTarget{r: newRig(t), engine: emulate.New(dev, emulate.Config{Identity: "suite", Log: quiet}), vhosts: map[scsi.Nexus]*testFront{}}
	}, scsitest.Refusals{scsitest.NoCDB: hostError, scsitest.ShortCDB: hostError, scsitest.AgainstDirection: hostError})
}

// refusal is a response whose host status is not OK: the transport did
// not deliver the command.
type refusal struct{ vscsiif.Response }

func (r refusal) Error() string {
	return fmt.Sprintf("rslt %#x, %d bytes of sense", r.Rslt, r.SenseLen)
}

// ringTarget is scsitest's Target through vscsiback.
type ringTarget struct {
	r      *rig
	engine *emulate.Engine
	vhosts map[scsi.Nexus]*testFront
}

var wireDir = map[scsi.Direction]uint8{
	scsi.DirNone: vscsiif.DirNone, scsi.DirToDevice: vscsiif.DirToDevice, scsi.DirFromDevice: vscsiif.DirFromDevice,
}

func (rt *ringTarget) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	if err := rt.Deliver(n, cmd, res); err != nil {
		rt.r.t.Fatalf("% x: the transport refused it: %v", cmd.CDB, err)
	}
}

func (rt *ringTarget) Deliver(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) error {
	t := rt.r.t
	f, ok := rt.vhosts[n]
	if !ok {
		f = rt.r.vhost("1/"+strconv.Itoa(len(rt.vhosts)), 1024, vscsiback.LUN{Engine: rt.engine})
		rt.vhosts[n] = f
	}
	if len(cmd.Data) > dataPages*xen.PageSize || len(cmd.CDB) > vscsiif.MaxCommandSize {
		t.Fatalf("% x: %d-byte CDB with %d bytes of data: more than a vscsiif request carries", cmd.CDB, len(cmd.CDB), len(cmd.Data))
	}
	data := f.data.Mem[:len(cmd.Data)]
	if cmd.Dir == scsi.DirToDevice {
		copy(data, cmd.Data)
	}
	rsp := f.do(f.cdb(at{}, cmd.CDB, wireDir[cmd.Dir], len(cmd.Data)))
	if vscsiif.HostOf(rsp.Rslt) != vscsiif.HostOK {
		return refusal{rsp}
	}
	res.Reset(len(cmd.Data))
	res.Status = vscsiif.StatusOf(rsp.Rslt)
	res.SenseLen = copy(res.Sense[:], rsp.Sense[:rsp.SenseLen])
	res.Resid = int(rsp.ResidualLen)
	if res.Resid > len(cmd.Data) {
		t.Fatalf("% x: residual %d of %d bytes", cmd.CDB, res.Resid, len(cmd.Data))
	}
	if cmd.Dir == scsi.DirFromDevice {
		copy(cmd.Data, data[:len(data)-res.Resid])
	}
	return nil
}
