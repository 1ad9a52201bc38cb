package vscsiback_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
)

// TestServedIOAllocations guards the hot path: a 4 KiB READ(10) and a
// 4 KiB WRITE(10) served through the ring allocate nothing, hypervisor
// included: their data moves by grant copy, which maps nothing.
func TestServedIOAllocations(t *testing.T) {
	_, _, f := oneLUN(t, 0)
	lun := at{}
	for _, c := range []struct {
		name string
		req  *vscsiif.Request
	}{
		{"READ(10)", f.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)},
		{"WRITE(10)", f.cdb(lun, scsitest.Write10(8, 8), vscsiif.DirToDevice, 4096)},
	} {
		var rsp vscsiif.Response
		var failed int32
		serve := func() {
			f.push(c.req)
			if !f.await(&rsp) {
				failed = -1
			} else if rsp.Rslt != 0 {
				failed = rsp.Rslt
			}
		}
		for range 50 {
			serve()
		}
		served := testing.AllocsPerRun(500, serve)
		if failed != 0 {
			t.Fatalf("a 4 KiB %s failed: rslt %#x (-1: no answer in 10s)", c.name, failed)
		}
		if served != 0 {
			t.Errorf("4 KiB %s: %.1f allocations per request served, want 0", c.name, served)
		}
	}
}

// TestRefusalFloodAllocations: a guest's scan of targets that are not
// attached and a flood of aborts of requests not in flight are answered
// without allocating: nothing is mapped for them, no engine runs, and
// their log lines are not built unless debug logging is on.
func TestRefusalFloodAllocations(t *testing.T) {
	_, _, f := oneLUN(t, 0)
	reqs := make([]*vscsiif.Request, 16)
	for i := range reqs {
		if i%2 == 0 {
			reqs[i] = f.cdb(at{0, uint16(1 + i), 0}, scsitest.Inquiry(false, 0, 36), vscsiif.DirFromDevice, 36)
		} else {
			reqs[i] = f.taskManagement(vscsiif.ActSCSIAbort, at{}, uint16(1000+i))
		}
		reqs[i].RqID = uint16(300 + i) // over 255: a boxed rqid would allocate
	}
	var rsp vscsiif.Response
	var wrong int32
	flood := func() {
		f.push(reqs...)
		for range reqs {
			if !f.await(&rsp) {
				wrong = -1
				return
			}
			want := vscsiif.ResetFailed
			if (rsp.RqID-300)%2 == 0 {
				want = vscsiif.Result(vscsiif.HostNoConnect, 0)
			}
			if rsp.Rslt != want {
				wrong = rsp.Rslt
			}
		}
	}
	flood()
	allocs := testing.AllocsPerRun(100, flood)
	if wrong != 0 {
		t.Fatalf("a refusal answered rslt %#x (-1: no answer in 10s)", wrong)
	}
	if allocs != 0 {
		t.Errorf("a ring of 16 refusals: %.1f allocations, want 0", allocs)
	}
}
