package blkback

import (
	"log/slog"

	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
)

// VBDEngines is the SCSIProvider of a backend whose vbds were written by
// a toolstack (vbd's schema): each vbd gets the engine reg makes for what
// its backend directory in st says (vbd.Engine), so vbds of one disk
// share its identity and reservations; what a vbd that asked for
// pass-through got is in its scsi-engine and scsi-error nodes.
func VBDEngines(st xen.Store, reg *scsiengine.Registry, log *slog.Logger) SCSIProvider {
	return func(dir string, dev storage.Device) (SCSIExecutor, error) {
		e, err := vbd.Engine(st, reg, dir, dev, log)
		if e == nil || err != nil {
			return nil, err
		}
		return e, nil
	}
}
