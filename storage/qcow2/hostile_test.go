package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// memFile is an image in memory that records any access outside it:
// reads past the end, and writes that leave a gap after it (allocation
// appends; nothing else may reach past the end).
type memFile struct {
	b       []byte
	outside []string
	syncs   int
}

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		m.outside = append(m.outside, fmt.Sprintf("read %d at %#x (file %d)", len(p), off, len(m.b)))
		if off >= int64(len(m.b)) || off < 0 {
			return 0, io.EOF
		}
		return copy(p, m.b[off:]), io.EOF
	}
	return copy(p, m.b[off:]), nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m.b))+1<<24 {
		m.outside = append(m.outside, fmt.Sprintf("write %d at %#x (file %d)", len(p), off, len(m.b)))
		return 0, io.ErrShortWrite
	}
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Sync() error              { m.syncs++; return nil }
func (m *memFile) Punch(off, n int64) error { return nil }
func (m *memFile) Close() error             { return nil }

// tiny is an empty image of 1 MiB with 512-byte clusters: header at 0,
// refcount table at 512, refcount block at 1024, L1 table at 1536.
func tiny(t testing.TB) []byte {
	b, err := newImageBytes(1<<20, 9, 4)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openMem(b []byte, ro bool) (*Image, *memFile, error) {
	m := &memFile{b: b}
	d, err := open(m, "test.qcow2", int64(len(b)), Options{ReadOnly: ro})
	return d, m, err
}

func put32(b []byte, off int, v uint32) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
func put64(b []byte, off int, v uint64) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }

// TestHostileHeadersAreRefused: each corruption is refused at open with
// its class and a message naming the field.
func TestHostileHeadersAreRefused(t *testing.T) {
	withBacking := func(b []byte) []byte {
		copy(b[400:], "base.qcow2")
		put64(b, offBackingOffset, 400)
		return put32(b, offBackingSize, 10)
	}
	for _, c := range []struct {
		name  string
		edit  func([]byte) []byte
		class error
		says  string
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrCorrupt, "magic"},
		{"version 4", func(b []byte) []byte { return put32(b, offVersion, 4) }, ErrUnsupported, "version 4"},
		{"cluster bits 8", func(b []byte) []byte { return put32(b, offClusterBits, 8) }, ErrCorrupt, "cluster_bits 8"},
		{"cluster bits 22", func(b []byte) []byte { return put32(b, offClusterBits, 22) }, ErrCorrupt, "cluster_bits 22"},
		{"refcount order 7", func(b []byte) []byte { return put32(b, offRefcountOrder, 7) }, ErrCorrupt, "refcount_order 7"},
		{"unknown incompatible bit", func(b []byte) []byte { return put64(b, offIncompatible, 1<<20) }, ErrUnsupported, "incompatible feature bits 0x100000"},
		{"external data file", func(b []byte) []byte { return put64(b, offIncompatible, incExternalData) }, ErrUnsupported, "external data"},
		{"extended L2", func(b []byte) []byte { return put64(b, offIncompatible, incExtendedL2) }, ErrUnsupported, "extended L2"},
		{"zstd", func(b []byte) []byte {
			put64(b, offIncompatible, incCompression)
			b[offCompressionTyp] = 1
			return put32(b, offHeaderLength, 112)
		}, ErrUnsupported, "compression type 1"},
		{"encrypted", func(b []byte) []byte { return put32(b, offCryptMethod, 2) }, ErrUnsupported, "encryption"},
		{"backing name outside", func(b []byte) []byte { withBacking(b); return put64(b, offBackingOffset, 510) }, ErrCorrupt, "backing file name"},
		{"extension past the first cluster", func(b []byte) []byte {
			put32(b, headerV3Len, extBackingFormat)
			return put32(b, headerV3Len+4, 1000)
		}, ErrCorrupt, "runs past the first cluster"},
		{"backing format name too long", func(b []byte) []byte {
			put32(b, headerV3Len, extBackingFormat)
			return put32(b, headerV3Len+4, 100)
		}, ErrCorrupt, "backing format name of 100 bytes"},
		{"header length odd", func(b []byte) []byte { return put32(b, offHeaderLength, 105) }, ErrCorrupt, "header length 105"},
		{"header length past cluster", func(b []byte) []byte { return put32(b, offHeaderLength, 1<<20) }, ErrCorrupt, "header length"},
		{"L1 outside the file", func(b []byte) []byte { return put64(b, offL1Offset, 1<<40) }, ErrCorrupt, "L1 table"},
		{"L1 unaligned", func(b []byte) []byte { return put64(b, offL1Offset, 1537) }, ErrCorrupt, "not aligned"},
		{"L1 too small", func(b []byte) []byte { return put32(b, offL1Size, 1) }, ErrCorrupt, "cannot map"},
		{"L1 size absurd", func(b []byte) []byte { return put32(b, offL1Size, 1<<31) }, ErrCorrupt, "limit"},
		{"L1 size overflows with offset", func(b []byte) []byte {
			put32(b, offL1Size, 1<<22)
			return put64(b, offL1Offset, 1<<63)
		}, ErrCorrupt, "L1 table"},
		{"virtual size absurd", func(b []byte) []byte { return put64(b, offSize, 1<<63) }, ErrCorrupt, "virtual size"},
		{"refcount table outside", func(b []byte) []byte { return put64(b, offRefTableOffset, 1<<30) }, ErrCorrupt, "refcount table"},
		{"refcount table of 0 clusters", func(b []byte) []byte { return put32(b, offRefTableClust, 0) }, ErrCorrupt, "refcount table of 0"},
		{"L1 entry low bits", func(b []byte) []byte { return put64(b, 1536, 700) }, ErrCorrupt, "reserved"},
		{"L1 entry outside", func(b []byte) []byte { return put64(b, 1536, 1<<30) }, ErrCorrupt, "past the end"},
		{"L1 entry reserved bits", func(b []byte) []byte { return put64(b, 1536, 1<<60) }, ErrCorrupt, "reserved"},
		{"refcount block outside", func(b []byte) []byte { return put64(b, 512, 1<<30) }, ErrCorrupt, "refcount block"},
		{"truncated", func(b []byte) []byte { return b[:50] }, ErrCorrupt, "too short"},
		{"table past a truncated file", func(b []byte) []byte { return b[:1600] }, ErrCorrupt, "L1 table"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, m, err := openMem(c.edit(tiny(t)), true)
			if !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("open: %v; want %v saying %q", err, c.class, c.says)
			}
			if len(m.outside) > 0 {
				t.Fatalf("accesses outside the file: %v", m.outside)
			}
		})
	}
}

