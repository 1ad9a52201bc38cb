package simstack_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// backendSockEnv, when set, makes this test binary the backend process
// of TestCrossProcess: it serves a memory disk on the host at that socket.
const backendSockEnv = "SIMSTACK_TEST_BACKEND_SOCK"

const ready = "simstack test backend ready"

var quiet = slog.New(slog.DiscardHandler)

func TestMain(m *testing.M) {
	if sock := os.Getenv(backendSockEnv); sock != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		err := simstack.ServeConnected(ctx, sock, blkback.Config{Log: quiet}, simstack.Serving(storage.NewMemory(1<<20)),
			func() { fmt.Println(ready) })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// writeRead writes a block through d and reads it back.
func writeRead(t *testing.T, d *blkfront.Disk, off int64) {
	t.Helper()
	ctx := context.Background()
	data := bytes.Repeat([]byte{0xa5}, 4096)
	if _, err := d.WriteAt(ctx, data, off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if _, err := d.ReadAt(ctx, got, off); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back at %d: %v", off, err)
	}
}

// Two guests on one backend: each vbd is served, and Close tears down the
// frontends before the backend, which closes the device it opened.
func TestTwoGuestsAndClose(t *testing.T) {
	mem := &closeCounter{Device: storage.NewMemory(1 << 20)}
	s, err := simstack.NewHost(simstack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	b := s.Serve(blkback.Config{Log: quiet}, func(xen.Store, string) (storage.Device, error) { opened++; return mem, nil })
	if s.Backend != b {
		t.Fatal("the first backend started is not the stack's Backend")
	}
	var guests []*simstack.Guest
	for i, name := range []string{"a", "b"} {
		g, err := s.AttachGuest(context.Background(), name, "vdev=xvda, access=rw, target=memory", blkfront.Config{Queues: 1, Log: quiet})
		if err != nil {
			t.Fatal(err)
		}
		writeRead(t, g.Disk, int64(i)*4096)
		guests = append(guests, g)
	}
	if guests[0].Domain.ID() == guests[1].Domain.ID() {
		t.Fatal("two guests share a domain")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	default:
		t.Fatal("Close returned with the backend still serving")
	}
	for _, g := range guests {
		select {
		case <-g.Disk.Done():
		default:
			t.Fatal("Close left a frontend open")
		}
	}
	if n := int(mem.closes.Load()); n != opened || opened != 2 {
		t.Fatalf("backend opened the device %d times and closed it %d times; want 2 and 2", opened, n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

type closeCounter struct {
	storage.Device
	closes atomic.Int32 // one close per vbd, from each vbd's goroutine
}

func (c *closeCounter) Close() error { c.closes.Add(1); return nil }

// A frontend that cannot connect (no backend serves its vbd) gives up at
// the stack's open timeout, and the stack still closes.
func TestOpenTimeout(t *testing.T) {
	s, err := simstack.NewHost(simstack.Options{OpenTimeout: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.AttachGuest(context.Background(), "g", "vdev=xvda, target=none", blkfront.Config{Log: quiet})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open with no backend: %v; want the open timeout", err)
	}
}

// The backend in another process (this test binary, see TestMain): the
// frontend here reads and writes through it, and Close ends the process.
func TestCrossProcess(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := simstack.NewCrossProcess(simstack.Options{}, func(sock string) *exec.Cmd {
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), backendSockEnv+"="+sock)
		return cmd
	}, ready)
	if err != nil {
		t.Fatal(err)
	}
	if s.BackendPID == 0 || s.BackendPID == os.Getpid() {
		t.Fatalf("backend pid %d: not another process", s.BackendPID)
	}
	g, err := s.AttachGuest(context.Background(), "g", "vdev=xvda, access=rw, target=memory", blkfront.Config{Log: quiet})
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	writeRead(t, g.Disk, 8192)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(s.BackendPID, 0); err == nil {
		t.Fatalf("backend process %d still runs after Close", s.BackendPID)
	}
}

// A process that never says it is ready is refused within ReadyTimeout;
// one that exits first is refused at once.
func TestCrossProcessNotReady(t *testing.T) {
	_, err := simstack.NewCrossProcess(simstack.Options{}, func(string) *exec.Cmd { return exec.Command("true") }, ready)
	if err == nil {
		t.Fatal("a backend that exited at once was taken for ready")
	}
}

// SharedSCSI's nodes share one reservation unit: a key registered
// through one node is read back through the other.
func TestSharedSCSIAcrossNodes(t *testing.T) {
	shared, err := simstack.SharedSCSI("shared")
	if err != nil {
		t.Fatal(err)
	}
	shared.Log = quiet
	s := simstack.ForTest(t, storage.NewMemory(1<<20), simstack.Options{Backend: shared})
	nodes, err := s.AttachGuests(context.Background(), "vdev=xvdb, target=shared", blkfront.Config{Log: quiet}, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("%d nodes", len(nodes))
	}
	// exec runs cdb on d past the unit attentions a new nexus gets.
	exec := func(d *blkfront.Disk, cdb []byte, dir scsi.Direction, buf []byte) {
		t.Helper()
		for range 4 {
			r, err := d.ExecSCSI(context.Background(), cdb, dir, buf)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status == scsi.StatusGood {
				return
			}
		}
		t.Fatalf("% x never succeeded", cdb)
	}
	param := make([]byte, 24)
	param[15] = 7 // REGISTER AND IGNORE EXISTING KEY: service action key 7
	exec(nodes[0], []byte{scsi.OpPersistentReserveOut, 6, 0, 0, 0, 0, 0, 0, 24, 0}, scsi.DirToDevice, param)
	keys := make([]byte, 16)
	exec(nodes[1], []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 16, 0}, scsi.DirFromDevice, keys) // READ KEYS
	if keys[7] != 8 || keys[15] != 7 {
		t.Fatalf("READ KEYS through the other node: % x; want one key, 7", keys)
	}
}
