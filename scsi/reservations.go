package scsi

// Reservations is the hook through which an engine enforces SCSI
// reservations; scsi/pr implements it (through an adapter), tests use fakes.
// Every method must be safe for concurrent use and must not retain cdb,
// data or res after returning.
type Reservations interface {
	// Conflict reports whether n may not run cdb now because another nexus
	// holds a reservation (the engine then returns RESERVATION CONFLICT).
	// It is called for every command that passed the policy, including
	// the reservation commands themselves.
	Conflict(n Nexus, cdb []byte) bool
	// Execute runs a reservation command (IsPersistentReservation(cdb[0])):
	// PERSISTENT RESERVE IN writes at most len(cmd.Data) bytes of parameter
	// data into cmd.Data, PERSISTENT RESERVE OUT reads its parameter list
	// from cmd.Data. It fills res completely (status, sense, residual);
	// descriptor selects the sense format the device currently uses.
	Execute(n Nexus, cmd *Command, res *Result, descriptor bool)
	// UnitAttention pops the oldest unit attention pending for n
	// (RESERVATIONS PREEMPTED, REGISTRATIONS PREEMPTED, ...).
	UnitAttention(n Nexus) (c Code, ok bool)
}

// Fencer is implemented by SCSI engines that hold reservations: it tells
// a backend whether a plain block read or write (not a SCSI command) from
// nexus n must be refused with a reservation conflict. A guest that does
// its I/O through the ordinary block path is fenced exactly as if it sent
// READ(10) or WRITE(10): that is what makes a preempted cluster node stop
// writing.
type Fencer interface {
	Fenced(n Nexus, write bool) bool
}

// The CDBs a plain block read and write are judged as; read-only and
// shared (Conflict never keeps or changes them).
var (
	fenceReadCDB  = []byte{OpRead10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
	fenceWriteCDB = []byte{OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}
)

// Fenced answers Fencer's question with r (nil: never fenced).
func Fenced(r Reservations, n Nexus, write bool) bool {
	if r == nil {
		return false
	}
	if write {
		return r.Conflict(n, fenceWriteCDB)
	}
	return r.Conflict(n, fenceReadCDB)
}