// TestUnalignedTablesAreRefused: with 4 KiB clusters, offsets that are
// multiples of 512 but not of the cluster size.
func TestUnalignedTablesAreRefused(t *testing.T) {
	img := func() []byte {
		b, err := newImageBytes(1<<20, 12, 4)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := put64(img(), 3*4096, 0x2200|flagCopied) // L1[0]
	if _, _, err := openMem(b, true); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "L2 table at 0x2200 is not cluster-aligned") {
		t.Fatalf("L1 entry: %v", err)
	}
	b = put64(img(), 4096, 0x2200) // refcount table entry 0
	if _, _, err := openMem(b, true); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "refcount block at 0x2200 is not cluster-aligned") {
		t.Fatalf("refcount table entry: %v", err)
	}
	b = put64(img(), 3*4096, 4*4096|flagCopied)
	b = append(b, make([]byte, 4096)...)
	put64(b, 4*4096, 0x1200|flagCopied) // L2[0]: data at an unaligned offset
	d, m, err := openMem(b, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(make([]byte, 512), 0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "data cluster at 0x1200 is not cluster-aligned") {
		t.Fatalf("L2 entry: %v", err)
	}
	if len(m.outside) > 0 {
		t.Fatalf("accesses outside the file: %v", m.outside)
	}
}

// withSnapshot appends to a tiny image a snapshot table of one entry,
// ID "1", name "s1", sharing the image's L1 table.
func withSnapshot(b []byte) []byte {
	at := len(b)
	e := make([]byte, snapHeaderLen+16+1+2)
	put64(e, 0, 1536)
	put32(e, 8, 32)
	binary.BigEndian.PutUint16(e[12:], 1)
	binary.BigEndian.PutUint16(e[14:], 2)
	put32(e, 16, 1700000000)
	put32(e, 36, 16)
	put64(e, snapHeaderLen+8, 1<<20)
	copy(e[snapHeaderLen+16:], "1s1")
	b = append(b, e...)
	b = append(b, make([]byte, 512-len(e))...)
	put32(b, offNbSnapshots, 1)
	return put64(b, offSnapshotsOff, uint64(at))
}

