package vbd

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// ReadOptions reads and checks xenblk's own keys from a vbd's backend
// directory (attach wrote them from the disk spec) with the check attach
// made, so a node changed by hand gets the words attach would have said,
// after the directory's name.
func ReadOptions(st xen.Store, dir string) (diskspec.Options, error) {
	kv := map[string]string{}
	for _, key := range diskspec.OwnKeys {
		v, err := st.Read(dir + "/" + key)
		switch {
		case errors.Is(err, xen.ErrNotFound):
		case err != nil:
			return diskspec.Options{}, fmt.Errorf("%s/%s: %w", dir, key, err)
		default:
			kv[key] = v
		}
	}
	o, err := diskspec.ParseOptions(kv)
	if err != nil {
		return o, fmt.Errorf("%s: %w", dir, err)
	}
	return o, nil
}

// Nexus is the I_T nexus a vbd's SCSI commands and block I/O run as:
// named by its initiator node when the toolstack wrote one (the same
// name and virtual device on every host, so that the guest's
// registrations follow it from host to host), otherwise by its frontend
// domain front and its backend directory, which are this host's.
func Nexus(st xen.Store, dir string, front xen.DomID) (scsi.Nexus, error) {
	v, err := st.Read(dir + "/" + diskspec.KeyInitiator)
	switch {
	case errors.Is(err, xen.ErrNotFound):
		return scsi.Nexus{Dom: uint16(front), Device: dir}, nil
	case err != nil:
		return scsi.Nexus{}, fmt.Errorf("%s/%s: %w", dir, diskspec.KeyInitiator, err)
	}
	o, err := diskspec.ParseOptions(map[string]string{diskspec.KeyInitiator: v})
	if err != nil {
		return scsi.Nexus{}, fmt.Errorf("%s: %w", dir, err)
	}
	return scsi.Nexus{Initiator: o.Initiator, Device: path.Base(dir)}, nil
}

