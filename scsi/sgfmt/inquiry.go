package sgfmt

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

var peripheralTypes = map[byte]string{
	0x00: "disk", 0x01: "tape", 0x05: "cd/dvd", 0x07: "optical disk",
	0x0c: "enclosure services / storage array", 0x0d: "enclosure", 0x0e: "simplified direct access", 0x1f: "no physical device",
}

var versionNames = map[byte]string{0: "no conformance claimed", 3: "SPC", 4: "SPC-2", 5: "SPC-3", 6: "SPC-4", 7: "SPC-5"}

// Inquiry renders standard INQUIRY data like sg_inq.
func Inquiry(b []byte) string {
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

// VPD renders a VPD page like sg_inq/sg_vpd do.
func VPD(b []byte, page byte) (string, error) {
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
		w.WriteString(HexDump(b))
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