// TestHostileSnapshotTables: a snapshot table or a snapshot's L1 table
// that does not fit is refused.
func TestHostileSnapshotTables(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		says string
	}{
		{"table past the file", func(b []byte) []byte { return put64(withSnapshot(b), offSnapshotsOff, 1<<20) }, "snapshot table"},
		{"too many", func(b []byte) []byte { return put32(withSnapshot(b), offNbSnapshots, 1<<20) }, "snapshots (at most"},
		{"entry past the file", func(b []byte) []byte { return put32(withSnapshot(b), offNbSnapshots, 20) }, "cut short"},
		{"extra data absurd", func(b []byte) []byte { return put32(withSnapshot(b), 2048+36, 1<<30) }, "extra data"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, m, err := openMem(c.edit(tiny(t)), true)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("open: %v; want ErrCorrupt saying %q", err, c.says)
			}
			if len(m.outside) > 0 {
				t.Fatalf("accesses outside the file: %v", m.outside)
			}
		})
	}
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		says string
	}{
		{"L1 past the file", func(b []byte) []byte { return put64(b, 2048, 1<<30) }, "snapshot L1 table"},
		{"L1 too small", func(b []byte) []byte { return put32(b, 2048+8, 1) }, "L1 table of 1 entries"},
		{"L1 entry outside", func(b []byte) []byte { return put64(b, 1536, 1<<30) }, "past the end"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, m, err := openMem(c.edit(withSnapshot(tiny(t))), true)
			if err != nil && c.name != "L1 entry outside" {
				t.Fatal(err)
			}
			if err == nil {
				_, err = d.OpenSnapshot("s1")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("open snapshot: %v; want ErrCorrupt saying %q", err, c.says)
			}
			if len(m.outside) > 0 {
				t.Fatalf("accesses outside the file: %v", m.outside)
			}
		})
	}
}

func FuzzSnapshotEntry(f *testing.F) {
	b := withSnapshot(tiny(f))
	f.Add(b[2048:])
	f.Fuzz(func(t *testing.T, b []byte) {
		s, n, err := parseSnapshotEntry(b, 1<<20)
		if err != nil {
			return
		}
		if n < snapHeaderLen || n > (len(b)+7)&^7 || s.Size < 0 {
			t.Fatalf("entry of %d bytes from %d: %+v", n, len(b), s)
		}
	})
}

// TestWriteRefusedButReadAllowed: features that only forbid writing.
func TestWriteRefusedButReadAllowed(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func([]byte) []byte
		says string
	}{
		{"dirty", func(b []byte) []byte { return put64(b, offIncompatible, incDirty) }, "qemu-img check -r all"},
		{"corrupt", func(b []byte) []byte { return put64(b, offIncompatible, incCorrupt) }, "marked it corrupt"},
		{"snapshots", withSnapshot, "snapshots"},
		{"1-bit refcounts", func(b []byte) []byte { return put32(b, offRefcountOrder, 0) }, "1 bits wide"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := openMem(c.edit(tiny(t)), false); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("open for writing: %v; want ErrUnsupported saying %q", err, c.says)
			}
			if _, _, err := openMem(c.edit(tiny(t)), true); err != nil {
				t.Fatalf("open read-only: %v", err)
			}
		})
	}
}

// TestWriterClearsAutoclear: bitmaps (autoclear bit 0) are not kept, so a
// writer clears the autoclear bits, durably, before its first write, and
// QEMU then knows the bitmaps are stale; a reader leaves them.
func TestWriterClearsAutoclear(t *testing.T) {
	for _, ro := range []bool{true, false} {
		d, m, err := openMem(put64(tiny(t), offAutoclear, autoclearBitmaps), ro)
		if err != nil {
			t.Fatal(err)
		}
		got := binary.BigEndian.Uint64(m.b[offAutoclear:])
		if want := map[bool]uint64{true: autoclearBitmaps, false: 0}[ro]; got != want || (!ro && m.syncs == 0) {
			t.Errorf("read-only %v: autoclear %#x after open (%d syncs), want %#x", ro, got, m.syncs, want)
		}
		d.Close()
	}
}

