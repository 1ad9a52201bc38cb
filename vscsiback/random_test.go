package vscsiback_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// TestRandomRequestsAnsweredOnce pushes requests whose every field is
// drawn at random (seeded: a failure names its seed), in passes of 1 to
// 16: acts, addresses, CDBs of common and random operation codes,
// lengths, directions, direct and SG_GRANT segments naming the guest's
// data, read-only and list pages or grants that do not exist. Every
// request gets exactly one response with its rqid, nothing else comes
// back, and the vhost still serves a READ with the image's bytes.
func TestRandomRequestsAnsweredOnce(t *testing.T) {
	const seed = 13
	rng := rand.New(rand.NewPCG(seed, seed))
	r := newRig(t)
	disk := newDisk(t)
	f := r.vhost("1/0", 256, r.lun(at{0, 0, 0}, "disk", disk), r.lun(at{0, 1, 0}, "other", newDisk(t)))
	f.spoken(at{0, 0, 0}, at{0, 1, 0})
	ops := []byte{scsi.OpTestUnitReady, scsi.OpInquiry, scsi.OpRead10, scsi.OpWrite10, scsi.OpRead16, scsi.OpWrite16,
		scsi.OpPersistentReserveIn, scsi.OpReportLuns, scsi.OpRequestSense, scsi.OpServiceActionIn16, 0xff}
	gref := func() uint32 {
		switch rng.IntN(5) {
		case 0:
			return uint32(f.ro.Refs[rng.IntN(len(f.ro.Refs))])
		case 1:
			return rng.Uint32()
		default:
			return uint32(f.data.Refs[rng.IntN(64)])
		}
	}
	segment := func() vscsiif.Segment {
		s := vscsiif.Segment{Gref: gref(), Offset: uint16(rng.IntN(8) * 512), Length: uint16(rng.IntN(9) * 512)}
		if rng.IntN(8) == 0 {
			s.Offset, s.Length = uint16(rng.Uint32()), uint16(rng.Uint32())
		}
		return s
	}
	outcomes := map[vscsiif.Host]int{}
	for pass := range 300 {
		reqs := make([]*vscsiif.Request, 1+rng.IntN(16))
		for i := range reqs {
			q := &vscsiif.Request{
				RqID: uint16(rng.IntN(40)), Act: uint8(1 + rng.IntN(3)), CmdLen: uint8(6 + rng.IntN(11)),
				Channel: uint16(rng.IntN(2) * rng.IntN(2)), ID: uint16(rng.IntN(3)), LUN: uint16(rng.IntN(2) * rng.IntN(2)),
				RefRqID: uint16(rng.IntN(40)), DataDirection: uint8(rng.IntN(5)),
			}
			if rng.IntN(10) == 0 {
				q.Act, q.CmdLen = uint8(rng.Uint32()), uint8(rng.Uint32())
			}
			for j := range q.Cmnd {
				q.Cmnd[j] = byte(rng.Uint32() & uint32(rng.IntN(2)*0xff))
			}
			q.Cmnd[0] = ops[rng.IntN(len(ops))]
			if q.Cmnd[0] == scsi.OpRead10 || q.Cmnd[0] == scsi.OpWrite10 {
				q.Cmnd[2], q.Cmnd[3], q.Cmnd[4] = 0, 0, byte(rng.IntN(16)) // within the disk, mostly
			}
			n := rng.IntN(6)
			if rng.IntN(6) == 0 {
				n = rng.IntN(128)
			}
			if rng.IntN(4) == 0 { // SG_GRANT: lists in the front's list pages
				lists := 1 + rng.IntN(2)
				for l := range lists {
					page := f.lists.Mem[l*xen.PageSize : (l+1)*xen.PageSize]
					k := 1 + rng.IntN(20)
					for s := range k {
						vscsiif.EncodeSegment(page[s*vscsiif.SegmentSize:], segment())
					}
					q.Seg[l] = vscsiif.Segment{Gref: uint32(f.lists.Refs[l]), Length: uint16(k * vscsiif.SegmentSize)}
					if rng.IntN(6) == 0 {
						q.Seg[l] = segment()
					}
				}
				q.NrSegments = vscsiif.SGGrant | uint8(lists)
			} else {
				for s := range min(n, vscsiif.SGTableSize) {
					q.Seg[s] = segment()
				}
				q.NrSegments = uint8(n)
			}
			reqs[i] = q
		}
		f.push(reqs...)
		rsps := f.collect(len(reqs))
		if n := f.ring.Unconsumed(); n != 0 {
			t.Fatalf("seed %d pass %d: %d responses more than the %d requests", seed, pass, n, len(reqs))
		}
		var sent, got []uint16
		for i := range reqs {
			sent, got = append(sent, reqs[i].RqID), append(got, rsps[i].RqID)
		}
		for _, rsp := range rsps {
			outcomes[vscsiif.HostOf(rsp.Rslt)]++
		}
		slices.Sort(sent)
		slices.Sort(got)
		if !slices.Equal(sent, got) {
			t.Fatalf("seed %d pass %d: rqids sent %v, answered %v", seed, pass, sent, got)
		}
	}
	t.Logf("answers by host status: %v", outcomes)
	if outcomes[vscsiif.HostOK] < 100 || outcomes[vscsiif.HostError] < 100 {
		t.Fatalf("answers by host status %v: too few reached an engine or were refused to test either", outcomes)
	}
	// Some random WRITEs landed; what is on the disk now is what a READ
	// must return.
	good(t, f.do(f.cdb(at{}, tur, vscsiif.DirNone, 0)))
	want := image(t, disk, 0, 4096)
	good(t, f.do(f.cdb(at{}, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)))
	if !bytes.Equal(f.page(0), want) {
		t.Fatal("READ after the random passes: data differs from the image")
	}
}