// GrantCopy reports whether a vbd's backend is to copy the guest's pages
// with grant copy instead of mapping them (its grant-copy node; absent:
// map).
func GrantCopy(st xen.Store, dir string) (bool, error) {
	v, err := st.Read(dir + "/" + diskspec.KeyGrantCopy)
	switch {
	case errors.Is(err, xen.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%s/%s: %w", dir, diskspec.KeyGrantCopy, err)
	}
	o, err := diskspec.ParseOptions(map[string]string{diskspec.KeyGrantCopy: v})
	if err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	return o.GrantCopy, nil
}

// Disk is a backing disk as its toolstack configured it.
type Disk struct {
	// Name is where it is configured (a vbd's backend directory): logs
	// name it.
	Name string
	Path string // the backing path: an image file or a block device
	// Format is raw (also when not given) or qcow2.
	Format   diskspec.Format
	ReadOnly bool
	// Options are xenblk's own keys, checked. Options.Shared lets several
	// users open the disk together (storage.LockShared); without it a
	// read-write disk has one user, a read-only one shares with readers.
	Options diskspec.Options
}

// ReadDisk reads what a vbd's backend directory says of its disk, as
// libxl wrote it (params, mode) and shaped by xenblk's own keys. Its
// format is the spec's (the format node's when there is no spec; raw
// when neither is there); a format other than raw or qcow2 is refused.
// libxl's mode "w!" (xl's access=w!) is a disk shared writable on
// purpose, as shared=1 is.
func ReadDisk(st xen.Store, dir string) (Disk, error) {
	params, err := st.Read(dir + "/" + KeyParams)
	if err != nil {
		return Disk{}, fmt.Errorf("%s has no params node: %w", dir, err)
	}
	mode, _ := st.Read(dir + "/" + KeyMode)
	format := diskspec.FormatRaw
	if f, err := st.Read(dir + "/" + KeyFormat); err == nil && f != "" {
		format = diskspec.Format(f)
	}
	if specText, err := st.Read(dir + "/" + KeySpec); err == nil {
		if spec, err := diskspec.Parse(specText); err == nil {
			format = spec.Format
		}
	}
	if err := (diskspec.Spec{Format: format}).Servable(); err != nil {
		return Disk{}, fmt.Errorf("disk %s: %w", params, err)
	}
	o, err := ReadOptions(st, dir)
	if err != nil {
		return Disk{}, err
	}
	o.Shared = o.Shared || mode == "w!"
	return Disk{Name: dir, Path: params, Format: format, ReadOnly: strings.HasPrefix(mode, "r"), Options: o}, nil
}

// Open opens the disk (OpenImage, as its format says), locked against
// its other users. Under format=raw, a file that begins with qcow's
// magic is served raw, as configured, with a warning: the toolstack refuses it when it can see the file (xenblk
// attach does), but by the time a backend opens it the bytes may be the
// guest's own, and a guest must not be able to take its disk away by
// writing them.
func (d Disk) Open(log *slog.Logger) (storage.Device, error) {
	if err := storage.QcowImage(d.Path); err != nil && d.Format != diskspec.FormatQcow2 {
		log.Warn("serving as raw, as the spec says", "vbd", d.Name, "warning", err)
	}
	o := d.Options
	io := storage.ImageOptions{ReadOnly: d.ReadOnly, Lock: storage.LockExclusive,
		SectorSize: o.SectorSize, PhysicalSectorSize: o.PhysicalSectorSize, Direct: o.Direct}
	if o.Shared {
		io.Lock = storage.LockShared
	}
	if o.RotationRate >= 0 {
		io.RotationRate, io.SetRotationRate = uint16(o.RotationRate), true
	}
	dev, _, err := OpenImage(d.Path, d.Format, io)
	err = specSaysQcow2(err)
	if errors.Is(err, storage.ErrInUse) {
		return nil, fmt.Errorf("%w; a disk that guests share on purpose takes shared=1 in the disk spec of every vbd given it", err)
	}
	return dev, err
}

// Open opens the disk a vbd's backend directory names (ReadDisk, then
// Disk.Open).
func Open(st xen.Store, dir string, log *slog.Logger) (storage.Device, error) {
	d, err := ReadDisk(st, dir)
	if err != nil {
		return nil, err
	}
	return d.Open(log)
}

// Opener is Open as a backend server's opener (blkback.Opener).
func Opener(log *slog.Logger) func(st xen.Store, dir string) (storage.Device, error) {
	return func(st xen.Store, dir string) (storage.Device, error) { return Open(st, dir, log) }
}

// ReadUnit reads the logical unit a vbd's SCSI engine is made for: its
// identity is the backing path (the directory when there is no params
// node), so vbds of one disk share it.
func ReadUnit(st xen.Store, dir string) (scsiengine.Unit, error) {
	params, err := st.Read(dir + "/" + KeyParams)
	id := params
	if err != nil {
		params, id = "", dir
	}
	o, err := ReadOptions(st, dir)
	if err != nil {
		return scsiengine.Unit{}, err
	}
	return scsiengine.Unit{Name: dir, ID: id, Path: params, Options: o}, nil
}

// ReportEngine writes what a vbd that asked for pass-through got into its
// scsi-engine node, and a refusal into its scsi-error node and the log;
// a pass-through clears an earlier refusal.
func ReportEngine(st xen.Store, u scsiengine.Unit, c scsiengine.Choice, log *slog.Logger) {
	dir := u.Name
	if c.Refused != nil {
		log.Warn("scsi: pass-through refused; the vbd gets emulated SCSI", "vbd", dir, "path", u.Path, "err", c.Refused)
		st.Write(dir+"/"+KeySCSIError, "pass-through refused, emulating: "+c.Refused.Error())
	}
	if c.Engine != "" {
		st.Write(dir+"/"+KeySCSIEngine, c.Engine)
	}
	if c.Engine == diskspec.SCSIPassthrough {
		st.Remove(dir + "/" + KeySCSIError)
	}
}

// Engine is the SCSI engine reg makes for the vbd whose backend directory
// is dir, served over dev (ReadUnit, Registry.Open, ReportEngine); nil
// for a vbd with scsi=off.
func Engine(st xen.Store, reg *scsiengine.Registry, dir string, dev storage.Device, log *slog.Logger) (scsiengine.Engine, error) {
	u, err := ReadUnit(st, dir)
	if err != nil {
		return nil, err
	}
	e, c, err := reg.Open(u, dev)
	ReportEngine(st, u, c, log)
	return e, err
}
