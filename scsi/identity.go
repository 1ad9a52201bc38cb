package scsi

import (
	"crypto/sha256"
	"encoding/hex"
)

// xenOUI is XenSource's IEEE company ID, the registered part of the NAA 6
// designators derived here.
const xenOUI = 0x00163e

// Designators derives a logical unit's unit serial number (VPD page 0x80)
// and NAA 6 designator (VPD page 0x83) from its identity (an image path,
// "vm-uuid/xvda"): the same identity gives the same designators on every
// host and after every restart, which Windows clustering needs and which
// names the unit in a reservation store shared across hosts.
func Designators(identity string) (serial string, naa [16]byte) {
	sum := sha256.Sum256([]byte("xenblk-scsi-identity\x00" + identity))
	serial = hex.EncodeToString(sum[:10])
	// NAA 6 (IEEE registered extended): 4-bit NAA, 24-bit OUI, then 100
	// bits of vendor-specific identifier taken from the hash.
	oui := uint32(xenOUI)
	naa[0] = 0x60 | byte(oui>>20)&0x0f
	naa[1] = byte(oui >> 12)
	naa[2] = byte(oui >> 4)
	naa[3] = byte(oui<<4) | sum[10]&0x0f
	copy(naa[4:], sum[11:23])
	return serial, naa
}
