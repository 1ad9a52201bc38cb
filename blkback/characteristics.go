package blkback

import (
	"encoding/base64"
	"strconv"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
)

// The reviewer's alternative to passing SCSI through (docs/PROTOCOL.md):
// device characteristics published in the backend's xenstore area, for
// frontends that only want to know what the disk is.
const (
	// KeyRotational is 1 for spinning media, 0 for solid state; absent
	// when unknown.
	KeyRotational = "rotational"
	// KeyRotationRate is SBC's medium rotation rate (1 = non-rotating).
	KeyRotationRate = "rotation-rate"
	// keySMData is XenServer's convention, read by Windows PV drivers:
	// base64 INQUIRY data under sm-data/scsi/0x12/{default,0x80,0x83}.
	keySMData = "sm-data/scsi/0x12/"
)

// characteristics returns the nodes describing the device.
func (d *VBD) characteristics(in storage.Info) [][2]string {
	var kv [][2]string
	switch {
	case in.RotationRate == 1:
		kv = append(kv, [2]string{KeyRotational, "0"})
	case in.RotationRate >= 0x401 && in.RotationRate < 0xffff:
		kv = append(kv, [2]string{KeyRotational, "1"})
	}
	if in.RotationRate != 0 {
		kv = append(kv, [2]string{KeyRotationRate, strconv.Itoa(int(in.RotationRate))})
	}
	if d.scsi == nil {
		return kv
	}
	// INQUIRY, VPD 0x80 and 0x83 from the device's own SCSI engine, so the
	// two views never disagree.
	nexus := scsi.Nexus{Dom: 0, Device: d.dir + "#xenstore"}
	for _, page := range []struct {
		name string
		cdb  []byte
	}{
		{"default", []byte{0x12, 0, 0, 0, 0xff, 0}},
		{"0x80", []byte{0x12, 1, 0x80, 0, 0xff, 0}},
		{"0x83", []byte{0x12, 1, 0x83, 0, 0xff, 0}},
	} {
		buf := make([]byte, 255)
		var res scsi.Result
		res.Reset(len(buf))
		d.scsi.Execute(nexus, &scsi.Command{CDB: page.cdb, Dir: scsi.DirFromDevice, Data: buf}, &res)
		if res.Status != scsi.StatusGood || res.Resid >= len(buf) {
			continue
		}
		kv = append(kv, [2]string{keySMData + page.name, base64.StdEncoding.EncodeToString(buf[:len(buf)-res.Resid])})
	}
	return kv
}
