// Package scsiengine chooses the SCSI engine of each logical unit a
// backend serves, from what its toolstack configured (diskspec's scsi, pr
// and scsi-policy keys): the emulation over the unit's storage, or a
// guarded SG_IO pass-through to a whole SCSI disk; and it gives every unit
// of one backing disk the same identity, the same persistent-
// reservation unit and one count of logical unit resets. It knows no driver and no xenstore: blkback's vbds and
// a PVSCSI backend's LUNs describe their units as a Unit, and whoever
// reads the configuration reports the Choice where it belongs.
package scsiengine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/lease"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/storage"
)

// Engine runs one unit's SCSI commands: *emulate.Engine or
// *sgio.Passthrough. It is safe for concurrent use; a pass-through is an
// io.Closer, which its owner closes when the unit goes.
type Engine interface {
	Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result)
}

// Unit is one logical unit as its toolstack configured it.
type Unit struct {
	// Name is where the unit is configured (a vbd's backend directory):
	// errors name it.
	Name string
	// ID names the backing disk: units with one ID share the engine's
	// identity (serial number, NAA designator) and one reservation unit,
	// so two guests given one disk see one logical unit and each other's
	// registrations.
	ID string
	// Path is the backing path to pass through to; "" when there is none
	// (pass-through is then refused).
	Path    string
	Options diskspec.Options
}

// Choice is what a unit that asked for pass-through (scsi=passthrough)
// got; the zero Choice for any other.
type Choice struct {
	Engine  string // diskspec.SCSIPassthrough or diskspec.SCSIEmulate; "" when no engine was made
	Refused error  // why pass-through was refused (the unit then gets the emulation)
}

// Config is what every unit of one Registry shares.
type Config struct {
	// Reservations keeps every unit's reservation state (APTPL,
	// crash-safe): a *pr.FileStore, or a store shared across hosts (a
	// pr.SharedStore), whose units the registry keeps following: their
	// copies fed by the store's watch, their leases renewed.
	Reservations pr.Store
	// Lease is a shared store's units' lease (docs/PROTOCOL.md,
	// "Fencing across hosts"); the zero Config is lease.DefaultConfig.
	Lease lease.Config
	Log   *slog.Logger
	// OpenSG opens a backing path for SG_IO, refusing anything but a
	// whole SCSI disk with an error wrapping sgio.ErrNotWholeDisk
	// (CVE-2011-4127); nil is sgio.Open.
	OpenSG func(path string) (sgio.Target, error)
}

// Registry makes the units' engines. Its methods are safe for concurrent
// use.
type Registry struct {
	cfg    Config
	mu     sync.Mutex
	units  map[string]*pr.Unit     // by Unit.ID
	resets map[string]*scsi.Resets // by Unit.ID
	disks  map[string]sgio.Target  // open for SG_IO, by backing path
	users  map[string]int          // pass-through engines per open disk
	// follow ends the goroutines that keep a shared store's units
	// current (the watch, one lease renewal per unit); Close closes it.
	stop     chan struct{}
	watching bool
	wg       sync.WaitGroup
}

// New returns a Registry with no unit yet.
func New(cfg Config) *Registry {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OpenSG == nil {
		cfg.OpenSG = func(path string) (sgio.Target, error) { return sgio.Open(path) }
	}
	if cfg.Lease == (lease.Config{}) {
		cfg.Lease = lease.DefaultConfig
	}
	return &Registry{cfg: cfg, units: map[string]*pr.Unit{}, resets: map[string]*scsi.Resets{}, disks: map[string]sgio.Target{}, users: map[string]int{},
		stop: make(chan struct{})}
}

// Close stops following a shared store's units (their copies then go
// stale and fail closed); the engines made stay usable for PR commands.
// Close is idempotent.
func (r *Registry) Close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// openUnit opens the reservation unit id on the configured store; a
// shared store's unit is followed until Close. Called with r.mu held.
func (r *Registry) openUnit(id string) (*pr.Unit, error) {
	shared, ok := r.cfg.Reservations.(pr.SharedStore)
	if !ok {
		return pr.Open(r.cfg.Reservations, id, r.cfg.Log)
	}
	unit, err := pr.OpenShared(shared, id, r.cfg.Log, r.cfg.Lease)
	if err != nil {
		return nil, err
	}
	select {
	case <-r.stop:
		return unit, nil // closed: nothing follows it
	default:
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		unit.Follow(r.stop, r.cfg.Lease.Term)
	}()
	if !r.watching {
		r.watching = true
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.watch(shared)
		}()
	}
	return unit, nil
}

// watchRetry is how long the registry waits before watching again after
// the store refused a watch outright (the leases' renewals keep the
// copies correct meanwhile, only slower to hear of changes).
const watchRetry = time.Second

