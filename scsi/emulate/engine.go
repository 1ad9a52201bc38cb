// Package emulate executes SCSI commands (SPC-4, SBC-3) against a
// storage.Device: the SCSI personality of every xenblk backend that is not a
// whole SCSI disk (files, partitions, slices, NBD, memory).
//
// Invariants:
//   - Execute never panics and never touches the device outside
//     [0, Info().Size): every LBA range of every CDB is checked against the
//     capacity read for that command.
//   - Execute never reads or writes past len(Command.Data); data-in is only
//     written when the direction is DirFromDevice, data-out only read when
//     it is DirToDevice.
//   - READ and WRITE in steady state allocate nothing: sense goes into the
//     caller's Result, data straight between the device and Command.Data.
//     Nor do they lock anything but the write lock's shared side while no
//     unit attention is pending and no reservation is held.
//   - A unit attention established before a command of its nexus began
//     is reported to that command or to one that ran alongside it, once.
//   - COMPARE AND WRITE is atomic against every other write through this
//     Engine (writes share a read lock, COMPARE AND WRITE takes it alone).
package emulate

import (
	"encoding/binary"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/storage"
)

// Config is an Engine's identity and policy. The zero value works.
type Config struct {
	// Identity names the device stably across restarts (e.g. the image
	// path or "vm-uuid/xvda"); the unit serial number and the NAA
	// designator are derived from it, and Windows clustering needs both to
	// stay the same.
	Identity string
	Product  string // INQUIRY product identification, at most 16 bytes
	Revision string // INQUIRY product revision level, at most 4 bytes
	// Policy allows commands; nil means scsi.EmulatedPolicy().
	Policy *scsi.Policy
	// Reservations handles PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE;
	// nil makes them unsupported opcodes.
	Reservations scsi.Reservations
	// Resets counts the logical unit's resets, shared by every engine
	// serving it (as Reservations is); nil gives the engine its own.
	Resets *scsi.Resets
	// MaxTransferBlocks bounds one READ/WRITE (B0 page); 0 means 8 MiB worth.
	MaxTransferBlocks uint32
	Log               *slog.Logger
}

// Vendor is the INQUIRY vendor identification.
const Vendor = "XENBLK"

// Limits reported in the block limits VPD page.
const (
	maxCompareAndWriteBlocks = 1
	maxUnmapDescriptors      = 256
	maxUnmapBlocks           = 1 << 22
	maxWriteSameBlocks       = 1 << 22
)

// Engine executes SCSI commands against one device. Safe for concurrent use.
type Engine struct {
	dev    storage.Device
	policy *scsi.Policy
	res    scsi.Reservations
	log    *slog.Logger

	product, revision string
	serial            string   // ASCII, from Identity
	naa               [16]byte // NAA 6 designator, from Identity
	maxXfer           uint32   // blocks

	// writes holds every write shared and COMPARE AND WRITE exclusive.
	writes sync.RWMutex

	dsense atomic.Bool // control mode page D_SENSE: descriptor sense
	wcd    atomic.Bool // caching mode page WCE cleared: write through

	resets *scsi.Resets

	// modeGen counts MODE SELECTs that changed a page; each nexus is told
	// (MODE PARAMETERS CHANGED) once per change made by another nexus.
	modeGen atomic.Uint64

	// mu serialises what changes a nexus's record: telling it an
	// attention, adding it to known.
	mu sync.Mutex
	// known maps every nexus that has spoken to what it has been told.
	// It is replaced, never changed, under mu (a nexus is added once), so
	// a command reads it without mu: one whose nexus has been told
	// everything takes no lock (unitAttention).
	known atomic.Pointer[map[scsi.Nexus]*nexusState]
	// last is the record of the nexus that last found its own through
	// known: an engine mostly serves one nexus, whose commands then skip
	// hashing it.
	last atomic.Pointer[nexusState]
}

