package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

var serveFlags struct {
	host        string
	backendType string
	noSCSI      bool
	prDir       string
	verbose     bool
}

var serveCmd = &cobra.Command{
	Use:   "serve",
	Short: "Run the backend daemon: serve every vbd assigned to this backend domain",
	Long: `serve attaches to a simulated Xen host as dom0 and serves every vbd that
appears under /local/domain/0/backend/<type> (default type "xenblk", which
no kernel driver claims), many at once, each with its own goroutines; a
vbd whose disk cannot be opened gets an error node and the others go on.

Create vbds with "xenblk attach". Stop with Ctrl-C (devices close cleanly).`,
	Example: `  xenblk host --socket /tmp/x/host.sock &
  xenblk serve --host /tmp/x/host.sock &
  xenblk front --host /tmp/x/host.sock --name guest1 --nbd 127.0.0.1:10810 &
  xenblk attach --xenstore /tmp/x/xenstored --domain 1 'vdev=xvda, target=/tmp/x/disk.img'`,
	Args: cobra.NoArgs,
	RunE: runServe,
}

func init() {
	f := serveCmd.Flags()
	f.StringVar(&serveFlags.host, "host", "", "simulated host socket (xenblk host --socket)")
	f.StringVar(&serveFlags.backendType, "backend-type", toolstack.DefaultBackendType, "backend type directory to serve")
	f.BoolVar(&serveFlags.noSCSI, "no-scsi", false, "do not offer the SCSI extension")
	f.StringVar(&serveFlags.prDir, "pr-dir", "/var/lib/xenblk/pr", "where persistent-reservation state is kept")
	f.BoolVar(&serveFlags.verbose, "verbose", false, "log every request error and handshake step")
	rootCmd.AddCommand(serveCmd)
}

func runServe(cmd *cobra.Command, _ []string) error {
	if serveFlags.host == "" {
		return usagef("--host is required (the socket of `xenblk host`)")
	}
	dom, err := sim.Connect(serveFlags.host, sim.AsDom0())
	if err != nil {
		return err
	}
	defer dom.Close()
	log := newLogger(serveFlags.verbose)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := blkback.Config{Domain: dom, Log: log}
	if !serveFlags.noSCSI {
		cfg.SCSI = reservationEngines(dom.Store(), serveFlags.prDir, log)
	}
	srv := &blkback.Server{Config: cfg, BackendType: serveFlags.backendType, Open: openVBD}
	fmt.Fprintf(cmd.OutOrStdout(), "xenblk serve: serving /local/domain/%d/backend/%s\n", dom.ID(), serveFlags.backendType)
	return srv.Serve(ctx)
}

// openVBD opens the disk a vbd's backend directory names, as libxl wrote
// it (params, mode).
func openVBD(st xen.Store, dir string) (storage.Device, error) {
	params, err := st.Read(dir + "/params")
	if err != nil {
		return nil, fmt.Errorf("%s has no params node: %w", dir, err)
	}
	mode, _ := st.Read(dir + "/mode")
	readOnly := strings.HasPrefix(mode, "r")
	if specText, err := st.Read(dir + "/spec"); err == nil {
		if spec, err := diskspec.Parse(specText); err == nil && spec.Format != diskspec.FormatRaw {
			return nil, fmt.Errorf("disk %s is %s; xenblk serves raw images only (convert with qemu-img convert -O raw)", params, spec.Format)
		}
	}
	dev, _, err := openImage(params, 0, readOnly)
	return dev, err
}

// reservationEngines gives each vbd its own SCSI engine, but every vbd of
// one backing disk the same identity (serial, NAA) and the same
// persistent-reservation unit, so that two guests given the same disk —
// the two nodes of a cluster — see one logical unit and each other's
// registrations. Reservation state lives in prDir (APTPL, crash-safe).
func reservationEngines(st xen.Store, prDir string, log *slog.Logger) blkback.SCSIProvider {
	var mu sync.Mutex
	units := map[string]*pr.Unit{}
	return func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
		lu, err := st.Read(dir + "/params")
		if err != nil {
			lu = dir
		}
		mu.Lock()
		defer mu.Unlock()
		u, ok := units[lu]
		if !ok {
			if u, err = pr.Open(&pr.FileStore{Dir: prDir}, lu, log); err != nil {
				return nil, err
			}
			units[lu] = u
		}
		// A per-device policy from the disk spec (scsi-policy=default,+0x35,...)
		// on top of the emulation's default.
		policy := scsi.EmulatedPolicy()
		if text, err := st.Read(dir + "/scsi-policy"); err == nil && text != "" {
			if policy, err = scsi.ParsePolicy(text, scsi.EmulatedPolicy()); err != nil {
				return nil, fmt.Errorf("scsi-policy of %s: %w", dir, err)
			}
		}
		return emulate.New(dev, emulate.Config{Identity: lu, Reservations: u, Policy: policy, Log: log}), nil
	}
}

func newLogger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
