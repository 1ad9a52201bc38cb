package vscsiback_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
)

// taskManagement builds a TASK_ABORT (ref: the rqid to abort) or RESET
// request for lun a.
func (f *testFront) taskManagement(act uint8, a at, ref uint16) *vscsiif.Request {
	return &vscsiif.Request{RqID: f.rqid(), Act: act, Channel: a.channel, ID: a.target, LUN: a.lun,
		RefRqID: ref, DataDirection: vscsiif.DirNone}
}

// byRqID indexes responses by rqid, failing on a duplicate.
func byRqID(t *testing.T, rsps []vscsiif.Response) map[uint16]vscsiif.Response {
	t.Helper()
	m := map[uint16]vscsiif.Response{}
	for _, r := range rsps {
		if _, dup := m[r.RqID]; dup {
			t.Fatalf("two responses for rqid %d", r.RqID)
		}
		m[r.RqID] = r
	}
	return m
}

// TestTaskAbort: an abort of an rqid not in flight is answered
// RESET_FAILED, as scsiback answers it, also in a flood that leaves the
// vhost serving; an abort of a command still queued (pushed with it)
// answers that command host ABORT first, then RESET_SUCCESS, and the
// command never reaches the disk.
func TestTaskAbort(t *testing.T) {
	_, dev, f := oneLUN(t, 0)
	lun := at{}

	rslt(t, f.do(f.taskManagement(vscsiif.ActSCSIAbort, lun, 999)), vscsiif.ResetFailed)
	done := f.do(f.cdb(lun, tur, vscsiif.DirNone, 0))
	rslt(t, f.do(f.taskManagement(vscsiif.ActSCSIAbort, lun, done.RqID)), vscsiif.ResetFailed)

	for range 20 { // more than the ring holds, a ring at a time
		var flood []*vscsiif.Request
		for range 16 {
			flood = append(flood, f.taskManagement(vscsiif.ActSCSIAbort, lun, 60000))
		}
		f.push(flood...)
		for _, rsp := range f.collect(len(flood)) {
			rslt(t, rsp, vscsiif.ResetFailed)
		}
	}

	pattern(f.data.Mem[:4096], 77)
	before := image(t, dev, 0, 4096)
	w := f.cdb(lun, scsitest.Write10(0, 8), vscsiif.DirToDevice, 4096)
	abort := f.taskManagement(vscsiif.ActSCSIAbort, lun, w.RqID)
	f.push(w, abort)
	rsps := f.collect(2)
	if rsps[0].RqID != w.RqID || rsps[1].RqID != abort.RqID {
		t.Fatalf("answered rqids %d, %d; want the aborted command's (%d) first, then the abort's (%d)",
			rsps[0].RqID, rsps[1].RqID, w.RqID, abort.RqID)
	}
	rslt(t, rsps[0], vscsiif.Result(vscsiif.HostAbort, 0))
	rslt(t, rsps[1], vscsiif.ResetSuccess)
	if string(image(t, dev, 0, 4096)) != string(before) {
		t.Fatal("the aborted WRITE reached the disk")
	}
	good(t, f.do(f.cdb(lun, tur, vscsiif.DirNone, 0)))
}

// TestLUNReset: a RESET clears the addressed LUN's queued commands (host
// RESET, for the guest's midlayer to retry) and no other LUN's; the
// nexus that reset is not told, another nexus of the logical unit (a
// second vhost on the same disk) meets BUS DEVICE RESET FUNCTION
// OCCURRED once, at its next command.
func TestLUNReset(t *testing.T) {
	r := newRig(t)
	shared := newDisk(t)
	lun0, lun1 := at{0, 0, 0}, at{0, 0, 1}
	a := r.vhost("1/0", 0, r.lun(lun0, "shared", shared), r.lun(lun1, "other", newDisk(t)))
	b := r.vhost("1/1", 0, r.lun(lun0, "shared", shared))
	a.spoken(lun0, lun1)
	b.spoken(lun0)

	rd0 := a.cdb(lun0, scsitest.Read10(0, 1), vscsiif.DirFromDevice, 512)
	rd1 := a.cdb(lun1, tur, vscsiif.DirNone, 0)
	reset := a.taskManagement(vscsiif.ActSCSIReset, lun0, 0)
	a.push(rd0, rd1, reset)
	rsps := a.collect(3)
	if rsps[0].RqID != rd0.RqID || rsps[1].RqID != reset.RqID {
		t.Fatalf("answered rqids %d, %d, %d; want the cleared command's, the reset's, then LUN 1's",
			rsps[0].RqID, rsps[1].RqID, rsps[2].RqID)
	}
	rslt(t, rsps[0], vscsiif.Result(vscsiif.HostReset, 0))
	rslt(t, rsps[1], vscsiif.ResetSuccess)
	good(t, rsps[2])

	good(t, a.do(a.cdb(lun0, tur, vscsiif.DirNone, 0)))
	checkCondition(t, b.do(b.cdb(lun0, tur, vscsiif.DirNone, 0)), scsi.BusDeviceReset)
	good(t, b.do(b.cdb(lun0, tur, vscsiif.DirNone, 0)))
	good(t, a.do(a.cdb(lun1, tur, vscsiif.DirNone, 0)))
}
