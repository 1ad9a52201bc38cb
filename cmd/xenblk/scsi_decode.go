package main

// Decoders for what a SCSI device answers, in the words of sg3_utils. Each
// takes bytes from the device (untrusted), never panics, and reads nothing
// past the end nor past the length the data declares.

import (
	"encoding/binary"
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

// describeSense renders sense data for a person:
// "Sense key: Illegal Request, asc/ascq 0x20/0x00 Invalid command operation code",
// then what it means in plain words where that helps.
func describeSense(b []byte) string {
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

var peripheralTypes = map[byte]string{
	0x00: "disk", 0x01: "tape", 0x05: "cd/dvd", 0x07: "optical disk",
	0x0c: "enclosure services / storage array", 0x0d: "enclosure", 0x0e: "simplified direct access", 0x1f: "no physical device",
}

var versionNames = map[byte]string{0: "no conformance claimed", 3: "SPC", 4: "SPC-2", 5: "SPC-3", 6: "SPC-4", 7: "SPC-5"}

func asciiField(b []byte) string {
	var w strings.Builder
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '.'
		}
		w.WriteByte(c)
	}
	return strings.TrimRight(w.String(), " ")
}

// decodeStdInquiry renders standard INQUIRY data like sg_inq.
func decodeStdInquiry(b []byte) string {
	if len(b) < 5 {
		return fmt.Sprintf("standard INQUIRY: short response (%d bytes)\n", len(b))
	}
	var w strings.Builder
	pdt := b[0] & 0x1f
	pt := peripheralTypes[pdt]
	if pt == "" {
		pt = "unknown"
	}
	fmt.Fprintf(&w, "standard INQUIRY:\n")
	fmt.Fprintf(&w, "  PQual=%d  PDT=%d  RMB=%d  version=0x%02x  [%s]\n", b[0]>>5, pdt, b[1]>>7, b[2], versionNames[b[2]])
	fmt.Fprintf(&w, "  NormACA=%d  HiSUP=%d  Resp_data_format=%d\n", b[3]>>5&1, b[3]>>4&1, b[3]&0xf)
	if len(b) > 7 {
		fmt.Fprintf(&w, "  SCCS=%d  ACC=%d  TPGS=%d  3PC=%d  Protect=%d  CmdQue=%d\n", b[5]>>7, b[5]>>6&1, b[5]>>4&3, b[5]>>3&1, b[5]&1, b[7]>>1&1)
	}
	fmt.Fprintf(&w, "    length=%d (0x%x)   Peripheral device type: %s\n", int(b[4])+5, int(b[4])+5, pt)
	fields := []struct {
		name     string
		from, to int
	}{{"Vendor identification", 8, 16}, {"Product identification", 16, 32}, {"Product revision level", 32, 36}}
	for _, f := range fields {
		if len(b) >= f.to {
			fmt.Fprintf(&w, " %s: %s\n", f.name, asciiField(b[f.from:f.to]))
		}
	}
	return w.String()
}

var vpdNames = map[byte]string{
	0x00: "Supported VPD pages", 0x80: "Unit serial number", 0x83: "Device identification",
	0x86: "Extended INQUIRY data", 0xb0: "Block limits", 0xb1: "Block device characteristics",
	0xb2: "Logical block provisioning",
}

