package toolstack

// PVSCSI vhosts and their LUNs, as libxl's (unmerged) vscsi series
// writes them, in vscsiif.h's layout: the vhost's backend directory
// /local/domain/<b>/backend/vscsi/<f>/<devid> with frontend, frontend-id,
// online, state, feature-host, libxl_ctrl_index and one
// vscsi-devs/dev-N/{p-dev, p-devname, v-dev, state} per LUN (plus
// xenblk's own keys of the LUN's spec); the frontend directory
// /local/domain/<f>/device/vscsi/<devid> with backend, backend-id,
// state. Permissions are a vbd's: each side owns its directory, the
// other side may read it; a LUN's directory inherits the vhost's.
//
// A LUN's life on a vhost is the toolstack's half of vscsiif.h's
// "Backend/frontend protocol": added at state 1, removed by writing 5
// and deleting dev-N once the backend has answered 6; on a vhost that
// is Connected either is announced by writing the vhost's state 7
// (Reconfiguring), which the backend answers with 8 and then 4.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// VscsiType is vscsiif.h's backend and frontend type directory.
const VscsiType = "vscsi"

// Vhost names one PVSCSI host adapter of a guest.
type Vhost struct {
	BackendDom  xen.DomID
	FrontendDom xen.DomID
	DevID       uint32
}

// BackendPath is /local/domain/<backend>/backend/vscsi/<frontend>/<devid>.
func (v Vhost) BackendPath() string {
	return fmt.Sprintf("/local/domain/%d/backend/%s/%d/%d", v.BackendDom, VscsiType, v.FrontendDom, v.DevID)
}

// FrontendPath is /local/domain/<frontend>/device/vscsi/<devid>.
func (v Vhost) FrontendPath() string {
	return fmt.Sprintf("/local/domain/%d/device/%s/%d", v.FrontendDom, VscsiType, v.DevID)
}

// devPath is the backend directory of the vhost's LUN n.
func (v Vhost) devPath(n int) string { return v.BackendPath() + "/" + vscsiif.DevPath(n) }

// devicePerms are a device's backend and frontend directory permissions,
// as libxl gives them: each side owns its directory, the other may read it.
func devicePerms(backend, frontend xen.DomID) (be, fe []xen.Perm) {
	return []xen.Perm{{Dom: backend}, {Dom: frontend, Read: true}},
		[]xen.Perm{{Dom: frontend}, {Dom: backend, Read: true}}
}

// lunNodes are a LUN's nodes in its dev-N directory, at state 1.
func lunNodes(spec vscsispec.Spec) []vbd.Node {
	nodes := []vbd.Node{
		{Key: vscsiif.KeyPDev, Value: spec.PDev.Name},
		{Key: vscsiif.KeyPDevName, Value: spec.PDev.Name},
		{Key: vscsiif.KeyVDev, Value: spec.VDev.String()},
		{Key: vscsiif.KeyDevState, Value: xenbus.Initialising.Value()},
	}
	for _, k := range diskspec.OwnKeys {
		if v, ok := spec.Extra[k]; ok {
			nodes = append(nodes, vbd.Node{Key: k, Value: v})
		}
	}
	return nodes
}

