package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/xenblk/xenblk/xen"
)

// A domain process's store connection is served as that domain: relative
// paths resolve under its home, and others' areas are closed to it.
func TestRemoteDomainStoreConnection(t *testing.T) {
	h, socket := startHost(t)
	other, err := h.NewDomain("other")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan io.ReadWriteCloser, 1)
	StoreClient = func(c io.ReadWriteCloser) (xen.Store, error) { conns <- c; return unattachedStore{}, nil }
	defer func() { StoreClient = nil }()
	d, err := Connect(socket, NewGuest("wired"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := <-conns
	defer c.Close()
	ask := func(typ uint32, payload string) (uint32, string) {
		t.Helper()
		if _, err := c.Write(xsMessage(typ, payload)); err != nil {
			t.Fatal(err)
		}
		var hdr [xsHeaderSize]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, binary.LittleEndian.Uint32(hdr[12:]))
		io.ReadFull(c, p)
		return binary.LittleEndian.Uint32(hdr[0:]), string(p)
	}
	if typ, p := ask(xsRead, "name\x00"); typ != xsRead || p != "wired" {
		t.Fatalf("read of its own name: %d %q", typ, p)
	}
	if typ, p := ask(xsRead, fmt.Sprintf("/local/domain/%d/name\x00", other.ID())); typ != xsError || p != "EACCES\x00" {
		t.Fatalf("read of another guest's name: %d %q", typ, p)
	}
	StoreClient = nil
	d2, err := Connect(socket, NewGuest("unwired"))
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if _, err := d2.Store().Read("name"); err == nil || errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("a store without a client must fail loudly: %v", err)
	}
}
