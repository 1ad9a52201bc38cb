package stacktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
)

// TestDetachWhileConnected: xl block-detach's sequence against a live
// frontend. The backend closes, the frontend answers, both directories go
// and stay gone (no state node written back into a removed directory),
// and the frontend's requests then fail at once instead of waiting for a
// backend that will never come.
func TestDetachWhileConnected(t *testing.T) {
	s := newStack(t, 1<<20, blkfront.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := toolstack.Remove(ctx, s.host.Store(), s.vbd, false); err != nil {
		t.Fatalf("detach: %v", err)
	}
	eventually.True(t, 5*time.Second, "Flush after the detach failing with ErrClosed", func() bool {
		return errors.Is(s.front.Flush(ctx), blkfront.ErrClosed)
	})
	// Stay gone: nothing that could write a node back is left running.
	// The frontend's loop has ended and the backend's device has
	// returned (the server forgets it only then).
	select {
	case <-s.front.Done():
	case <-ctx.Done():
		t.Fatal("the frontend did not end after the detach")
	}
	eventually.True(t, 5*time.Second, "the backend's device stopped", func() bool { return s.server.VBD(s.vbd.BackendPath()) == nil })
	for _, dir := range []string{s.vbd.FrontendPath(), s.vbd.BackendPath()} {
		if _, err := s.host.Store().Read(dir); !errors.Is(err, xen.ErrNotFound) {
			t.Errorf("%s after the detach: %v, want it gone", dir, err)
		}
	}
}

// TestDetachEndsTheDisk: a detached disk says so (Done, with no error),
// so that whoever exports it can stop instead of answering EIO forever.
func TestDetachEndsTheDisk(t *testing.T) {
	s := newStack(t, 1<<20, blkfront.Config{})
	select {
	case <-s.front.Done():
		t.Fatal("Done before any detach")
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := toolstack.Remove(ctx, s.host.Store(), s.vbd, false); err != nil {
		t.Fatalf("detach: %v", err)
	}
	select {
	case <-s.front.Done():
	case <-ctx.Done():
		t.Fatal("the disk did not end within 10s of its detach")
	}
	if err := s.front.Err(); err != nil {
		t.Fatalf("Err after a detach: %v, want nil", err)
	}
}
