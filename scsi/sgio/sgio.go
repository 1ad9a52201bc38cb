// Package sgio passes SCSI commands through to a whole SCSI disk with the
// SG_IO ioctl, guarded: every command passes the device's policy first,
// every LBA range of a READ/WRITE-family CDB is checked against the disk's
// capacity, reservations are either emulated by xenblk's engine or passed
// through, and only whole sd disks are ever opened (never partitions,
// device-mapper, loop devices or files: CVE-2011-4127, where SG_IO on a
// partition reached the whole disk).
//
// Passthrough is transport-free and talks to a Target; Disk (Linux) is the
// Target that issues the ioctl, tests inject fakes.
package sgio

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/xenblk/xenblk/scsi"
)

// Request is one SG_IO exchange: the inputs of struct sg_io_hdr and the
// outputs the kernel fills in.
type Request struct {
	CDB     []byte
	Dir     scsi.Direction
	Data    []byte // dxferp/dxfer_len
	Sense   []byte // sbp/mx_sb_len
	Timeout time.Duration

	Status       byte   // SCSI status
	HostStatus   uint16 // DID_*: 0 is DID_OK
	DriverStatus uint16 // DRIVER_*: 0, or DRIVER_SENSE (0x08) with valid sense
	SenseLen     int    // sb_len_wr
	Resid        int    // dxfer_len minus bytes actually transferred
}

// Target is the whole SCSI disk a Passthrough drives: it executes SG_IO
// requests. A non-nil error means the request did not reach the disk
// (ioctl failure).
type Target interface {
	SGIO(r *Request) error
}

// Config chooses a pass-through's policy and reservation handling.
type Config struct {
	// Policy allows commands; nil means scsi.PassthroughPolicy().
	Policy *scsi.Policy
	// Reservations, when set, emulates reservations in xenblk (the disk
	// never sees PR or RESERVE/RELEASE commands, and conflicts are
	// decided here); nil passes them through to the disk.
	Reservations scsi.Reservations
	Timeout      time.Duration // per command; 0 means 60s
	Log          *slog.Logger
	// Release, when set, is called once by Close: the owner of a disk
	// shared by several vbds counts its users there.
	Release func()
}

// Passthrough executes guest commands on a whole SCSI disk. Safe for
// concurrent use.
type Passthrough struct {
	dev     Target
	policy  *scsi.Policy
	res     scsi.Reservations
	timeout time.Duration
	log     *slog.Logger
	powerOn scsi.PowerOn

	mu     sync.RWMutex
	blocks uint64 // capacity in logical blocks
	bs     uint32
	dsense bool // the disk's D_SENSE: our own sense follows its format

	// reqs recycles Requests so that a command allocates nothing (a
	// channel, not a sync.Pool, which drops items at random under -race).
	reqs chan *Request

	release     func()
	releaseOnce sync.Once
}

// Host and driver status values SG_IO reports.
const (
	didOK       = 0x00
	driverSense = 0x08
)

// aborted is what the guest sees when the disk could not be reached.
var aborted = scsi.Code{Key: scsi.KeyAbortedCommand}

// New returns a pass-through to dev and reads its capacity.
func New(dev Target, cfg Config) (*Passthrough, error) {
	p := &Passthrough{dev: dev, policy: cfg.Policy, res: cfg.Reservations, timeout: cfg.Timeout, log: cfg.Log, release: cfg.Release}
	if p.policy == nil {
		p.policy = scsi.PassthroughPolicy()
	}
	if p.timeout == 0 {
		p.timeout = 60 * time.Second
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.reqs = make(chan *Request, 64)
	if err := p.Refresh(); err != nil {
		return nil, err
	}
	return p, nil
}

// Capacity returns the disk's size in logical blocks and its block size.
func (p *Passthrough) Capacity() (blocks uint64, blockSize uint32) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.blocks, p.bs
}

// Refresh re-reads the capacity (after a resize) with READ CAPACITY(16),
// retrying past unit attentions the disk reports first.
func (p *Passthrough) Refresh() error {
	var buf [32]byte
	var sense [scsi.MaxSense]byte
	cdb := [16]byte{scsi.OpServiceActionIn16, scsi.SAReadCapacity16}
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(buf)))
	for try := 0; ; try++ {
		r := Request{CDB: cdb[:], Dir: scsi.DirFromDevice, Data: buf[:], Sense: sense[:], Timeout: p.timeout}
		if err := p.dev.SGIO(&r); err != nil {
			return fmt.Errorf("sgio: READ CAPACITY(16): %w", err)
		}
		if r.Status == scsi.StatusGood && r.HostStatus == didOK {
			break
		}
		s, _, _ := scsi.ParseSense(sense[:min(max(r.SenseLen, 0), len(sense))])
		if r.Status == scsi.StatusCheckCondition && s.Key == scsi.KeyUnitAttention && try < 5 {
			continue
		}
		return fmt.Errorf("sgio: READ CAPACITY(16) failed: status %s, host %#x, sense %x/%02x/%02x",
			scsi.StatusName(r.Status), r.HostStatus, s.Key, s.ASC, s.ASCQ)
	}
	bs := binary.BigEndian.Uint32(buf[8:])
	if bs == 0 || bs%512 != 0 || bs > 64<<10 {
		return fmt.Errorf("sgio: disk reports a %d-byte logical block", bs)
	}
	p.mu.Lock()
	p.blocks, p.bs = binary.BigEndian.Uint64(buf[0:])+1, bs
	p.mu.Unlock()
	p.readSenseFormat()
	return nil
}

