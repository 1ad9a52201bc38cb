package emulate

import (
	"encoding/binary"

	"github.com/xenblk/xenblk/scsi"
)

// Mode pages we serve: caching (08) and control (0A). Each has a current
// value built from the device and the engine's state, a mask of the bits
// MODE SELECT may change, and a default.
const (
	pageCaching = 0x08
	pageControl = 0x0a
	pageAll     = 0x3f

	pcCurrent    = 0
	pcChangeable = 1
	pcDefault    = 2
	pcSaved      = 3
)

var modePages = [...]byte{pageCaching, pageControl}

// modePage writes page code under page control pc into b and returns its
// length, or 0 for a page we do not have.
func (e *Engine) modePage(b []byte, code byte, pc int, canFlush bool) int {
	switch code {
	case pageCaching:
		p := b[:20]
		clear(p)
		p[0], p[1] = pageCaching, 18
		switch pc {
		case pcCurrent:
			if canFlush && !e.wcd.Load() {
				p[2] = 0x04 // WCE
			}
		case pcChangeable:
			if canFlush {
				p[2] = 0x04
			}
		case pcDefault:
			if canFlush {
				p[2] = 0x04
			}
		}
		return 20
	case pageControl:
		p := b[:12]
		clear(p)
		p[0], p[1] = pageControl, 10
		switch pc {
		case pcCurrent:
			if e.dsense.Load() {
				p[2] = 0x04 // D_SENSE
			}
		case pcChangeable:
			p[2] = 0x04
			return 12
		}
		p[3] = 0x10                               // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
		binary.BigEndian.PutUint16(p[8:], 0xffff) // BUSY TIMEOUT PERIOD: unlimited
		return 12
	}
	return 0
}

func (e *Engine) modeSense(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	ten := cdb[0] == scsi.OpModeSense10
	dbd := cdb[1]&0x08 != 0
	llbaa := ten && cdb[1]&0x10 != 0
	pc := int(cdb[2] >> 6)
	code := cdb[2] & 0x3f
	sub := cdb[3]
	alloc := int(cdb[4])
	if ten {
		alloc = int(be16(cdb[7:9]))
	}
	if pc == pcSaved {
		e.fail(res, scsi.SavingParamsNotSupported)
		return
	}
	if sub != 0 && !(code == pageAll && sub == 0xff) {
		e.failField(res, scsi.InvalidFieldInCDB, 3, -1)
		return
	}
	g := e.geometry()
	var buf [128]byte
	hdr := 4
	if ten {
		hdr = 8
	}
	n := hdr
	if !dbd {
		if llbaa {
			binary.BigEndian.PutUint64(buf[n:], g.blocks)
			binary.BigEndian.PutUint32(buf[n+12:], uint32(g.bs))
			n += 16
		} else {
			blocks := g.blocks
			if blocks > 0xffffffff {
				blocks = 0xffffffff
			}
			binary.BigEndian.PutUint32(buf[n:], uint32(blocks))
			binary.BigEndian.PutUint32(buf[n+4:], uint32(g.bs)) // byte n+4 is density 0
			n += 8
		}
	}
	bdl := n - hdr
	if code == pageAll {
		for _, p := range modePages {
			n += e.modePage(buf[n:], p, pc, g.info.CanFlush)
		}
	} else {
		l := e.modePage(buf[n:], code, pc, g.info.CanFlush)
		if l == 0 {
			e.failField(res, scsi.InvalidFieldInCDB, 2, 5)
			return
		}
		n += l
	}
	dsp := byte(0x10) // DPOFUA
	if g.info.ReadOnly {
		dsp |= 0x80 // WP
	}
	if ten {
		binary.BigEndian.PutUint16(buf[0:], uint16(n-2))
		buf[3] = dsp
		if llbaa && !dbd {
			buf[4] = 0x01 // LONGLBA
		}
		binary.BigEndian.PutUint16(buf[6:], uint16(bdl))
	} else {
		buf[0] = byte(n - 1)
		buf[2] = dsp
		buf[3] = byte(bdl)
	}
	reply(cmd, res, alloc, buf[:n])
}

