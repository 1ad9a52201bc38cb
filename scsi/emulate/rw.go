package emulate

import (
	"bytes"
	"errors"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
)

// rw is a decoded READ/WRITE/VERIFY/SYNCHRONIZE CACHE CDB.
type rw struct {
	lba, blocks uint64
	fua         bool
	lenByte     int // CDB byte where the transfer length starts, for field pointers
}

// decodeRW decodes the LBA and length of the 6/10/12/16-byte forms. ok is
// false (and the field pointer set in res) for fields we do not support:
// RDPROTECT/WRPROTECT/VRPROTECT without protection information.
func (e *Engine) decodeRW(cdb []byte, res *scsi.Result) (r rw, ok bool) {
	switch scsi.CDBLen(cdb[0]) {
	case 6:
		r.lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		r.blocks = uint64(cdb[4])
		if r.blocks == 0 {
			r.blocks = 256 // READ(6)/WRITE(6): 0 means 256
		}
		r.lenByte = 4
		return r, true
	case 10:
		r.lba = uint64(be32(cdb[2:6]))
		r.blocks = uint64(be16(cdb[7:9]))
		r.lenByte = 7
	case 12:
		r.lba = uint64(be32(cdb[2:6]))
		r.blocks = uint64(be32(cdb[6:10]))
		r.lenByte = 6
	case 16:
		r.lba = be64(cdb[2:10])
		r.blocks = uint64(be32(cdb[10:14]))
		r.lenByte = 10
	}
	r.fua = cdb[1]&0x08 != 0
	switch cdb[0] {
	case scsi.OpVerify10, scsi.OpVerify12, scsi.OpVerify16:
		r.fua = false
	}
	if cdb[1]&0xe0 != 0 {
		e.failField(res, scsi.InvalidFieldInCDB, 1, 7)
		return r, false
	}
	return r, true
}

// checkTransfer validates r against the device and the data buffer and
// returns the byte range. dir is the direction the command needs.
func (e *Engine) checkTransfer(cmd *scsi.Command, res *scsi.Result, g *geometry, r rw, dir scsi.Direction) (off, n int64, ok bool) {
	if !g.inRange(r.lba, r.blocks) {
		e.failInfo(res, scsi.LBAOutOfRange, r.lba)
		return 0, 0, false
	}
	if r.blocks > uint64(e.maxXfer) {
		e.failField(res, scsi.InvalidFieldInCDB, r.lenByte, -1)
		return 0, 0, false
	}
	n = int64(r.blocks) * g.bs
	if n > 0 && (cmd.Dir != dir || int64(len(cmd.Data)) < n) {
		// The transport's buffer cannot carry the transfer the CDB asks
		// for: refuse rather than move part of it.
		e.failField(res, scsi.InvalidFieldInCDB, r.lenByte, -1)
		return 0, 0, false
	}
	return int64(r.lba) * g.bs, n, true
}

func (e *Engine) read(cmd *scsi.Command, res *scsi.Result, g *geometry) {
	r, ok := e.decodeRW(cmd.CDB, res)
	if !ok {
		return
	}
	off, n, ok := e.checkTransfer(cmd, res, g, r, scsi.DirFromDevice)
	if !ok || n == 0 {
		return
	}
	if _, err := e.dev.ReadAt(cmd.Data[:n], off); err != nil {
		e.ioError(res, err, scsi.UnrecoveredReadError, r.lba)
		return
	}
	res.Resid = len(cmd.Data) - int(n)
}

func (e *Engine) write(cmd *scsi.Command, res *scsi.Result, g *geometry) {
	r, ok := e.decodeRW(cmd.CDB, res)
	if !ok {
		return
	}
	off, n, ok := e.checkTransfer(cmd, res, g, r, scsi.DirToDevice)
	if !ok {
		return
	}
	if g.info.ReadOnly {
		e.fail(res, scsi.WriteProtected)
		return
	}
	if n == 0 {
		return
	}
	e.writes.RLock()
	_, err := e.dev.WriteAt(cmd.Data[:n], off)
	e.writes.RUnlock()
	if err != nil {
		e.ioError(res, err, scsi.WriteError, r.lba)
		return
	}
	if !e.durable(res, g, r.fua) {
		return
	}
	res.Resid = len(cmd.Data) - int(n)
}

// durable flushes after a write when FUA asks for it or the cache is in
// write-through mode.
func (e *Engine) durable(res *scsi.Result, g *geometry, fua bool) bool {
	if !g.info.CanFlush || (!fua && !e.wcd.Load()) {
		return true
	}
	if err := e.dev.Flush(); err != nil {
		e.fail(res, scsi.WriteError)
		return false
	}
	return true
}

