package simstack

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen/sim"
)

// ReadyTimeout bounds how long NewCrossProcess waits for the backend
// process to say it serves.
const ReadyTimeout = 10 * time.Second

// NewCrossProcess starts a host in this process, serving domains of other
// processes on a socket in a fresh temporary directory, and the backend
// process that command(socket) returns (not yet started; it must attach
// as dom0, as ServeConnected does). It returns once the process has
// printed a line containing ready on its standard output; its standard
// error is this process's. The stack has no guest yet; Close ends the
// process with an interrupt and waits for it.
func NewCrossProcess(o Options, command func(sock string) *exec.Cmd, ready string) (*Stack, error) {
	dir, err := os.MkdirTemp("", "xenblk-simstack")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "host.sock")
	s, err := NewHost(o)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	l, err := sim.Listen(sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go s.Host.Serve(l)
	cmd := command(sock)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		l.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		l.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	s.BackendPID = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); l.Close(); os.RemoveAll(dir); close(exited) }()
	s.stopProcess = func() {
		cmd.Process.Signal(os.Interrupt)
		<-exited
	}
	isReady := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), ready) {
				isReady <- nil
				for sc.Scan() { // drain, so the child never blocks on stdout
				}
				return
			}
		}
		isReady <- fmt.Errorf("the backend process exited before it was ready")
	}()
	select {
	case err = <-isReady:
	case <-time.After(ReadyTimeout):
		err = fmt.Errorf("the backend process was not ready in %v", ReadyTimeout)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// ServeConnected is the backend process's side of NewCrossProcess: it
// attaches to the host at sock as dom0 and serves every vbd with a
// device from open until ctx ends, returning what Serve returns. It calls
// ready just before serving: Serve scans the backend area when its watch
// is set, so a vbd created once ready has been seen is served.
func ServeConnected(ctx context.Context, sock string, cfg blkback.Config, open Opener, ready func()) error {
	dom, err := sim.Connect(sock, sim.AsDom0())
	if err != nil {
		return err
	}
	cfg.Domain = dom
	srv := &blkback.Server{Config: cfg, BackendType: toolstack.DefaultBackendType, Open: open}
	ready()
	return srv.Serve(ctx)
}
