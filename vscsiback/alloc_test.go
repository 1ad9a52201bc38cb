package vscsiback_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// TestServedReadAllocations guards the hot path: a 4 KiB READ(10) served
// through the ring allocates nothing in vscsiback. vscsiif has no
// persistent grants, so each request maps its data page, and the
// simulated host's Map allocates its own bookkeeping: the bound is what
// one Map and Unmap of that page allocate alone, measured beside it.
func TestServedReadAllocations(t *testing.T) {
	r, _, f := oneLUN(t, 0)
	lun := at{}

	req := f.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)
	var rsp vscsiif.Response
	var failed int32
	serve := func() {
		f.push(req)
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
		t.Fatalf("a READ failed: rslt %#x (-1: no answer in 10s)", failed)
	}

	mapper := r.host.Dom0().Mapper()
	refs := []xen.GrantRef{f.data.Refs[0]}
	mapping := testing.AllocsPerRun(500, func() {
		m, err := mapper.Map(f.dom.ID(), refs, false)
		if err != nil {
			t.Fatal(err)
		}
		_ = m.Unmap()
	})
	t.Logf("4 KiB READ served: %.1f allocations; one Map+Unmap of its page: %.1f", served, mapping)
	if served > mapping {
		t.Errorf("4 KiB READ: %.1f allocations per request, more than the %.1f of mapping its page: vscsiback allocates", served, mapping)
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