// New returns an engine for dev.
func New(dev storage.Device, cfg Config) *Engine {
	e := &Engine{
		dev:      dev,
		policy:   cfg.Policy,
		res:      cfg.Reservations,
		log:      cfg.Log,
		product:  cfg.Product,
		revision: cfg.Revision,
		maxXfer:  cfg.MaxTransferBlocks,
		resets:   cfg.Resets,
	}
	e.known.Store(&map[scsi.Nexus]*nexusState{})
	if e.resets == nil {
		e.resets = new(scsi.Resets)
	}
	if e.policy == nil {
		e.policy = scsi.EmulatedPolicy()
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.product == "" {
		e.product = "VIRTUAL DISK"
	}
	if e.revision == "" {
		e.revision = "0001"
	}
	e.serial, e.naa = scsi.Designators(cfg.Identity)
	if e.maxXfer == 0 {
		e.maxXfer = 8 << 20 / 512
	}
	return e
}

// Serial is the unit serial number (VPD page 0x80).
func (e *Engine) Serial() string { return e.serial }

// NAA is the NAA 6 designator (VPD page 0x83).
func (e *Engine) NAA() [16]byte { return e.naa }

// geometry is the device's shape for one command.
type geometry struct {
	info   storage.Info
	bs     int64 // logical block size
	blocks uint64
}

func (e *Engine) geometry() geometry {
	info := e.dev.Info()
	bs := int64(info.LogicalBlockSize)
	if bs != 512 && bs != 4096 {
		bs = 512
	}
	var blocks uint64
	if info.Size > 0 {
		blocks = uint64(info.Size / bs)
	}
	return geometry{info: info, bs: bs, blocks: blocks}
}

// inRange reports whether [lba, lba+n) lies within the device.
func (g *geometry) inRange(lba, n uint64) bool {
	return lba <= g.blocks && n <= g.blocks-lba
}

// Execute runs cmd for nexus n and fills res. See the package invariants.
func (e *Engine) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	res.Reset(len(cmd.Data))
	cdb := cmd.CDB
	if len(cdb) == 0 || len(cdb) > scsi.MaxCDB {
		e.fail(res, scsi.InvalidOpcode)
		return
	}
	op := cdb[0]
	switch e.policy.Allows(cdb) {
	case scsi.DeniedOpcode:
		e.log.Warn("scsi: command denied by policy", "dom", n.Dom, "device", n.Device, "op", scsi.OpName(op))
		e.fail(res, scsi.InvalidOpcode)
		return
	case scsi.DeniedServiceAct:
		e.log.Warn("scsi: service action denied by policy", "dom", n.Dom, "device", n.Device, "op", scsi.OpName(op), "sa", scsi.ServiceAction(cdb))
		e.failField(res, scsi.InvalidFieldInCDB, 1, 4)
		return
	}
	if want := scsi.CDBLen(op); want == 0 || len(cdb) < want {
		// Nothing we implement is variable-length or vendor-specific.
		e.fail(res, scsi.InvalidOpcode)
		return
	}
	g := e.geometry()
	if !scsi.UnitAttentionExempt(op) {
		if c, ok := e.unitAttention(n, g.info.Size); ok {
			e.fail(res, c)
			return
		}
	}
	if e.res != nil && e.res.Conflict(n, cdb) {
		res.SetStatus(scsi.StatusReservationConflict)
		return
	}
	e.dispatch(n, cmd, res, &g)
}

// nexusState is what one nexus has been told: the counts and the
// capacity it last heard of. Written under Engine.mu only; read without
// it.
type nexusState struct {
	nexus   scsi.Nexus    // whose record; never changes
	modeGen atomic.Uint64 // mode page generation last reported
	resets  atomic.Uint64 // logical unit resets reported
	size    atomic.Int64  // capacity last reported
}

// current reports whether the nexus has been told of everything up to
// these counts and this capacity.
func (st *nexusState) current(gen, resets uint64, size int64) bool {
	return st.resets.Load() == resets && st.size.Load() == size && st.modeGen.Load() == gen
}

// unitAttention pops the unit attention pending for n, in order: POWER ON
// RESET at the nexus's first command, BUS DEVICE RESET FUNCTION OCCURRED
// after another nexus's logical unit reset, CAPACITY DATA HAS CHANGED after a
// resize (size is the capacity this command runs with), MODE PARAMETERS
// CHANGED after another nexus's MODE SELECT, then whatever the reservation
// engine queued.
//
// The counts are read before the nexus's record, and a record moves only
// under mu to counts read before it was taken: an attention whose count
// moved before a command began is reported to that command or to one
// that ran alongside it, never lost. A nexus told of everything (the
// steady state) is seen so without mu.
func (e *Engine) unitAttention(n scsi.Nexus, size int64) (scsi.Code, bool) {
	gen := e.modeGen.Load()
	resets := e.resets.Count()
	if st := e.record(n); st == nil || !st.current(gen, resets, size) {
		if c, ok := e.tell(n, gen, resets, size); ok {
			return c, true
		}
	}
	if e.res != nil {
		return e.res.UnitAttention(n)
	}
	return scsi.Code{}, false
}

