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
