package linux

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore"
)

// Available reports whether this machine runs on Xen with the privileged
// interface (a dom0 or a driver domain with privcmd): what --xen=auto asks.
func Available() bool {
	_, err := os.Stat(DevPrivcmd)
	return err == nil
}

// Domain is this domain's view of the real hypervisor. It implements
// xen.Domain. A device that cannot be opened (a module not loaded) is
// reported by the first call that needs it, so a backend-only process
// does not need gntalloc nor a frontend-only one gntdev.
type Domain struct {
	id       xen.DomID
	store    *xenstore.Client
	gntdev   *Gntdev
	gntalloc *Gntalloc
	devErr   map[string]error
}

// Open connects to xenstore (xenstored's socket when present, else
// /dev/xen/xenbus), learns our domain id, and opens the grant devices.
func Open() (*Domain, error) {
	st, err := DialStore()
	if err != nil {
		return nil, err
	}
	id, err := selfID(st)
	if err != nil {
		st.Close()
		return nil, err
	}
	d := &Domain{id: id, store: st, devErr: map[string]error{}}
	if d.gntdev, err = OpenGntdev(); err != nil {
		d.devErr[DevGntdev] = err
	}
	if d.gntalloc, err = OpenGntalloc(); err != nil {
		d.devErr[DevGntalloc] = err
	}
	return d, nil
}

// DialStore connects to xenstore the way Open does: $XENSTORED_PATH or
// xenstored's socket when it exists, else /dev/xen/xenbus.
func DialStore() (*xenstore.Client, error) {
	path := os.Getenv("XENSTORED_PATH")
	if path == "" {
		path = XenstoredSocket
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		c, err := net.Dial("unix", path)
		if err == nil {
			return xenstore.New(c)
		}
	}
	c, err := DialXenbus()
	if err != nil {
		return nil, fmt.Errorf("xen: no xenstore: neither %s nor %s: %w", path, DevXenbus, err)
	}
	return c, nil
}

// DialXenbus speaks the xenstore protocol through the kernel's
// /dev/xen/xenbus (a domain without xenstored's socket: any domU or
// driver domain).
func DialXenbus() (*xenstore.Client, error) {
	f, err := os.OpenFile(DevXenbus, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return xenstore.New(f)
}

// selfID reads our domain id: xenstored resolves the relative path
// "domid" in our own domain's directory. dom0's toolstack may not have
// written it yet; /proc/xen/capabilities names the control domain.
func selfID(st xen.Store) (xen.DomID, error) {
	if v, err := st.Read("domid"); err == nil {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
		if err == nil {
			return xen.DomID(n), nil
		}
	}
	if b, err := os.ReadFile("/proc/xen/capabilities"); err == nil && strings.Contains(string(b), "control_d") {
		return 0, nil
	}
	return 0, fmt.Errorf("xen: cannot learn our domain id (no readable \"domid\" node, not the control domain)")
}

func (d *Domain) ID() xen.DomID      { return d.id }
func (d *Domain) Store() xen.Store   { return d.store }
func (d *Domain) Events() xen.Events { return Evtchn{} }

func (d *Domain) Granter() xen.Granter {
	if d.gntalloc == nil {
		return failing{d.devErr[DevGntalloc]}
	}
	return d.gntalloc
}

func (d *Domain) Mapper() xen.Mapper {
	if d.gntdev == nil {
		return failing{d.devErr[DevGntdev]}
	}
	return d.gntdev
}

// Close closes the store connection and the devices.
func (d *Domain) Close() error {
	err := d.store.Close()
	if d.gntdev != nil {
		d.gntdev.Close()
	}
	if d.gntalloc != nil {
		d.gntalloc.Close()
	}
	return err
}

// failing stands for a device that could not be opened.
type failing struct{ err error }

func (f failing) Grant(xen.DomID, int, bool) (*xen.Granted, error)         { return nil, f.err }
func (f failing) Revoke(*xen.Granted) error                                { return f.err }
func (f failing) Map(xen.DomID, []xen.GrantRef, bool) (xen.Mapping, error) { return nil, f.err }
func (f failing) Copy([]xen.GrantCopySegment) error                        { return f.err }
