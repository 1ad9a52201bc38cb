package sim

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// A domain process attached through the host's socket has a working store
// with nothing else imported: the connection is served as that domain, so
// relative paths resolve under its home, others' areas are closed to it,
// its transactions reach the host's tree and its watches fire.
func TestRemoteDomainStoreConnection(t *testing.T) {
	h, socket := startHost(t)
	other, err := h.NewDomain("other")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Connect(socket, NewGuest("wired"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := d.Store()
	if v, err := s.Read("name"); err != nil || v != "wired" {
		t.Fatalf("read of its own name: %q %v", v, err)
	}
	if v, err := s.Read(fmt.Sprintf("/local/domain/%d/name", other.ID())); !errors.Is(err, xen.ErrPermission) {
		t.Fatalf("read of another guest's name: %q %v, want %v", v, err, xen.ErrPermission)
	}
	if err := s.Write("/local/domain/0/stolen", "x"); !errors.Is(err, xen.ErrPermission) {
		t.Fatalf("a guest writing dom0's home: %v", err)
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
}
