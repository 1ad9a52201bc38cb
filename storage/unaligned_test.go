package storage

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// blocks is a device of whole blocks of bs bytes that refuses anything
// else and counts what it is asked.
type blocks struct {
	bs            int64
	mu            sync.Mutex
	data          []byte
	reads, writes int
	fail          error
}

func (d *blocks) rw(p []byte, off int64, write bool) error {
	if off%d.bs != 0 || int64(len(p))%d.bs != 0 || off+int64(len(p)) > int64(len(d.data)) {
		return fmt.Errorf("unaligned or out of range: %d bytes at %d", len(p), off)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	if write {
		d.writes++
		copy(d.data[off:], p)
	} else {
		d.reads++
		copy(p, d.data[off:])
	}
	return nil
}

// TestUnalignedMergesPartialBlocks: an unaligned write reads the first
// and last block (one when it touches one), merges, writes the span, and
// leaves every byte around it as it was; an unaligned read returns
// exactly the bytes asked for.
func TestUnalignedMergesPartialBlocks(t *testing.T) {
	for _, c := range []struct {
		off          int64
		n            int
		reads, spans int
	}{
		{off: 3, n: 5, reads: 1, spans: 1},      // inside one block
		{off: 510, n: 4, reads: 2, spans: 1},    // across a boundary
		{off: 100, n: 1000, reads: 2, spans: 1}, // three blocks
		{off: 512, n: 100, reads: 1, spans: 1},  // aligned start, short end
	} {
		t.Run(fmt.Sprintf("%d+%d", c.off, c.n), func(t *testing.T) {
			d := &blocks{bs: 512, data: bytes.Repeat([]byte{0xee}, 4*512)}
			want := bytes.Clone(d.data)
			p := bytes.Repeat([]byte{0x11}, c.n)
			copy(want[c.off:], p)
			var u Unaligned
			if n, err := u.WriteAt(d.rw, d.bs, p, c.off); err != nil || n != c.n {
				t.Fatalf("WriteAt = %d, %v", n, err)
			}
			if d.reads != c.reads || d.writes != c.spans {
				t.Errorf("%d block reads and %d writes, want %d and %d", d.reads, d.writes, c.reads, c.spans)
			}
			if !bytes.Equal(d.data, want) {
				t.Error("bytes around the write changed")
			}
			got := make([]byte, c.n+2)
			if n, err := u.ReadAt(d.rw, d.bs, got, c.off-1); err != nil || n != len(got) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if !bytes.Equal(got, want[c.off-1:c.off+int64(c.n)+1]) {
				t.Error("ReadAt returned other bytes")
			}
		})
	}
}

// TestUnalignedWriteFails: a failing read of a partial block writes
// nothing and says so.
func TestUnalignedWriteFails(t *testing.T) {
	boom := errors.New("boom")
	d := &blocks{bs: 512, data: make([]byte, 1024), fail: boom}
	var u Unaligned
	if n, err := u.WriteAt(d.rw, d.bs, []byte{1}, 10); !errors.Is(err, boom) || n != 0 || d.writes != 0 {
		t.Fatalf("WriteAt = %d, %v, %d writes", n, err, d.writes)
	}
	if n, err := u.ReadAt(d.rw, d.bs, []byte{1}, 10); !errors.Is(err, boom) || n != 0 {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
}

// TestUnalignedWritesIntoOneBlockKeepEachOther: concurrent unaligned
// writes of distinct bytes of one block all land (the stripe lock), the
// read-merge-write of one never undoing another's.
func TestUnalignedWritesIntoOneBlockKeepEachOther(t *testing.T) {
	d := &blocks{bs: 512, data: make([]byte, 2*512)}
	var u Unaligned
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := int64(260 + i*8) // write 31 straddles the two blocks
			if _, err := u.WriteAt(d.rw, d.bs, bytes.Repeat([]byte{byte(i + 1)}, 8), off); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 64 {
		if got := d.data[260+i*8]; got != byte(i+1) {
			t.Fatalf("write %d lost: byte %d is %d", i, 260+i*8, got)
		}
	}
}
