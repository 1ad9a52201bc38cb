package sim

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/xenblk/xenblk/xen"
)

// fillGrantTable grants every ref a domain's table hands out (all but the
// reserved ones), checks that one page more is refused with
// ErrGrantTableFull, and returns the grant.
func fillGrantTable(t *testing.T, gr xen.Granter, entries int) *xen.Granted {
	t.Helper()
	all, err := gr.Grant(0, entries-reservedRefs, false)
	if err != nil {
		t.Fatalf("granting the whole table (%d refs): %v", entries-reservedRefs, err)
	}
	if _, err := gr.Grant(0, 1, false); !errors.Is(err, xen.ErrGrantTableFull) {
		t.Fatalf("a grant past %d entries: %v, want ErrGrantTableFull", entries, err)
	}
	return all
}

func TestGrantTableIsXensDefaultSize(t *testing.T) {
	h, d0, g := newTestHost(t)
	if got := h.GrantEntries(); got != 32768 {
		t.Fatalf("GrantEntries = %d, want Xen's default 32768 (64 frames)", got)
	}
	all := fillGrantTable(t, g.Granter(), 32768)
	// The highest ref maps: the range check is the table's size.
	last := all.Refs[0]
	for _, r := range all.Refs {
		last = max(last, r)
	}
	if last != 32767 {
		t.Fatalf("highest ref handed out is %d, want 32767", last)
	}
	m, err := d0.Mapper().Map(g.ID(), []xen.GrantRef{last}, true)
	if err != nil {
		t.Fatalf("map of ref %d: %v", last, err)
	}
	if err := m.Unmap(); err != nil {
		t.Fatal(err)
	}
	if err := g.Granter().Revoke(all); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Granter().Grant(0, 1, false); err != nil {
		t.Fatalf("grant after freeing the table: %v", err)
	}
}

func TestGrantFramesSizesEveryDomainsTable(t *testing.T) {
	h, err := NewHost(GrantFrames(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := h.GrantEntries(); got != 2*EntriesPerFrame {
		t.Fatalf("GrantEntries = %d, want %d", got, 2*EntriesPerFrame)
	}
	g, err := h.NewDomain("guest")
	if err != nil {
		t.Fatal(err)
	}
	fillGrantTable(t, g.Granter(), 2*EntriesPerFrame)
	if _, err := h.Dom0().Mapper().Map(g.ID(), []xen.GrantRef{2 * EntriesPerFrame}, true); !errors.Is(err, xen.ErrBadGrant) {
		t.Fatalf("map of the ref past the table: %v, want ErrBadGrant", err)
	}

	// A domain in another process learns the size from the table itself.
	socket := filepath.Join(t.TempDir(), "host.sock")
	l, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go h.Serve(l)
	remote, err := Connect(socket, NewGuest("remote"))
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	fillGrantTable(t, remote.Granter(), 2*EntriesPerFrame)

	for _, bad := range []int{0, -1, MaxGrantFrames + 1} {
		if _, err := NewHost(GrantFrames(bad)); err == nil {
			t.Errorf("GrantFrames(%d) accepted", bad)
		}
	}
}
