package vscsiback_test

import (
	"testing"
	"time"

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
		vscsiif.EncodeRequest(f.abi, f.ring.NextRequest(), req)
		f.ring.Produce(1)
		if f.ring.Push() {
			_ = f.ch.Notify()
		}
		deadline := time.Now().Add(10 * time.Second)
		for f.ring.Unconsumed() == 0 {
			if f.ring.FinalCheck() {
				continue
			}
			if time.Now().After(deadline) {
				failed = -1
				return
			}
			_, _ = f.ch.Wait(100 * time.Millisecond)
		}
		vscsiif.DecodeResponse(f.abi, f.ring.Response(), &rsp)
		f.ring.Consume(1)
		if rsp.Rslt != 0 {
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