// ioError maps a storage error to sense. ErrOutOfRange can only happen when
// the device shrank under the command.
func (e *Engine) ioError(res *scsi.Result, err error, medium scsi.Code, lba uint64) {
	switch {
	case errors.Is(err, storage.ErrOutOfRange):
		e.failInfo(res, scsi.LBAOutOfRange, lba)
	case errors.Is(err, storage.ErrReadOnly):
		e.fail(res, scsi.WriteProtected)
	default:
		e.log.Error("scsi: device I/O failed", "err", err)
		e.failInfo(res, medium, lba)
	}
}

func (e *Engine) synchronizeCache(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	var lba, blocks uint64
	if cdb[0] == scsi.OpSynchronizeCache10 {
		lba, blocks = uint64(be32(cdb[2:6])), uint64(be16(cdb[7:9]))
	} else {
		lba, blocks = be64(cdb[2:10]), uint64(be32(cdb[10:14]))
	}
	g := e.geometry()
	if !g.inRange(lba, blocks) {
		e.failInfo(res, scsi.LBAOutOfRange, lba)
		return
	}
	if !g.info.CanFlush {
		return
	}
	if err := e.dev.Flush(); err != nil {
		e.log.Error("scsi: flush failed", "err", err)
		e.fail(res, scsi.WriteError)
	}
}

// chunk bounds the scratch buffers of VERIFY and WRITE SAME.
const chunk = 256 << 10

func (e *Engine) verify(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	r, ok := e.decodeRW(cdb, res)
	if !ok {
		return
	}
	g := e.geometry()
	bytchk := cdb[1] >> 1 & 0x03
	var want []byte // data-out to compare with; nil for a medium check
	switch bytchk {
	case 0:
		if !g.inRange(r.lba, r.blocks) {
			e.failInfo(res, scsi.LBAOutOfRange, r.lba)
			return
		}
	case 1:
		_, n, ok := e.checkTransfer(cmd, res, &g, r, scsi.DirToDevice)
		if !ok {
			return
		}
		want = cmd.Data[:n]
		res.Resid = len(cmd.Data) - int(n)
	default:
		e.failField(res, scsi.InvalidFieldInCDB, 1, 2)
		return
	}
	total := int64(r.blocks) * g.bs
	scratch := make([]byte, min(total, chunk))
	for done := int64(0); done < total; {
		part := scratch[:min(total-done, int64(len(scratch)))]
		if _, err := e.dev.ReadAt(part, int64(r.lba)*g.bs+done); err != nil {
			e.ioError(res, err, scsi.UnrecoveredReadError, r.lba)
			return
		}
		if want != nil {
			if i := mismatch(part, want[done:]); i >= 0 {
				e.failInfo(res, scsi.Miscompare, uint64(done)+uint64(i))
				return
			}
		}
		done += int64(len(part))
	}
}

