package sim

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/mapguard"
)

// sink keeps a read from being optimised away.
var sink byte

// A slice kept past Unmap (or Revoke) must fault, not alias what the
// address space hands out next: the next anonymous mmap of the same size
// is where Linux's allocator puts it when the range is free, and a write
// through the stale slice would land there, as it lands in another
// mapping or in the Go runtime's own memory on real Xen.
func TestUseAfterUnmapFaultsInsteadOfAliasing(t *testing.T) {
	_, d0, g := newTestHost(t)
	gr, err := g.Granter().Grant(0, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Granter().Revoke(gr) })
	m, err := d0.Mapper().Map(g.ID(), gr.Refs, false)
	if err != nil {
		t.Fatal(err)
	}
	stale := m.Bytes()
	stale[0] = 1
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
	next, err := unix.Mmap(-1, 0, len(stale), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(next)
	if !mapguard.Faults(func() { stale[len(stale)-1] = 0xee }) {
		t.Fatalf("a write through a mapping's slice after Unmap did not fault (the next mmap is at %p, the stale slice at %p)", &next[0], &stale[0])
	}
	if next[len(next)-1] != 0 {
		t.Fatal("a write through a stale mapping landed in the next mmap")
	}

	granted := gr.Mem
	if err := g.Granter().Revoke(gr); err != nil {
		t.Fatal(err)
	}
	if !mapguard.Faults(func() { sink = granted[0] }) {
		t.Fatal("a read of granted pages after Revoke did not fault")
	}
}