func boolNode(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// CreateVhost writes a new vhost with its LUNs (dev-0, dev-1, ... in the
// order given) in one transaction, as libxl's vscsictrl_add does. The
// LUNs share their v-dev's host number, which the vhost records as
// libxl_ctrl_index, and the vhost's feature-host is the first LUN's;
// two LUNs may not share channel:target:lun. It fails if the vhost
// exists.
func CreateVhost(store xen.Store, v Vhost, luns ...vscsispec.Spec) error {
	if len(luns) == 0 {
		return errors.New("toolstack: a vhost needs a LUN")
	}
	first := luns[0]
	for i, l := range luns[1:] {
		if l.VDev.Host != first.VDev.Host {
			return fmt.Errorf("toolstack: v-dev %s is not on host %d, as %s is: the host number picks the vhost", l.VDev, first.VDev.Host, first.VDev)
		}
		if l.FeatureHost != first.FeatureHost {
			return fmt.Errorf("toolstack: %s: feature-host is the vhost's, and %s says otherwise", l, first)
		}
		for _, o := range luns[:i+1] {
			if sameAddr(o.VDev, l.VDev) {
				return fmt.Errorf("toolstack: v-dev %s and %s share channel:target:lun", o.VDev, l.VDev)
			}
		}
	}
	be, fe := v.BackendPath(), v.FrontendPath()
	backend := []vbd.Node{
		{Key: vbd.KeyFrontend, Value: fe},
		{Key: vbd.KeyFrontendID, Value: strconv.Itoa(int(v.FrontendDom))},
		{Key: vbd.KeyOnline, Value: "1"},
		{Key: vbd.KeyState, Value: xenbus.Initialising.Value()},
		{Key: vscsiif.KeyFeatureHost, Value: boolNode(first.FeatureHost)},
		{Key: vscsiif.KeyLibxlCtrlIndex, Value: strconv.FormatUint(uint64(first.VDev.Host), 10)},
	}
	frontend := []vbd.Node{
		{Key: vbd.KeyBackend, Value: be},
		{Key: vbd.KeyBackendID, Value: strconv.Itoa(int(v.BackendDom))},
		{Key: vbd.KeyState, Value: xenbus.Initialising.Value()},
	}
	bePerms, fePerms := devicePerms(v.BackendDom, v.FrontendDom)
	return createDevice(store, newDevice{
		be: be, fe: fe, backend: backend, frontend: frontend,
		bePerms: bePerms, fePerms: fePerms,
		taken: fmt.Sprintf("guest %d already has a vhost %d (%s)", v.FrontendDom, v.DevID, fe),
		more: func(tx xen.Tx) error {
			for i, l := range luns {
				if err := writeDir(tx, v.devPath(i), lunNodes(l), bePerms); err != nil {
					return err
				}
			}
			return nil
		},
	})
}

func sameAddr(a, b vscsibus.VDev) bool {
	return a.Channel == b.Channel && a.Target == b.Target && a.LUN == b.LUN
}

// LUN is one vscsi-devs/dev-N of a vhost's backend directory, as read.
type LUN struct {
	Index int
	// The raw nodes ("" when absent).
	PDev, VDev, State string
}

// Addr is the LUN's v-dev, parsed; ok is false for a garbled one.
func (l LUN) Addr() (vscsibus.VDev, bool) {
	a, err := vscsibus.ParseVDev(l.VDev)
	return a, err == nil
}

// VhostInfo is a vhost as its backend directory stands.
type VhostInfo struct {
	Vhost
	// Host is libxl_ctrl_index, the host number of the vhost's v-devs;
	// HasHost is false when the node is absent or garbled.
	Host        uint32
	HasHost     bool
	FeatureHost string
	State       string
	LUNs        []LUN // by index
}

// reader is what xen.Store and xen.Tx share for reading.
type reader interface {
	Read(path string) (string, error)
	Directory(path string) ([]string, error)
}

// readLUNs reads the LUN directories of a vhost's backend directory be,
// by index; a directory whose name is not dev-N is skipped.
func readLUNs(r reader, be string) ([]LUN, error) {
	names, err := r.Directory(be + "/" + vscsiif.KeyDevs)
	if errors.Is(err, xen.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []LUN
	for _, name := range names {
		n, err := vscsibus.ParseDevName(name)
		if err != nil {
			continue
		}
		dir := be + "/" + vscsiif.DevPath(n) + "/"
		l := LUN{Index: n}
		l.PDev, _ = r.Read(dir + vscsiif.KeyPDev)
		l.VDev, _ = r.Read(dir + vscsiif.KeyVDev)
		l.State, _ = r.Read(dir + vscsiif.KeyDevState)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

func readVhost(r reader, v Vhost) (VhostInfo, error) {
	be := v.BackendPath()
	info := VhostInfo{Vhost: v}
	state, err := r.Read(be + "/" + vbd.KeyState)
	if err != nil {
		return info, err
	}
	info.State = strings.TrimSpace(state)
	info.FeatureHost, _ = r.Read(be + "/" + vscsiif.KeyFeatureHost)
	if s, err := r.Read(be + "/" + vscsiif.KeyLibxlCtrlIndex); err == nil {
		if h, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32); err == nil {
			info.Host, info.HasHost = uint32(h), true
		}
	}
	info.LUNs, err = readLUNs(r, be)
	return info, err
}

// Vhosts lists a guest's vhosts served from backendDom, by device id.
func Vhosts(store xen.Store, backendDom, frontendDom xen.DomID) ([]VhostInfo, error) {
	root := fmt.Sprintf("/local/domain/%d/backend/%s/%d", backendDom, VscsiType, frontendDom)
	ids, err := numbered(store, root, 32)
	if err != nil {
		return nil, err
	}
	var out []VhostInfo
	for _, n := range ids {
		info, err := readVhost(store, Vhost{BackendDom: backendDom, FrontendDom: frontendDom, DevID: uint32(n)})
		if errors.Is(err, xen.ErrNotFound) {
			continue // removed meanwhile, or not a vhost
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DevID < out[j].DevID })
	return out, nil
}

// vhostBusy: a reconfiguration is under way (or a state only a
// frontend writes); libxl's answer is to try again later.
func vhostBusy(s xenbus.State) bool {
	return s == xenbus.Initialised || s == xenbus.Reconfiguring || s == xenbus.Reconfigured
}

// waitNotBusy waits until the vhost's state is not vhostBusy.
func waitNotBusy(ctx context.Context, store xen.Store, be string) error {
	_, err := xenbus.WaitNode(ctx, store, be+"/"+vbd.KeyState, func(v string, err error) bool {
		return err != nil || !vhostBusy(xenbus.ParseState(strings.TrimSpace(v)))
	})
	if err != nil {
		return fmt.Errorf("toolstack: vhost %s stays reconfiguring: %w", be, err)
	}
	return nil
}

// ErrNotReconfigured: the backend did not answer a LUN's addition or
// removal before the context ended (no backend runs, or it hangs).
var ErrNotReconfigured = errors.New("the backend did not reconfigure the vhost in time")

// AddLUN adds a LUN to an existing vhost as libxl's reconfigure_add
// does, and returns its index: a new dev-N (one past the highest there)
// at state 1, and, if the vhost is Connected, the vhost's state 7 in
// the same transaction; then it waits (up to ctx) for the backend to
// return to Connected and reports the LUN's outcome. A LUN the backend
// could not attach (its state 6) is removed again and is an error. On a
// vhost not yet connected (Initialising, InitWait) the LUN is only
// written: the backend reads it when the frontend comes. A vhost in the
// middle of a reconfiguration is waited for first.
//
// The spec's v-dev must be on the vhost's host (libxl_ctrl_index), at a
// channel:target:lun none of its LUNs has, and feature-host is the
// vhost's: a spec asking for it on a vhost without it is refused.
func AddLUN(ctx context.Context, store xen.Store, v Vhost, spec vscsispec.Spec) (int, error) {
	be := v.BackendPath()
	bePerms, _ := devicePerms(v.BackendDom, v.FrontendDom)
	for {
		var n int
		var busy, reconfigure bool
		err := store.Transaction(func(tx xen.Tx) error {
			busy, reconfigure = false, false
			info, err := readVhost(tx, v)
			if errors.Is(err, xen.ErrNotFound) {
				return fmt.Errorf("toolstack: no vhost %s: %w", be, err)
			}
			if err != nil {
				return err
			}
			switch s := xenbus.ParseState(info.State); {
			case s == xenbus.Initialising, s == xenbus.InitWait:
			case s == xenbus.Connected:
				reconfigure = true
			case vhostBusy(s):
				busy = true
				return nil
			default:
				return fmt.Errorf("toolstack: vhost %s is %s: it is going away", be, s)
			}
			if err := fits(info, spec); err != nil {
				return err
			}
			n = 0
			if k := len(info.LUNs); k > 0 {
				n = info.LUNs[k-1].Index + 1
			}
			if n > vscsibus.MaxDevIndex || len(info.LUNs) >= vscsibus.MaxLUNs {
				return fmt.Errorf("toolstack: vhost %s has no room for another LUN", be)
			}
			if err := writeDir(tx, v.devPath(n), lunNodes(spec), bePerms); err != nil {
				return err
			}
			if reconfigure {
				return tx.Write(be+"/"+vbd.KeyState, xenbus.Reconfiguring.Value())
			}
			return nil
		})
		switch {
		case err != nil:
			return -1, err
		case busy:
			if err := waitNotBusy(ctx, store, be); err != nil {
				return -1, err
			}
			continue
		case !reconfigure:
			return n, nil
		}
		return n, awaitAdded(ctx, store, v, n)
	}
}

// fits checks a new LUN against its vhost.
func fits(info VhostInfo, spec vscsispec.Spec) error {
	be := info.BackendPath()
	if info.HasHost && info.Host != spec.VDev.Host {
		return fmt.Errorf("toolstack: v-dev %s is not on vhost %d's host %d", spec.VDev, info.DevID, info.Host)
	}
	if spec.FeatureHost && strings.TrimSpace(info.FeatureHost) != "1" {
		return fmt.Errorf("toolstack: feature-host is the vhost's, and vhost %d (%s) does not have it", info.DevID, be)
	}
	for _, l := range info.LUNs {
		if a, ok := l.Addr(); ok && sameAddr(a, spec.VDev) {
			return fmt.Errorf("toolstack: vhost %d already has a LUN at %s (%s, dev-%d); detach it first", info.DevID, l.VDev, l.PDev, l.Index)
		}
	}
	return nil
}

// awaitAdded waits for the backend to answer a Reconfiguring that added
// LUN n, and reports the LUN's outcome.
func awaitAdded(ctx context.Context, store xen.Store, v Vhost, n int) error {
	be, dev := v.BackendPath(), v.devPath(n)
	state, err := xenbus.WaitNode(ctx, store, be+"/"+vbd.KeyState, func(s string, err error) bool {
		return err != nil || !vhostBusy(xenbus.ParseState(strings.TrimSpace(s)))
	})
	if err != nil {
		return fmt.Errorf("toolstack: %s is written at state 1, and: %w", dev, errors.Join(ErrNotReconfigured, err))
	}
	if s := xenbus.ParseState(strings.TrimSpace(state)); s != xenbus.Connected {
		return fmt.Errorf("toolstack: vhost %s went %s while adding %s", be, s, dev)
	}
	lun, err := store.Read(dev + "/" + vscsiif.KeyDevState)
	switch strings.TrimSpace(lun) {
	case strconv.Itoa(vscsiif.LUNStateConnected):
		return nil
	case strconv.Itoa(vscsiif.LUNStateRemoved):
		_ = removeIfState(store, dev, vscsiif.LUNStateRemoved)
		return fmt.Errorf("toolstack: the backend could not attach %s (its log says why); it is removed", dev)
	}
	if err != nil {
		return fmt.Errorf("toolstack: %s: %w", dev, err)
	}
	return fmt.Errorf("toolstack: vhost %s is Connected again with %s at state %q", be, dev, lun)
}

// removeIfState removes a LUN's directory if its state still reads want.
func removeIfState(store xen.Store, dev string, want int) error {
	return store.Transaction(func(tx xen.Tx) error {
		s, err := tx.Read(dev + "/" + vscsiif.KeyDevState)
		if err != nil || strings.TrimSpace(s) != strconv.Itoa(want) {
			return err
		}
		return tx.Remove(dev)
	})
}

// RemoveLUN removes LUN n from a vhost as libxl's reconfigure_rm does.
// On a Connected vhost: the LUN's state 5 and the vhost's 7 in one
// transaction, then wait (up to ctx) for the backend to answer the LUN
// with 6, then delete dev-N. A vhost no backend is serving a frontend
// on (Initialising, InitWait) or that is closing holds no LUN open, and
// a LUN already at 6 is detached: dev-N is deleted at once. A vhost in
// the middle of a reconfiguration is waited for first. With force,
// dev-N is deleted even if the backend does not answer (or never ends
// a reconfiguration); without it, that is an error (ErrNotReconfigured
// for the LUN's answer).
func RemoveLUN(ctx context.Context, store xen.Store, v Vhost, n int, force bool) error {
	be, dev := v.BackendPath(), v.devPath(n)
	for {
		var busy, wait bool
		err := store.Transaction(func(tx xen.Tx) error {
			busy, wait = false, false
			state, err := tx.Read(be + "/" + vbd.KeyState)
			if errors.Is(err, xen.ErrNotFound) {
				return fmt.Errorf("toolstack: no vhost %s: %w", be, err)
			}
			if err != nil {
				return err
			}
			lun, err := tx.Read(dev + "/" + vscsiif.KeyDevState)
			if errors.Is(err, xen.ErrNotFound) {
				return fmt.Errorf("toolstack: vhost %s has no LUN dev-%d: %w", be, n, xen.ErrNotFound)
			}
			if err != nil {
				return err
			}
			switch s := xenbus.ParseState(strings.TrimSpace(state)); {
			case s == xenbus.Connected && strings.TrimSpace(lun) != strconv.Itoa(vscsiif.LUNStateRemoved):
				wait = true
				if err := tx.Write(dev+"/"+vscsiif.KeyDevState, strconv.Itoa(vscsiif.LUNStateRemove)); err != nil {
					return err
				}
				return tx.Write(be+"/"+vbd.KeyState, xenbus.Reconfiguring.Value())
			case s == xenbus.Connected, s == xenbus.Initialising, s == xenbus.InitWait,
				s == xenbus.Closing, s == xenbus.Closed:
				return tx.Remove(dev)
			case vhostBusy(s):
				busy = true
				return nil
			default:
				return fmt.Errorf("toolstack: vhost %s is in state %q; not touching its LUNs", be, state)
			}
		})
		switch {
		case err != nil:
			return err
		case busy:
			if err := waitNotBusy(ctx, store, be); err != nil {
				if force {
					_ = store.Remove(dev)
					return nil
				}
				return err
			}
			continue
		case !wait:
			return nil
		}
		removedOrGone := func(s string, err error) bool {
			return errors.Is(err, xen.ErrNotFound) || xenbus.OneOf(strconv.Itoa(vscsiif.LUNStateRemoved))(s, err)
		}
		if _, err := xenbus.WaitNode(ctx, store, dev+"/"+vscsiif.KeyDevState, removedOrGone); err != nil {
			if !force {
				return fmt.Errorf("toolstack: %s is at state 5, and: %w", dev, errors.Join(ErrNotReconfigured, err))
			}
			_ = store.Remove(dev)
			return nil
		}
		return removeIfState(store, dev, vscsiif.LUNStateRemoved)
	}
}

// RemoveVhost removes a whole vhost as Remove does a vbd (online=0,
// Closing, wait for Closed, remove both directories; force removes them
// even if the backend does not close).
func RemoveVhost(ctx context.Context, store xen.Store, v Vhost, force bool) error {
	return removeDevice(ctx, store, v.BackendPath(), v.FrontendPath(), force)
}

// Placed says where AttachVscsi put a LUN.
type Placed struct {
	Vhost    Vhost
	Index    int  // its dev-N
	NewVhost bool // the vhost was created for it
}

// AttachVscsi gives a guest a LUN as xl's vscsi-attach does: the v-dev's
// host number picks the vhost (the guest's vhost of that
// libxl_ctrl_index), which gets the LUN (AddLUN); with no such vhost, a
// new one is created (CreateVhost), numbered one past the guest's
// highest vscsi device.
func AttachVscsi(ctx context.Context, store xen.Store, backendDom, frontendDom xen.DomID, spec vscsispec.Spec) (Placed, error) {
	hosts, err := Vhosts(store, backendDom, frontendDom)
	if err != nil {
		return Placed{}, err
	}
	for _, h := range hosts {
		if h.HasHost && h.Host == spec.VDev.Host {
			n, err := AddLUN(ctx, store, h.Vhost, spec)
			return Placed{Vhost: h.Vhost, Index: n}, err
		}
	}
	id, err := nextVscsiID(store, frontendDom)
	if err != nil {
		return Placed{}, err
	}
	v := Vhost{BackendDom: backendDom, FrontendDom: frontendDom, DevID: id}
	return Placed{Vhost: v, NewVhost: true}, CreateVhost(store, v, spec)
}

// nextVscsiID is one past the highest vscsi device id of the guest's
// frontend directory, 0 for its first, as libxl numbers devices.
func nextVscsiID(store xen.Store, frontendDom xen.DomID) (uint32, error) {
	ids, err := numbered(store, fmt.Sprintf("/local/domain/%d/device/%s", frontendDom, VscsiType), 32)
	if err != nil {
		return 0, err
	}
	next := uint64(0)
	for _, n := range ids {
		next = max(next, n+1)
	}
	if next > 1<<32-1 {
		return 0, errors.New("toolstack: no vscsi device id left")
	}
	return uint32(next), nil
}

// ErrNoLUN: no vhost of the guest has a LUN at the v-dev asked for.
var ErrNoLUN = errors.New("no such vscsi LUN")

// Detached says what DetachVscsi removed.
type Detached struct {
	Vhost        Vhost
	Index        int
	VhostRemoved bool // it was the vhost's last LUN: the vhost went too
}

// DetachVscsi removes a guest's LUN by its v-dev as xl's vscsi-detach
// does: the LUN alone (RemoveLUN) or, when it is its vhost's last, the
// whole vhost (RemoveVhost).
func DetachVscsi(ctx context.Context, store xen.Store, backendDom, frontendDom xen.DomID, vdev vscsibus.VDev, force bool) (Detached, error) {
	hosts, err := Vhosts(store, backendDom, frontendDom)
	if err != nil {
		return Detached{}, err
	}
	for _, h := range hosts {
		for _, l := range h.LUNs {
			if a, ok := l.Addr(); !ok || a != vdev {
				continue
			}
			d := Detached{Vhost: h.Vhost, Index: l.Index, VhostRemoved: len(h.LUNs) == 1}
			if d.VhostRemoved {
				return d, RemoveVhost(ctx, store, h.Vhost, force)
			}
			return d, RemoveLUN(ctx, store, h.Vhost, l.Index, force)
		}
	}
	return Detached{}, fmt.Errorf("toolstack: domain %d has no LUN at v-dev %s served from domain %d: %w", frontendDom, vdev, backendDom, ErrNoLUN)
}