// readSenseFormat learns D_SENSE from the disk's control mode page, so that
// sense xenblk reports itself is in the format the guest chose. A disk
// without the page keeps fixed format.
func (p *Passthrough) readSenseFormat() {
	var buf [64]byte
	var sense [scsi.MaxSense]byte
	cdb := []byte{scsi.OpModeSense6, 0x08, 0x0a, 0, byte(len(buf)), 0}
	r := Request{CDB: cdb, Dir: scsi.DirFromDevice, Data: buf[:], Sense: sense[:], Timeout: p.timeout}
	if err := p.dev.SGIO(&r); err != nil || r.Status != scsi.StatusGood || r.HostStatus != didOK {
		return
	}
	n := len(buf) - min(max(r.Resid, 0), len(buf))
	off := 4 + int(buf[3]) // header, block descriptors
	if n < off+3 || buf[off]&0x3f != 0x0a {
		return
	}
	p.mu.Lock()
	p.dsense = buf[off+2]&0x04 != 0
	p.mu.Unlock()
}

func (p *Passthrough) descriptorSense() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.dsense
}

// Execute passes cmd to the disk for nexus n, after the policy, the
// reservation check and the range check, and fills res. Sense xenblk
// builds itself is in fixed format; the disk's own sense is passed as is.
func (p *Passthrough) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	res.Reset(len(cmd.Data))
	cdb := cmd.CDB
	if len(cdb) == 0 || len(cdb) > scsi.MaxCDB {
		res.SetCheck(scsi.Sense{Code: scsi.InvalidOpcode}, false)
		return
	}
	op := cdb[0]
	switch p.policy.Allows(cdb) {
	case scsi.DeniedOpcode:
		p.log.Warn("scsi: pass-through command denied by policy", "dom", n.Dom, "device", n.Device, "op", scsi.OpName(op))
		res.SetCheck(scsi.Sense{Code: scsi.InvalidOpcode}, p.descriptorSense())
		return
	case scsi.DeniedServiceAct:
		p.log.Warn("scsi: pass-through service action denied by policy", "dom", n.Dom, "device", n.Device, "op", scsi.OpName(op), "sa", scsi.ServiceAction(cdb))
		res.SetCheck(scsi.Sense{Code: scsi.InvalidFieldInCDB, Field: scsi.FieldPointer{Valid: true, InCDB: true, Byte: 1}}, p.descriptorSense())
		return
	}
	if want := scsi.CDBLen(op); want == 0 || len(cdb) < want {
		res.SetCheck(scsi.Sense{Code: scsi.InvalidOpcode}, false)
		return
	}
	// The disk sees one initiator (this host) for every guest, so the
	// per-nexus attentions are ours to keep.
	if op == scsi.OpRequestSense {
		if c, ok := scsi.PendingAttention(&p.powerOn, p.res, n); ok {
			var buf [scsi.MaxSense]byte
			l := scsi.Sense{Code: c}.Encode(buf[:], cdb[1]&1 != 0)
			if cmd.Dir == scsi.DirFromDevice {
				k := copy(cmd.Data[:min(len(cmd.Data), int(cdb[4]))], buf[:l])
				res.Resid = len(cmd.Data) - k
			}
			return
		}
	} else if !scsi.UnitAttentionExempt(op) {
		if c, ok := scsi.PendingAttention(&p.powerOn, p.res, n); ok {
			res.SetCheck(scsi.Sense{Code: c}, p.descriptorSense())
			return
		}
	}
	if p.res != nil {
		if p.res.Conflict(n, cdb) {
			res.SetStatus(scsi.StatusReservationConflict)
			return
		}
		if scsi.IsPersistentReservation(op) {
			p.res.Execute(n, cmd, res, p.descriptorSense())
			if res.Resid < 0 || res.Resid > len(cmd.Data) {
				res.Resid = len(cmd.Data)
			}
			return
		}
	}
	if cmd.CDB[0] == scsi.OpUnmap {
		// The parameter list lives in guest-writable memory: check and
		// send one private copy, never the guest's buffer twice.
		private := *cmd
		private.Data = append([]byte(nil), cmd.Data...)
		cmd = &private
	}
	if c, ok := p.checkRange(cmd); !ok {
		res.SetCheck(scsi.Sense{Code: c}, p.descriptorSense())
		return
	}
	p.issue(cmd, res)
	if (op == scsi.OpModeSelect6 || op == scsi.OpModeSelect10) && res.Good() {
		p.readSenseFormat()
	}
}

