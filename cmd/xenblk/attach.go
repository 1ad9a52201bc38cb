package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/diskspec"

	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore"
)

// vbdOptions is the flags of one attach or detach command: which vbd
// (or PVSCSI LUN or vhost), through which xenstore; detach's own at the
// end.
type vbdOptions struct {
	xenstore    string
	xen         xenMode
	domain      int
	backend     int
	backendType string
	vscsi       string        // attach: a LUN's spec; detach: its v-dev
	timeout     time.Duration // detach; attach with --vscsi
	vhost       int           // detach: a whole vhost (-1: not given)
	force       bool
}

// addFlags registers on f the flags attach and detach share.
func (o *vbdOptions) addFlags(f *pflag.FlagSet) {
	socketPathVar(f, &o.xenstore, "xenstore", "", "xenstored socket of a simulated host (default $XENSTORED_PATH); omit on real Xen")
	addXenFlag(f, &o.xen, "--xenstore (or XENSTORED_PATH)")
	f.IntVar(&o.domain, "domain", -1, "the guest's domain id (required)")
	f.IntVar(&o.backend, "backend-domain", 0, "the backend's domain id")
	f.StringVar(&o.backendType, "backend-type", toolstack.DefaultBackendType, "backend type directory (xenblk; vbd is Linux's blkback)")
}

// domainsExist checks that --domain and --backend-domain are running.
func (o *vbdOptions) domainsExist(st xen.Store) error {
	for _, d := range []struct {
		flag string
		id   int
	}{{"--domain", o.domain}, {"--backend-domain", o.backend}} {
		if err := domainExists(st, d.id); err != nil {
			return fmt.Errorf("%s %d: %w", d.flag, d.id, err)
		}
	}
	return nil
}

func newAttachCmd() *cobra.Command {
	o := &vbdOptions{}
	cmd := &cobra.Command{
		Use:   "attach DISKSPEC",
		Short: "Create a vbd (or a PVSCSI LUN) for a guest from an xl spec, as libxl does",
		Long: `attach writes a vbd's backend and frontend directories in xenstore, each
owned by its domain and readable by the other, exactly as libxl's
block-attach does. DISKSPEC is xl's disk syntax (xl-disk-configuration(5)),
positional or named; xenblk's own keys may be added (docs/PROTOCOL.md):
sector-size=4096, physical-sector-size=4096, rotation-rate=1, direct=1,
scsi=emulate|passthrough|off, pr=emulate|passthrough (with
scsi=passthrough), scsi-policy=TEXT or scsi-policy=@/absolute/policy-file,
shared=1, initiator=NAME (the guest's name for persistent reservations,
the same on every host it may run on: its VM UUID, say).

The backend locks every disk it opens: a read-write vbd is the disk's only
user, read-only vbds share it with other readers. A disk that several
guests share on purpose (a cluster disk fenced with persistent
reservations) says shared=1 (or xl's access=w!) in the spec of every vbd
given it; those vbds may then open it together, read-write, and a vbd that
is not shared is refused beside them, as they are beside it.

Nothing is written unless all of it checks out: a bad value of any key,
or a format other than raw, exits 2; a guest or backend domain that does
not exist exits 1. With the backend in domain 0 (this host), the target
must exist and be a block device or a raw image (a whole number of
sectors, not a qcow2 file), and a policy file must read as serve will
read it (exit 1 otherwise). A target another vbd of the backend has
already is refused (exit 1) unless serve can open the two together: both
read-only, or both shared=1.

With --vscsi instead of a DISKSPEC, attach gives the guest a PVSCSI LUN
(vscsiif), in the syntax of xl's proposed vscsi-attach: 'PDEV, VDEV[,
OPTION...]'. PDEV is an image file or a block device (absolute path), a
whole host SCSI disk passed through (h:c:t:l or /dev/sgN), or an NBD
export (nbd://host[:port]/export, nbd+unix:///export?socket=/path). VDEV
is the guest's h:c:t:l; its host number picks the vhost, as in xl: the
guest's vhost of that host gets the LUN (added while it runs: the vhost
goes through Reconfiguring and attach waits up to --timeout for the
backend), or a new vhost is created. OPTIONs are xenblk's own keys above
(shared=1 for a disk two vhosts share); xl's feature-host is refused, as
serve refuses it. The nodes are vscsiif.h's, under backend/vscsi
(docs/PROTOCOL.md, Part 4, "Creating a vhost"). The same checks apply
before anything is written.`,
		Example: `  xenblk attach --domain 1 'format=raw, vdev=xvda, access=rw, target=/var/lib/xen/disk.img'
  xenblk attach --domain 1 '/var/lib/xen/cd.iso,,hdc,cdrom'
  xenblk attach --domain 2 'vdev=xvdb, access=rw, shared=1, target=/dev/vg/cluster'
  xenblk attach --domain 2 --vscsi '/dev/vg/cluster, 0:0:0:0, shared=1'
  xenblk attach --domain 2 --vscsi 'nbd://storage:10809/db, 0:0:1:0'
  xenblk attach --domain 3 --vscsi '/dev/sg2, 1:0:0:0'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runAttach(cmd, o, args) },
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.vscsi, "vscsi", "", "a PVSCSI LUN instead of a DISKSPEC: 'PDEV, VDEV[, OPTION...]'")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 10*time.Second, "with --vscsi, how long to wait for the backend to take a LUN added to a running vhost")
	return cmd
}

func newDetachCmd() *cobra.Command {
	o := &vbdOptions{}
	cmd := &cobra.Command{
		Use:   "detach VDEV",
		Short: "Remove a guest's vbd (or PVSCSI LUN or vhost): Closing, wait for the backend, remove the nodes",
		Long: `detach removes a vbd as xl's block-detach does: online=0 and Closing in
its backend directory, a wait (up to --timeout) for the backend to close,
then both directories removed.

With --vscsi VDEV instead, detach removes the guest's PVSCSI LUN at that
h:c:t:l as xl's proposed vscsi-detach does: the LUN's state 5 and its
vhost's Reconfiguring, a wait for the backend's 6, then its dev-N
removed; a vhost's last LUN takes the vhost with it. --vhost N removes
the guest's vhost N (device id) with all its LUNs, as a vbd goes.`,
		Example: `  xenblk detach --domain 1 xvda
  xenblk detach --domain 2 --vscsi 0:0:1:0
  xenblk detach --domain 2 --vhost 0 --timeout 30s`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runDetach(cmd, o, args) },
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.vscsi, "vscsi", "", "a PVSCSI LUN's VDEV (h:c:t:l) instead of a vbd's")
	cmd.Flags().IntVar(&o.vhost, "vhost", -1, "a whole PVSCSI vhost, by device id, instead of a vbd")
	cmd.Flags().BoolVar(&o.force, "force", false, "remove the nodes even if the backend does not answer")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the backend to answer")
	return cmd
}

