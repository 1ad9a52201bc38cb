// Package scsi holds what every SCSI-speaking part of xenblk shares:
// operation codes, the Command/Result pair the engines execute, sense data
// (fixed and descriptor format), the I_T nexus, the per-device opcode policy
// and the hook through which persistent reservations are enforced.
//
// Nothing here does I/O. scsi/emulate executes commands against a
// storage.Device; scsi/sgio passes them to a whole SCSI disk; scsi/pr is the
// reservation state machine behind the Reservations interface.
package scsi

// Direction is the direction of a command's data buffer, seen from the
// initiator (the guest).
type Direction uint8

const (
	DirNone       Direction = iota // no data phase
	DirToDevice                    // data-out: WRITE, MODE SELECT, UNMAP, PR OUT
	DirFromDevice                  // data-in: READ, INQUIRY, MODE SENSE
)

func (d Direction) String() string {
	switch d {
	case DirNone:
		return "none"
	case DirToDevice:
		return "to-device"
	case DirFromDevice:
		return "from-device"
	}
	return "invalid"
}

// Nexus is an I_T nexus: the initiator is the frontend domain, the target
// port is the virtual device it speaks to. Reservations and unit attentions
// are kept per nexus.
type Nexus struct {
	Dom    uint16
	Device string
	// Initiator, when set, names the initiator instead of Dom: a name
	// its toolstack gives the guest, the same on every host (diskspec's
	// initiator key), so that a guest served by another host, or moved
	// there, is the same nexus. Dom is then 0 and Device the virtual
	// device number, which the guest keeps too.
	Initiator string `json:",omitempty"`
}

// MaxCDB is the longest CDB the blkif SCSI extension carries.
const MaxCDB = 32

// MaxSense is the longest sense data a Result carries (SPC's limit).
const MaxSense = 252

// Command is one SCSI command as the backend received it. CDB must be the
// backend's private copy (engines read it more than once). Data is the
// whole data buffer (len = the transport's data_len), possibly memory the
// guest can still write: engines read data-out from it or write data-in
// into it, never past its end, and copy any parameter list they validate
// before using it.
type Command struct {
	CDB  []byte
	Dir  Direction
	Data []byte
}

// Result is a command's outcome. It is filled in place (engines take a
// *Result) so that executing a command allocates nothing.
type Result struct {
	Status   byte
	SenseLen int // valid bytes of Sense
	Sense    [MaxSense]byte
	// Resid is len(Command.Data) minus the bytes actually transferred.
	Resid int
}

// SenseBytes returns the valid sense bytes (aliasing r).
func (r *Result) SenseBytes() []byte { return r.Sense[:r.SenseLen] }

// Reset makes r a GOOD result with no sense and residual resid, zeroing
// every sense byte so that no stale data can reach the guest.
func (r *Result) Reset(resid int) {
	r.Status = StatusGood
	r.SenseLen = 0
	r.Sense = [MaxSense]byte{}
	r.Resid = resid
}

// Good reports whether the status is GOOD.
func (r *Result) Good() bool { return r.Status == StatusGood }

// Status codes (SAM-5).
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusACAActive           = 0x30
	StatusTaskAborted         = 0x40
)

// StatusName names a status for logs and tools.
func StatusName(s byte) string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return "UNKNOWN STATUS"
}
