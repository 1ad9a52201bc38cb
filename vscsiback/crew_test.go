package vscsiback_test

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// meetingDisk is a disk whose reads wait, each, until want reads are in
// progress at once: a device that only answers a queue as deep as want.
// A backend that runs a pass's commands one after another never gets
// there; each read then gives up after a bound and the test fails.
type meetingDisk struct {
	*storage.Memory
	want    int32
	reading atomic.Int32
	once    sync.Once
	met     chan struct{}
	missed  atomic.Bool
}

func (d *meetingDisk) ReadAt(p []byte, off int64) (int, error) {
	if d.reading.Add(1) >= d.want {
		d.once.Do(func() { close(d.met) })
	}
	defer d.reading.Add(-1)
	if !d.missed.Load() {
		select {
		case <-d.met:
		case <-time.After(5 * time.Second):
			d.missed.Store(true) // the later reads need not wait too
		}
	}
	return d.Memory.ReadAt(p, off)
}

// TestPassRunsReadsAtOnce: the READs of one pass reach the LUN's device
// side by side (crew.go), so a device with a queue gets the guest's
// depth; each is answered with its data.
func TestPassRunsReadsAtOnce(t *testing.T) {
	r := newRig(t)
	r.crewAfter = -1 // the device's first reads are what the test sees
	disk := &meetingDisk{Memory: newDisk(t), want: 4, met: make(chan struct{})}
	f := r.vhost("1/0", 0, r.lun(at{}, "disk", disk))
	f.spoken(at{})
	reqs := f.reads(at{}, int(disk.want))
	f.push(reqs...)
	for _, rsp := range f.collect(len(reqs)) {
		good(t, rsp)
	}
	if disk.missed.Load() {
		t.Fatalf("the %d READs of one pass never were at the device together: run one after another", disk.want)
	}
}

// TestCrewTurn: a vhost whose commands are quick runs its passes
// serially; one whose commands are slow runs them on the crew, but for
// one pass in 64 that measures their time again; a negative CrewAfter
// always uses the crew.
func TestCrewTurn(t *testing.T) {
	for _, c := range []struct {
		after, pace time.Duration
		want        int // of 128 passes
	}{
		{25 * time.Microsecond, 2 * time.Microsecond, 0},
		{25 * time.Microsecond, 25 * time.Microsecond, 126},
		{25 * time.Microsecond, time.Millisecond, 126},
		{-1, 0, 128},
	} {
		if got := vscsiback.CrewTurns(c.after, c.pace, 128); got != c.want {
			t.Errorf("CrewAfter %v, pace %v: %d of 128 passes on the crew, want %d", c.after, c.pace, got, c.want)
		}
	}
}

// TestConcurrentOnlyForReadWrite: which commands may share a pass's
// crew. Anything else makes the pass serial.
func TestConcurrentOnlyForReadWrite(t *testing.T) {
	for op, want := range map[byte]bool{
		0x08: true, 0x28: true, 0xa8: true, 0x88: true, // READ(6/10/12/16)
		0x0a: true, 0x2a: true, 0xaa: true, 0x8a: true, // WRITE(6/10/12/16)
		0x00: false, // TEST UNIT READY
		0x35: false, // SYNCHRONIZE CACHE(10)
		0x5f: false, // PERSISTENT RESERVE OUT
		0x5e: false, // PERSISTENT RESERVE IN
		0xa0: false, // REPORT LUNS
		0x15: false, // MODE SELECT(6)
		0x2e: false, // WRITE AND VERIFY(10)
		0x41: false, // WRITE SAME(10)
	} {
		if got := vscsiback.Concurrent(op); got != want {
			t.Errorf("opcode %#02x: concurrent %v, want %v", op, got, want)
		}
	}
}

// BenchmarkPass16Reads is one pass of 16 4 KiB READs from memory, the
// ring's depth: serially and on the crew, the crew's overhead where the
// device has no latency to hide.
func BenchmarkPass16Reads(b *testing.B) {
	for _, c := range []struct {
		name        string
		concurrency int
	}{{"serial", 1}, {"crew", 0}} {
		b.Run(c.name, func(b *testing.B) {
			r := newRig(b)
			r.concurrency, r.crewAfter = c.concurrency, -1
			f := r.vhost("1/0", 0, r.lun(at{}, "disk", newDisk(b)))
			f.spoken(at{})
			pass, failed := passOf(f, f.reads(at{}, 16)...)
			b.ReportAllocs()
			for b.Loop() {
				pass()
			}
			if rslt := failed(); rslt != 0 {
				b.Fatalf("READ: rslt %#x", rslt)
			}
		})
	}
}

// TestCrewPassesKeepData: passes of WRITEs, then of READs, of distinct
// blocks from distinct pages, run on the crew (forced), one request of
// some passes naming a grant the guest does not own: that one alone is
// answered host ERROR, every other lands or reads back exactly its
// bytes, and each request is answered once.
func TestCrewPassesKeepData(t *testing.T) {
	r := newRig(t)
	r.crewAfter = -1
	dev := newDisk(t)
	f := r.vhost("1/0", 0, r.lun(at{}, "disk", dev))
	f.spoken(at{})
	rw := func(op []byte, dir uint8, page int, bad bool) *vscsiif.Request {
		req := f.cdb(at{}, op, dir, xen.PageSize)
		req.Seg[0].Gref = uint32(f.data.Refs[page])
		if bad {
			req.Seg[0].Gref = 1 << 30
		}
		return req
	}
	for pass := range 40 {
		n := 2 + pass%15
		bad := -1
		if pass%3 == 0 {
			bad = pass % n
		}
		reqs := make([]*vscsiif.Request, n)
		for i := range reqs {
			pattern(f.page(i), byte(pass*16+i))
			reqs[i] = rw(scsitest.Write10(uint32(8*i), 8), vscsiif.DirToDevice, i, i == bad)
		}
		f.push(reqs...)
		for _, rsp := range byRqID(t, f.collect(n)) {
			if i := int(rsp.RqID - reqs[0].RqID); i == bad {
				rslt(t, rsp, vscsiif.Result(vscsiif.HostError, 0))
			} else {
				good(t, rsp)
			}
		}
		for i := range reqs {
			clear(f.page(32 + i))
			reqs[i] = rw(scsitest.Read10(uint32(8*i), 8), vscsiif.DirFromDevice, 32+i, false)
		}
		f.push(reqs...)
		for _, rsp := range byRqID(t, f.collect(n)) {
			good(t, rsp)
		}
		for i := range reqs {
			want := image(t, dev, int64(4096*i), 4096)
			if i != bad {
				exp := make([]byte, 4096)
				pattern(exp, byte(pass*16+i))
				if !bytes.Equal(want, exp) {
					t.Fatalf("pass %d: block %d on the disk is not what WRITE %d sent", pass, i, i)
				}
			}
			if !bytes.Equal(f.page(32+i), want) {
				t.Fatalf("pass %d: READ %d brought back other bytes than block %d holds", pass, i, i)
			}
		}
	}
}
