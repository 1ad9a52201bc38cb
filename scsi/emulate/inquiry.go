package emulate

import (
	"encoding/binary"

	"github.com/xenblk/xenblk/scsi"
)

// VPD pages we serve, in ascending order (SPC-4 requires the order in page 00).
var vpdPages = [...]byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}

func padded(dst []byte, s string) {
	for i := range dst {
		if i < len(s) {
			dst[i] = s[i]
		} else {
			dst[i] = ' '
		}
	}
}

func (e *Engine) inquiry(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	alloc := int(be16(cdb[3:5]))
	if cdb[1]&0x02 != 0 { // CMDDT is obsolete
		e.failField(res, scsi.InvalidFieldInCDB, 1, 1)
		return
	}
	var buf [256]byte
	if cdb[1]&0x01 == 0 {
		if cdb[2] != 0 {
			e.failField(res, scsi.InvalidFieldInCDB, 2, -1)
			return
		}
		reply(cmd, res, alloc, e.standardInquiry(buf[:]))
		return
	}
	var n int
	g := e.geometry()
	switch cdb[2] {
	case 0x00:
		n = 4 + copy(buf[4:], vpdPages[:])
	case 0x80:
		n = 4 + copy(buf[4:], e.serial)
	case 0x83:
		n = e.deviceIdentification(buf[:])
	case 0xb0:
		n = e.blockLimits(buf[:], &g)
	case 0xb1:
		n = 64
		binary.BigEndian.PutUint16(buf[4:], g.info.RotationRate)
		// Byte 7 (nominal form factor) stays 0, "not reported": a virtual
		// disk has no physical size to claim.
	case 0xb2:
		n = 8
		if g.info.CanDiscard {
			buf[5] = 0x80 | 0x40 | 0x20 // LBPU, LBPWS, LBPWS10
			buf[6] = 0x02               // thin provisioned
		}
		if g.info.CanDiscard && g.info.DiscardZeroes {
			buf[5] |= 0x04 // LBPRZ
		}
	default:
		e.failField(res, scsi.InvalidFieldInCDB, 2, -1)
		return
	}
	buf[1] = cdb[2]
	binary.BigEndian.PutUint16(buf[2:], uint16(n-4))
	reply(cmd, res, alloc, buf[:n])
}

// standardInquiry builds the standard INQUIRY data into buf (zeroed).
func (e *Engine) standardInquiry(buf []byte) []byte {
	const n = 96
	b := buf[:n]
	if e.dev.Info().Removable {
		b[1] = 0x80 // RMB
	}
	b[2] = 0x06 // SPC-4
	b[3] = 0x12 // HISUP, response data format 2
	b[4] = n - 5
	b[7] = 0x02 // CMDQUE
	padded(b[8:16], Vendor)
	padded(b[16:32], e.product)
	padded(b[32:36], e.revision)
	// Version descriptors: SAM-5, SPC-4, SBC-3.
	binary.BigEndian.PutUint16(b[58:], 0x00a0)
	binary.BigEndian.PutUint16(b[60:], 0x0460)
	binary.BigEndian.PutUint16(b[62:], 0x04c0)
	return b
}

// deviceIdentification builds VPD page 0x83: an NAA 6 designator (Windows
// needs one to cluster) and a T10 vendor ID designator.
func (e *Engine) deviceIdentification(buf []byte) int {
	d := buf[4:]
	d[0] = 0x01 // binary
	d[1] = 0x03 // LUN association, NAA
	d[3] = 16
	copy(d[4:20], e.naa[:])
	d = d[20:]
	d[0] = 0x02 // ASCII
	d[1] = 0x01 // LUN association, T10 vendor ID
	padded(d[4:12], Vendor)
	l := copy(d[12:], e.serial)
	d[3] = byte(8 + l)
	return 4 + 20 + 4 + 8 + l
}