// issue sends cmd to the disk and copies the outcome into res. The disk
// writes its sense straight into res.Sense, which Reset zeroed.
func (p *Passthrough) issue(cmd *scsi.Command, res *scsi.Result) {
	var r *Request
	select {
	case r = <-p.reqs:
	default:
		r = new(Request)
	}
	*r = Request{CDB: cmd.CDB, Dir: cmd.Dir, Data: cmd.Data, Sense: res.Sense[:], Timeout: p.timeout}
	if cmd.Dir == scsi.DirNone {
		r.Data = nil
	}
	err := p.dev.SGIO(r)
	status, host, senseLen, resid := r.Status, r.HostStatus, r.SenseLen, r.Resid
	*r = Request{}
	select {
	case p.reqs <- r:
	default:
	}
	switch {
	case err != nil:
		p.log.Error("scsi: SG_IO failed", "op", scsi.OpName(cmd.CDB[0]), "err", err)
		res.SetCheck(scsi.Sense{Code: scsi.InternalTargetFailure}, false)
		return
	case host != didOK:
		p.log.Warn("scsi: SG_IO host error", "op", scsi.OpName(cmd.CDB[0]), "host_status", host)
		res.SetCheck(scsi.Sense{Code: aborted}, false)
		return
	}
	res.Status = status
	res.SenseLen = min(max(senseLen, 0), scsi.MaxSense)
	if status != scsi.StatusCheckCondition {
		res.SenseLen = 0
	}
	clear(res.Sense[res.SenseLen:])
	res.Resid = len(cmd.Data) // nothing moves without a data phase
	if cmd.Dir != scsi.DirNone {
		res.Resid = min(max(resid, 0), len(cmd.Data))
	}
}

// checkRange applies the disk's capacity to every CDB that addresses LBAs,
// so that a guest can never reach blocks the disk would not refuse by
// itself (a disk that is shared or larger than advertised).
func (p *Passthrough) checkRange(cmd *scsi.Command) (scsi.Code, bool) {
	cdb := cmd.CDB
	var lba, n uint64
	switch cdb[0] {
	case scsi.OpRead6, scsi.OpWrite6:
		lba = uint64(cdb[1]&0x1f)<<16 | uint64(cdb[2])<<8 | uint64(cdb[3])
		if n = uint64(cdb[4]); n == 0 {
			n = 256
		}
	case scsi.OpRead10, scsi.OpWrite10, scsi.OpVerify10, scsi.OpWriteVerify10, scsi.OpSynchronizeCache10, scsi.OpWriteSame10:
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint16(cdb[7:]))
	case scsi.OpRead12, scsi.OpWrite12, scsi.OpVerify12:
		lba, n = uint64(binary.BigEndian.Uint32(cdb[2:])), uint64(binary.BigEndian.Uint32(cdb[6:]))
	case scsi.OpRead16, scsi.OpWrite16, scsi.OpVerify16, scsi.OpWriteVerify16, scsi.OpSynchronizeCache16, scsi.OpWriteSame16:
		lba, n = binary.BigEndian.Uint64(cdb[2:]), uint64(binary.BigEndian.Uint32(cdb[10:]))
	case scsi.OpCompareAndWrite:
		lba, n = binary.BigEndian.Uint64(cdb[2:]), uint64(cdb[13])
	case scsi.OpUnmap:
		return p.checkUnmap(cmd)
	default:
		return scsi.Code{}, true
	}
	blocks, _ := p.Capacity()
	// WRITE SAME with 0 blocks means "to the end of the medium": in range.
	if lba > blocks || n > blocks-lba || (n == 0 && lba >= blocks && lba != 0) {
		return scsi.LBAOutOfRange, false
	}
	return scsi.Code{}, true
}

func (p *Passthrough) checkUnmap(cmd *scsi.Command) (scsi.Code, bool) {
	plen := int(binary.BigEndian.Uint16(cmd.CDB[7:]))
	if plen == 0 {
		return scsi.Code{}, true
	}
	if plen < 8 || cmd.Dir != scsi.DirToDevice || len(cmd.Data) < plen {
		return scsi.ParamListLengthError, false
	}
	param := cmd.Data[:plen]
	descLen := int(binary.BigEndian.Uint16(param[2:]))
	if descLen+8 > plen || descLen%16 != 0 {
		return scsi.InvalidFieldInParamList, false
	}
	blocks, _ := p.Capacity()
	for d := param[8 : 8+descLen]; len(d) >= 16; d = d[16:] {
		lba, n := binary.BigEndian.Uint64(d), uint64(binary.BigEndian.Uint32(d[8:]))
		if lba > blocks || n > blocks-lba {
			return scsi.LBAOutOfRange, false
		}
	}
	return scsi.Code{}, true
}

// Fenced implements scsi.Fencer with the emulated reservations (nil when
// reservations are passed through to the disk, which sees one initiator).
func (p *Passthrough) Fenced(n scsi.Nexus, write bool) bool { return scsi.Fenced(p.res, n, write) }

// Close ends this pass-through (its vbd is gone): Config.Release runs
// once. The disk itself belongs to whoever opened it.
func (p *Passthrough) Close() error {
	p.releaseOnce.Do(func() {
		if p.release != nil {
			p.release()
		}
	})
	return nil
}
