package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/scsi/pr/lease"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/xen/sim"
)

// serveOptions is one serve command's flags.
type serveOptions struct {
	host        string
	xen         xenMode
	backendType string
	noSCSI      bool
	noVscsi     bool
	prStore     prStoreOptions
	prLease     time.Duration
	journalDir  string
	verbose     bool
	metrics     string
	cpuProfile  string
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the backend daemon: serve every vbd and PVSCSI vhost assigned to this backend domain",
		Long: `serve attaches to a simulated Xen host as dom0 and serves every vbd that
appears under /local/domain/0/backend/<type> (default type "xenblk", which
no kernel driver claims), many at once, each with its own goroutines; a
vbd whose disk cannot be opened gets an error node and the others go on.

It also serves every PVSCSI vhost under /local/domain/0/backend/vscsi
(vscsiif.h's directory; --no-vscsi leaves it to another backend, such as
Linux's xen-scsiback): each LUN's p-dev is an image file or block device,
an NBD URL, or a host SCSI disk (h:c:t:l or /dev/sgN) passed through. A
disk served over both shares one SCSI identity and one set of
reservations; a LUN that cannot be opened is refused alone.

Create vbds with "xenblk attach", vhosts with "xenblk attach --vscsi".
Stop with Ctrl-C (devices close cleanly).

With --backend-type vbd, serve is the backend of the disks xl and libxl
make from an unmodified domU configuration (disk = ['format=raw,
vdev=xvda, access=rw, target=/srv/d.img']) in place of Linux's
xen-blkback, which must be kept out of dom0 (module_blacklist=xen_blkback
on its kernel command line): it serves the image params names, and holds
a vbd with a hotplug script in InitWait until the script reports in
hotplug-status, as libxl expects.`,
		Example: `  xenblk serve --backend-type vbd &   # in dom0; then: xl create guest.cfg
  xenblk host --socket /tmp/x/host.sock &
  xenblk serve --host /tmp/x/host.sock &
  xenblk front --host /tmp/x/host.sock --name guest1 --nbd 127.0.0.1:10810 &
  xenblk attach --xenstore /tmp/x/xenstored --domain 1 'vdev=xvda, target=/tmp/x/disk.img'
  xenblk serve --metrics 127.0.0.1:9469 &   # then: curl http://127.0.0.1:9469/metrics
  xenblk serve --pr-store etcd://h1:2379,h2:2379,h3:2379 &   # reservations shared by every host`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd, o) },
	}
	f := cmd.Flags()
	socketPathVar(f, &o.host, "host", "", "simulated host socket (xenblk host --socket); omit on real Xen")
	addXenFlag(f, &o.xen, "--host")
	f.StringVar(&o.backendType, "backend-type", toolstack.DefaultBackendType, "backend type directory to serve")
	f.BoolVar(&o.noSCSI, "no-scsi", false, "do not offer the SCSI extension over blkif (vhosts are SCSI all the same)")
	f.BoolVar(&o.noVscsi, "no-vscsi", false, "do not serve PVSCSI vhosts (backend/vscsi)")
	o.prStore.addFlags(f)
	f.DurationVar(&o.prLease, "pr-lease", lease.DefaultConfig.Term, "with --pr-store etcd://...: how long this host trusts its copy of a disk's reservations without hearing from etcd; past it, guests' reads and writes of the disk are refused, and a PREEMPT completes this much (and an eighth) after etcd took it")
	f.StringVar(&o.journalDir, "journal-dir", "/run/xenblk/journal", "where each ring's consumed requests are kept, so that a restarted backend resumes them safely (\"\": none)")
	f.BoolVar(&o.verbose, "verbose", false, "log every request error and handshake step")
	tcpAddrVar(f, &o.metrics, "metrics", "", "serve every vbd's and vhost's request counters (Prometheus text format) at http://ADDR/metrics, e.g. 127.0.0.1:9469")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file, complete when serve stops (go tool pprof reads it)")
	return cmd
}

