package nbd

import (
	"net"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// TestExportsChangeWhileServing: an export added while the server runs
// opens; one removed does not, while a client already on it goes on.
func TestExportsChangeWhileServing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Exports: []Export{{Name: "xvda", Device: storage.NewMemory(1 << 20)}}}
	go s.Serve(l)
	defer func() { l.Close(); s.Close() }()
	addr := l.Addr().String()
	if c, err := Dial(addr, "0:0:0:0"); err == nil {
		c.Close()
		t.Fatal("an export not added yet opened")
	}
	s.AddExport(Export{Name: "0:0:0:0", Device: storage.NewMemory(2 << 20)})
	held, err := Dial(addr, "0:0:0:0")
	if err != nil {
		t.Fatalf("the added export: %v", err)
	}
	defer held.Close()
	if got := held.Info().Size; got != 2<<20 {
		t.Fatalf("the added export is %d bytes, want %d", got, 2<<20)
	}
	if !s.RemoveExport("0:0:0:0") || s.RemoveExport("0:0:0:0") {
		t.Fatal("RemoveExport: want true once, then false")
	}
	if c, err := Dial(addr, "0:0:0:0"); err == nil {
		c.Close()
		t.Fatal("a removed export opened")
	}
	if _, err := held.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("a client already on the removed export: %v", err)
	}
	if c, err := Dial(addr, "xvda"); err != nil {
		t.Fatalf("the other export: %v", err)
	} else {
		c.Close()
	}
}
