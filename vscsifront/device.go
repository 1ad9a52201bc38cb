package vscsifront

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
)

// ErrSCSI is a command the device answered with a status other than
// GOOD; the error names the status and the sense code.
var ErrSCSI = errors.New("vscsifront: SCSI command failed")

// unitAttentionRetries bounds the retries of a command that meets a
// unit attention (each reports one condition, and is cleared by the
// telling): a device that keeps reporting them is broken.
const unitAttentionRetries = 8

// Device probes the LUN — the unit attentions a new nexus meets, READ
// CAPACITY(16) for its geometry, MODE SENSE(6) for write protection and
// the Block Limits VPD page for UNMAP — and returns it as a
// storage.Device: reads and writes as READ(16)/WRITE(16) of at most the
// vhost's MaxTransfer each, Flush as SYNCHRONIZE CACHE(16), Discard as
// UNMAP when the device provisions thinly. Offsets and lengths need not
// be block-aligned (partial blocks are read, merged and written back).
// Its geometry is the probe's: a resize is seen by a new Device.
func (l *LUN) Device(ctx context.Context) (storage.Device, error) {
	d := &device{l: l}
	var tur [6]byte
	if err := d.run(ctx, tur[:], scsi.DirNone, nil); err != nil {
		return nil, fmt.Errorf("TEST UNIT READY: %w", err)
	}
	var rc [32]byte
	cdb := [16]byte{0: scsi.OpServiceActionIn16, 1: 0x10}
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(rc)))
	if err := d.run(ctx, cdb[:], scsi.DirFromDevice, rc[:]); err != nil {
		return nil, fmt.Errorf("READ CAPACITY(16): %w", err)
	}
	bs := binary.BigEndian.Uint32(rc[8:])
	if bs < 512 || bs > 1<<16 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("vscsifront: READ CAPACITY(16) gives a block length of %d", bs)
	}
	d.bs = int64(bs)
	d.blocks = int64(binary.BigEndian.Uint64(rc[0:]) + 1)
	d.info = storage.Info{
		Size: d.blocks * d.bs, LogicalBlockSize: bs, PhysicalBlockSize: bs << (rc[13] & 0x0f),
		CanFlush: true, DiscardZeroes: rc[14]&0x40 != 0,
	}
	var ms [4]byte
	if err := d.run(ctx, []byte{scsi.OpModeSense6, 0, 0x3f, 0, byte(len(ms)), 0}, scsi.DirFromDevice, ms[:]); err == nil {
		d.info.ReadOnly = ms[2]&0x80 != 0
	}
	if rc[14]&0x80 != 0 { // LBPME: thin provisioning; UNMAP's limits in the Block Limits page
		var bl [64]byte
		if err := d.run(ctx, []byte{scsi.OpInquiry, 1, 0xb0, 0, byte(len(bl)), 0}, scsi.DirFromDevice, bl[:]); err == nil {
			d.maxUnmap = binary.BigEndian.Uint32(bl[20:])
			if gran := binary.BigEndian.Uint32(bl[28:]); gran > 1 {
				d.info.DiscardGranularity = gran * bs
			}
			d.info.CanDiscard = d.maxUnmap > 0 && binary.BigEndian.Uint32(bl[24:]) > 0
		}
	}
	return d, nil
}

type device struct {
	l        *LUN
	bs       int64
	blocks   int64
	info     storage.Info
	maxUnmap uint32 // blocks one UNMAP descriptor may name
	// unaligned serves the reads and writes not block-aligned.
	unaligned storage.Unaligned
}

func (d *device) Info() storage.Info { return d.info }

// run runs one command to GOOD, retrying through unit attentions.
func (d *device) run(ctx context.Context, cdb []byte, dir scsi.Direction, buf []byte) error {
	for i := 0; ; i++ {
		res, err := d.l.ExecSCSI(ctx, cdb, dir, buf)
		if err != nil {
			return err
		}
		if res.Status == scsi.StatusGood {
			return nil
		}
		s, _, _ := scsi.ParseSense(res.SenseBytes())
		if res.Status == scsi.StatusCheckCondition && s.Key == scsi.KeyUnitAttention && i < unitAttentionRetries {
			continue
		}
		code := scsi.Code{Key: s.Key, ASC: s.ASC, ASCQ: s.ASCQ}
		switch {
		case res.Status != scsi.StatusCheckCondition:
		case code == scsi.WriteProtected:
			return storage.ErrReadOnly
		case code == scsi.LBAOutOfRange:
			return storage.ErrOutOfRange
		}
		return fmt.Errorf("%w: %s: %s, sense %x/%02x/%02x", ErrSCSI, scsi.OpName(cdb[0]),
			scsi.StatusName(res.Status), s.Key, s.ASC, s.ASCQ)
	}
}