// vpdBody checks the 4-byte VPD header against page and returns the
// payload, cut to the declared length.
func vpdBody(b []byte, page byte) ([]byte, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("VPD page 0x%02x: short response (%d bytes)", page, len(b))
	}
	if b[1] != page {
		return nil, fmt.Errorf("asked for VPD page 0x%02x, got 0x%02x", page, b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	body := b[4:]
	if n < len(body) {
		body = body[:n]
	}
	return body, nil
}

// decodeVPD renders a VPD page like sg_inq/sg_vpd do.
func decodeVPD(b []byte, page byte) (string, error) {
	body, err := vpdBody(b, page)
	if err != nil {
		return "", err
	}
	var w strings.Builder
	switch page {
	case 0x00:
		w.WriteString("Supported VPD pages:\n")
		for _, p := range body {
			name := vpdNames[p]
			if name == "" {
				name = "unknown"
			}
			fmt.Fprintf(&w, "  0x%02x\t%s\n", p, name)
		}
	case 0x80:
		fmt.Fprintf(&w, "Unit serial number VPD page:\n  Unit serial number: %s\n", asciiField(body))
	case 0x83:
		w.WriteString("Device Identification VPD page:\n")
		decodeDesignators(&w, body)
	case 0xb0:
		w.WriteString("Block limits VPD page (SBC):\n")
		u16 := func(off int) uint64 {
			if off+2 > len(body) {
				return 0
			}
			return uint64(binary.BigEndian.Uint16(body[off:]))
		}
		u32 := func(off int) uint64 {
			if off+4 > len(body) {
				return 0
			}
			return uint64(binary.BigEndian.Uint32(body[off:]))
		}
		u64 := func(off int) uint64 {
			if off+8 > len(body) {
				return 0
			}
			return binary.BigEndian.Uint64(body[off:])
		}
		if len(body) > 1 {
			fmt.Fprintf(&w, "  Maximum compare and write length: %d blocks\n", body[1])
		}
		fmt.Fprintf(&w, "  Optimal transfer length granularity: %d blocks\n", u16(2))
		fmt.Fprintf(&w, "  Maximum transfer length: %d blocks\n", u32(4))
		fmt.Fprintf(&w, "  Optimal transfer length: %d blocks\n", u32(8))
		fmt.Fprintf(&w, "  Maximum prefetch transfer length: %d blocks\n", u32(12))
		fmt.Fprintf(&w, "  Maximum unmap LBA count: %d\n", u32(16))
		fmt.Fprintf(&w, "  Maximum unmap block descriptor count: %d\n", u32(20))
		fmt.Fprintf(&w, "  Optimal unmap granularity: %d blocks\n", u32(24))
		fmt.Fprintf(&w, "  Unmap granularity alignment valid: %d\n", u32(28)>>31)
		fmt.Fprintf(&w, "  Unmap granularity alignment: %d\n", u32(28)&0x7fffffff)
		fmt.Fprintf(&w, "  Maximum write same length: %d blocks\n", u64(32))
	case 0xb1:
		w.WriteString("Block device characteristics VPD page (SBC):\n")
		if len(body) < 2 {
			w.WriteString("  short page\n")
			break
		}
		rate := binary.BigEndian.Uint16(body[0:2])
		switch {
		case rate == 0:
			w.WriteString("  Nominal rotation rate: 0 (not reported)\n")
		case rate == 1:
			w.WriteString("  Nominal rotation rate: 1 (non-rotating medium)\n")
		case rate < 0x401 || rate == 0xffff:
			fmt.Fprintf(&w, "  Nominal rotation rate: %d (reserved)\n", rate)
		default:
			fmt.Fprintf(&w, "  Nominal rotation rate: %d rpm\n", rate)
		}
		if len(body) > 3 {
			fmt.Fprintf(&w, "  Nominal form factor: %d\n", body[3]&0xf)
		}
	case 0xb2:
		w.WriteString("Logical block provisioning VPD page (SBC):\n")
		if len(body) < 4 {
			w.WriteString("  short page\n")
			break
		}
		fmt.Fprintf(&w, "  Unmap command supported (LBPU): %d\n", body[1]>>7)
		fmt.Fprintf(&w, "  Write same (16) with unmap bit supported (LBPWS): %d\n", body[1]>>6&1)
		fmt.Fprintf(&w, "  Write same (10) with unmap bit supported (LBPWS10): %d\n", body[1]>>5&1)
		fmt.Fprintf(&w, "  Logical block provisioning read zeros (LBPRZ): %d\n", body[1]>>2&1)
		fmt.Fprintf(&w, "  Anchored LBAs supported (ANC_SUP): %d\n", body[1]>>1&1)
		fmt.Fprintf(&w, "  Threshold exponent: %d\n", body[0])
		fmt.Fprintf(&w, "  Descriptor present (DP): %d\n", body[1]&1)
		prov := map[byte]string{0: "not known or fully provisioned", 1: "resource provisioned", 2: "thin provisioned"}[body[2]&7]
		if prov == "" {
			prov = "reserved"
		}
		fmt.Fprintf(&w, "  Provisioning type: %d (%s)\n", body[2]&7, prov)
	default:
		fmt.Fprintf(&w, "VPD page 0x%02x (not decoded; use --hex):\n", page)
		w.WriteString(hexDump(b))
	}
	return w.String(), nil
}

var designatorTypes = map[byte]string{
	0: "vendor specific [0x0]", 1: "T10 vendor identification", 2: "EUI-64 based", 3: "NAA",
	4: "Relative target port", 5: "Target port group", 6: "Logical unit group", 7: "MD5 logical unit identifier",
	8: "SCSI name string",
}

var associations = [4]string{"Addressed logical unit", "Target port", "Target device that contains addressed lu", "Reserved"}

func decodeDesignators(w *strings.Builder, body []byte) {
	for len(body) >= 4 {
		n := 4 + int(body[3])
		if n > len(body) {
			fmt.Fprintf(w, "  truncated designator (%d of %d bytes)\n", len(body), n)
			return
		}
		d := body[4:n]
		codeSet, typ := body[0]&0xf, body[1]&0xf
		fmt.Fprintf(w, "  Designation descriptor number, descriptor length: %d\n", n)
		fmt.Fprintf(w, "    designator_type: %s,  code_set: %s\n", orUnknown(designatorTypes[typ]), codeSetName(codeSet))
		fmt.Fprintf(w, "    associated with the %s\n", associations[body[1]>>4&3])
		switch {
		case typ == 3:
			fmt.Fprintf(w, "      0x%s\n", hex.EncodeToString(d))
		case codeSet == 2 || codeSet == 3:
			fmt.Fprintf(w, "      %s\n", asciiField(d))
		default:
			fmt.Fprintf(w, "      0x%s\n", hex.EncodeToString(d))
		}
		body = body[n:]
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "reserved"
	}
	return s
}

func codeSetName(c byte) string {
	switch c {
	case 1:
		return "Binary"
	case 2:
		return "ASCII"
	case 3:
		return "UTF-8"
	}
	return "Reserved"
}

// hexDump renders bytes like sg_raw: offset then 16 bytes a line.
func hexDump(b []byte) string {
	var w strings.Builder
	for off := 0; off < len(b); off += 16 {
		end := min(off+16, len(b))
		fmt.Fprintf(&w, " %02x    ", off)
		for i := off; i < off+16; i++ {
			if i < end {
				fmt.Fprintf(&w, " %02x", b[i])
			} else {
				w.WriteString("   ")
			}
			if i == off+7 {
				w.WriteByte(' ')
			}
		}
		w.WriteString("    " + asciiField(b[off:end]) + "\n")
	}
	return w.String()
}

// decodeLUNs renders REPORT LUNS data like sg_luns.
func decodeLUNs(b []byte) string {
	if len(b) < 8 {
		return fmt.Sprintf("REPORT LUNS: short response (%d bytes)\n", len(b))
	}
	n := int(binary.BigEndian.Uint32(b[0:4]))
	list := b[8:]
	if n < len(list) {
		list = list[:n&^7]
	}
	list = list[:len(list)&^7]
	var w strings.Builder
	fmt.Fprintf(&w, "Lun list length = %d which imples %d lun entr%s\n", n, n/8, map[bool]string{true: "y", false: "ies"}[n/8 == 1])
	w.WriteString("Report luns [select_report=0x0]:\n")
	for i := 0; i+8 <= len(list); i += 8 {
		fmt.Fprintf(&w, "    %s\n", hex.EncodeToString(list[i:i+8]))
	}
	if len(list)/8 < n/8 {
		fmt.Fprintf(&w, "  (%d more not returned; the allocation length was too short)\n", n/8-len(list)/8)
	}
	return w.String()
}

// decodeReadCap renders READ CAPACITY (10) or (16) data like sg_readcap.
func decodeReadCap(b []byte, long bool) (string, error) {
	var lastLBA uint64
	var blockLen uint32
	var w strings.Builder
	if long {
		if len(b) < 12 {
			return "", fmt.Errorf("READ CAPACITY (16): short response (%d bytes)", len(b))
		}
		lastLBA, blockLen = binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint32(b[8:12])
	} else {
		if len(b) < 8 {
			return "", fmt.Errorf("READ CAPACITY (10): short response (%d bytes)", len(b))
		}
		lastLBA, blockLen = uint64(binary.BigEndian.Uint32(b[0:4])), binary.BigEndian.Uint32(b[4:8])
	}
	w.WriteString("Read Capacity results:\n")
	if long && len(b) >= 16 {
		fmt.Fprintf(&w, "   Protection: prot_en=%d, p_type=%d, p_i_exponent=%d\n", b[12]&1, b[12]>>1&7, b[13]>>4)
		fmt.Fprintf(&w, "   Logical block provisioning: lbpme=%d, lbprz=%d\n", b[14]>>7, b[14]>>6&1)
	}
	if !long && lastLBA == 0xffffffff {
		w.WriteString("   Last LBA=0xffffffff: the device is too big for READ CAPACITY (10); use --16\n")
		return w.String(), nil
	}
	blocks := lastLBA + 1
	fmt.Fprintf(&w, "   Last LBA=%d (0x%x), Number of logical blocks=%d\n", lastLBA, lastLBA, blocks)
	fmt.Fprintf(&w, "   Logical block length=%d bytes\n", blockLen)
	if long && len(b) >= 16 {
		fmt.Fprintf(&w, "   Logical blocks per physical block exponent=%d", b[13]&0xf)
		if b[13]&0xf != 0 {
			fmt.Fprintf(&w, " [so physical block length=%d bytes]", uint64(blockLen)<<(b[13]&0xf))
		}
		fmt.Fprintf(&w, "\n   Lowest aligned LBA=%d\n", binary.BigEndian.Uint16(b[14:16])&0x3fff)
	}
	size := float64(blocks) * float64(blockLen)
	fmt.Fprintf(&w, "Hence:\n   Device size: %.0f bytes, %.1f MiB, %.2f GB\n", size, size/(1<<20), size/1e9)
	return w.String(), nil
}
