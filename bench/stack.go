package bench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// stack is one simulated host in this process with blkback serving dev
// to a guest's blkfront.
type stack struct {
	host  *sim.Host
	front *blkfront.Disk
	stop  context.CancelFunc
	done  chan struct{}
	// backendPID is the backend process's (0: blkback runs in this one).
	backendPID int
}

func newStack(dev storage.Device, queues int, poll time.Duration, log *slog.Logger) (*stack, error) {
	h, err := sim.NewHost()
	if err != nil {
		return nil, err
	}
	g, err := h.NewDomain("bench")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &blkback.Server{
		Config:      blkback.Config{Domain: h.Dom0(), Poll: poll, Log: log},
		BackendType: toolstack.DefaultBackendType,
		Open:        func(xen.Store, string) (storage.Device, error) { return dev, nil },
	}
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	s := &stack{host: h, stop: cancel, done: done}
	spec, err := diskspec.Parse("vdev=xvda, access=rw, target=bench")
	if err != nil {
		s.close()
		return nil, err
	}
	vbd, err := toolstack.NewVBD(0, g.ID(), spec)
	if err != nil {
		s.close()
		return nil, err
	}
	if err := toolstack.Create(h.Store(), vbd); err != nil {
		s.close()
		return nil, err
	}
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ocancel()
	s.front, err = blkfront.Open(octx, blkfront.Config{Domain: g, Dir: vbd.FrontendPath(), Queues: queues, Log: log})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("bench: frontend: %w", err)
	}
	return s, nil
}

func (s *stack) close() {
	if s.front != nil {
		s.front.Close()
	}
	s.stop()
	<-s.done
}
