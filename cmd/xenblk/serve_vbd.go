package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// openVBD opens the disk a vbd's backend directory names, as libxl wrote
// it (params, mode), shaped by xenblk's own keys, and locked against its
// other users: shared with other shared vbds when the spec said shared=1
// (or xl's access=w!), else alone (read-write) or among readers. A spec whose format is
// not raw is refused; a raw one whose file begins with qcow's magic is
// served as the spec says, with a warning (attach refuses it when it can
// see the file; by the time serve opens it the bytes may be the guest's
// own, and a guest must not be able to take its disk away by writing
// them).
func openVBD(st xen.Store, dir string, log *slog.Logger) (storage.Device, error) {
	params, err := st.Read(dir + "/params")
	if err != nil {
		return nil, fmt.Errorf("%s has no params node: %w", dir, err)
	}
	mode, _ := st.Read(dir + "/mode")
	readOnly := strings.HasPrefix(mode, "r")
	if specText, err := st.Read(dir + "/spec"); err == nil {
		if spec, err := diskspec.Parse(specText); err == nil {
			if err := spec.Servable(); err != nil {
				return nil, fmt.Errorf("disk %s: %w", params, err)
			}
		}
	}
	opts, err := readVBDOptions(st, dir)
	if err != nil {
		return nil, err
	}
	if err := qcowImage(params); err != nil {
		log.Warn("serving as raw, as the spec says", "vbd", dir, "warning", err)
	}
	o := imageOptionsOf(opts)
	// libxl's mode "w!" (xl's access=w!) is a disk shared writable on purpose.
	o.shared = o.shared || mode == "w!"
	dev, _, err := openImageWith(params, 0, readOnly, o)
	if errors.Is(err, storage.ErrInUse) {
		return nil, fmt.Errorf("%w; a disk that guests share on purpose takes shared=1 in the disk spec of every vbd given it", err)
	}
	return dev, err
}

// Backend nodes that report what a vbd's SCSI engine became (the keys
// that choose it are diskspec's: scsi, pr, scsi-policy; docs/PROTOCOL.md,
// "SG_IO pass-through").
const (
	nodeSCSIError  = "scsi-error"  // why pass-through was refused (the vbd then gets emulation)
	nodeSCSIEngine = "scsi-engine" // with scsi=passthrough, what the vbd got: emulate | passthrough
)

// passthroughOpener opens a backing path for SG_IO, refusing anything but
// a whole SCSI disk with an error wrapping sgio.ErrNotWholeDisk.
type passthroughOpener func(path string) (sgio.Target, error)

func openWholeSCSIDisk(path string) (sgio.Target, error) { return sgio.Open(path) }

// reservationEngines is serve's and sim's SCSI engine factory: scsiEngines
// with the real SG_IO opener.
func reservationEngines(st xen.Store, prDir string, log *slog.Logger) blkback.SCSIProvider {
	return scsiEngines(st, prDir, log, openWholeSCSIDisk)
}