// mismatch returns the index of the first byte where a and b differ within
// len(a), or -1.
func mismatch(a, b []byte) int {
	if bytes.Equal(a, b[:len(a)]) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func (e *Engine) compareAndWrite(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	if cdb[1]&0xe0 != 0 {
		e.failField(res, scsi.InvalidFieldInCDB, 1, 7)
		return
	}
	lba, blocks := be64(cdb[2:10]), uint64(cdb[13])
	g := e.geometry()
	if blocks > maxCompareAndWriteBlocks {
		e.failField(res, scsi.InvalidFieldInCDB, 13, -1)
		return
	}
	if !g.inRange(lba, blocks) {
		e.failInfo(res, scsi.LBAOutOfRange, lba)
		return
	}
	if blocks == 0 {
		return
	}
	n := int64(blocks) * g.bs
	if cmd.Dir != scsi.DirToDevice || int64(len(cmd.Data)) < 2*n {
		e.failField(res, scsi.InvalidFieldInCDB, 13, -1)
		return
	}
	if g.info.ReadOnly {
		e.fail(res, scsi.WriteProtected)
		return
	}
	verify, data := cmd.Data[:n], cmd.Data[n:2*n]
	cur := make([]byte, n)
	off := int64(lba) * g.bs
	e.writes.Lock()
	defer e.writes.Unlock()
	if _, err := e.dev.ReadAt(cur, off); err != nil {
		e.ioError(res, err, scsi.UnrecoveredReadError, lba)
		return
	}
	if i := mismatch(cur, verify); i >= 0 {
		// INFORMATION: offset of the first differing byte in the data-out buffer.
		e.failInfo(res, scsi.Miscompare, uint64(i))
		return
	}
	if _, err := e.dev.WriteAt(data, off); err != nil {
		e.ioError(res, err, scsi.WriteError, lba)
		return
	}
	if e.durable(res, &g, cdb[1]&0x08 != 0) {
		res.Resid = len(cmd.Data) - int(2*n)
	}
}

func (e *Engine) writeSame(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	var lba, blocks uint64
	lenByte := 7
	ndob := false
	if cdb[0] == scsi.OpWriteSame10 {
		lba, blocks = uint64(be32(cdb[2:6])), uint64(be16(cdb[7:9]))
	} else {
		lba, blocks = be64(cdb[2:10]), uint64(be32(cdb[10:14]))
		lenByte = 10
		ndob = cdb[1]&0x01 != 0
	}
	switch {
	case cdb[1]&0xe0 != 0:
		e.failField(res, scsi.InvalidFieldInCDB, 1, 7)
		return
	case cdb[1]&0x10 != 0: // ANCHOR: we have no anchored state
		e.failField(res, scsi.InvalidFieldInCDB, 1, 4)
		return
	case blocks == 0 || blocks > maxWriteSameBlocks: // WSNZ=1
		e.failField(res, scsi.InvalidFieldInCDB, lenByte, -1)
		return
	}
	unmap := cdb[1]&0x08 != 0
	g := e.geometry()
	if !g.inRange(lba, blocks) {
		e.failInfo(res, scsi.LBAOutOfRange, lba)
		return
	}
	var pattern []byte
	if !ndob {
		if cmd.Dir != scsi.DirToDevice || int64(len(cmd.Data)) < g.bs {
			e.failField(res, scsi.InvalidFieldInCDB, lenByte, -1)
			return
		}
		pattern = cmd.Data[:g.bs]
		res.Resid = len(cmd.Data) - int(g.bs)
	}
	if g.info.ReadOnly {
		e.fail(res, scsi.WriteProtected)
		return
	}
	off, n := int64(lba)*g.bs, int64(blocks)*g.bs
	e.writes.RLock()
	defer e.writes.RUnlock()
	var err error
	switch {
	case pattern == nil || allZero(pattern):
		err = storage.ErrNotSupported
		if unmap && g.info.CanDiscard && g.info.DiscardZeroes {
			err = e.dev.Discard(off, n, false)
		}
		if errors.Is(err, storage.ErrNotSupported) {
			err = e.dev.WriteZeroes(off, n)
		}
	default:
		buf := make([]byte, min(n, chunk))
		for i := 0; i < len(buf); i += len(pattern) {
			copy(buf[i:], pattern)
		}
		for done := int64(0); done < n && err == nil; {
			part := buf[:min(n-done, int64(len(buf)))]
			_, err = e.dev.WriteAt(part, off+done)
			done += int64(len(part))
		}
	}
	if err != nil {
		e.ioError(res, err, scsi.WriteError, lba)
		return
	}
	e.durable(res, &g, false)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (e *Engine) unmap(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	if cdb[1]&0x01 != 0 { // ANCHOR
		e.failField(res, scsi.InvalidFieldInCDB, 1, 0)
		return
	}
	plen := int(be16(cdb[7:9]))
	if plen == 0 {
		return
	}
	if plen < 8 {
		e.fail(res, scsi.ParamListLengthError)
		return
	}
	guest, ok := dataOut(cmd, plen)
	if !ok {
		e.fail(res, scsi.ParamListLengthError)
		return
	}
	res.Resid = len(cmd.Data) - plen
	g := e.geometry()
	if g.info.ReadOnly {
		e.fail(res, scsi.WriteProtected)
		return
	}
	// The list is in guest-writable memory: copy it once, then validate
	// and use only the copy. Past maxUnmapDescriptors it is refused anyway.
	var private [8 + 16*(maxUnmapDescriptors+1)]byte
	p := private[:copy(private[:], guest)]
	dataLen, descLen := int(be16(p[0:2])), int(be16(p[2:4]))
	if dataLen+2 > plen || descLen+8 > plen || descLen%16 != 0 || descLen+8 > len(p) {
		e.failField(res, scsi.InvalidFieldInParamList, 2, -1)
		return
	}
	descs := p[8 : 8+descLen]
	if len(descs)/16 > maxUnmapDescriptors {
		e.failField(res, scsi.InvalidFieldInParamList, 2, -1)
		return
	}
	// Check every descriptor before discarding anything.
	var total uint64
	for i := 0; i < len(descs); i += 16 {
		lba, n := be64(descs[i:]), uint64(be32(descs[i+8:]))
		if !g.inRange(lba, n) {
			e.failInfo(res, scsi.LBAOutOfRange, lba)
			return
		}
		if total += n; total > maxUnmapBlocks {
			e.failField(res, scsi.InvalidFieldInParamList, 8+i+8, -1)
			return
		}
	}
	e.writes.RLock()
	defer e.writes.RUnlock()
	for i := 0; i < len(descs); i += 16 {
		lba, n := be64(descs[i:]), uint64(be32(descs[i+8:]))
		if n == 0 {
			continue
		}
		off, l := int64(lba)*g.bs, int64(n)*g.bs
		err := e.dev.Discard(off, l, false)
		if errors.Is(err, storage.ErrNotSupported) {
			// UNMAP is advisory, but with LBPRZ the blocks must read zero.
			err = nil
			if g.info.DiscardZeroes {
				err = e.dev.WriteZeroes(off, l)
			}
		}
		if err != nil {
			e.ioError(res, err, scsi.WriteError, lba)
			return
		}
	}
}
