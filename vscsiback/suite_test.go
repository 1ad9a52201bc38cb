package vscsiback_test

import (
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
// on the one engine. Two cases send what the transport refuses itself,
// as Linux's scsiback does, before the engine could: they are excepted,
// and testdata/requests.txt pins the transport's answers.
func TestConformanceThroughVscsi(t *testing.T) {
	scsitest.RunExcept(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		return &ringTarget{r: newRig(t), engine: emulate.New(dev, emulate.Config{Identity: "suite", Log: quiet}), vhosts: map[scsi.Nexus]*testFront{}}
	}, map[string]string{
		"SPC4_ShortCDBIsRefused": "a cmd_len under 6 is vscsiback's to refuse (host ERROR) before any engine: " +
			"vscsiback/testdata/requests.txt, \"cmd_len 0 (no CDB) or under 6\"",
		"SBC3_TransferLongerThanBufferIsRefused": "READ(10) with data-out contradicts the CDB's direction, which vscsiback refuses " +
			"(host ERROR) before any engine: vscsiback/testdata/requests.txt, \"The direction against the segments and the CDB\"",
	})
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
	t := rt.r.t
	f, ok := rt.vhosts[n]
	if !ok {
		f = rt.r.vhost("1/"+strconv.Itoa(len(rt.vhosts)), 1024, vscsiback.LUN{Engine: rt.engine})
		rt.vhosts[n] = f
	}
	if len(cmd.Data) > dataPages*xen.PageSize || len(cmd.CDB) > vscsiif.MaxCommandSize {
		t.Fatalf("%s: %d-byte CDB with %d bytes of data: more than a vscsiif request carries", scsi.OpName(cmd.CDB[0]), len(cmd.CDB), len(cmd.Data))
	}
	data := f.data.Mem[:len(cmd.Data)]
	if cmd.Dir == scsi.DirToDevice {
		copy(data, cmd.Data)
	}
	rsp := f.do(f.cdb(at{}, cmd.CDB, wireDir[cmd.Dir], len(cmd.Data)))
	if host := vscsiif.HostOf(rsp.Rslt); host != vscsiif.HostOK {
		t.Fatalf("%s: the transport refused it: rslt %#x", scsi.OpName(cmd.CDB[0]), rsp.Rslt)
	}
	res.Reset(len(cmd.Data))
	res.Status = vscsiif.StatusOf(rsp.Rslt)
	res.SenseLen = copy(res.Sense[:], rsp.Sense[:rsp.SenseLen])
	res.Resid = int(rsp.ResidualLen)
	if res.Resid > len(cmd.Data) {
		t.Fatalf("%s: residual %d of %d bytes", scsi.OpName(cmd.CDB[0]), res.Resid, len(cmd.Data))
	}
	if cmd.Dir == scsi.DirFromDevice {
		copy(cmd.Data, data[:len(data)-res.Resid])
	}
}
