package main

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// openVBD opens the disk a vbd's backend directory names, as libxl wrote
// it (params, mode).
func openVBD(st xen.Store, dir string) (storage.Device, error) {
	params, err := st.Read(dir + "/params")
	if err != nil {
		return nil, fmt.Errorf("%s has no params node: %w", dir, err)
	}
	mode, _ := st.Read(dir + "/mode")
	readOnly := strings.HasPrefix(mode, "r")
	if specText, err := st.Read(dir + "/spec"); err == nil {
		if spec, err := diskspec.Parse(specText); err == nil && spec.Format != diskspec.FormatRaw {
			return nil, fmt.Errorf("disk %s is %s; xenblk serves raw images only (convert with qemu-img convert -O raw)", params, spec.Format)
		}
	}
	dev, _, err := openImage(params, 0, readOnly)
	return dev, err
}

// reservationEngines gives each vbd its own SCSI engine, but every vbd of
// one backing disk the same identity (serial, NAA) and the same
// persistent-reservation unit, so that two guests given the same disk —
// the two nodes of a cluster — see one logical unit and each other's
// registrations. Reservation state lives in prDir (APTPL, crash-safe).
func reservationEngines(st xen.Store, prDir string, log *slog.Logger) blkback.SCSIProvider {
	var mu sync.Mutex
	units := map[string]*pr.Unit{}
	return func(dir string, dev storage.Device) (blkback.SCSIExecutor, error) {
		lu, err := st.Read(dir + "/params")
		if err != nil {
			lu = dir
		}
		mu.Lock()
		defer mu.Unlock()
		u, ok := units[lu]
		if !ok {
			if u, err = pr.Open(&pr.FileStore{Dir: prDir}, lu, log); err != nil {
				return nil, err
			}
			units[lu] = u
		}
		// A per-device policy from the disk spec (scsi-policy=default,+0x35,...)
		// on top of the emulation's default.
		policy := scsi.EmulatedPolicy()
		if text, err := st.Read(dir + "/scsi-policy"); err == nil && text != "" {
			if policy, err = scsi.ParsePolicy(text, scsi.EmulatedPolicy()); err != nil {
				return nil, fmt.Errorf("scsi-policy of %s: %w", dir, err)
			}
		}
		return emulate.New(dev, emulate.Config{Identity: lu, Reservations: u, Policy: policy, Log: log}), nil
	}
}
