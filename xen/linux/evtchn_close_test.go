package linux

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
)

// A Wait or Pending that starts after Close (a queue's loop coming back
// to its channel while the device is torn down) must not read or write
// the descriptor numbers the channel had: by then they may name another
// file of the process (here, forced with dup2: a pipe standing for a
// store connection or another port), whose bytes a stale read would
// steal and a stale write (the unmask) would corrupt.
func TestClosedChannelLeavesReusedDescriptorsAlone(t *testing.T) {
	var evt [2]int
	if err := unix.Pipe2(evt[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(evt[1])
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	c := &channel{fd: evt[0], wake: wake, port: 7}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	var other [2]int
	if err := unix.Pipe2(other[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(other[0])
	defer unix.Close(other[1])
	if other[0] != c.fd { // the lowest free number is usually the one Close freed
		if err := unix.Dup3(other[0], c.fd, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(c.fd)
	}
	const msg = "someone else's bytes"
	if _, err := unix.Write(other[1], []byte(msg)); err != nil {
		t.Fatal(err)
	}

	if ok, err := c.Wait(time.Millisecond); ok || !errors.Is(err, xen.ErrClosed) {
		t.Fatalf("Wait after Close: %v, %v; want false, ErrClosed", ok, err)
	}
	if c.Pending() {
		t.Fatal("Pending after Close reported a notification")
	}
	c.Unmask()
	buf := make([]byte, 64)
	n, err := unix.Read(other[0], buf)
	n = max(n, 0)
	if err != nil || string(buf[:n]) != msg {
		t.Fatalf("the file now at the channel's old descriptor holds %q (%v), want %q untouched", buf[:n], err, msg)
	}
}
