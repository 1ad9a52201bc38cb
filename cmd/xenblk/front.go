package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

var frontFlags struct {
	host    string
	name    string
	vdev    string
	nbd     string
	fuse    string
	control string
	wait    time.Duration
	verbose bool
}

var frontCmd = &cobra.Command{
	Use:   "front",
	Short: "Be a guest: attach a vbd with our blkif frontend and export it over NBD",
	Long: `front attaches to a simulated Xen host as a new guest domain, waits for a
vbd to be attached to it (xenblk attach --domain N), connects our blkif
frontend to whatever backend serves it, and exports the disk over NBD.
It prints the guest's domain id first, so a script can attach to it.`,
	Example: `  xenblk front --host /tmp/x/host.sock --name guest1 --vdev xvda --nbd 127.0.0.1:10810`,
	Args:    cobra.NoArgs,
	RunE:    runFront,
}

func init() {
	f := frontCmd.Flags()
	socketPathVar(f, &frontFlags.host, "host", "", "simulated host socket (xenblk host --socket); omit on real Xen")
	addXenFlag(f, "--host")
	f.StringVar(&frontFlags.name, "name", "guest", "guest domain name")
	f.StringVar(&frontFlags.vdev, "vdev", "xvda", "virtual device to attach")
	tcpAddrVar(f, &frontFlags.nbd, "nbd", "127.0.0.1:10809", "NBD export address")
	f.StringVar(&frontFlags.fuse, "fuse", "", "also export the disk as the file `DIR`/VDEV through FUSE")
	socketPathVar(f, &frontFlags.control, "control", "", "also serve the disk to xenblk scsi and xenblk pr on this control socket")
	f.DurationVar(&frontFlags.wait, "wait", 5*time.Minute, "how long to wait for the vbd to be attached")
	f.BoolVar(&frontFlags.verbose, "verbose", false, "log handshake steps")
	rootCmd.AddCommand(frontCmd)
}

func runFront(cmd *cobra.Command, _ []string) error {
	devid, err := diskspec.VirtualDevice(frontFlags.vdev)
	if err != nil {
		return usagef("%v", err)
	}
	dom, err := openDomain(frontFlags.host, "--host", sim.NewGuest(frontFlags.name))
	if err != nil {
		return err
	}
	defer dom.Close()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "domain %d\n", dom.ID())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := fmt.Sprintf("/local/domain/%d/device/vbd/%d", dom.ID(), devid)
	if err := waitForNode(ctx, dom.Store(), dir+"/backend", frontFlags.wait); err != nil {
		return fmt.Errorf("no vbd %s attached to domain %d: %w (run: xenblk attach --domain %d 'vdev=%s, target=IMAGE')",
			frontFlags.vdev, dom.ID(), err, dom.ID(), frontFlags.vdev)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	disk, err := blkfront.Open(octx, blkfront.Config{Domain: dom, Dir: dir, Log: newLogger(frontFlags.verbose)})
	cancel()
	if err != nil {
		return err
	}
	defer disk.Close()
	l, err := net.Listen("tcp", frontFlags.nbd)
	if err != nil {
		return fmt.Errorf("NBD export on %s: %w", frontFlags.nbd, err)
	}
	srv := &nbd.Server{Exports: []nbd.Export{{Name: frontFlags.vdev, Device: disk.Device()}}}
	go srv.Serve(l)
	defer srv.Close()
	in := disk.Info()
	fmt.Fprintf(out, "connected %s: %d bytes, %d queue(s), indirect %d, persistent %v, scsi %v\nNBD %s\n",
		dir, in.Size(), in.Queues, in.IndirectSegments, in.Persistent, in.ExtraRequest, nbd.ListenerURL(l, frontFlags.vdev))
	if frontFlags.fuse != "" {
		unmount, err := mountFuse(frontFlags.fuse, frontFlags.vdev, disk, out)
		if err != nil {
			return err
		}
		defer unmount()
	}
	if frontFlags.control != "" {
		cl, err := control.Listen(frontFlags.control)
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		go control.Serve(cl, map[string]control.Target{frontFlags.vdev: disk})
		defer cl.Close()
		fmt.Fprintf(out, "control %s (xenblk scsi --control %s ...)\n", frontFlags.control, frontFlags.control)
	}
	<-ctx.Done()
	// A last flush, bounded: after a detach there is no backend to answer.
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := disk.Flush(fctx); err != nil && !errors.Is(err, blkfront.ErrClosed) {
		return fmt.Errorf("final flush: %w", err)
	}
	return nil
}

// waitForNode waits until path exists.
func waitForNode(ctx context.Context, st xen.Store, path string, timeout time.Duration) error {
	w, err := st.Watch(path, "wait")
	if err != nil {
		return err
	}
	defer w.Close()
	deadline := time.After(timeout)
	for {
		if _, err := st.Read(path); err == nil {
			return nil
		}
		select {
		case <-w.Events():
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("timed out after %v", timeout)
		}
	}
}
