package uring

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/eventually"
)

// Close must not return while an operation the kernel took may still
// write into its buffer: closing the fd does not stop it, and the
// caller gives the buffer back once Close returns. A read from an empty
// pipe stands for an operation still running: Close waits in the kernel
// until the read has completed, and the bytes are in the buffer by the
// time it returns.
func TestCloseWaitsForOperationsInFlight(t *testing.T) {
	r, err := New(4)
	if err != nil {
		t.Skipf("SKIPPED: io_uring is not permitted here (%v); the io_uring path is untested on this machine", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := make([]byte, 16)
	r.NextSQE().PrepRead(p[0], buf, -1, 1)
	if n, err := r.Submit(); n != 1 || err != nil {
		t.Fatalf("Submit: %d, %v", n, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	eventually.Blocked(t, 10*time.Second, "uring.(*Ring).Close", "syscall")
	const msg = "late bytes"
	if _, err := unix.Write(p[1], []byte(msg)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return once the read in flight completed")
	}
	if got := string(buf[:len(msg)]); got != msg {
		t.Fatalf("after Close, the buffer holds %q, want %q: Close returned before the read", got, msg)
	}
}
