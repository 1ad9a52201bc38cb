package vscsiback

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
)

// openLUN is an attached LUN: its address, its engine and the disk the
// engine serves.
type openLUN struct {
	addr   vscsibus.VDev
	engine scsiengine.Engine
	dev    storage.Device
	nexus  scsi.Nexus // named by the LUN's initiator key; zero otherwise
}

// close closes the engine (a pass-through's hold on its disk) and the
// disk (releasing its lock).
func (u *openLUN) close() {
	if c, ok := u.engine.(io.Closer); ok {
		_ = c.Close()
	}
	_ = u.dev.Close()
}

// openLUN opens what LUN l of the vhost at vhostDir is served from, as
// docs/PROTOCOL.md (Part 4, "What the backend makes of p-dev") says:
//   - a path: an image file or block device, opened and locked as a
//     vbd's disk is (vbd.Disk: exclusive unless shared=1), its unit
//     identified by the path as a vbd's by its params, so a disk given
//     to guests over blkif and vscsi is one logical unit;
//   - an NBD URL: the export, through OpenNBD, identified by the URL;
//   - a host SCSI device (h:c:t:l or /dev/sgN): its disk's block device,
//     passed through with SG_IO under the engine's guards, whole disks
//     only; a refused pass-through refuses the LUN (no emulation stands
//     in for a device asked for by its SCSI address).
//
// xenblk's own keys in the LUN's directory shape it as they shape a vbd.
// The engine comes from the server's registry.
func (s *Server) openLUN(vhostDir string, l vscsibus.LUN) (*openLUN, error) {
	st := s.Domain.Store()
	dir := vhostDir + "/" + vscsiif.DevPath(l.Index)
	p, err := vscsispec.ParsePDev(l.PDev)
	if err != nil {
		return nil, err
	}
	o, err := vbd.ReadOptions(st, dir)
	if err != nil {
		return nil, err
	}
	if o.SCSI == diskspec.SCSIOff {
		return nil, fmt.Errorf("%s/%s=%s: a vscsi LUN is SCSI; off is for vbds", dir, diskspec.KeySCSI, o.SCSI)
	}
	u := scsiengine.Unit{Name: dir, ID: p.Name, Path: p.Name, Options: o}
	var dev storage.Device
	switch p.Kind {
	case vscsispec.PDevNBD:
		if s.OpenNBD == nil {
			return nil, fmt.Errorf("p-dev %s: this backend serves no NBD export", p.Name)
		}
		u.Path = "" // nothing to pass through to
		dev, err = s.OpenNBD(p.Name)
	case vscsispec.PDevSG, vscsispec.PDevHost:
		var disk string
		if disk, err = hostDisk(s.sysfs(), p); err != nil {
			return nil, err
		}
		u.ID, u.Path = disk, disk
		u.Options.SCSI = diskspec.SCSIPassthrough
		dev, err = vbd.Disk{Name: dir, Path: disk, Options: u.Options}.Open(s.Log)
	default:
		d := vbd.Disk{Name: dir, Path: p.Name, Options: o}
		if s.OpenDisk != nil {
			dev, err = s.OpenDisk(d)
		} else {
			dev, err = d.Open(s.Log)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("p-dev %s: %w", p.Name, err)
	}
	e, c, err := s.Engines.Open(u, dev)
	passthrough := p.Kind == vscsispec.PDevSG || p.Kind == vscsispec.PDevHost
	if err == nil && passthrough && c.Engine != diskspec.SCSIPassthrough {
		err = fmt.Errorf("p-dev %s (%s): pass-through refused: %w", p.Name, u.Path, c.Refused)
	}
	if err != nil {
		if cl, ok := e.(io.Closer); ok {
			_ = cl.Close()
		}
		_ = dev.Close()
		return nil, err
	}
	if !passthrough {
		vbd.ReportEngine(st, u, c, s.Log)
	}
	ol := &openLUN{addr: l.VDev, engine: e, dev: dev}
	if o.Initiator != "" {
		// The virtual device without colons, which end the initiator
		// in a TransportID (pr.ParseTransportName).
		v := l.VDev
		ol.nexus = scsi.Nexus{Initiator: o.Initiator, Device: fmt.Sprintf("lun-%d-%d-%d-%d", v.Host, v.Channel, v.Target, v.LUN)}
	}
	return ol, nil
}

func (s *Server) sysfs() string {
	if s.Sysfs == "" {
		return "/sys"
	}
	return s.Sysfs
}

// hostDisk finds the block device of the host SCSI device p names, by
// its address (class/scsi_device/h:c:t:l) or its SCSI generic node
// (class/scsi_generic/sgN) under sysfs. A device with no block device is
// not a disk, and pass-through serves whole disks only.
func hostDisk(sysfs string, p vscsispec.PDev) (string, error) {
	var dev string
	if p.Kind == vscsispec.PDevHost {
		dev = filepath.Join(sysfs, "class", "scsi_device", p.Host.String(), "device")
	} else {
		dev = filepath.Join(sysfs, "class", "scsi_generic", filepath.Base(p.Name), "device")
	}
	if _, err := os.Stat(dev); err != nil {
		return "", fmt.Errorf("p-dev %s: no such host SCSI device (%w)", p.Name, err)
	}
	blocks, err := os.ReadDir(filepath.Join(dev, "block"))
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(blocks) == 0 {
		return "", fmt.Errorf("p-dev %s: not a disk (it has no block device); pass-through serves whole disks only", p.Name)
	}
	if err != nil {
		return "", fmt.Errorf("p-dev %s: %w", p.Name, err)
	}
	if len(blocks) != 1 {
		return "", fmt.Errorf("p-dev %s: %d block devices under %s", p.Name, len(blocks), dev)
	}
	return "/dev/" + blocks[0].Name(), nil
}

// reportLUN writes why LUN index of the vhost at dir was refused into
// its error node, if its directory is still there (writing would bring
// back one the toolstack removed).
func reportLUN(st xen.Store, dir string, index int, reason string) {
	lun := dir + "/" + vscsiif.DevPath(index)
	_ = st.Transaction(func(tx xen.Tx) error {
		if _, err := tx.Read(lun); err != nil {
			return err
		}
		return tx.Write(lun+"/error", reason)
	})
}