// scsiEngines gives each vbd its own SCSI engine, but every vbd of one
// backing disk the same identity (serial, NAA) and the same
// persistent-reservation unit, so that two guests given the same disk —
// the two nodes of a cluster — see one logical unit and each other's
// registrations. Reservation state lives in prDir (APTPL, crash-safe).
//
// The engine is the emulation unless the vbd's scsi node asks for
// pass-through and openSG accepts the backing path as a whole SCSI disk;
// then commands go to the disk with SG_IO under the pass-through policy,
// with READ/WRITE ranges checked against its capacity and reservations
// emulated by the shared unit (pr=emulate, the default) or left to the
// disk (pr=passthrough). A refused pass-through (a partition, an LV, a
// file: CVE-2011-4127) is logged, written to the vbd's scsi-error node,
// and the vbd gets the emulation. Each backing disk is opened for SG_IO
// once while any vbd passes through to it; blkback closes a removed vbd's
// engine, and the last one closes the disk.
func scsiEngines(st xen.Store, prDir string, log *slog.Logger, openSG passthroughOpener) blkback.SCSIProvider {
	var mu sync.Mutex
	units := map[string]*pr.Unit{}
	disks := map[string]sgio.Target{} // open for SG_IO, by backing path
	users := map[string]int{}         // pass-through engines per open disk
	// release drops one engine's hold on a disk; the last one closes it.
	release := func(path string) func() {
		return func() {
			mu.Lock()
			defer mu.Unlock()
			if users[path]--; users[path] > 0 {
				return
			}
			if c, ok := disks[path].(io.Closer); ok {
				_ = c.Close()
			}
			delete(disks, path)
			delete(users, path)
		}
	}
	return func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
		params, err := st.Read(dir + "/params")
		lu := params
		if err != nil {
			lu = dir
		}
		opts, err := readVBDOptions(st, dir)
		if err != nil {
			return nil, err
		}
		if opts.SCSI == diskspec.SCSIOff {
			return nil, nil
		}
		mode, prMode, policyText := opts.SCSI, opts.PR, opts.SCSIPolicy
		mu.Lock()
		defer mu.Unlock()
		u, ok := units[lu]
		if !ok {
			if u, err = pr.Open(&pr.FileStore{Dir: prDir}, lu, log); err != nil {
				return nil, err
			}
			units[lu] = u
		}
		if mode == diskspec.SCSIPassthrough {
			disk, ok := disks[params]
			var openErr error
			switch {
			case ok:
			case params == "":
				openErr = fmt.Errorf("%w: the vbd has no params node", sgio.ErrNotWholeDisk)
			default:
				if disk, openErr = openSG(params); openErr == nil {
					disks[params] = disk
				}
			}
			if openErr == nil {
				policy, err := vbdPolicy(dir, policyText, scsi.PassthroughPolicy)
				if err != nil {
					return nil, err
				}
				cfg := sgio.Config{Policy: policy, Reservations: u, Log: log, Release: release(params)}
				if prMode == diskspec.SCSIPassthrough {
					cfg.Reservations = nil
				}
				p, err := sgio.New(disk, cfg)
				if err == nil {
					users[params]++
					st.Write(dir+"/"+nodeSCSIEngine, diskspec.SCSIPassthrough)
					st.Remove(dir + "/" + nodeSCSIError)
					return p, nil
				}
				openErr = err
			}
			log.Warn("scsi: pass-through refused; the vbd gets emulated SCSI", "vbd", dir, "path", params, "err", openErr)
			st.Write(dir+"/"+nodeSCSIError, "pass-through refused, emulating: "+openErr.Error())
		}
		policy, err := vbdPolicy(dir, policyText, scsi.EmulatedPolicy)
		if err != nil {
			return nil, err
		}
		if mode == diskspec.SCSIPassthrough {
			st.Write(dir+"/"+nodeSCSIEngine, diskspec.SCSIEmulate)
		}
		return emulate.New(dev, emulate.Config{Identity: lu, Reservations: u, Policy: policy, Log: log}), nil
	}
}

// vbdPolicy is the engine's default policy with the vbd's scsi-policy
// (checked by diskspec.ParseOptions) applied on top: inline text
// (default,+0x35,...) or, as @/absolute/path, a policy file on the
// backend's host (the same items, one or more per line, # comments; see
// xenblk scsi-policy --file). The node lives in the backend's area, which
// only the toolstack writes, so a guest cannot point it anywhere.
func vbdPolicy(dir, text string, base func() *scsi.Policy) (*scsi.Policy, error) {
	if text == "" {
		return base(), nil
	}
	if path, ok := strings.CutPrefix(text, "@"); ok {
		p, err := readPolicyFile(path, base())
		if err != nil {
			return nil, fmt.Errorf("%s: %s=%s: %w", dir, diskspec.KeySCSIPolicy, text, err)
		}
		return p, nil
	}
	p, err := scsi.ParsePolicy(text, base())
	if err != nil {
		return nil, fmt.Errorf("%s: %s=%s: %w", dir, diskspec.KeySCSIPolicy, text, err)
	}
	return p, nil
}

// readPolicyFile reads a scsi-policy=@path file over base; attach (when
// the backend is on its host) and serve both read it so.
func readPolicyFile(path string, base *scsi.Policy) (*scsi.Policy, error) {
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