func runServe(cmd *cobra.Command, o *serveOptions) error {
	keepServingWithoutStdout()
	if o.prLease <= 0 {
		return usagef("--pr-lease %v: give a positive duration, e.g. %v", o.prLease, lease.DefaultConfig.Term)
	}
	log := newLogger(o.verbose)
	prStore, etcd, err := o.prStore.open(log)
	if err != nil {
		return err
	}
	if etcd != nil {
		defer etcd.Close()
		fmt.Fprintf(cmd.OutOrStdout(), "xenblk serve: reservations shared in %s\n", o.prStore.store)
	}
	dom, err := openDomain(o.xen, o.host, "--host", sim.AsDom0())
	if err != nil {
		return err
	}
	defer dom.Close()
	if o.host == "" {
		if err := kernelClaims(sysModuleDir, o.backendType); err != nil {
			return err
		}
	}
	if err := storage.IOUringAvailable(); err != nil {
		log.Warn("io_uring is not available: image files and block devices are served one system call per request", "err", err)
	}
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// One registry for vbds and LUNs: a disk served over both is one
	// logical unit, with one set of reservations.
	// The margin covers clock-rate differences and the admission-to-
	// submission gap (docs/PROTOCOL.md, "Fencing across hosts").
	engines := scsiengine.New(scsiengine.Config{Reservations: prStore, Lease: lease.Config{Term: o.prLease, Margin: o.prLease / 8}, Log: log})
	defer engines.Close() // before the etcd store closes: its units stop being followed
	cfg := blkback.Config{Domain: dom, Log: log, JournalDir: o.journalDir}
	if !o.noSCSI {
		cfg.SCSI = blkback.VBDEngines(dom.Store(), engines, log)
	}
	srv := &blkback.Server{Config: cfg, BackendType: o.backendType, Open: vbd.Opener(log)}
	var vsrv *vscsiback.Server
	if !o.noVscsi {
		vsrv = &vscsiback.Server{Domain: dom, Engines: engines, OpenNBD: openNBD, Log: log}
	}
	if o.metrics != "" {
		l, err := net.Listen("tcp", o.metrics)
		if err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler(srv, vsrv, engines, etcd))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(l)
		defer hs.Close()
		fmt.Fprintf(cmd.OutOrStdout(), "xenblk serve: metrics at http://%s/metrics\n", l.Addr())
	}
	fmt.Fprintf(cmd.OutOrStdout(), "xenblk serve: serving /local/domain/%d/backend/%s\n", dom.ID(), o.backendType)
	if vsrv == nil {
		return srv.Serve(ctx)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "xenblk serve: serving /local/domain/%d/backend/%s\n", dom.ID(), vscsiback.BackendType)
	// Either server ending (its store connection lost) ends the other.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vscsiDone := make(chan error, 1)
	go func() {
		defer cancel()
		vscsiDone <- vsrv.Serve(ctx)
	}()
	err = srv.Serve(ctx)
	cancel()
	return errors.Join(err, <-vscsiDone)
}

// sysModuleDir is where Linux lists its loaded (and built-in) modules.
const sysModuleDir = "/sys/module"

// kernelBackends are the kernel drivers that claim every device under a
// backend type directory of the domain they run in.
var kernelBackends = map[string]string{"vbd": "xen_blkback"}

// kernelClaims refuses to serve a backend type that a loaded kernel
// driver claims too (modules lists them): two backends answering one
// frontend would each map its rings and serve it.
func kernelClaims(modules, backendType string) error {
	mod, ok := kernelBackends[backendType]
	if !ok {
		return nil
	}
	if _, err := os.Stat(filepath.Join(modules, mod)); err != nil {
		return nil
	}
	return fmt.Errorf("backend/%[2]s is claimed by Linux's %[1]s, which is loaded: keep it out of this domain (module_blacklist=%[3]s on the kernel command line, or blacklist %[3]s in /etc/modprobe.d before it loads), or give another --backend-type",
		strings.ReplaceAll(mod, "_", "-"), backendType, mod)
}

// nbdOpenTimeout bounds the connect and handshake of a LUN's NBD
// export: its vhost waits for every LUN's open before it moves on.
const nbdOpenTimeout = 30 * time.Second

// openNBD opens a LUN's NBD p-dev (nbd://, nbd+unix://): the export the
// URL names, within nbdOpenTimeout.
func openNBD(url string) (storage.Device, error) {
	t, err := nbd.ParseTarget(url)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout(t.Network, t.Address, nbdOpenTimeout)
	if err != nil {
		return nil, err
	}
	// The deadline covers the handshake only; the client owns c after.
	_ = c.SetDeadline(time.Now().Add(nbdOpenTimeout))
	cl, err := nbd.NewClient(c, t.Export)
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return cl, nil
}

func newLogger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