// maxDomID is the last id a domain can have (DOMID_FIRST_RESERVED - 1).
const maxDomID = 0x7fef

// store checks --domain and --backend-domain and opens the xenstore o names.
func (o *vbdOptions) store() (xen.Store, error) {
	switch {
	case o.domain == -1:
		return nil, usagef("--domain is required (the guest's domain id)")
	case o.domain < 0 || o.domain > maxDomID:
		return nil, usagef("--domain %d: a domain id is from 0 to %d", o.domain, maxDomID)
	case o.backend < 0 || o.backend > maxDomID:
		return nil, usagef("--backend-domain %d: a domain id is from 0 to %d", o.backend, maxDomID)
	}
	socket := o.xenstore
	if socket == "" {
		socket = os.Getenv("XENSTORED_PATH")
	}
	return openStore(o.xen, socket, "--xenstore (or XENSTORED_PATH)")
}

func runAttach(cmd *cobra.Command, o *vbdOptions, args []string) error {
	switch {
	case o.vscsi != "":
		return runAttachVscsi(cmd, o, args)
	case len(args) == 0:
		return usagef("attach needs a DISKSPEC (a vbd) or --vscsi 'PDEV, VDEV' (a PVSCSI LUN)")
	}
	// Everything the spec says is checked before anything is written:
	// syntax and xenblk's own keys (diskspec.Parse, with the words serve
	// would log), then what xenblk can serve.
	spec, err := diskspec.Parse(args[0])
	if err != nil {
		return usagef("%v", err)
	}
	if err := spec.Servable(); err != nil {
		return usagef("%v", err)
	}
	if spec.Target != "" && !strings.HasPrefix(spec.Target, "/") {
		return usagef("target %q must be an absolute path: the backend runs elsewhere", spec.Target)
	}
	v, err := o.newVBD(spec)
	if err != nil {
		return err
	}
	st, err := o.store()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := o.domainsExist(st); err != nil {
		return err
	}
	if o.backend == 0 {
		if err := checkLocalDisk(spec); err != nil {
			return targetLastHint(spec.Target, err)
		}
	}
	if err := sharingConflict(st, v); err != nil {
		return err
	}
	if err := toolstack.Create(st, v); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "attached %s to domain %d: %s\n", spec.Vdev, o.domain, v.BackendPath())
	return nil
}