// watch feeds every change the shared store reports to the unit it
// names, until Close.
func (r *Registry) watch(store pr.SharedStore) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-r.stop
		cancel()
	}()
	for {
		err := store.Watch(ctx, 0, func(c pr.Change) {
			r.mu.Lock()
			unit := r.units[c.LU]
			r.mu.Unlock()
			if unit != nil {
				unit.Observe(c)
			}
		})
		if ctx.Err() != nil {
			return
		}
		r.cfg.Log.Warn("cannot watch the reservation store; retrying (leases are still renewed)", "err", err, "retry", watchRetry)
		select {
		case <-r.stop:
			return
		case <-time.After(watchRetry):
		}
	}
}

// Open returns u's engine over dev, or nil for a unit with scsi=off.
//
// The engine is the emulation unless u asks for pass-through and OpenSG
// accepts u.Path as a whole SCSI disk; then commands go to the disk with
// SG_IO under the pass-through policy, with READ/WRITE ranges checked
// against its capacity and reservations emulated by the shared unit
// (pr=emulate, the default) or left to the disk (pr=passthrough). A
// refused pass-through is the Choice's Refused, and u gets the emulation.
// Each backing disk is opened for SG_IO once while any unit passes
// through to it; closing a pass-through engine releases it, and the last
// one closes the disk.
//
// The Choice is filled as far as Open got, also when it fails.
func (r *Registry) Open(u Unit, dev storage.Device) (Engine, Choice, error) {
	var c Choice
	o := u.Options
	if o.SCSI == diskspec.SCSIOff {
		return nil, c, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	unit, ok := r.units[u.ID]
	if !ok {
		var err error
		if unit, err = r.openUnit(u.ID); err != nil {
			return nil, c, err
		}
		r.units[u.ID] = unit
		r.resets[u.ID] = new(scsi.Resets)
	}
	if o.SCSI == diskspec.SCSIPassthrough {
		disk, ok := r.disks[u.Path]
		var openErr error
		switch {
		case ok:
		case u.Path == "":
			openErr = fmt.Errorf("%w: the vbd has no params node", sgio.ErrNotWholeDisk)
		default:
			if disk, openErr = r.cfg.OpenSG(u.Path); openErr == nil {
				r.disks[u.Path] = disk
			}
		}
		if openErr == nil {
			policy, err := Policy(u.Name, o.SCSIPolicy, scsi.PassthroughPolicy)
			if err != nil {
				return nil, c, err
			}
			cfg := sgio.Config{Policy: policy, Reservations: unit, Log: r.cfg.Log, Release: r.release(u.Path)}
			if o.PR == diskspec.SCSIPassthrough {
				cfg.Reservations = nil
			}
			p, err := sgio.New(disk, cfg)
			if err == nil {
				r.users[u.Path]++
				c.Engine = diskspec.SCSIPassthrough
				return p, c, nil
			}
			openErr = err
		}
		c.Refused = openErr
	}
	policy, err := Policy(u.Name, o.SCSIPolicy, scsi.EmulatedPolicy)
	if err != nil {
		return nil, c, err
	}
	if o.SCSI == diskspec.SCSIPassthrough {
		c.Engine = diskspec.SCSIEmulate
	}
	return emulate.New(dev, emulate.Config{Identity: u.ID, Reservations: unit, Resets: r.resets[u.ID], Policy: policy, Log: r.cfg.Log}), c, nil
}

// Units returns the reservation unit of every backing disk opened so
// far, by Unit.ID (for metrics).
func (r *Registry) Units() map[string]*pr.Unit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.units)
}

// release drops one engine's hold on the disk at path; the last one
// closes it.
func (r *Registry) release(path string) func() {
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.users[path]--; r.users[path] > 0 {
			return
		}
		if c, ok := r.disks[path].(io.Closer); ok {
			_ = c.Close()
		}
		delete(r.disks, path)
		delete(r.users, path)
	}
}

// Policy is an engine's default policy (base) with a unit's scsi-policy
// (checked by diskspec.ParseOptions) applied on top: inline text
// (default,+0x35,...) or, as @/absolute/path, a policy file on the
// backend's host (the same items, one or more per line, # comments; see
// xenblk scsi-policy --file). Errors name the unit (name). The key lives
// in the configuration only the toolstack writes, so a guest cannot
// point it anywhere.
func Policy(name, text string, base func() *scsi.Policy) (*scsi.Policy, error) {
	if text == "" {
		return base(), nil
	}
	if path, ok := strings.CutPrefix(text, "@"); ok {
		p, err := PolicyFile(path, base())
		if err != nil {
			return nil, fmt.Errorf("%s: %s=%s: %w", name, diskspec.KeySCSIPolicy, text, err)
		}
		return p, nil
	}
	p, err := scsi.ParsePolicy(text, base())
	if err != nil {
		return nil, fmt.Errorf("%s: %s=%s: %w", name, diskspec.KeySCSIPolicy, text, err)
	}
	return p, nil
}

// PolicyFile reads a scsi-policy=@path file over base, as the backend
// reads it (attach reads it so too, when the backend is on its host).
func PolicyFile(path string, base *scsi.Policy) (*scsi.Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := scsi.ReadPolicyFile(f, base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
