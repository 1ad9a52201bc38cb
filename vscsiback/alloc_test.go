package vscsiback_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
)

// passOf returns pass, which pushes reqs as one pass and waits for
// their answers allocating nothing, and failed, the first rslt that was
// not GOOD (-1: no answer within 10s; 0: none failed).
func passOf(f *testFront, reqs ...*vscsiif.Request) (pass func(), failed func() int32) {
	var rsp vscsiif.Response
	var bad int32
	pass = func() {
		f.push(reqs...)
		for range reqs {
			if !f.await(&rsp) {
				bad = -1
			} else if rsp.Rslt != 0 && bad == 0 {
				bad = rsp.Rslt
			}
		}
	}
	return pass, func() int32 { return bad }
}

// reads is n 4 KiB READ(10)s of consecutive blocks at lun a.
func (f *testFront) reads(a at, n int) []*vscsiif.Request {
	reqs := make([]*vscsiif.Request, n)
	for i := range reqs {
		reqs[i] = f.cdb(a, scsitest.Read10(uint32(8*i), 8), vscsiif.DirFromDevice, 4096)
	}
	return reqs
}

// TestServedIOAllocations guards the hot path: a 4 KiB READ(10) and a
// 4 KiB WRITE(10) served through the ring allocate nothing, hypervisor
// included: their data moves by grant copy, which maps nothing; and so
// does a pass of four READs run on the crew (forced): the hand-out and
// the join are a buffered channel and a WaitGroup.
func TestServedIOAllocations(t *testing.T) {
	r := newRig(t)
	r.crewAfter = -1
	f := r.vhost("1/0", 0, r.lun(at{}, "disk", newDisk(t)))
	lun := at{}
	f.spoken(lun)
	for _, c := range []struct {
		name string
		reqs []*vscsiif.Request
	}{
		{"READ(10)", []*vscsiif.Request{f.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)}},
		{"WRITE(10)", []*vscsiif.Request{f.cdb(lun, scsitest.Write10(8, 8), vscsiif.DirToDevice, 4096)}},
		{"crew pass of 4 READ(10)s", f.reads(lun, 4)},
	} {
		pass, failed := passOf(f, c.reqs...)
		for range 50 {
			pass()
		}
		allocs := testing.AllocsPerRun(500, pass)
		if rslt := failed(); rslt != 0 {
			t.Fatalf("4 KiB %s failed: rslt %#x (-1: no answer in 10s)", c.name, rslt)
		}
		if allocs != 0 {
			t.Errorf("4 KiB %s: %.1f allocations per pass served, want 0", c.name, allocs)
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
