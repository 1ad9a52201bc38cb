package sgfmt

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/xenblk/xenblk/scsi"
)

var senseKeyNames = [16]string{
	"No Sense", "Recovered Error", "Not Ready", "Medium Error", "Hardware Error",
	"Illegal Request", "Unit Attention", "Data Protect", "Blank Check", "Vendor Specific",
	"Copy Aborted", "Aborted Command", "Reserved", "Volume Overflow", "Miscompare", "Completed",
}

// ascNames describes the additional sense codes xenblk's engines report
// (SPC-4 annex D wording).
var ascNames = map[[2]byte]string{
	{0x00, 0x00}: "No additional sense information",
	{0x04, 0x00}: "Logical unit not ready, cause not reportable",
	{0x08, 0x00}: "Logical unit communication failure",
	{0x0c, 0x00}: "Write error",
	{0x11, 0x00}: "Unrecovered read error",
	{0x1a, 0x00}: "Parameter list length error",
	{0x1d, 0x00}: "Miscompare during verify operation",
	{0x20, 0x00}: "Invalid command operation code",
	{0x21, 0x00}: "Logical block address out of range",
	{0x24, 0x00}: "Invalid field in cdb",
	{0x25, 0x00}: "Logical unit not supported",
	{0x26, 0x00}: "Invalid field in parameter list",
	{0x26, 0x04}: "Invalid release of persistent reservation",
	{0x27, 0x00}: "Write protected",
	{0x29, 0x00}: "Power on, reset, or bus device reset occurred",
	{0x29, 0x03}: "Bus device reset function occurred",
	{0x2a, 0x01}: "Mode parameters changed",
	{0x2a, 0x03}: "Reservations preempted",
	{0x2a, 0x04}: "Reservations released",
	{0x2a, 0x05}: "Registrations preempted",
	{0x2a, 0x09}: "Capacity data has changed",
	{0x39, 0x00}: "Saving parameters not supported",
	{0x3a, 0x00}: "Medium not present",
	{0x44, 0x00}: "Internal target failure",
	{0x55, 0x04}: "Insufficient registration resources",
}

// senseMeanings says in plain words what a sense code means for the user
// and what to do, where SPC's name alone leaves them guessing. Keyed by
// ASC/ASCQ; senseFamilyMeanings covers every ASCQ of an ASC.
var senseMeanings = map[[2]byte]string{
	{0x04, 0x00}: "The unit is not ready yet; retry in a moment.",
	{0x08, 0x00}: "The device server lost contact with something it depends on. From xenblk, it is the shared reservation store (etcd, --pr-store): the backend's log says why; retry once the store is back, then read the reservation (PR IN) to see whether the command took effect. From another target (e.g. LIO answering a transfer shorter than a block), see that target's log.",
	{0x0c, 0x00}: "The backend could not write the image; its log says why.",
	{0x11, 0x00}: "The backend could not read the image; its log says why.",
	{0x1a, 0x00}: "The command's parameter list length does not fit what the command carries.",
	{0x1d, 0x00}: "The data on the disk differs from the data the command compared it with.",
	{0x20, 0x00}: "The unit does not support this command, or the vbd's scsi-policy does not allow it.",
	{0x21, 0x00}: "The command reaches past the end of the disk.",
	{0x24, 0x00}: "A field of the command is invalid (the field pointer, when shown, says which).",
	{0x25, 0x00}: "There is no such logical unit.",
	{0x26, 0x00}: "A field of the parameter list is invalid (the field pointer, when shown, says which).",
	{0x26, 0x04}: "The release names a type or key that does not match the reservation held.",
	{0x27, 0x00}: "The disk is read-only (attached with access=ro, or the image is read-only).",
	{0x2a, 0x01}: "Another initiator changed the mode parameters; the next command will succeed.",
	{0x2a, 0x03}: "Another initiator preempted the reservation: this initiator no longer holds it.",
	{0x2a, 0x04}: "The reservation was released or cleared by its holder; the next command will succeed.",
	{0x2a, 0x05}: "Another initiator removed this initiator's registration (fenced it off); register again before using the disk.",
	{0x2a, 0x09}: "The disk's size changed; read the capacity again (xenblk scsi readcap).",
	{0x39, 0x00}: "The unit cannot save these parameters across power loss.",
	{0x3a, 0x00}: "There is no medium in the drive.",
	{0x44, 0x00}: "The backend failed internally; its log says why.",
	{0x55, 0x04}: "The unit holds no more registrations: unregister a key before registering another.",
}

var senseFamilyMeanings = map[byte]string{
	0x04: "The unit is not ready; retry in a moment.",
	0x29: "The unit reports it was powered on or reset (each initiator is told once, after the backend starts); nothing failed, and the next command will succeed.",
}

// senseMeaning is the plain sentence for a sense code, "" when SPC's name
// says enough.
func senseMeaning(asc, ascq byte) string {
	if m, ok := senseMeanings[[2]byte{asc, ascq}]; ok {
		return m
	}
	return senseFamilyMeanings[asc]
}

// Sense renders sense data for a person:
// "Sense key: Illegal Request, asc/ascq 0x20/0x00 Invalid command operation code",
// then what it means in plain words where that helps.
func Sense(b []byte) string {
	s, descriptor, ok := scsi.ParseSense(b)
	if !ok {
		return "Sense data not understood: " + hex.EncodeToString(b)
	}
	var w strings.Builder
	fmt.Fprintf(&w, "Sense key: %s, asc/ascq 0x%02x/0x%02x", senseKeyNames[s.Key&0xf], s.ASC, s.ASCQ)
	if name, ok := ascNames[[2]byte{s.ASC, s.ASCQ}]; ok {
		w.WriteString(" " + name)
	}
	if descriptor {
		w.WriteString(" [descriptor format]")
	}
	if s.InfoValid {
		fmt.Fprintf(&w, "\n  Info fld=0x%x (%d)", s.Info, s.Info)
	}
	if s.Field.Valid {
		where := "parameter list"
		if s.Field.InCDB {
			where = "cdb"
		}
		fmt.Fprintf(&w, "\n  Field replaceable: error in %s byte %d", where, s.Field.Byte)
		if s.Field.BitValid {
			fmt.Fprintf(&w, " bit %d", s.Field.Bit)
		}
	}
	if m := senseMeaning(s.ASC, s.ASCQ); m != "" {
		w.WriteString("\n" + m)
	}
	return w.String()
}

// statusMeanings says in plain words what a status without sense data
// means (CHECK CONDITION's meaning is in its sense).
var statusMeanings = map[byte]string{
	scsi.StatusReservationConflict: "Another initiator holds a persistent reservation that excludes this command (xenblk pr read-reservation shows it).",
	scsi.StatusBusy:                "The unit is busy; retry in a moment.",
	scsi.StatusTaskSetFull:         "The unit has too many commands in flight; retry in a moment.",
}

// StatusMeaning is the plain sentence for a SCSI status, "" for GOOD and
// for CHECK CONDITION, whose sense says what happened.
func StatusMeaning(status byte) string { return statusMeanings[status] }
