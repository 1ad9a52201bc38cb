package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/xen"
)

// front --vhost N: the guest attaches its PVSCSI vhost N with vscsifront
// and exports every LUN by its v-dev (h:c:t:l): an NBD export and a
// control device of that name, and with --fuse the file
// DIR/H:C:T:L/disk. LUNs come and go with the vhost (attach --vscsi,
// detach --vscsi); the exports follow.

// lunFuseFile is the name of a LUN's file in its FUSE directory.
const lunFuseFile = "disk"

// checkFrontVhost refuses the vbd-only flags beside --vhost.
func checkFrontVhost(cmd *cobra.Command, o *frontOptions) error {
	if o.vhost < 0 || o.vhost > 1<<32-1 {
		return usagef("--vhost %d: a vhost's device id is at most %d", o.vhost, uint32(1<<32-1))
	}
	for _, name := range []string{"vdev", "queues", "reattach"} {
		if cmd.Flags().Changed(name) {
			return usagef("--%s is for a vbd; with --vhost each LUN is exported over NBD (and --control, --fuse) by its v-dev", name)
		}
	}
	return checkFuseDir(o.fuse)
}

// runFrontVhost waits for the guest's vhost o.vhost and serves it.
func runFrontVhost(ctx context.Context, o *frontOptions, signals stopSignals, dom xen.Domain, out io.Writer) error {
	dir := fmt.Sprintf("/local/domain/%d/device/vscsi/%d", dom.ID(), o.vhost)
	if err := waitForDevice(ctx, dom, dir, o.wait); err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while no vhost was there
		}
		return fmt.Errorf("no vhost %d attached to domain %d: %w (run: xenblk attach --domain %d --vscsi 'IMAGE, 0:0:0:0')",
			o.vhost, dom.ID(), err, dom.ID())
	}
	return frontServeVhost(ctx, o, signals, dom, dir, out)
}

// lunExport is a LUN as front exports it.
type lunExport struct {
	lun  *vscsifront.LUN
	name string
	fuse *fuseMount // nil without --fuse
}

