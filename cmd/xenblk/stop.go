package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xenblk/xenblk/nbd"
)

// How a command that serves until Ctrl-C stops: the first Ctrl-C (or
// SIGTERM) asks for a clean stop, which waits while something outside the
// process still holds an export (a loop device on the FUSE file) and
// stops by itself once it is released; a second one forces the stop and
// the command exits non-zero.

// errForced is the end of a stop the user forced.
var errForced = errors.New("stopped by a second Ctrl-C")

// stopSignals delivers Ctrl-C and SIGTERM: Requested is done at the
// first, Again receives each later one. Release restores the default
// handling.
type stopSignals struct {
	Requested context.Context
	Again     <-chan os.Signal
	Release   func()
}

// keepServingWithoutStdout is for the commands that serve until they are
// stopped: a write to a stdout nobody reads any more (the reader of
// `xenblk sim | tee log` goes at the same Ctrl-C) fails and is ignored,
// as every line they print is for information, instead of killing the
// process (Go's default for SIGPIPE on stdout) halfway through its
// cleanup.
func keepServingWithoutStdout() { signal.Ignore(syscall.SIGPIPE) }

func notifyStop() stopSignals {
	c := make(chan os.Signal, 4)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	again := make(chan os.Signal, 1)
	quit := make(chan struct{})
	go func() {
		first := true
		for {
			select {
			case s := <-c:
				if first {
					first = false
					cancel()
					continue
				}
				select {
				case again <- s:
				default: // one pending is enough to force
				}
			case <-quit:
				return
			}
		}
	}()
	return stopSignals{Requested: ctx, Again: again, Release: func() {
		signal.Stop(c)
		close(quit)
		cancel()
	}}
}

// holdable is an export that something outside the process can hold
// (a FUSE file open by a process or a loop device).
type holdable interface {
	// InUse says what holds it ("" when nothing does), and returns a
	// channel closed at the next change.
	InUse() (string, <-chan struct{})
	// Detach takes it away although it is held: the holder gets errors.
	Detach() error
}

// waitUntilReleased is the answer to a first Ctrl-C: it returns "" at
// once when nothing holds the exports, or once their holders let go; it
// returns what held them when a second Ctrl-C (or force) says to stop
// anyway. While it waits it says, once per change, what to release.
func waitUntilReleased(cmdName string, hs []holdable, again <-chan os.Signal, force bool, out io.Writer) string {
	said := ""
	for {
		var what string
		var changed <-chan struct{}
		for _, h := range hs {
			// Waiting on the first busy export is enough: all must
			// be free, and the others are checked again after it.
			if w, c := h.InUse(); w != "" {
				what, changed = w, c
				break
			}
		}
		if what == "" {
			if said != "" {
				fmt.Fprintf(out, "xenblk %s: released; stopping\n", cmdName)
			}
			return ""
		}
		if force {
			return what
		}
		if what != said {
			fmt.Fprintf(out, "xenblk %s: not stopping yet: %s.\n  Release it and xenblk %s stops by itself, or press Ctrl-C again to tear it down (whatever holds it gets I/O errors).\n",
				cmdName, what, cmdName)
			said = what
		}
		select {
		case <-changed:
		case <-again:
			return what
		}
	}
}

// detachAll takes every export away, held or not, and reports failures.
func detachAll(hs []holdable, out io.Writer) {
	for _, h := range hs {
		if err := h.Detach(); err != nil {
			fmt.Fprintf(out, "xenblk: %v\n", err)
		}
	}
}

// stopExports ends what exports a disk before it closes: the extras
// (FUSE, the control socket) first, then NBD, whose clients get the
// answers to what they sent and then the end of the connection.
func stopExports(stops []stopper, l net.Listener, srv *nbd.Server) {
	for _, s := range stops {
		s.Stop()
	}
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
