package vscsifront_test

import (
	"context"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
)

// TestHotPathAllocations guards the frontend's hot path: a 4 KiB READ or
// WRITE through a LUN's Device, and a 4 KiB READ(16) through ExecSCSI,
// allocate nothing in vscsifront. Both ends run in this process, and the
// backend maps each request's data page (vscsiif has no persistent
// grants) with the simulated host's Map, which allocates its own
// bookkeeping: the bound is what one Map and Unmap of a page allocate,
// measured beside it (vscsiback's own test proves it allocates nothing
// more).
func TestHotPathAllocations(t *testing.T) {
	r := newRig(t, rigConfig{disks: memDisks(1<<20, "/img/a")}, "/img/a, 0:0:0:0")
	l := r.lun(addr("0:0:0:0"))
	dev := r.device(l)
	buf := make([]byte, 4096)
	rd := scsitest.Read16(8, 8)
	var failed error
	paths := []struct {
		name string
		do   func()
	}{
		{"Device.ReadAt", func() {
			if _, err := dev.ReadAt(buf, 4096); err != nil {
				failed = err
			}
		}},
		{"Device.WriteAt", func() {
			if _, err := dev.WriteAt(buf, 8192); err != nil {
				failed = err
			}
		}},
		{"ExecSCSI READ(16)", func() {
			res, err := l.ExecSCSI(context.Background(), rd, scsi.DirFromDevice, buf)
			if err != nil {
				failed = err
			} else if res.Status != scsi.StatusGood {
				failed = errStatus
			}
		}},
	}

	g, err := r.guest.Granter().Grant(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.guest.Granter().Revoke(g) }()
	mapper := r.host.Dom0().Mapper()
	mapping := testing.AllocsPerRun(500, func() {
		m, err := mapper.Map(r.guest.ID(), g.Refs, false)
		if err != nil {
			t.Fatal(err)
		}
		_ = m.Unmap()
	})
	for _, p := range paths {
		for range 50 {
			p.do()
		}
		allocs := testing.AllocsPerRun(500, p.do)
		if failed != nil {
			t.Fatalf("%s: %v", p.name, failed)
		}
		t.Logf("%s of 4 KiB: %.1f allocations; one Map+Unmap of a page: %.1f", p.name, allocs, mapping)
		if allocs > mapping {
			t.Errorf("%s of 4 KiB: %.1f allocations per request, more than the backend's %.1f of mapping its page: vscsifront allocates", p.name, allocs, mapping)
		}
	}
}

type statusError struct{}

func (statusError) Error() string { return "status not GOOD" }

var errStatus error = statusError{}
