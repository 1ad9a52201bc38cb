package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/xen/sim"
)

// simOptions is one sim command's flags.
type simOptions struct {
	disk        string
	size        sizeValue
	nbd         string
	vdev        string
	readOnly    bool
	grantCopy   bool        // the vbd's grant-copy=1: the backend copies the guest's pages
	format      imageFormat // --format: the image's, or what a new one is made as
	queues      int
	grantFrames int
	verbose     bool
	vscsi       bool    // also serve the disk to the guest as a PVSCSI LUN
	scsi        simSCSI // --control, --rotation-rate (scsi_control.go)
	fuse        simFuse // --fuse, --force (sim_fuse.go)
	tls         nbdTLSOptions
}

// simExtra starts something more on the guest's disk once it is connected
// (another export, a control socket); it prints its banner line to out and
// returns how to stop it (nil when it has nothing to start). One that
// something outside the process can hold (the FUSE file) is also a
// holdable: the first Ctrl-C waits until it is released.
type simExtra func(ctx context.Context, disk *blkfront.Disk, vdev string, out io.Writer) (stopper, error)

// stopper is a started extra; Stop ends it before the disk closes.
type stopper interface{ Stop() }

// stopFunc is a stopper with nothing more to it.
type stopFunc func()

func (f stopFunc) Stop() { f() }