// frontServeVhost runs the vhost's frontend at dir and exports its LUNs
// until Ctrl-C or until the vhost is detached.
func frontServeVhost(ctx context.Context, o *frontOptions, signals stopSignals, dom xen.Domain, dir string, out io.Writer) error {
	st := dom.Store()
	peer, err := st.Read(dir + "/" + vbd.KeyBackend)
	if err != nil {
		return fmt.Errorf("vhost %s: %w", dir, err)
	}
	idText, err := st.Read(dir + "/" + vbd.KeyBackendID)
	if err != nil {
		return fmt.Errorf("vhost %s: %w", dir, err)
	}
	backendID, err := strconv.ParseUint(idText, 10, 16)
	if err != nil {
		return fmt.Errorf("vhost %s: %s %q is not a domain id", dir, vbd.KeyBackendID, idText)
	}
	changed := make(chan struct{}, 1)
	v, err := vscsifront.New(vscsifront.Config{Domain: dom, Backend: xen.DomID(backendID), Log: newLogger(o.verbose),
		OnLUNs: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.nbd)
	if err != nil {
		return fmt.Errorf("NBD export on %s: %w", o.nbd, err)
	}
	srv := &nbd.Server{TLSConfig: o.tlsConfig, TLSRequired: o.tls.required}
	go srv.Serve(l)
	devices := control.NewDevices(nil)
	var stops []stopper
	if o.control != "" {
		cl, err := control.Listen(o.control)
		if err != nil {
			stopExports(nil, l, srv)
			return fmt.Errorf("control socket: %w", err)
		}
		go control.ServeDevices(cl, devices)
		stops = append(stops, stopFunc(func() { cl.Close() }))
	}
	runCtx, stopRunner := context.WithCancel(context.Background())
	defer stopRunner()
	runDone := make(chan error, 1)
	go func() { runDone <- v.Runner(st, dir, peer).Run(runCtx) }()
	fmt.Fprintf(out, "vhost %d at %s: exporting each LUN by its v-dev (h:c:t:l)\n", o.vhost, peer)
	if o.control != "" {
		fmt.Fprintf(out, "control %s (xenblk scsi --control %s --device H:C:T:L ...)\n", o.control, o.control)
	}

	exported := map[int]lunExport{}
	// follow exports the LUNs the vhost holds now and drops the exports
	// of those it no longer holds. A LUN whose probe fails is logged and
	// tried again at the next change.
	follow := func() {
		luns := v.LUNs()
		for n, e := range exported {
			if luns[n] == e.lun {
				continue
			}
			srv.RemoveExport(e.name)
			devices.Remove(e.name)
			delete(exported, n)
			if e.fuse != nil {
				unmountLUN(e, out)
			}
			fmt.Fprintf(out, "LUN %s removed: its NBD export and control device are gone\n", e.name)
		}
		var added []int
		for n := range luns {
			if _, ok := exported[n]; !ok {
				added = append(added, n)
			}
		}
		sort.Ints(added)
		for _, n := range added {
			lun := luns[n]
			name := lun.VDev().String()
			dev, err := probeLUN(ctx, lun)
			if err != nil {
				fmt.Fprintf(out, "LUN %s: not exported: %v\n", name, err)
				continue
			}
			e := lunExport{lun: lun, name: name}
			srv.AddExport(nbd.Export{Name: name, Device: dev})
			devices.Add(name, control.SCSIPR(lun))
			fmt.Fprintf(out, "LUN %s: %d bytes, NBD %s\n", name, dev.Info().Size, o.tls.url(nbd.ListenerURL(l, name)))
			if o.fuse != "" {
				if e.fuse, err = mountFuse(filepath.Join(o.fuse, name), lunFuseFile, dev, out); err != nil {
					fmt.Fprintf(out, "LUN %s: no FUSE file: %v\n", name, err)
				}
			}
			exported[n] = e
		}
	}
	stop := func() {
		for _, e := range exported {
			if e.fuse != nil {
				unmountLUN(e, out)
			}
		}
		stopExports(stops, l, srv)
	}
	for ctx.Err() == nil {
		select {
		case <-changed:
			follow()
		case err := <-runDone:
			// The LUNs are gone: nothing is left to serve, held or not.
			stop()
			if err != nil {
				return fmt.Errorf("vhost %s: %w", dir, err)
			}
			fmt.Fprintf(out, "vhost %d was detached (%s removed); its exports ended\n", o.vhost, dir)
			return nil
		case <-ctx.Done():
		}
	}
	var holds []holdable
	for _, e := range exported {
		if e.fuse != nil {
			holds = append(holds, e.fuse)
		}
	}
	heldBy := waitUntilReleased("front", holds, signals.Again, o.force, out)
	if heldBy != "" {
		detachAll(holds, out)
	}
	fmt.Fprintln(out, "xenblk front: shutting down")
	stop()
	stopRunner()
	select {
	case err = <-runDone:
		if errors.Is(err, context.Canceled) {
			err = nil // the backend did not close within the grace; the vhost is ours no more anyway
		}
	case <-time.After(finalFlushWait):
		err = fmt.Errorf("vhost %s: %w in %v to our close (is xenblk serve running?)", dir, errNoAnswer, finalFlushWait)
	}
	switch {
	case heldBy != "" && o.force:
		return errors.Join(fmt.Errorf("tore the FUSE export down while in use (--force): %s", heldBy), err)
	case heldBy != "":
		return errors.Join(fmt.Errorf("%w while in use: %s", errForced, heldBy), err)
	}
	return err
}

// unmountLUN takes a LUN's FUSE file away: at once if it is held (the
// LUN is gone, or front was told to stop regardless), saying what held
// it; then its directory, which front made.
func unmountLUN(e lunExport, out io.Writer) {
	if what, _ := e.fuse.InUse(); what != "" {
		fmt.Fprintf(out, "xenblk front: LUN %s's file is taken away: %s\n", e.name, what)
		if err := e.fuse.Detach(); err != nil {
			fmt.Fprintf(out, "xenblk: %v\n", err)
		}
	} else {
		e.fuse.Stop()
	}
	_ = os.Remove(e.fuse.e.Dir)
}

// probeLUN is the LUN's storage.Device, probed within a bound: a LUN
// that does not answer is not exported rather than holding the rest up.
func probeLUN(ctx context.Context, lun *vscsifront.LUN) (storage.Device, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return lun.Device(ctx)
}