// record is n's record, nil before its first command.
func (e *Engine) record(n scsi.Nexus) *nexusState {
	if st := e.last.Load(); st != nil && st.nexus == n {
		return st
	}
	st := (*e.known.Load())[n]
	if st != nil {
		e.last.Store(st)
	}
	return st
}

// tell is unitAttention's look under mu: the first attention n has not
// been told of, its record moved past it.
func (e *Engine) tell(n scsi.Nexus, gen, resets uint64, size int64) (scsi.Code, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	known := *e.known.Load()
	st := known[n]
	switch {
	case st == nil:
		st = &nexusState{nexus: n}
		st.modeGen.Store(gen)
		st.resets.Store(resets)
		st.size.Store(size)
		next := make(map[scsi.Nexus]*nexusState, len(known)+1)
		for k, v := range known {
			next[k] = v
		}
		next[n] = st
		e.known.Store(&next)
		return scsi.PowerOnReset, true
	case st.resets.Load() != resets:
		st.resets.Store(resets)
		return scsi.BusDeviceReset, true
	case st.size.Load() != size:
		st.size.Store(size)
		return scsi.CapacityDataChanged, true
	case st.modeGen.Load() != gen:
		st.modeGen.Store(gen)
		return scsi.ModeParametersChanged, true
	}
	return scsi.Code{}, false
}

// LogicalUnitReset implements scsi.LogicalUnitResetter: every nexus of
// the logical unit but n (of this engine and of every engine sharing its
// Resets) is told BUS DEVICE RESET FUNCTION OCCURRED at its next
// command, and the reservations release an SPC-2 reservation. The
// engine has no task set of its own (its transport clears it) and its
// mode pages keep their values: they are not saved apart from current
// ones.
func (e *Engine) LogicalUnitReset(n scsi.Nexus) {
	count := e.resets.Add()
	e.mu.Lock()
	if st := (*e.known.Load())[n]; st != nil && st.resets.Load() < count {
		st.resets.Store(count)
	}
	e.mu.Unlock()
	if r, ok := e.res.(scsi.LogicalUnitResetter); ok {
		r.LogicalUnitReset(n)
	}
}

// modeChanged records a mode page change made by n: every other nexus gets
// MODE PARAMETERS CHANGED.
func (e *Engine) modeChanged(n scsi.Nexus) {
	gen := e.modeGen.Add(1)
	e.mu.Lock()
	if st := (*e.known.Load())[n]; st != nil && st.modeGen.Load() < gen {
		st.modeGen.Store(gen)
	}
	e.mu.Unlock()
}

