package bench

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// BackendReady is the line ServeBackend prints once blkback serves.
const BackendReady = "bench backend ready"

// ServeBackend is the backend process of a cross-process run: it attaches
// to the host at sock as dom0 and serves every vbd from a fresh device of
// the named backend until ctx ends.
func ServeBackend(ctx context.Context, sock, backend string, o Options) error {
	o.defaults()
	open := func(xen.Store, string) (storage.Device, error) { return openBackend(backend, o) }
	serving := false
	ready := func() { serving = true; fmt.Println(BackendReady) }
	err := simstack.ServeConnected(ctx, sock, blkback.Config{Poll: o.Poll, Log: o.Log}, open, ready)
	if serving {
		// Once it served, the run's end is the host's to judge: a
		// backend whose store went away with the host exits cleanly.
		return nil
	}
	return err
}

// newCrossStack runs the host and the frontend in this process and the
// backend in the process o.BackendCommand starts (it must run
// ServeBackend on the socket it is given).
func newCrossStack(backend string, queues int, o Options) (*stack, error) {
	ss, err := startBackendProcess(backend, o)
	if err != nil {
		return nil, err
	}
	s := &stack{Stack: ss}
	if s.front, err = attachDisk(ss, "bench", queues, o.Log); err != nil {
		ss.Close()
		return nil, fmt.Errorf("bench: frontend xvda: %w", err)
	}
	return s, nil
}

// startBackendProcess starts a host in this process and the backend
// process serving it; the stack has no guest yet.
func startBackendProcess(backend string, o Options) (*simstack.Stack, error) {
	s, err := simstack.NewCrossProcess(simstack.Options{},
		func(sock string) *exec.Cmd { return o.BackendCommand(sock, backend) }, BackendReady)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return s, nil
}
