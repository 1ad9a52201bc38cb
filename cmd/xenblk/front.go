package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// frontOptions is one front command's flags.
type frontOptions struct {
	host     string
	xen      xenMode
	name     string
	vdev     string
	vhost    int // a PVSCSI vhost's device id instead of a vbd (-1: not given)
	nbd      string
	fuse     string
	control  string
	wait     time.Duration
	queues   int
	force    bool
	reattach bool
	verbose  bool
	// tls: the NBD exports' TLS flags; tlsConfig what they make, set
	// once the flags are checked.
	tls       nbdTLSOptions
	tlsConfig *tls.Config
}

func newFrontCmd() *cobra.Command {
	o := &frontOptions{}
	cmd := &cobra.Command{
		Use:   "front",
		Short: "Be a guest: attach a vbd with our blkif frontend and export it over NBD",
		Long: `front attaches to a simulated Xen host as a new guest domain, waits for a
vbd to be attached to it (xenblk attach --domain N), connects our blkif
frontend to whatever backend serves it, and exports the disk over NBD.
It prints the guest's domain id first, so a script can attach to it.

When the vbd is detached (xenblk detach), front says so, ends its NBD
connections cleanly (answers first) and exits 0; with --reattach it waits
for the next vbd instead. Ctrl-C waits while the --fuse file is in use (a
loop device on it), says what holds it and stops once it is released; a
second Ctrl-C, or --force, tears it down and exits 1.

With --vhost N instead, front attaches the guest's PVSCSI vhost N
(xenblk attach --vscsi 'PDEV, VDEV') with our vscsi frontend and exports
each of its LUNs by its v-dev, h:c:t:l: an NBD export of that name,
with --control a device of that name for xenblk scsi --device, and with
--fuse the file DIR/H:C:T:L/disk. A LUN
attached or detached while front runs gets or loses its exports (front
prints a line for each); when the vhost is detached front exits 0.`,
		Example: `  xenblk front --host /tmp/x/host.sock --name guest1 --vdev xvda --nbd 127.0.0.1:10810
  xenblk front --host /tmp/x/host.sock --name guest2 --vhost 0 --control /tmp/x/guest2.sock
  xenblk scsi inquiry --control /tmp/x/guest2.sock --device 0:0:0:0 --vpd 0x83`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runFront(cmd, o) },
	}
	f := cmd.Flags()
	socketPathVar(f, &o.host, "host", "", "simulated host socket (xenblk host --socket); omit on real Xen")
	addXenFlag(f, &o.xen, "--host")
	f.StringVar(&o.name, "name", "guest", "guest domain name")
	f.StringVar(&o.vdev, "vdev", "xvda", "virtual device to attach")
	f.IntVar(&o.vhost, "vhost", -1, "attach the guest's PVSCSI vhost `N` (device id) instead of a vbd; each LUN is exported by its v-dev")
	tcpAddrVar(f, &o.nbd, "nbd", "127.0.0.1:10809", "NBD export address")
	f.StringVar(&o.fuse, "fuse", "", "also export the disk as the file `DIR`/VDEV through FUSE (with --vhost: DIR/H:C:T:L/disk per LUN)")
	socketPathVar(f, &o.control, "control", "", "also serve the disk to xenblk scsi and xenblk pr on this control socket")
	f.DurationVar(&o.wait, "wait", 5*time.Minute, "how long to wait for the vbd (or vhost) to be attached, and then as long for a vbd's backend to connect")
	intRangeVar(f, &o.queues, "queues", blkfront.DefaultQueues, 1, blkfront.MaxQueues, "",
		fmt.Sprintf("queues to ask for, 1 to %d (a backend offering fewer gets what it offers)", blkfront.MaxQueues))
	f.BoolVar(&o.force, "force", false, "on Ctrl-C, stop even while the --fuse file is in use (whatever holds it gets I/O errors; exit 1)")
	f.BoolVar(&o.reattach, "reattach", false, "when the vbd is detached, wait for the next one instead of exiting")
	f.BoolVar(&o.verbose, "verbose", false, "log handshake steps")
	o.tls.addFlags(f)
	return cmd
}

func runFront(cmd *cobra.Command, o *frontOptions) error {
	keepServingWithoutStdout()
	if o.wait <= 0 {
		return usagef("--wait %v: want a time to wait, such as 30s or 5m", o.wait)
	}
	var err error
	if o.tlsConfig, err = o.tls.config("front"); err != nil {
		return err
	}
	vhost := cmd.Flags().Changed("vhost")
	var devid uint32
	if vhost {
		if err := checkFrontVhost(cmd, o); err != nil {
			return err
		}
	} else {
		if devid, err = diskspec.VirtualDevice(o.vdev); err != nil {
			return usagef("%v", err)
		}
		if err := checkFuseDir(o.fuse); err != nil {
			return err
		}
	}
	dom, err := openDomain(o.xen, o.host, "--host", sim.NewGuest(o.name))
	if err != nil {
		return err
	}
	defer dom.Close()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "domain %d\n", dom.ID())
	signals := notifyStop()
	defer signals.Release()
	ctx := signals.Requested
	if vhost {
		return runFrontVhost(ctx, o, signals, dom, out)
	}
	dir := fmt.Sprintf("/local/domain/%d/device/vbd/%d", dom.ID(), devid)
	for {
		if err := waitForDevice(ctx, dom, dir, o.wait); err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C while no vbd was attached
			}
			return fmt.Errorf("no vbd %s attached to domain %d: %w (run: xenblk attach --domain %d 'vdev=%s, target=IMAGE')",
				o.vdev, dom.ID(), err, dom.ID(), o.vdev)
		}
		detached, err := frontServe(ctx, o, signals, dom, dir, out, cmd.ErrOrStderr())
		if err != nil || !detached || !o.reattach {
			return err
		}
		fmt.Fprintf(out, "waiting for the next vbd %s (xenblk attach --domain %d 'vdev=%s, target=IMAGE')\n",
			o.vdev, dom.ID(), o.vdev)
	}
}