func (e *Engine) blockLimits(buf []byte, g *geometry) int {
	b := buf[:64]
	b[4] = 0x01 // WSNZ: WRITE SAME with 0 blocks is not "to the end"
	b[5] = maxCompareAndWriteBlocks
	phys := uint32(1)
	if g.info.PhysicalBlockSize > uint32(g.bs) {
		phys = g.info.PhysicalBlockSize / uint32(g.bs)
	}
	binary.BigEndian.PutUint16(b[6:], uint16(phys))
	binary.BigEndian.PutUint32(b[8:], e.maxXfer)
	binary.BigEndian.PutUint32(b[12:], e.maxXfer)
	if g.info.CanDiscard {
		binary.BigEndian.PutUint32(b[20:], maxUnmapBlocks)
		binary.BigEndian.PutUint32(b[24:], maxUnmapDescriptors)
		gran := uint32(1)
		if g.info.DiscardGranularity > uint32(g.bs) {
			gran = g.info.DiscardGranularity / uint32(g.bs)
		}
		binary.BigEndian.PutUint32(b[28:], gran)
		if g.info.DiscardAlignment != 0 {
			binary.BigEndian.PutUint32(b[32:], 0x80000000|(g.info.DiscardAlignment/uint32(g.bs))&0x7fffffff)
		}
	}
	binary.BigEndian.PutUint64(b[36:], maxWriteSameBlocks)
	return 64
}

func (e *Engine) reportLUNs(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	alloc := int(be32(cdb[6:10]))
	if alloc < 16 {
		e.failField(res, scsi.InvalidFieldInCDB, 6, -1)
		return
	}
	var buf [16]byte
	switch cdb[2] {
	case 0x00, 0x02: // all logical units: LUN 0 only
		binary.BigEndian.PutUint32(buf[0:], 8)
		reply(cmd, res, alloc, buf[:16])
	case 0x01: // well-known logical units: none
		reply(cmd, res, alloc, buf[:8])
	default:
		e.failField(res, scsi.InvalidFieldInCDB, 2, -1)
	}
}

func (e *Engine) readCapacity10(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	if cdb[8]&0x01 == 0 && be32(cdb[2:6]) != 0 {
		// An LBA without PMI is an error (SBC-3 5.16).
		e.failField(res, scsi.InvalidFieldInCDB, 2, -1)
		return
	}
	g := e.geometry()
	var buf [8]byte
	last := uint32(0xffffffff) // too big: use READ CAPACITY(16)
	if g.blocks == 0 {
		last = 0
	} else if g.blocks-1 < 0xffffffff {
		last = uint32(g.blocks - 1)
	}
	binary.BigEndian.PutUint32(buf[0:], last)
	binary.BigEndian.PutUint32(buf[4:], uint32(g.bs))
	reply(cmd, res, 8, buf[:])
}

func (e *Engine) readCapacity16(cmd *scsi.Command, res *scsi.Result) {
	g := e.geometry()
	var buf [32]byte
	if g.blocks > 0 {
		binary.BigEndian.PutUint64(buf[0:], g.blocks-1)
	}
	binary.BigEndian.PutUint32(buf[8:], uint32(g.bs))
	if p := g.info.PhysicalBlockSize; p > uint32(g.bs) {
		exp := byte(0)
		for uint32(g.bs)<<(exp+1) <= p && exp < 15 {
			exp++
		}
		buf[13] = exp
	}
	if g.info.CanDiscard {
		buf[14] = 0x80 // LBPME
		if g.info.DiscardZeroes {
			buf[14] |= 0x40 // LBPRZ
		}
	}
	reply(cmd, res, int(be32(cmd.CDB[10:14])), buf[:])
}

func (e *Engine) getLBAStatus(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	lba := be64(cdb[2:10])
	alloc := int(be32(cdb[10:14]))
	g := e.geometry()
	if lba >= g.blocks {
		e.failInfo(res, scsi.LBAOutOfRange, lba)
		return
	}
	// We keep no map of discarded extents: everything reads as mapped,
	// which SBC permits (a deallocated block may report mapped).
	var buf [24]byte
	binary.BigEndian.PutUint32(buf[0:], 20)
	binary.BigEndian.PutUint64(buf[8:], lba)
	extent := g.blocks - lba
	if extent > 0xffffffff {
		extent = 0xffffffff
	}
	binary.BigEndian.PutUint32(buf[16:], uint32(extent))
	buf[20] = 0x00 // mapped
	reply(cmd, res, alloc, buf[:])
}

func (e *Engine) requestSense(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result, g *geometry) {
	cdb := cmd.CDB
	desc := cdb[1]&0x01 != 0
	alloc := int(cdb[4])
	c, ok := e.unitAttention(n, g.info.Size)
	if !ok {
		c = scsi.NoSense
	}
	// The sense data travels as parameter data; the command itself is GOOD.
	var buf [scsi.MaxSense]byte
	l := scsi.Sense{Code: c}.Encode(buf[:], desc)
	reply(cmd, res, alloc, buf[:l])
}