// dispatch runs cmd; g is the device's shape the command was admitted
// with (READ and WRITE use it; the rest read their own).
func (e *Engine) dispatch(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result, g *geometry) {
	cdb := cmd.CDB
	switch cdb[0] {
	case scsi.OpTestUnitReady, scsi.OpStartStopUnit:
		// Always ready; there is no medium to spin or eject.
	case scsi.OpRequestSense:
		e.requestSense(n, cmd, res, g)
	case scsi.OpInquiry:
		e.inquiry(cmd, res)
	case scsi.OpReportLuns:
		e.reportLUNs(cmd, res)
	case scsi.OpReadCapacity10:
		e.readCapacity10(cmd, res)
	case scsi.OpServiceActionIn16:
		switch scsi.ServiceAction(cdb) {
		case scsi.SAReadCapacity16:
			e.readCapacity16(cmd, res)
		case scsi.SAGetLBAStatus:
			e.getLBAStatus(cmd, res)
		default:
			e.failField(res, scsi.InvalidFieldInCDB, 1, 4)
		}
	case scsi.OpMaintenanceIn:
		if scsi.ServiceAction(cdb) != scsi.SAReportSupportedOpcodes {
			e.failField(res, scsi.InvalidFieldInCDB, 1, 4)
			return
		}
		e.reportSupportedOpcodes(cmd, res)
	case scsi.OpModeSense6, scsi.OpModeSense10:
		e.modeSense(cmd, res)
	case scsi.OpModeSelect6, scsi.OpModeSelect10:
		e.modeSelect(n, cmd, res)
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16:
		e.read(cmd, res, g)
	case scsi.OpWrite6, scsi.OpWrite10, scsi.OpWrite12, scsi.OpWrite16:
		e.write(cmd, res, g)
	case scsi.OpVerify10, scsi.OpVerify12, scsi.OpVerify16:
		e.verify(cmd, res)
	case scsi.OpSynchronizeCache10, scsi.OpSynchronizeCache16:
		e.synchronizeCache(cmd, res)
	case scsi.OpWriteSame10, scsi.OpWriteSame16:
		e.writeSame(cmd, res)
	case scsi.OpUnmap:
		if !e.dev.Info().CanDiscard {
			e.fail(res, scsi.InvalidOpcode)
			return
		}
		e.unmap(cmd, res)
	case scsi.OpCompareAndWrite:
		e.compareAndWrite(cmd, res)
	case scsi.OpPersistentReserveIn, scsi.OpPersistentReserveOut,
		scsi.OpReserve6, scsi.OpRelease6, scsi.OpReserve10, scsi.OpRelease10:
		if e.res == nil {
			e.fail(res, scsi.InvalidOpcode)
			return
		}
		e.res.Execute(n, cmd, res, e.dsense.Load())
		// The reservation engine is another component: keep our
		// residual promise whatever it reports.
		if res.Resid < 0 || res.Resid > len(cmd.Data) {
			res.Resid = len(cmd.Data)
		}
		if res.SenseLen < 0 || res.SenseLen > scsi.MaxSense {
			res.SenseLen = 0
		}
	default:
		e.fail(res, scsi.InvalidOpcode)
	}
}

// fail reports c in the current sense format.
func (e *Engine) fail(res *scsi.Result, c scsi.Code) {
	res.SetCheck(scsi.Sense{Code: c}, e.dsense.Load())
}

// failField reports c with a field pointer to CDB byte b (bit < 0: no bit).
func (e *Engine) failField(res *scsi.Result, c scsi.Code, b int, bit int) {
	fp := scsi.FieldPointer{Valid: true, InCDB: c == scsi.InvalidFieldInCDB, Byte: uint16(b)}
	if bit >= 0 {
		fp.BitValid, fp.Bit = true, uint8(bit)
	}
	res.SetCheck(scsi.Sense{Code: c, Field: fp}, e.dsense.Load())
}

// failInfo reports c with INFORMATION set to info.
func (e *Engine) failInfo(res *scsi.Result, c scsi.Code, info uint64) {
	res.SetCheck(scsi.Sense{Code: c, InfoValid: true, Info: info}, e.dsense.Load())
}

// dataIn returns the part of the data buffer that data-in may fill, limited
// by the CDB's allocation length.
func dataIn(cmd *scsi.Command, alloc int) []byte {
	if cmd.Dir != scsi.DirFromDevice {
		return nil
	}
	if alloc < len(cmd.Data) {
		return cmd.Data[:alloc]
	}
	return cmd.Data
}

// reply copies prepared parameter data into the data-in buffer, truncated
// to the allocation length (SPC-4 4.2.5.6), and sets the residual.
func reply(cmd *scsi.Command, res *scsi.Result, alloc int, data []byte) {
	n := copy(dataIn(cmd, alloc), data)
	res.Resid = len(cmd.Data) - n
}

// dataOut returns the parameter list of length plen, or ok=false when the
// buffer does not hold it.
func dataOut(cmd *scsi.Command, plen int) ([]byte, bool) {
	if plen == 0 {
		return nil, true
	}
	if cmd.Dir != scsi.DirToDevice || len(cmd.Data) < plen {
		return nil, false
	}
	return cmd.Data[:plen], true
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// Fenced implements scsi.Fencer: plain block I/O from n is judged by the
// engine's reservations as READ(10) or WRITE(10) would be.
func (e *Engine) Fenced(n scsi.Nexus, write bool) bool { return scsi.Fenced(e.res, n, write) }
