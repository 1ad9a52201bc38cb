package mapguard

import (
	"testing"

	"golang.org/x/sys/unix"
)

var sink byte

func mmap(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The next mmap of the same size lands where a plain munmap freed
// (Linux's allocator takes the highest free gap): retired, the stale
// slice faults and the next mapping is elsewhere, untouched.
func TestRetiredRangeFaultsAndIsNotReused(t *testing.T) {
	old := mmap(t, 3*4096)
	old[0] = 1
	if err := Retire(old); err != nil {
		t.Fatal(err)
	}
	next := mmap(t, 3*4096)
	defer unix.Munmap(next)
	if &next[0] == &old[0] {
		t.Fatalf("the next mmap reuses the retired range at %p", &old[0])
	}
	if !Faults(func() { old[len(old)-1] = 0xee }) {
		t.Fatal("a write through a retired mapping did not fault")
	}
	if !Faults(func() { sink = old[0] }) {
		t.Fatal("a read through a retired mapping did not fault")
	}
}

// The quarantine gives ranges back, oldest first, past either bound, so
// a long-running process does not grow its address space without end.
func TestQuarantineIsBounded(t *testing.T) {
	for range Ranges + 10 {
		if err := Retire(mmap(t, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := held.size(); n > Ranges || b > Bytes {
		t.Fatalf("quarantine holds %d ranges, %d bytes; bounds %d, %d", n, b, Ranges, Bytes)
	}
	big := mmap(t, Bytes/2+4096)
	if err := Retire(big); err != nil {
		t.Fatal(err)
	}
	if err := Retire(mmap(t, Bytes/2+4096)); err != nil {
		t.Fatal(err)
	}
	if n, b := held.size(); b > Bytes || n < 1 {
		t.Fatalf("after two ranges of over half the byte bound: %d ranges, %d bytes; bound %d bytes", n, b, Bytes)
	}
}

func TestRetireAllocatesNothing(t *testing.T) {
	bufs := make([][]byte, 20)
	for i := range bufs {
		bufs[i] = mmap(t, 4096)
	}
	i := 0
	if n := testing.AllocsPerRun(len(bufs)-1, func() {
		if err := Retire(bufs[i]); err != nil {
			t.Fatal(err)
		}
		i++
	}); n != 0 {
		t.Fatalf("Retire allocates %v times", n)
	}
}