// rw reads or writes whole blocks at off, in commands of at most the
// vhost's MaxTransfer.
func (d *device) rw(p []byte, off int64, write bool) error {
	op, dir := byte(scsi.OpRead16), scsi.DirFromDevice
	if write {
		op, dir = scsi.OpWrite16, scsi.DirToDevice
	}
	max := int64(d.l.v.MaxTransfer()) / d.bs * d.bs
	for len(p) > 0 {
		n := min(int64(len(p)), max)
		var cdb [16]byte
		cdb[0] = op
		binary.BigEndian.PutUint64(cdb[2:], uint64(off/d.bs))
		binary.BigEndian.PutUint32(cdb[10:], uint32(n/d.bs))
		if err := d.run(context.Background(), cdb[:], dir, p[:n]); err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

func (d *device) ReadAt(p []byte, off int64) (int, error) {
	if err := storage.CheckRange(off, int64(len(p)), d.info.Size); err != nil {
		return 0, err
	}
	if off%d.bs == 0 && int64(len(p))%d.bs == 0 {
		if err := d.rw(p, off, false); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return d.unaligned.ReadAt(d.rw, d.bs, p, off)
}

func (d *device) WriteAt(p []byte, off int64) (int, error) {
	if d.info.ReadOnly {
		return 0, storage.ErrReadOnly
	}
	if err := storage.CheckRange(off, int64(len(p)), d.info.Size); err != nil {
		return 0, err
	}
	if off%d.bs == 0 && int64(len(p))%d.bs == 0 {
		if err := d.rw(p, off, true); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return d.unaligned.WriteAt(d.rw, d.bs, p, off)
}

func (d *device) Flush() error {
	cdb := [16]byte{0: scsi.OpSynchronizeCache16}
	return d.run(context.Background(), cdb[:], scsi.DirNone, nil)
}

// Discard unmaps the whole blocks of [off, off+n). UNMAP names whole
// blocks only, so the partial blocks at either end are zeroed by
// writing when the device reads unmapped blocks as zeros (LBPRZ): the
// whole range then reads as zeros, as storage.Info.DiscardZeroes
// promises (the NBD export's WRITE_ZEROES relies on it); else they are
// left alone. A secure discard is not a SCSI command.
func (d *device) Discard(off, n int64, secure bool) error {
	if err := storage.CheckRange(off, n, d.info.Size); err != nil {
		return err
	}
	if !d.info.CanDiscard || secure {
		return storage.ErrNotSupported
	}
	lba := (off + d.bs - 1) / d.bs
	end := (off + n) / d.bs
	if d.info.DiscardZeroes {
		if lba >= end { // within one block, or across one boundary
			return d.WriteZeroes(off, n)
		}
		if err := d.WriteZeroes(off, lba*d.bs-off); err != nil {
			return err
		}
		if err := d.WriteZeroes(end*d.bs, off+n-end*d.bs); err != nil {
			return err
		}
	}
	var param [24]byte
	for lba < end {
		k := min(end-lba, int64(d.maxUnmap))
		binary.BigEndian.PutUint16(param[0:], 22)
		binary.BigEndian.PutUint16(param[2:], 16)
		binary.BigEndian.PutUint64(param[8:], uint64(lba))
		binary.BigEndian.PutUint32(param[16:], uint32(k))
		cdb := [10]byte{0: scsi.OpUnmap, 8: byte(len(param))}
		if err := d.run(context.Background(), cdb[:], scsi.DirToDevice, param[:]); err != nil {
			return err
		}
		lba += k
	}
	return nil
}

// WriteZeroes writes zeros.
func (d *device) WriteZeroes(off, n int64) error {
	if err := storage.CheckRange(off, n, d.info.Size); err != nil {
		return err
	}
	zero := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := d.WriteAt(zero[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// Close lets go of nothing: the LUN is the vhost's.
func (d *device) Close() error { return nil }
