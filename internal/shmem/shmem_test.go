package shmem

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestUint32IsTheWordInMemory(t *testing.T) {
	mem := make([]byte, 16)
	w := MustUint32(mem, 8)
	w.Store(0x11223344)
	if got := binary.NativeEndian.Uint32(mem[8:]); got != 0x11223344 {
		t.Fatalf("bytes 8..12 read %#x after a store of 0x11223344 through the word", got)
	}
	binary.NativeEndian.PutUint32(mem[8:], 7)
	if got := w.Load(); got != 7 {
		t.Fatalf("word reads %d after 7 was written into its bytes", got)
	}
	if MustUint32(mem, 8) != w {
		t.Fatal("two resolutions of one word are different words")
	}
}

func TestUint32RefusesWordsOutsideOrUnaligned(t *testing.T) {
	mem := make([]byte, 16)
	for _, c := range []struct {
		mem  []byte
		off  int
		want string
	}{
		{mem, 13, "outside 16 bytes"},
		{mem, 16, "outside 16 bytes"},
		{mem, -4, "outside 16 bytes"},
		{mem[:3], 0, "outside 3 bytes"},
		{nil, 0, "outside 0 bytes"},
		{mem[1:], 0, "not 4-byte aligned"},
		{mem, 2, "not 4-byte aligned"},
	} {
		if _, err := Uint32(c.mem, c.off); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Uint32(%d bytes, %d): err %v, want one saying %q", len(c.mem), c.off, err, c.want)
		}
	}
	if _, err := Uint32(mem, 12); err != nil {
		t.Errorf("the last word of 16 bytes: %v", err)
	}
}

func TestMustUint32PanicsOnABug(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustUint32 past the end returned instead of panicking")
		}
	}()
	MustUint32(make([]byte, 4), 4)
}

func TestUint32s(t *testing.T) {
	mem := make([]byte, 32)
	a, err := Uint32s(mem, 8, 6)
	if err != nil || len(a) != 6 {
		t.Fatalf("6 words at 8 of 32 bytes: %d words, %v", len(a), err)
	}
	a[5] = 9
	if got := binary.NativeEndian.Uint32(mem[28:]); got != 9 {
		t.Fatalf("the array's last word is not bytes 28..32 (read %d)", got)
	}
	for _, c := range []struct{ off, n int }{{8, 7}, {-4, 1}, {36, 0}, {0, -1}, {2, 1}} {
		if _, err := Uint32s(mem, c.off, c.n); err == nil {
			t.Errorf("Uint32s(32 bytes, off %d, n %d) succeeded", c.off, c.n)
		}
	}
}

func TestResolvedWordAllocatesNothing(t *testing.T) {
	mem := make([]byte, 64)
	if n := testing.AllocsPerRun(100, func() { MustUint32(mem, 4).Add(1) }); n != 0 {
		t.Fatalf("%v allocations per resolve and add", n)
	}
}
