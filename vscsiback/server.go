package vscsiback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// BackendType is vscsiif.h's backend type directory, the one libxl's
// vscsi series writes vhosts under and Linux's scsifront expects.
const BackendType = "vscsi"

// MaxSGGrant is the most data segments of an SG_GRANT request a vhost
// serves: what a Server offers (feature-sg-grant) unless told less.
const MaxSGGrant = maxSGGrant

// Server is the PVSCSI backend daemon: it watches its domain's
// backend/vscsi directory and serves every vhost that appears there, each
// driven by its own vscsibus.Runner on its own goroutine, each failing
// alone: a vhost whose ring or LUN fails, or that blocks in an open,
// holds up no other vhost.
type Server struct {
	// Domain is the backend's own domain.
	Domain xen.Domain
	// Engines makes every LUN's SCSI engine. Give it the registry the
	// blkif backend uses, so that a disk served over both has one
	// identity and one set of reservations.
	Engines *scsiengine.Registry
	// OpenNBD opens a p-dev that is an NBD URL; nil refuses them.
	OpenNBD func(url string) (storage.Device, error)
	// OpenDisk, if not nil, opens a p-dev that is a path (an image or a
	// block device) instead of d.Open: a process that holds the disk
	// open already (xenblk sim) hands out what it holds. The device it
	// returns is closed when the LUN goes.
	OpenDisk func(d vbd.Disk) (storage.Device, error)
	// SGGrant is the feature-sg-grant offered: 0 means MaxSGGrant,
	// negative none (requests then carry at most vscsiif.SGTableSize
	// segments).
	SGGrant int
	// Poll bounds each ring's adaptive busy-poll (Config.Poll).
	Poll time.Duration
	// Sysfs is where host SCSI devices named by p-dev are looked up; ""
	// is /sys.
	Sysfs string
	// Grace bounds how long a vhost keeps its handshake going at
	// shutdown (vscsibus.Runner.Grace).
	Grace time.Duration
	Log   *slog.Logger

	vhosts  xenbus.DeviceTable[vhostDriver]
	crashed xenbus.Crash
}

func (s *Server) sgGrant() int {
	switch {
	case s.SGGrant == 0:
		return MaxSGGrant
	case s.SGGrant < 0:
		return 0
	}
	return min(s.SGGrant, MaxSGGrant)
}

// Serve runs until ctx is cancelled; each vhost then closes with its
// frontend (within Grace) and Serve returns once all have.
//
// xenbus.Devices watches backend/vscsi and says which vhost directories
// to look at (consider). A vhost being served is its runner's: the
// server only starts vhosts (once the toolstack has written state and
// online=1) and forgets those that ended.
func (s *Server) Serve(ctx context.Context) error {
	if s.Domain == nil || s.Engines == nil {
		return errors.New("vscsiback: a Server needs a Domain and an Engines registry")
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	st := s.Domain.Store()
	s.vhosts.Reset()
	crashed := s.crashed.Chan()
	devs := &xenbus.Devices{
		Store: st, Name: "vscsiback", Stop: crashed,
		Root:   fmt.Sprintf("/local/domain/%d/backend/%s", s.Domain.ID(), BackendType),
		Failed: s.vhosts.Failed, Log: s.Log,
		Start: func(dir string) (func(), bool) {
			d := s.consider(st, dir)
			if d == nil {
				return nil, false
			}
			return func() {
				d.run(ctx, crashed)
				s.vhosts.Remove(dir)
			}, false
		},
	}
	return devs.Serve(ctx)
}

// consider returns a vhost to run for dir, or nil
// (xenbus.DeviceTable.Consider).
func (s *Server) consider(st xen.Store, dir string) *vhostDriver {
	d, _ := s.vhosts.Consider(st, dir, nil, func() (*vhostDriver, error) {
		d, err := s.newVhost(st, dir)
		if err != nil {
			s.Log.Error("bad vhost; it stays unconnected", "vhost", dir, "err", err)
		}
		return d, err
	})
	return d
}

// newVhost reads who the vhost's frontend is.
func (s *Server) newVhost(st xen.Store, dir string) (*vhostDriver, error) {
	front, err := st.Read(dir + "/" + vbd.KeyFrontend)
	if err != nil {
		return nil, fmt.Errorf("no %s node: %w", vbd.KeyFrontend, err)
	}
	idText, err := st.Read(dir + "/" + vbd.KeyFrontendID)
	if err != nil {
		return nil, fmt.Errorf("no %s node: %w", vbd.KeyFrontendID, err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(idText), 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a domain id", vbd.KeyFrontendID, idText)
	}
	return &vhostDriver{s: s, dir: dir, frontDir: strings.TrimSpace(front), front: xen.DomID(id),
		log: s.Log.With("vhost", dir), luns: map[int]*openLUN{}}, nil
}

// crash stops every vhost as a killed backend process would: nothing
// is written to the store, rings are unmapped, event channels unbound
// and every LUN's disk closed (its lock released); Serve returns. It is
// a fault-injection hook (internal/faultinject.CrashVscsiBackend).
func (s *Server) crash() {
	s.crashed.Do(nil)
}

// Vhosts returns the backend directories of the vhosts being served.
func (s *Server) Vhosts() []string { return s.vhosts.Dirs() }
