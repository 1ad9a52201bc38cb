package bench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
)

// benchSpec is the vbd every bench guest gets.
const benchSpec = "vdev=xvda, access=rw, target=bench"

// stack is one simulated host with blkback serving a guest's blkfront,
// front; blkback runs in this process or in another (BackendPID).
type stack struct {
	*simstack.Stack
	front *blkfront.Disk
}

// newStack serves dev from blkback in this process to a guest's
// blkfront with queues queues.
func newStack(dev storage.Device, queues int, poll time.Duration, log *slog.Logger) (*stack, error) {
	ss, err := simstack.New(dev, simstack.Options{Backend: blkback.Config{Poll: poll, Log: log}})
	if err != nil {
		return nil, err
	}
	s := &stack{Stack: ss}
	if s.front, err = attachDisk(ss, "bench", queues, log); err != nil {
		ss.Close()
		return nil, fmt.Errorf("bench: frontend: %w", err)
	}
	return s, nil
}

// attachDisk starts a guest named name with the bench vbd and opens its
// frontend.
func attachDisk(s *simstack.Stack, name string, queues int, log *slog.Logger) (*blkfront.Disk, error) {
	g, err := s.AttachGuest(context.Background(), name, benchSpec, blkfront.Config{Queues: queues, Log: log})
	if err != nil {
		return nil, err
	}
	return g.Disk, nil
}

func (s *stack) close() { s.Stack.Close() }
