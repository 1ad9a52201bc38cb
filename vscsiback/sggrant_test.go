package vscsiback_test

import (
	"bytes"
	"testing"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// TestSGGrant: requests whose seg[] names lists of segments in granted
// pages (VSCSIIF_SG_GRANT): a 1 MiB READ and WRITE of 256 pages in one
// list page, and a WRITE whose 600 segments span two list pages, the
// data checked against the image both ways.
func TestSGGrant(t *testing.T) {
	_, dev, f := oneLUN(t, 1024)
	lun := at{}

	const n = 1 << 20
	req := f.cdb(lun, scsitest.Read10(512, n/512), vscsiif.DirFromDevice, n)
	if !req.Indirect() || req.SegmentCount() != 1 {
		t.Fatalf("nr_segments %#x: want one SG_GRANT list", req.NrSegments)
	}
	good(t, f.do(req))
	if !bytes.Equal(f.data.Mem[:n], image(t, dev, 512*512, n)) {
		t.Fatal("SG_GRANT READ: the guest's pages differ from the image")
	}

	for _, size := range []int{n, 600 * xen.PageSize} {
		pattern(f.data.Mem[:size], byte(size>>12))
		req = f.cdb(lun, scsitest.Write16(64, uint32(size/512)), vscsiif.DirToDevice, size)
		if want := (size/xen.PageSize + vscsiif.SGPerPage - 1) / vscsiif.SGPerPage; req.SegmentCount() != want {
			t.Fatalf("%d list pages, want %d", req.SegmentCount(), want)
		}
		good(t, f.do(req))
		if !bytes.Equal(f.data.Mem[:size], image(t, dev, 64*512, size)) {
			t.Fatalf("SG_GRANT WRITE of %d bytes: the image differs from the guest's pages", size)
		}
	}
}

// TestScatteredSegments: segments that are not one run of their pages
// (512 bytes in the middle of each page, as a guest's scattered buffer
// gives) go through the bounce buffer, both ways, direct and SG_GRANT.
func TestScatteredSegments(t *testing.T) {
	_, dev, f := oneLUN(t, 128)
	lun := at{}

	for _, count := range []int{8, 40} { // in seg[]; in a list
		var segs []vscsiif.Segment
		for i := range count {
			segs = append(segs, vscsiif.Segment{Gref: uint32(f.data.Refs[i]), Offset: 1024, Length: 512})
		}
		gathered := func() []byte {
			var b []byte
			for i := range count {
				b = append(b, f.page(i)[1024:1536]...)
			}
			return b
		}
		// WRITE the scattered pieces, then READ them back elsewhere.
		for i := range count {
			pattern(f.page(i)[1024:1536], byte(i+count))
		}
		w := f.cdb(lun, scsitest.Write10(3000, uint16(count)), vscsiif.DirToDevice, 0)
		f.setSegments(w, segs)
		good(t, f.do(w))
		if !bytes.Equal(gathered(), image(t, dev, 3000*512, count*512)) {
			t.Fatalf("%d scattered segments: the image differs from the pieces written", count)
		}
		clear(f.data.Mem[:count*xen.PageSize])
		rd := f.cdb(lun, scsitest.Read10(3000, uint16(count)), vscsiif.DirFromDevice, 0)
		f.setSegments(rd, segs)
		good(t, f.do(rd))
		if !bytes.Equal(gathered(), image(t, dev, 3000*512, count*512)) {
			t.Fatalf("%d scattered segments: the pieces read differ from the image", count)
		}
		for i := range count { // nothing outside the segments was written
			p := f.page(i)
			if !bytes.Equal(p[:1024], make([]byte, 1024)) || !bytes.Equal(p[1536:], make([]byte, xen.PageSize-1536)) {
				t.Fatalf("page %d written outside its segment", i)
			}
		}
	}
}
