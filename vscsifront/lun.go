package vscsifront

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// LUN is one logical unit of a vhost, at the address its v-dev gives.
// It is a SCSI target (ExecSCSI, the interface control.Target names) and
// gives a storage.Device (Device). Once the backend removes it, every
// command fails with ErrGone.
type LUN struct {
	v     *Vhost
	index int
	addr  vscsibus.VDev
	gone  atomic.Bool
}

// Index is the LUN's vscsi-devs/dev-N index.
func (l *LUN) Index() int { return l.index }

// VDev is the LUN's address, as its v-dev names it.
func (l *LUN) VDev() vscsibus.VDev { return l.addr }

// Gone reports whether the backend removed the LUN (or the vhost).
func (l *LUN) Gone() bool { return l.gone.Load() }

var wireDir = [...]uint8{scsi.DirNone: vscsiif.DirNone, scsi.DirToDevice: vscsiif.DirToDevice, scsi.DirFromDevice: vscsiif.DirFromDevice}

// ExecSCSI sends one SCSI command to the LUN: cdb (1 to 16 bytes), buf
// as its data (read into for scsi.DirFromDevice, sent for
// scsi.DirToDevice; any length up to the vhost's MaxTransfer; of a
// data-in buffer, only the bytes the device transferred are written). A status
// from the device, CHECK CONDITION included, is a Result; a command the
// transport did not deliver is a *HostError (host RESET for one a LUN
// RESET cleared, on the ring or still pending here). When ctx ends while
// the command is on the ring, the backend is asked to abort it
// (TASK_ABORT) and its pages stay granted until it answers; while it is
// pending here, it ends without reaching the ring. Either way ExecSCSI
// returns at once.
func (l *LUN) ExecSCSI(ctx context.Context, cdb []byte, dir scsi.Direction, buf []byte) (scsi.Result, error) {
	if l.gone.Load() {
		return scsi.Result{}, ErrGone
	}
	if len(cdb) == 0 || len(cdb) > vscsiif.MaxCommandSize {
		return scsi.Result{}, fmt.Errorf("%w: %d bytes", ErrCDBLength, len(cdb))
	}
	if int(dir) >= len(wireDir) {
		return scsi.Result{}, fmt.Errorf("vscsifront: data direction %d", dir)
	}
	if dir == scsi.DirNone {
		buf = nil
	}
	v := l.v
	npages := (len(buf) + xen.PageSize - 1) / xen.PageSize
	id, err := v.acquire(ctx, npages)
	if err != nil {
		return scsi.Result{}, err
	}
	s := &v.slots[id]
	s.addr, s.dataLen = l.addr, len(buf)
	if dir == scsi.DirToDevice {
		for i, p := range s.pages {
			copy(v.pool.Mem[p*xen.PageSize:(p+1)*xen.PageSize], buf[i*xen.PageSize:])
		}
	}
	s.req = vscsiif.Request{RqID: uint16(id), Act: vscsiif.ActSCSICDB, CmdLen: uint8(len(cdb)),
		Channel: l.addr.Channel, ID: l.addr.Target, LUN: l.addr.LUN, DataDirection: wireDir[dir]}
	copy(s.req.Cmnd[:], cdb)
	v.submit(id)
	if !v.wait(ctx, id) {
		return scsi.Result{}, ctx.Err()
	}
	defer v.release(id)
	// The outcome is stable from here until release: nothing moves an
	// answered or aborted slot but its owner.
	if s.state == slotlife.Aborted {
		return scsi.Result{}, ErrClosed
	}
	rsp := &s.rsp
	if rsp.Rslt == tooLarge {
		return scsi.Result{}, fmt.Errorf("%w: %d pages, the backend now takes %d", ErrTooLarge, npages, v.MaxTransfer()/xen.PageSize)
	}
	if h := vscsiif.HostOf(rsp.Rslt); h != vscsiif.HostOK {
		return scsi.Result{}, &HostError{Host: h, Rslt: rsp.Rslt}
	}
	var res scsi.Result
	res.Status = vscsiif.StatusOf(rsp.Rslt)
	res.SenseLen = copy(res.Sense[:], rsp.Sense[:min(int(rsp.SenseLen), vscsiif.SenseBufferSize)])
	res.Resid = min(int(rsp.ResidualLen), len(buf))
	if dir == scsi.DirFromDevice {
		// Only what the device transferred: past it, a pool page holds
		// an earlier command's bytes.
		n := len(buf) - res.Resid
		for i, p := range s.pages {
			if i*xen.PageSize >= n {
				break
			}
			copy(buf[i*xen.PageSize:n], v.pool.Mem[p*xen.PageSize:(p+1)*xen.PageSize])
		}
	}
	return res, nil
}

// Reset sends a LUN RESET (vscsiif's RESET) for the LUN and waits for
// the backend's answer: nil for RESET_SUCCESS.
func (l *LUN) Reset(ctx context.Context) error {
	if l.gone.Load() {
		return ErrGone
	}
	return l.v.reset(ctx, l.addr)
}