// waitForDevice waits, at most wait, until the device directory dir has
// its backend node (the toolstack writes it last).
func waitForDevice(ctx context.Context, dom xen.Domain, dir string, wait time.Duration) error {
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, err := xenbus.WaitNode(waitCtx, dom.Store(), dir+"/backend", xenbus.Exists)
	if err != nil && ctx.Err() == nil && waitCtx.Err() != nil {
		return fmt.Errorf("timed out after %v", wait)
	}
	return err
}

// frontServe connects to the vbd at dir and exports it until Ctrl-C or
// until the vbd is detached (detached true).
func frontServe(ctx context.Context, o *frontOptions, signals stopSignals, dom xen.Domain, dir string, out, errOut io.Writer) (detached bool, err error) {
	octx, cancel := context.WithTimeout(ctx, o.wait)
	disk, err := blkfront.Open(octx, blkfront.Config{Domain: dom, Dir: dir, Queues: o.queues, Log: newLogger(o.verbose)})
	cancel()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return false, nil // Ctrl-C before the backend connected
	case octx.Err() != nil:
		return false, fmt.Errorf("%w: no backend connected within --wait %v (is xenblk serve running? give a slow backend longer with --wait)", err, o.wait)
	default:
		return false, err
	}
	forced := false
	defer func() {
		if !forced { // a forced stop does not wait for the backend's answer
			disk.Close()
		}
	}()
	l, err := net.Listen("tcp", o.nbd)
	if err != nil {
		return false, fmt.Errorf("NBD export on %s: %w", o.nbd, err)
	}
	srv := &nbd.Server{Exports: []nbd.Export{{Name: o.vdev, Device: disk.Device()}}, TLSConfig: o.tlsConfig, TLSRequired: o.tls.required}
	go srv.Serve(l)
	in := disk.Info()
	fmt.Fprintf(out, "connected %s: %d bytes, %d queue(s), indirect %d, persistent %v, scsi %v\nNBD %s\n",
		dir, in.Size(), in.Queues, in.IndirectSegments, in.Persistent, in.ExtraRequest, o.tls.url(nbd.ListenerURL(l, o.vdev)))
	var stops []stopper
	var holds []holdable
	stop := func() { stopExports(stops, l, srv) }
	if o.fuse != "" {
		m, err := mountFuse(o.fuse, o.vdev, disk.Device(), out)
		if err != nil {
			stop()
			return false, err
		}
		stops, holds = append(stops, m), append(holds, m)
	}
	if o.control != "" {
		cl, err := control.Listen(o.control)
		if err != nil {
			stop()
			return false, fmt.Errorf("control socket: %w", err)
		}
		go control.Serve(cl, map[string]control.Target{o.vdev: disk})
		stops = append(stops, stopFunc(func() { cl.Close() }))
		fmt.Fprintf(out, "control %s (xenblk scsi --control %s ...)\n", o.control, o.control)
	}

	select {
	case <-disk.Done():
		// The vbd is gone: nothing is left to serve, held or not.
		if err := disk.Err(); err != nil {
			detachAll(holds, errOut)
			stop()
			return false, fmt.Errorf("vbd %s: %w", dir, err)
		}
		fmt.Fprintf(errOut, "xenblk front: vbd %s was detached (%s removed); ending its exports\n", o.vdev, dir)
		for _, h := range holds {
			if what, _ := h.InUse(); what != "" {
				fmt.Fprintf(errOut, "xenblk front: the disk is gone: %s; taking it away\n", what)
				if err := h.Detach(); err != nil {
					fmt.Fprintf(errOut, "xenblk: %v\n", err)
				}
			}
		}
		stop()
		return true, nil
	case <-ctx.Done():
	}
	heldBy := waitUntilReleased("front", holds, signals.Again, o.force, out)
	if heldBy != "" {
		detachAll(holds, errOut)
	}
	fmt.Fprintln(out, "xenblk front: shutting down")
	done := make(chan error, 1)
	go func() {
		stop()
		done <- finalFlush(disk, finalFlushWait)
	}()
	select {
	case err = <-done:
	case <-signals.Again:
		forced = true
		detachAll(holds, errOut)
		return false, fmt.Errorf("%w during the shutdown: the last writes may not be flushed", errForced)
	}
	switch {
	case heldBy != "" && o.force:
		return false, errors.Join(fmt.Errorf("tore the FUSE export down while in use (--force): %s", heldBy), err)
	case heldBy != "":
		return false, errors.Join(fmt.Errorf("%w while in use: %s", errForced, heldBy), err)
	}
	return false, err
}

// finalFlushWait bounds front's last flush: a backend that went away, or
// was stopped, answers nothing (a restarting one may still come back).
const finalFlushWait = 10 * time.Second

// errNoAnswer: the backend did not answer the last flush in time.
var errNoAnswer = errors.New("no answer from the backend")

// finalFlush flushes the disk, waiting at most wait.
func finalFlush(disk *blkfront.Disk, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := disk.Flush(ctx)
	switch {
	case err == nil, errors.Is(err, blkfront.ErrClosed):
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("final flush: %w in %v (is xenblk serve running?); writes not yet flushed may not be durable", errNoAnswer, wait)
	}
	return fmt.Errorf("final flush: %w", err)
}
