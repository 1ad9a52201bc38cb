package vscsiback_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsiif"
)

// TestStatsCountWhatTheVhostServed: each kind of request lands in its
// counter, data bytes by direction (a short read counts what moved),
// refusals and non-GOOD answers as errors, commands ended by an abort or
// reset neither as answered nor as errors, and nothing stays in flight.
func TestStatsCountWhatTheVhostServed(t *testing.T) {
	r := newRig(t)
	f := r.vhost("1/0", 0, r.lun(at{}, "disk", newDisk(t)))
	lun := at{}
	f.spoken(lun) // a TUR answered CHECK CONDITION: other 1, errors 1

	good(t, f.do(f.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)))
	good(t, f.do(f.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 8192))) // 4096 moved
	good(t, f.do(f.cdb(lun, scsitest.Write10(0, 16), vscsiif.DirToDevice, 8192)))
	good(t, f.do(f.cdb(lun, tur, vscsiif.DirNone, 0)))
	f.do(f.cdb(at{0, 5, 0}, tur, vscsiif.DirNone, 0))                  // not attached: refused
	f.do(f.taskManagement(vscsiif.ActSCSIAbort, lun, 999))             // unknown task: refused
	w := f.cdb(lun, scsitest.Write10(0, 8), vscsiif.DirToDevice, 4096) // aborted in its pass
	f.push(w, f.taskManagement(vscsiif.ActSCSIAbort, lun, w.RqID))
	f.collect(2)
	rd := f.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096) // reset in its pass
	f.push(rd, f.taskManagement(vscsiif.ActSCSIReset, lun, 0))
	f.collect(2)

	want := vscsiback.Stats{
		ReadRequests: 3, WriteRequests: 2, OtherRequests: 2,
		ReadBytes: 8192, WriteBytes: 8192,
		TaskAborts: 1, Resets: 1,
		ErrorResponses: 3, // the power-on unit attention, the two refusals
	}
	if got := f.v.Stats(); got != want {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
}