// newSimCmd builds xenblk sim. Its control socket (scsi_control.go) and
// FUSE export (sim_fuse.go) are parts of it: their flags, their checks
// before anything starts, and the extras runSim starts on the guest's disk.
func newSimCmd() *cobra.Command {
	o := &simOptions{size: 1 << 30, scsi: simSCSI{rotationRate: ownRotationRate}}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated Xen host with our backend serving a disk to our frontend, exported over NBD",
		Long: `sim runs the whole stack on one machine: a simulated Xen host, our blkif
backend in dom0 serving a disk image, a guest domain whose blkif frontend
attaches to it, and an NBD export of the guest's disk on 127.0.0.1.

The image is created sparse, --size large, if it does not exist; an
existing one keeps its size, which must be a whole number of 512-byte
sectors (a partial last sector is refused, not cut off). An existing
qcow2 image is served as qcow2 (--format says otherwise); a new image
is raw unless --format qcow2 says so. Stop with
Ctrl-C: the frontend flushes and closes, the backend closes, the vbd is
removed. While the --fuse file is in use (a loop device on it), Ctrl-C
says what holds it and waits until it is released; a second Ctrl-C, or
--force, tears it down and exits 1.

With --vscsi the guest also gets the same disk over PVSCSI: our vscsi
backend serves it as LUN ` + simLUN + ` of a vhost, our vscsi frontend attaches
it, and the LUN is exported over NBD and on the control socket under
that name (xenblk scsi --device ` + simLUN + `). Both paths share one SCSI
identity and one set of reservations.`,
		Example: `  xenblk sim                                  # ./xenblk-disk.img, 1 GiB, nbd://127.0.0.1:10809
  xenblk sim --disk /var/tmp/d.img --size 4G --nbd 127.0.0.1:10900
  xenblk sim --nbd unix:/tmp/xvda.sock         # nbd+unix:///xvda?socket=/tmp/xvda.sock
  nbdinfo nbd://127.0.0.1:10809               # from another terminal
  xenblk sim --vscsi                          # and nbd://127.0.0.1:10809/` + simLUN + ` over PVSCSI
  xenblk sim --tls-cert server-cert.pem --tls-key server-key.pem --tls-required  # nbds://127.0.0.1:10809
  xenblk scsi --device ` + simLUN + ` persist --in --read-keys`,
		Args: cobra.NoArgs,
		// Refused before the disk is opened: another live sim answering
		// on the control socket, a --fuse that cannot be mounted.
		PreRunE: func(*cobra.Command, []string) error {
			if err := o.scsi.checkFree(); err != nil {
				return err
			}
			if o.vscsi && o.readOnly {
				return usagef("--vscsi serves the disk read-write; leave --read-only out with it")
			}
			return checkFuseDir(o.fuse.dir)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return runSim(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.disk, "disk", "xenblk-disk.img", "disk image to serve (created sparse if absent)")
	f.Var(&o.size, "size", "size of the image when it is created (K, M, G, T suffixes); an existing image keeps its own")
	listenAddrVar(f, &o.nbd, "nbd", "127.0.0.1:10809", "address of the NBD export of the guest's disk: host:port, or unix:PATH for a unix socket")
	f.StringVar(&o.vdev, "vdev", "xvda", "virtual device name the guest sees")
	f.BoolVar(&o.readOnly, "read-only", false, "attach the disk read-only")
	f.BoolVar(&o.grantCopy, "grant-copy", false, "attach the disk with grant-copy=1: the backend copies the guest's pages instead of mapping them")
	imageFormatVar(f, &o.format, "the image's format: raw, qcow2, or auto (an existing file's first bytes say; a new image is raw)")
	intRangeVar(f, &o.queues, "queues", blkfront.DefaultQueues, 1, blkback.DefaultMaxQueues, "what the backend offers",
		fmt.Sprintf("frontend queues, 1 to %d (what the backend offers)", blkback.DefaultMaxQueues))
	grantFramesVar(f, &o.grantFrames)
	f.BoolVar(&o.verbose, "verbose", false, "log every handshake step")
	f.BoolVar(&o.vscsi, "vscsi", false, "also give the guest the disk as PVSCSI LUN "+simLUN+" (vscsiback, vscsifront), exported over NBD and --control by that name")
	o.scsi.addFlags(f)
	o.fuse.addFlags(f)
	o.tls.addFlags(f)
	return cmd
}

func runSim(cmd *cobra.Command, o *simOptions) error {
	keepServingWithoutStdout()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	tlsConfig, err := o.tls.config("sim")
	if err != nil {
		return err
	}
	exported := false // the guest's disk is out: the image is no longer this run's to remove
	path, err := filepath.Abs(o.disk)
	if err != nil {
		return err
	}
	// Listen first: a port that is taken must not leave a new image behind.
	l, err := net.Listen(listenNetwork(o.nbd))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("NBD export on %s: %w (another xenblk sim running? pick another with --nbd)", o.nbd, err)
		}
		return fmt.Errorf("NBD export on %s: %w", o.nbd, err)
	}
	disk, format, created, err := openImage(path, o.format, int64(o.size), o.readOnly, o.scsi.rotationRate)
	if err != nil {
		l.Close()
		if se := (*storage.ImageSizeError)(nil); errors.As(err, &se) && se.Size == 0 {
			return fmt.Errorf("%w, or remove it and xenblk sim creates it with --size", err)
		}
		return err
	}
	if created {
		// Until the guest's disk is exported, a failure removes the image
		// this run created.
		defer func() {
			if !exported {
				os.Remove(path)
			}
		}()
	} else if cmd.Flags().Changed("size") && int64(o.size) != disk.Info().Size {
		fmt.Fprintf(cmd.ErrOrStderr(), "xenblk sim: --size %s ignored: %s exists and is %d bytes (xenblk never resizes an image; truncate -s %s %s does)\n",
			o.size.String(), path, disk.Info().Size, o.size.String(), path)
	}
	stack, err := simstack.NewHost(simstack.Options{Host: []sim.HostOption{sim.GrantFrames(o.grantFrames)}, OpenTimeout: 30 * time.Second})
	if err != nil {
		disk.Close()
		return fmt.Errorf("start the simulated host: %w", err)
	}
	host := stack.Host
	guest, err := host.NewDomain("guest")
	if err != nil {
		disk.Close()
		return err
	}

	signals := notifyStop()
	defer signals.Release()
	ctx := signals.Requested
	// Until the guest's disk is exported a failure stops the stack here;
	// from then on the shutdown below does.
	defer func() {
		if !exported {
			stack.Close()
		}
	}()
	// The SCSI extension, emulated over the image (an image is never a
	// whole SCSI disk, so never passed through). Persistent reservations
	// are kept next to the image. The vscsi LUN's engine comes from the
	// same registry: one identity, one set of reservations.
	engines := scsiengine.New(scsiengine.Config{Reservations: &pr.FileStore{Dir: path + ".pr"}, Log: log})
	stack.Serve(blkback.Config{Log: log, SCSI: blkback.VBDEngines(host.Store(), engines, log)}, simstack.Serving(disk))
	if o.vscsi {
		stack.ServeVscsi(&vscsiback.Server{Engines: engines, OpenDisk: simstack.ServingDisk(path, disk), Log: log})
	}

	access := "rw"
	if o.readOnly {
		access = "ro"
	}
	copyMode := ""
	if o.grantCopy {
		copyMode = diskspec.KeyGrantCopy + "=1, "
	}
	spec, err := diskspec.Parse(fmt.Sprintf("format=%s, vdev=%s, access=%s, %starget=%s", format, o.vdev, access, copyMode, path))
	if err != nil {
		return usagef("%v", err)
	}
	g, err := stack.AddVBD(guest, spec) // spec's vdev is checked: only the store can fail
	if err != nil {
		return err
	}
	if err := stack.Open(ctx, g, blkfront.Config{Queues: o.queues, Log: log}); err != nil {
		return err
	}
	front, vbd := g.Disk, g.VBD

	exportServer := &nbd.Server{Exports: []nbd.Export{{Name: o.vdev, Description: "xenblk guest disk " + o.vdev, Device: front.Device()}},
		TLSConfig: tlsConfig, TLSRequired: o.tls.required}
	var lun *simVscsiLUN
	if o.vscsi {
		if lun, err = attachSimLUN(ctx, stack, guest, path, log); err != nil {
			return err
		}
		exportServer.Exports = append(exportServer.Exports, nbd.Export{Name: simLUN, Description: "xenblk guest LUN " + simLUN + " over PVSCSI", Device: lun.dev})
		o.scsi.more = map[string]control.Target{simLUN: control.SCSIPR(lun.lun)}
	}
	go exportServer.Serve(l)
	exported = true

	in := front.Info()
	out := cmd.OutOrStdout()
	verb := "serving"
	if created {
		verb = "created and serving"
	}
	fmt.Fprintf(out, "xenblk sim: simulated Xen host running\n")
	fmt.Fprintf(out, "  dom0     blkback %s %s (%s, %d bytes) at %s\n", verb, path, format, in.Size(), vbd.BackendPath())
	fmt.Fprintf(out, "  dom%d     blkfront %s connected: %d queue(s), indirect %d, persistent %v, flush %v, discard %v, scsi %v\n",
		guest.ID(), vbd.FrontendPath(), in.Queues, in.IndirectSegments, in.Persistent, in.Flush, in.Discard, in.ExtraRequest)
	url := o.tls.url(nbd.ListenerURL(l, o.vdev))
	fmt.Fprintf(out, "  NBD      %s\n", url)
	if lun != nil {
		fmt.Fprintf(out, "  dom%d     vscsifront LUN %s of %s connected: %d bytes\n", guest.ID(), simLUN, lun.vhost, lun.dev.Info().Size)
		fmt.Fprintf(out, "  NBD      %s\n", o.tls.url(nbd.ListenerURL(l, simLUN)))
	}

	// Further exports print their lines here, before the banner's end, in
	// this order; they stop before the disk closes.
	errOut := cmd.ErrOrStderr()
	var stops []stopper
	var holds []holdable
	var extraErr error
	for _, extra := range []simExtra{o.scsi.start, o.fuse.start} {
		s, err := extra(ctx, front, o.vdev, out)
		if err != nil {
			extraErr = err
			break
		}
		if s == nil {
			continue
		}
		stops = append(stops, s)
		if h, ok := s.(holdable); ok {
			holds = append(holds, h)
		}
	}
	var heldBy string
	if extraErr == nil {
		fmt.Fprintf(out, "\nTry:\n  nbdinfo %s\n  qemu-img info %s\n  nbdcopy %s out.img\n\nCtrl-C to stop.\n", url, url, url)
		<-ctx.Done()
		heldBy = waitUntilReleased("sim", holds, signals.Again, o.fuse.force, out)
		if heldBy != "" {
			detachAll(holds, errOut)
		}
	}

	fmt.Fprintln(out, "\nxenblk sim: shutting down")
	shutdown := func() error {
		stopExports(stops, l, exportServer)
		ferr := front.Flush(context.Background())
		cerr := front.Close()
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		rerr := toolstack.Remove(rctx, host.Store(), vbd, true)
		rcancel()
		stack.Close() // the backend; the frontend is closed already
		return errors.Join(ferr, cerr, rerr)
	}
	done := make(chan error, 1)
	go func() { done <- shutdown() }()
	var err2 error
	select {
	case err2 = <-done:
	case <-signals.Again:
		detachAll(holds, errOut)
		go stack.Backend.Stop() // told to stop; nobody waits
		return fmt.Errorf("%w during the shutdown: the image may lack the last writes not flushed", errForced)
	}
	switch {
	case extraErr != nil:
		return errors.Join(extraErr, err2)
	case heldBy != "" && o.fuse.force:
		return errors.Join(fmt.Errorf("tore the FUSE export down while in use (--force): %s", heldBy), err2)
	case heldBy != "":
		return errors.Join(fmt.Errorf("%w while in use: %s", errForced, heldBy), err2)
	}
	return err2
}
