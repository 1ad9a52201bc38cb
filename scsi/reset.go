package scsi

// LogicalUnitResetter is implemented by engines that keep per-nexus
// state. LogicalUnitReset carries out a LOGICAL UNIT RESET received on
// nexus n (SAM-5): the transport has cleared the task set; the engine
// establishes a unit attention, BUS DEVICE RESET FUNCTION OCCURRED, for
// every other nexus of the logical unit, and releases an SPC-2
// reservation. Persistent reservations are not affected (SPC-4 5.13).
type LogicalUnitResetter interface {
	LogicalUnitReset(n Nexus)
}
