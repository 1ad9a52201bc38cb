// Package toolstack creates and removes virtual block devices, and PVSCSI
// vhosts and their LUNs (vscsi.go), in xenstore the way libxl does: the
// backend's directory under the backend domain, the frontend's under the
// guest, each owned by its domain and readable by the other, and the
// removal handshake (online=0, Closing, wait for Closed, then remove
// both). It knows paths and permissions, not blkif nor vscsiif's ring.
package toolstack

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// DefaultBackendType is the backend type directory xenblk serves: one that
// no kernel driver claims (Linux's blkback owns "vbd", QEMU "qdisk").
// Linux's blkfront does not care what the backend's path is called.
const DefaultBackendType = "xenblk"

// VBD names one virtual block device.
type VBD struct {
	BackendDom  xen.DomID
	FrontendDom xen.DomID
	DevID       uint32 // the virtual-device number (diskspec.VirtualDevice)
	BackendType string // "" means DefaultBackendType
	Spec        diskspec.Spec
}

func (v VBD) backendType() string {
	if v.BackendType == "" {
		return DefaultBackendType
	}
	return v.BackendType
}

// BackendPath is /local/domain/<backend>/backend/<type>/<frontend>/<devid>.
func (v VBD) BackendPath() string {
	return fmt.Sprintf("/local/domain/%d/backend/%s/%d/%d", v.BackendDom, v.backendType(), v.FrontendDom, v.DevID)
}

// FrontendPath is /local/domain/<frontend>/device/vbd/<devid>.
func (v VBD) FrontendPath() string {
	return fmt.Sprintf("/local/domain/%d/device/vbd/%d", v.FrontendDom, v.DevID)
}

// NewVBD builds the VBD for a disk spec attached to a guest.
func NewVBD(backend, frontend xen.DomID, spec diskspec.Spec) (VBD, error) {
	id, err := diskspec.VirtualDevice(spec.Vdev)
	if err != nil {
		return VBD{}, err
	}
	return VBD{BackendDom: backend, FrontendDom: frontend, DevID: id, Spec: spec}, nil
}

// Create writes both directories in one transaction, as libxl's
// device_disk_add does. It fails if the device already exists.
func Create(store xen.Store, v VBD) error {
	be, fe := v.BackendPath(), v.FrontendPath()
	backend := vbd.BackendNodes(v.Spec, fe, v.FrontendDom)
	frontend := vbd.FrontendNodes(v.Spec, be, v.BackendDom, v.DevID)
	bePerms, fePerms := devicePerms(v.BackendDom, v.FrontendDom)
	return createDevice(store, newDevice{
		be: be, fe: fe, backend: backend, frontend: frontend,
		bePerms: bePerms, fePerms: fePerms,
		taken: fmt.Sprintf("guest %d already has a vbd %d (%s); pick another vdev", v.FrontendDom, v.DevID, fe),
	})
}

// newDevice is a device's two directories, to be written.
type newDevice struct {
	be, fe            string
	backend, frontend []vbd.Node
	bePerms, fePerms  []xen.Perm
	taken             string                // the error when the frontend directory exists
	more              func(tx xen.Tx) error // writes more into the backend directory (a vhost's LUNs)
}

// createDevice writes a device in one transaction; it fails if either
// directory exists.
func createDevice(store xen.Store, d newDevice) error {
	return store.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(d.be + "/" + vbd.KeyState); err == nil {
			return fmt.Errorf("toolstack: %s already exists; detach it first", d.be)
		}
		if _, err := tx.Read(d.fe + "/" + vbd.KeyState); err == nil {
			return errors.New("toolstack: " + d.taken)
		}
		if err := writeDir(tx, d.be, d.backend, d.bePerms); err != nil {
			return err
		}
		if d.more != nil {
			if err := d.more(tx); err != nil {
				return err
			}
		}
		return writeDir(tx, d.fe, d.frontend, d.fePerms)
	})
}

func writeDir(tx xen.Tx, dir string, nodes []vbd.Node, perms []xen.Perm) error {
	if err := tx.Mkdir(dir); err != nil {
		return err
	}
	if err := tx.SetPerms(dir, perms); err != nil {
		return err
	}
	for _, n := range nodes {
		p := dir + "/" + n.Key
		if err := tx.Write(p, n.Value); err != nil {
			return err
		}
		if err := tx.SetPerms(p, perms); err != nil {
			return err
		}
	}
	return nil
}