func (e *Engine) modeSelect(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	ten := cdb[0] == scsi.OpModeSelect10
	if cdb[1]&0x10 == 0 { // PF: we only speak the SPC page format
		e.failField(res, scsi.InvalidFieldInCDB, 1, 4)
		return
	}
	if cdb[1]&0x01 != 0 { // SP: no saved pages
		e.failField(res, scsi.InvalidFieldInCDB, 1, 0)
		return
	}
	plen, hdr, lenByte := int(cdb[4]), 4, 4
	if ten {
		plen, hdr, lenByte = int(be16(cdb[7:9])), 8, 7
	}
	if plen == 0 {
		return
	}
	guest, ok := dataOut(cmd, plen)
	if !ok || plen < hdr {
		e.fail(res, scsi.ParamListLengthError)
		return
	}
	// Copy the guest's list once and parse only the copy. Our pages and
	// descriptors fit in far less; a longer list cannot be valid.
	var private [512]byte
	if plen > len(private) {
		e.failField(res, scsi.InvalidFieldInCDB, lenByte, -1)
		return
	}
	p := private[:copy(private[:], guest)]
	res.Resid = len(cmd.Data) - plen
	bdl := int(p[3])
	long := false
	if ten {
		bdl = int(be16(p[6:8]))
		long = p[4]&0x01 != 0
	}
	if hdr+bdl > plen {
		e.fail(res, scsi.ParamListLengthError)
		return
	}
	g := e.geometry()
	// Block descriptors may restate the geometry but not change it.
	descLen := 8
	if long {
		descLen = 16
	}
	if bdl%descLen != 0 {
		e.failField(res, scsi.InvalidFieldInParamList, hdr-1, -1)
		return
	}
	for off := hdr; off < hdr+bdl; off += descLen {
		d := p[off : off+descLen]
		var blocks uint64
		var bl uint32
		if long {
			blocks, bl = be64(d[0:8]), be32(d[12:16])
		} else {
			blocks, bl = uint64(be32(d[0:4])), be32(d[4:8])&0xffffff
		}
		if (blocks != 0 && blocks != g.blocks && !(blocks == 0xffffffff && !long)) || (bl != 0 && bl != uint32(g.bs)) {
			e.failField(res, scsi.InvalidFieldInParamList, off, -1)
			return
		}
	}
	// Check every page against what may change before changing anything.
	var wce, dsense = !e.wcd.Load(), e.dsense.Load()
	var cur, mask [64]byte
	for off := hdr + bdl; off < plen; {
		if off+2 > plen {
			e.fail(res, scsi.ParamListLengthError)
			return
		}
		code, l := p[off]&0x3f, int(p[off+1])+2
		if p[off]&0x40 != 0 { // SPF: we have no subpages
			e.failField(res, scsi.InvalidFieldInParamList, off, 6)
			return
		}
		if off+l > plen {
			e.fail(res, scsi.ParamListLengthError)
			return
		}
		cl := e.modePage(cur[:], code, pcCurrent, g.info.CanFlush)
		e.modePage(mask[:], code, pcChangeable, g.info.CanFlush)
		if cl == 0 || cl != l {
			e.failField(res, scsi.InvalidFieldInParamList, off, -1)
			return
		}
		page := p[off : off+l]
		for i := 2; i < l; i++ {
			if (page[i]^cur[i])&^mask[i] != 0 {
				e.failField(res, scsi.InvalidFieldInParamList, off+i, -1)
				return
			}
		}
		switch code {
		case pageCaching:
			wce = page[2]&0x04 != 0
		case pageControl:
			dsense = page[2]&0x04 != 0
		}
		off += l
	}
	wceChanged := e.wcd.Swap(!wce) != !wce
	dsenseChanged := e.dsense.Swap(dsense) != dsense
	if wceChanged || dsenseChanged {
		e.modeChanged(n)
	}
}
