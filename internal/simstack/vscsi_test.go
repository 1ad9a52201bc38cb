package simstack_test

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsispec"
)

// TestOneDiskOverBlkifAndVscsi: the PVSCSI variant beside blkif on one
// disk, as xenblk sim --vscsi runs it: what a guest writes over blkif
// reads back over the vhost's LUN, and a key registered over blkif's
// reservation operation is among the LUN's PERSISTENT RESERVE IN keys
// (one registry, one unit).
func TestOneDiskOverBlkifAndVscsi(t *testing.T) {
	const path = "/srv/shared.img"
	dev := storage.NewMemory(4 << 20)
	reg := scsiengine.New(scsiengine.Config{Reservations: pr.NewMemoryStore(), Log: quiet})
	s := simstack.ForTest(t, nil, simstack.Options{})
	s.Serve(blkback.Config{Log: quiet, SCSI: blkback.VBDEngines(s.Host.Store(), reg, quiet)}, simstack.Serving(dev))
	s.ServeVscsi(&vscsiback.Server{Engines: reg, OpenDisk: simstack.ServingDisk(path, dev), Log: quiet})
	ctx := context.Background()
	g, err := s.AttachGuest(ctx, "guest", "format=raw, vdev=xvda, access=rw, target="+path, blkfront.Config{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := vscsispec.Parse(path + ", 0:0:0:0")
	if err != nil {
		t.Fatal(err)
	}
	vg, err := s.AttachVhost(ctx, g.Domain, vscsifront.Config{Log: quiet}, spec)
	if err != nil {
		t.Fatal(err)
	}
	writeRead(t, g.Disk, 8192)
	lun, err := vg.LUNs[0].Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := lun.ReadAt(got, 8192); err != nil || got[0] != 0xa5 || got[4095] != 0xa5 {
		t.Fatalf("the LUN reads %#x..%#x (%v), want what blkif wrote", got[0], got[4095], err)
	}
	if err := g.Disk.PRRegister(ctx, 0, 0x1234, false, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	res, err := vg.LUNs[0].ExecSCSI(ctx, []byte{scsi.OpPersistentReserveIn, 0, 0, 0, 0, 0, 0, 0, 64, 0}, scsi.DirFromDevice, buf)
	if err != nil || res.Status != scsi.StatusGood {
		t.Fatalf("PERSISTENT RESERVE IN: %+v %v", res, err)
	}
	if n := binary.BigEndian.Uint32(buf[4:]); n != 8 || binary.BigEndian.Uint64(buf[8:]) != 0x1234 {
		t.Fatalf("the LUN's keys: %d bytes, first %#x; want blkif's 0x1234", n, binary.BigEndian.Uint64(buf[8:]))
	}
}
