package nbd

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/xenblk/xenblk/storage"
)

// gatedDev holds every read until the test opens the gate.
type gatedDev struct {
	storage.Device
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedDev) ReadAt(p []byte, off int64) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Device.ReadAt(p, off)
}

// TestShutdownAnswersInFlightRequestsThenCloses: a request being served
// when Shutdown starts is answered (Close would have cut it off), then
// the connection ends, an idle connection ends at once, and nothing new
// is served.
func TestShutdownAnswersInFlightRequestsThenCloses(t *testing.T) {
	mem := newMemDev(1 << 20)
	want := make([]byte, 4096)
	randomFill(want, 9)
	if _, err := mem.WriteAt(want, 8192); err != nil {
		t.Fatal(err)
	}
	dev := &gatedDev{Device: mem, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &Server{Exports: []Export{{Name: "disk", Device: dev}}, Logf: t.Logf}
	go s.Serve(l)
	busy, err := Dial(ListenerURL(l, "disk"), "disk")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// An idle client in the transmission phase, at the byte level.
	idle, idleR := rawConn(t, l)
	idle.Write([]byte{0, 0, 0, flagFixedNewstyle | flagNoZeroes})
	sendOpt(t, idle, optExportName, []byte("disk"))
	if _, err := io.ReadFull(idleR, make([]byte, 10)); err != nil {
		t.Fatalf("export name reply: %v", err)
	}

	got := make([]byte, 4096)
	read := make(chan error, 1)
	go func() { _, err := busy.ReadAt(got, 8192); read <- err }()
	<-dev.entered // the request is in the device

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	// The idle connection ends without waiting for the busy one (within
	// rawConn's 10 s deadline, while the busy request is still held).
	expectClosed(t, idleR)
	close(dev.gate)
	if err := <-read; err != nil {
		t.Fatalf("the request in flight at Shutdown: %v; want its answer", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the request in flight at Shutdown was answered with the wrong data")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := busy.ReadAt(got, 0); err == nil {
		t.Fatal("the connection still serves after Shutdown returned")
	}
	if c, err := Dial(ListenerURL(l, "disk"), "disk"); err == nil {
		c.Close()
		t.Fatal("a new connection was served after Shutdown")
	}
}