// TestHostileTablesFailReads: an L2 entry or a compressed cluster naming
// something outside the file fails the read with ErrCorrupt, touching
// nothing outside.
func TestHostileTablesFailReads(t *testing.T) {
	withL2 := func(e uint64) []byte {
		b := tiny(t)
		put64(b, 1536, 2048|flagCopied) // L1[0] -> L2 table at 2048
		b = append(b, make([]byte, 512)...)
		return put64(b, 2048, e)
	}
	for _, c := range []struct {
		name string
		img  []byte
		says string
	}{
		{"data cluster outside", withL2(1<<40 | flagCopied), "past the end"},
		{"data cluster low bits", withL2(1000 | flagCopied), "reserved"},
		{"data cluster is the header", withL2(flagCopied | 1<<20), "past the end"},
		{"reserved bits", withL2(2048 | 1<<3), "reserved"},
		{"compressed outside", withL2(flagComp | 1<<40), "past the end"},
		{"compressed garbage", withL2(flagComp | 100), "does not inflate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, m, err := openMem(c.img, true)
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.ReadAt(make([]byte, 4096), 0)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("read: %v; want ErrCorrupt saying %q", err, c.says)
			}
			if len(m.outside) > 0 {
				t.Fatalf("accesses outside the file: %v", m.outside)
			}
		})
	}
}

// workedImage is a tiny image after some writes and a discard: seeds
// with L2 tables, data and freed clusters.
func workedImage(t testing.TB) []byte {
	d, m, err := openMem(tiny(t), false)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 20; i++ {
		if _, err := d.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 700), i*40000); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Discard(40000, 100000, false); err != nil {
		t.Fatal(err)
	}
	return m.b
}

func FuzzParseHeader(f *testing.F) {
	f.Add(tiny(f))
	withExt := tiny(f)
	put32(withExt, headerV3Len, extBackingFormat)
	put32(withExt, headerV3Len+4, 3)
	copy(withExt[headerV3Len+8:], "raw")
	copy(withExt[400:], "base.raw")
	put64(withExt, offBackingOffset, 400)
	f.Add(put32(withExt, offBackingSize, 8))
	f.Add(workedImage(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b, int64(len(b)))
		if err != nil {
			return
		}
		if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits || h.RefcountOrder > 6 {
			t.Fatalf("accepted %+v", h)
		}
		if h.L1Offset+uint64(h.L1Size)*8 > uint64(len(b)) || h.RefTableOffset+uint64(h.RefTableClusters)<<h.ClusterBits > uint64(len(b)) {
			t.Fatalf("accepted tables outside the file: %+v", h)
		}
	})
}

// FuzzImage opens any bytes as an image, reads it whole, then writes,
// discards and reads again: errors are fine, panics and accesses outside
// the file are not.
func FuzzImage(f *testing.F) {
	f.Add(tiny(f))
	f.Add(workedImage(f))
	f.Add(withSnapshot(workedImage(f)))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, m, err := openMem(bytes.Clone(b), true)
		if err != nil {
			return
		}
		size := d.Info().Size
		buf := make([]byte, 64<<10)
		for off := int64(0); off < size && off < 4<<20; off += int64(len(buf)) {
			d.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		}
		for _, s := range d.Snapshots() {
			if v, err := d.OpenSnapshot(s.ID); err == nil {
				v.ReadAt(buf[:min(int64(len(buf)), v.Info().Size)], 0)
			}
		}
		if len(m.outside) > 0 {
			t.Fatalf("reads outside the file: %v", m.outside)
		}
		d, m, err = openMem(bytes.Clone(b), false)
		if err != nil {
			return
		}
		for i := int64(0); i < 4; i++ {
			off := (i * 300007) % size
			d.WriteAt(buf[:min(5000, size-off)], off)
		}
		d.Discard(0, min(size, 100000), false)
		d.ReadAt(buf[:min(int64(len(buf)), size)], 0)
		if len(m.outside) > 0 {
			t.Fatalf("accesses outside the file: %v", m.outside)
		}
	})
}
