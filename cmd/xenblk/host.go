package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/xen/sim"
)

// hostOptions is one host command's flags.
type hostOptions struct {
	socket      string
	xenstored   string
	grantFrames int
}

func newHostCmd() *cobra.Command {
	o := &hostOptions{}
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Run a simulated Xen host that domains in other processes attach to",
		Long: `host runs a simulated Xen host: it owns domain ids, domain memory (memfds),
grant tables, event channels and xenstore. A process attaches to it as dom0
or as a fresh guest (sim.Connect in Go) over --socket; the guest lives as
long as its connection, and when it goes (even killed) the host releases it:
channels close, /local/domain/N is removed, @releaseDomain fires.

Xen's C xenstore tools reach the store through --xenstored.`,
		Example: `  xenblk host --socket /run/xenblk/host.sock
  XENSTORED_PATH=/run/xenblk/xenstored xenstore-ls -p`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runHost(cmd, o) },
	}
	f := cmd.Flags()
	socketPathVar(f, &o.socket, "socket", "", "unix socket domains attach to (required)")
	socketPathVar(f, &o.xenstored, "xenstored", "", "xenstored socket for Xen's C tools (default: \"xenstored\" next to --socket)")
	grantFramesVar(f, &o.grantFrames)
	return cmd
}

func runHost(cmd *cobra.Command, o *hostOptions) error {
	keepServingWithoutStdout()
	if o.socket == "" {
		return usagef("--socket is required")
	}
	xsPath := o.xenstored
	if xsPath == "" {
		xsPath = filepath.Join(filepath.Dir(o.socket), "xenstored")
	}
	h, err := sim.NewHost(sim.GrantFrames(o.grantFrames))
	if err != nil {
		return err
	}
	l, err := sim.Listen(o.socket)
	if errors.Is(err, sim.ErrInUse) {
		return fmt.Errorf("--socket %w (another xenblk host runs there: stop it, or pick another --socket)", err)
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.socket, err)
	}
	defer os.Remove(o.socket)
	if err := freeXenstoredPath(xsPath); err != nil {
		l.Close()
		return err
	}
	xl, err := net.Listen("unix", xsPath)
	if err != nil {
		l.Close()
		return fmt.Errorf("listen on %s: %w", xsPath, err)
	}
	defer os.Remove(xsPath)

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errs := make(chan error, 2)
	go func() { errs <- h.Serve(l) }()
	go func() { errs <- h.ServeXenstore(xl) }()
	slog.Info("simulated Xen host ready", "socket", o.socket, "xenstored", xsPath)
	fmt.Fprintf(cmd.OutOrStdout(), "host: %s\nxenstored: %s\n", o.socket, xsPath)
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	l.Close()
	xl.Close()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// freeXenstoredPath makes path free for the host's xenstored socket: a
// stale socket is removed; a live one (another host's store) and a file
// that is not a socket are left alone and refused.
func freeXenstoredPath(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("--xenstored %s exists and is not a socket (pick another --xenstored)", path)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("--xenstored %s: a running xenstore answers there (another xenblk host? stop it, or pick another --xenstored)", path)
	}
	_ = os.Remove(path)
	return nil
}
