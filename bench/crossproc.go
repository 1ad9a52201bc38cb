package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// BackendReady is the line ServeBackend prints once blkback serves.
const BackendReady = "bench backend ready"

// ServeBackend is the backend process of a cross-process run: it attaches
// to the host at sock as dom0 and serves every vbd from a fresh device of
// the named backend until ctx ends.
func ServeBackend(ctx context.Context, sock, backend string, o Options) error {
	o.defaults()
	dom, err := sim.Connect(sock, sim.AsDom0())
	if err != nil {
		return err
	}
	srv := &blkback.Server{
		Config:      blkback.Config{Domain: dom, Poll: o.Poll, Log: o.Log},
		BackendType: toolstack.DefaultBackendType,
		Open:        func(xen.Store, string) (storage.Device, error) { return openBackend(backend, o) },
	}
	fmt.Println(BackendReady)
	srv.Serve(ctx)
	return nil
}

// newCrossStack runs the host and the frontend in this process and the
// backend in the process backendCmd starts (it must run ServeBackend on
// the socket it is given).
func newCrossStack(backend string, queues int, o Options) (*stack, error) {
	s, err := startBackendProcess(backend, o)
	if err != nil {
		return nil, err
	}
	g, err := s.host.NewDomain("bench")
	if err != nil {
		s.close()
		return nil, err
	}
	s.front, err = attachDisk(s.host, g, "xvda", queues, o)
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// startBackendProcess starts a host in this process and the backend
// process serving it; the stack has no frontend yet.
func startBackendProcess(backend string, o Options) (*stack, error) {
	dir, err := os.MkdirTemp("", "xenblk-bench")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "host.sock")
	h, err := sim.NewHost()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	l, err := sim.Listen(sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go h.Serve(l)
	cmd := o.BackendCommand(sock, backend)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	s := &stack{host: h, done: make(chan struct{})}
	s.stop = func() {
		if cmd.Process != nil {
			cmd.Process.Signal(os.Interrupt)
		}
	}
	if err := cmd.Start(); err != nil {
		l.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	s.backendPID = cmd.Process.Pid
	go func() { cmd.Wait(); l.Close(); os.RemoveAll(dir); close(s.done) }()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), BackendReady) {
				ready <- nil
				for sc.Scan() { // drain, so the child never blocks on stdout
				}
				return
			}
		}
		ready <- fmt.Errorf("bench: the backend process exited before it was ready")
	}()
	select {
	case err = <-ready:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("bench: the backend process was not ready in 10s")
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// attachDisk creates the vbd vdev of guest g (served by dom0) and opens
// its frontend.
func attachDisk(h *sim.Host, g *sim.Domain, vdev string, queues int, o Options) (*blkfront.Disk, error) {
	spec, err := diskspec.Parse("vdev=" + vdev + ", access=rw, target=bench")
	if err != nil {
		return nil, err
	}
	vbd, err := toolstack.NewVBD(0, g.ID(), spec)
	if err == nil {
		err = toolstack.Create(h.Store(), vbd)
	}
	if err != nil {
		return nil, err
	}
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ocancel()
	d, err := blkfront.Open(octx, blkfront.Config{Domain: g, Dir: vbd.FrontendPath(), Queues: queues, Log: o.Log})
	if err != nil {
		return nil, fmt.Errorf("bench: frontend %s: %w", vdev, err)
	}
	return d, nil
}
