// Package sgfmt renders what a SCSI device answers (sense data, INQUIRY
// and its VPD pages, READ CAPACITY, REPORT LUNS, PERSISTENT RESERVE IN)
// as text, in the words sg3_utils prints, for xenblk's SCSI tools. Each
// renderer takes bytes from the device (untrusted), never panics, and
// reads nothing past the end nor past the length the data declares.
package sgfmt

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

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

// HexDump renders bytes like sg_raw: offset then 16 bytes a line.
func HexDump(b []byte) string {
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

// ReportLUNs renders REPORT LUNS data like sg_luns.
func ReportLUNs(b []byte) string {
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

// ReadCapacity renders READ CAPACITY (10) or (16) data like sg_readcap.
func ReadCapacity(b []byte, long bool) (string, error) {
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
