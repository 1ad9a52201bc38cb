package simattach_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	_ "github.com/xenblk/xenblk/xenstore/simattach"
)

// A guest attached through the host's socket reaches the store over the
// wire, as itself: its own home is writable, another domain's is not, and
// its watches fire.
func TestAttachedDomainHasAWorkingStore(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "host.sock")
	l, err := sim.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go h.Serve(l)
	d, err := sim.Connect(sock, sim.NewGuest("attached"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := d.Store()
	if v, err := s.Read("name"); err != nil || v != "attached" {
		t.Fatalf("the guest's own name: %q %v", v, err)
	}
	w, err := s.Watch(fmt.Sprintf("/local/domain/%d/data", d.ID()), "t")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := s.Transaction(func(tx xen.Tx) error { return tx.Write("data/x", "1") }); err != nil {
		t.Fatal(err)
	}
	if v, err := h.Store().Read(fmt.Sprintf("/local/domain/%d/data/x", d.ID())); err != nil || v != "1" {
		t.Fatalf("the host sees %q %v", v, err)
	}
	for _, want := range []string{"data", "data/x"} {
		select {
		case ev := <-w.Events():
			if ev.Path != fmt.Sprintf("/local/domain/%d/%s", d.ID(), want) {
				t.Fatalf("event %+v, want %s", ev, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", want)
		}
	}
	if err := s.Write("/local/domain/0/stolen", "x"); !errors.Is(err, xen.ErrPermission) {
		t.Fatalf("a guest writing dom0's home: %v", err)
	}
}