// sharingConflict refuses v when another vbd of its backend and type has
// its target already and serve could not open the two together: its image lock lets read-only vbds share a disk, and
// vbds that both say shared=1 (or access=w!); a read-write vbd is alone.
// The vbd would otherwise be written, then refused by serve with an
// error node while its guest waits.
func sharingConflict(st xen.Store, v toolstack.VBD) error {
	spec, root := v.Spec, path.Dir(path.Dir(v.BackendPath()))
	if spec.Target == "" {
		return nil
	}
	o, err := spec.Options()
	if err != nil {
		return usagef("%v", err)
	}
	doms, _ := st.Directory(root)
	for _, dom := range doms {
		devs, _ := st.Directory(root + "/" + dom)
		for _, dev := range devs {
			dir := root + "/" + dom + "/" + dev
			if dir == v.BackendPath() {
				continue // toolstack.Create says it exists
			}
			d, err := vbd.ReadDisk(st, dir)
			if err != nil || !sameFile(d.Path, spec.Target) {
				continue
			}
			if (o.Shared && d.Options.Shared) || (spec.ReadOnly && d.ReadOnly) {
				continue
			}
			vdev, _ := st.Read(dir + "/" + vbd.KeyDev)
			return fmt.Errorf("target %s is domain %s's vbd %s already (%s), and serve opens a disk beside another vbd only when both are read-only or both say shared=1 (a cluster disk shared on purpose); detach that one first (xenblk detach --domain %s %s), or use another image",
				spec.Target, dom, vdev, dir, dom, vdev)
		}
	}
	return nil
}

// sameFile says whether two paths name one file: the same path, or, where
// both exist on this host, one inode.
func sameFile(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// targetLastHint adds, to the error of a target that does not exist but
// reads like keys ("/x.img, foo=bar"), that target= takes the rest of the
// spec (xl's rule, so that a path may hold commas).
func targetLastHint(target string, err error) error {
	if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) || !strings.Contains(target, "=") {
		return err
	}
	return fmt.Errorf("%w (target= takes the rest of the spec, as in xl: give the other keys before it)", err)
}

// domainExists says whether a domain is running: every domain has its
// directory in xenstore, on real Xen as on the simulated host.
func domainExists(st xen.Store, id int) error {
	dir := fmt.Sprintf("/local/domain/%d", id)
	_, err := st.Read(dir)
	if errors.Is(err, xen.ErrNotFound) {
		return fmt.Errorf("no such domain: xenstore has no %s (xl list, or xenblk xenstore ls /local/domain, shows the domains there are)", dir)
	}
	return err
}

// checkLocalDisk checks what a backend in domain 0 — this host, on real
// Xen as on the simulated one (its socket is a local path) — will open
// (vbd.CheckLocal).
func checkLocalDisk(spec diskspec.Spec) error {
	o, err := spec.Options()
	if err != nil {
		return usagef("%v", err)
	}
	return vbd.CheckLocal(spec, o)
}

func runDetach(cmd *cobra.Command, o *vbdOptions, args []string) error {
	switch {
	case o.vscsi != "" || o.vhost >= 0:
		return runDetachVscsi(cmd, o, args)
	case cmd.Flags().Changed("vhost"):
		return usagef("--vhost %d: a vhost's device id is 0 or more", o.vhost)
	case len(args) == 0:
		return usagef("detach needs a VDEV (a vbd), --vscsi VDEV (a PVSCSI LUN) or --vhost N (a vhost)")
	}
	spec := diskspec.Spec{Vdev: args[0]}
	v, err := o.newVBD(spec)
	if err != nil {
		return err
	}
	st, err := o.store()
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := toolstack.Remove(ctx, st, v, o.force); err != nil {
		if errors.Is(err, toolstack.ErrNotClosed) {
			return fmt.Errorf("%w (give --force to remove it anyway, or a longer --timeout)", err)
		}
		if errors.Is(err, xen.ErrNotFound) {
			root := path.Dir(path.Dir(v.BackendPath()))
			return fmt.Errorf("domain %d has no vbd %s: there is no %s (xenblk xenstore ls %s lists the vbds there are)",
				o.domain, args[0], v.BackendPath(), root)
		}
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "detached %s from domain %d\n", args[0], o.domain)
	return nil
}

// dialStore connects to a xenstored socket (the simulated host's, or
// /run/xenstored/socket on real Xen) with dom0's rights.
func dialStore(path string) (xen.Store, error) {
	c, err := xenstore.Dial(path)
	if errors.Is(err, syscall.EPROTOTYPE) {
		return nil, notXenstored(path)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to xenstore at %s: %w", path, err)
	}
	return c, nil
}

// notXenstored is what a stream connect to a path refused with EPROTOTYPE
// means: a SOCK_SEQPACKET socket there, the simulated host's own socket
// given where its xenstored socket belongs.
func notXenstored(path string) error {
	return fmt.Errorf("connect to xenstore at %s: it is not a xenstored socket (the one of xenblk host --socket? give the socket xenblk host prints as \"xenstored:\")", path)
}

// newVBD names the vbd spec describes for the guest and backend the flags
// give; a spec that names none is the user's mistake.
func (o *vbdOptions) newVBD(spec diskspec.Spec) (toolstack.VBD, error) {
	v, err := toolstack.NewVBD(xen.DomID(o.backend), xen.DomID(o.domain), spec)
	if err != nil {
		return v, usagef("%v", err)
	}
	v.BackendType = o.backendType
	return v, nil
}