// ErrNotClosed: Remove's backend did not reach Closed before the context
// ended (a backend that hangs, or a guest that never lets go).
var ErrNotClosed = errors.New("the backend did not close in time")

// Remove detaches a device as `xl block-detach` does: online=0 and
// Closing on the backend, then wait (up to ctx) for the backend to reach
// Closed or disappear, then remove both directories. With force, it
// removes them even if the backend never answers.
//
// A backend that is already Closed (its frontend closed or its guest
// died) keeps its state, as libxl keeps it: writing Closing over it would
// ask for a Closed that a backend already Closed has no reason to write
// again, and the wait would last until ctx ends. A backend still in
// Initialising, the state Create writes, was never taken up by a backend
// (none runs, or it has not reached this vbd yet): no backend moves it on
// and no frontend can be connected to it (a frontend waits for InitWait),
// so there is nothing to close and nothing to wait for; a backend that
// reaches it later sees the directory gone.
//
// A backend that does not close in time gives ErrNotClosed (unless force).
func Remove(ctx context.Context, store xen.Store, v VBD, force bool) error {
	return removeDevice(ctx, store, v.BackendPath(), v.FrontendPath(), force)
}

// removeDevice is Remove for any device with a backend directory be and
// a frontend directory fe: vbds and vhosts go the same way.
func removeDevice(ctx context.Context, store xen.Store, be, fe string, force bool) error {
	if _, err := store.Read(be + "/" + vbd.KeyState); err != nil {
		if errors.Is(err, xen.ErrNotFound) {
			_ = store.Remove(fe)
			return fmt.Errorf("toolstack: no device %s: %w", be, err)
		}
		return err
	}
	wait := true
	if err := store.Transaction(func(tx xen.Tx) error {
		state, err := tx.Read(be + "/" + vbd.KeyState)
		if err != nil {
			return err
		}
		if err := tx.Write(be+"/"+vbd.KeyOnline, "0"); err != nil {
			return err
		}
		switch strings.TrimSpace(state) {
		case xenbus.Closed.Value():
			wait = false
			return nil
		case xenbus.Initialising.Value():
			wait = false
		}
		return tx.Write(be+"/"+vbd.KeyState, xenbus.Closing.Value())
	}); err != nil {
		return err
	}
	if wait {
		closedOrGone := func(v string, err error) bool {
			return errors.Is(err, xen.ErrNotFound) || xenbus.OneOf(xenbus.Closed.Value())(v, err)
		}
		if _, err := xenbus.WaitNode(ctx, store, be+"/"+vbd.KeyState, closedOrGone); err != nil && !force {
			return fmt.Errorf("toolstack: backend %s did not close: %w", be, errors.Join(ErrNotClosed, err))
		}
	}
	_ = store.Remove(fe)
	_ = store.Remove(be)
	return nil
}

// List returns the devices under a backend domain's backend type
// directory, sorted by frontend domain and device id.
func List(store xen.Store, backendDom xen.DomID, backendType string) ([]VBD, error) {
	if backendType == "" {
		backendType = DefaultBackendType
	}
	root := fmt.Sprintf("/local/domain/%d/backend/%s", backendDom, backendType)
	doms, err := numbered(store, root, 16)
	if err != nil {
		return nil, err
	}
	var out []VBD
	for _, fd := range doms {
		devs, err := numbered(store, fmt.Sprintf("%s/%d", root, fd), 32)
		if err != nil {
			continue
		}
		for _, id := range devs {
			v := VBD{BackendDom: backendDom, FrontendDom: xen.DomID(fd), DevID: uint32(id), BackendType: backendType}
			if s, err := store.Read(v.BackendPath() + "/" + vbd.KeySpec); err == nil {
				v.Spec, _ = diskspec.Parse(s)
			}
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FrontendDom != out[j].FrontendDom {
			return out[i].FrontendDom < out[j].FrontendDom
		}
		return out[i].DevID < out[j].DevID
	})
	return out, nil
}

// numbered returns the children of dir named by a decimal number of at
// most bits bits, skipping the others; none when dir does not exist.
func numbered(store xen.Store, dir string, bits int) ([]uint64, error) {
	names, err := store.Directory(dir)
	if errors.Is(err, xen.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, name := range names {
		if n, err := strconv.ParseUint(name, 10, bits); err == nil {
			out = append(out, n)
		}
	}
	return out, nil
}
