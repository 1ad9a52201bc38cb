package scsitest

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/xenblk/xenblk/scsi"
)

const tur = scsi.OpTestUnitReady

// Cases is the conformance suite, named for the clause or behaviour each
// case pins.
var Cases = []Case{
	{Name: "SAM5_UnitAttention_PowerOnResetOncePerNexus", Run: func(h *H) {
		h.Nexus.Dom = 7 // a nexus that has not spoken yet
		r := h.Exec([]byte{tur, 0, 0, 0, 0, 0}, scsi.DirNone, nil)
		h.Check(r, scsi.PowerOnReset)
		h.Good(h.Exec([]byte{tur, 0, 0, 0, 0, 0}, scsi.DirNone, nil))
	}},
	{Name: "SPC4_5.14_InquiryAndReportLunsDoNotConsumeUnitAttention", Run: func(h *H) {
		h.Nexus.Dom = 8
		r, _ := h.In(Inquiry(false, 0, 96), 96)
		h.Good(r)
		h.Check(h.Exec([]byte{tur, 0, 0, 0, 0, 0}, scsi.DirNone, nil), scsi.PowerOnReset)
	}},
	{Name: "SPC4_6.39_RequestSenseReportsAndClearsUnitAttention", Run: func(h *H) {
		h.Nexus.Dom = 9
		r, buf := h.In([]byte{scsi.OpRequestSense, 0, 0, 0, 252, 0}, 252)
		h.Good(r)
		s, _, ok := scsi.ParseSense(buf[:252-r.Resid])
		if !ok || s.Code != scsi.PowerOnReset {
			h.T.Fatalf("REQUEST SENSE data %x, want POWER ON RESET", buf[:18])
		}
		r, buf = h.In([]byte{scsi.OpRequestSense, 1, 0, 0, 252, 0}, 252) // DESC=1
		h.Good(r)
		if buf[0] != 0x72 || buf[1] != scsi.KeyNoSense {
			h.T.Fatalf("second REQUEST SENSE (descriptor) % x, want 72 00 (NO SENSE)", buf[:8])
		}
		h.Good(h.Exec([]byte{tur, 0, 0, 0, 0, 0}, scsi.DirNone, nil))
	}},
	{Name: "SPC4_6.6.2_StandardInquiryData", Run: func(h *H) {
		r, buf := h.In(Inquiry(false, 0, 255), 255)
		h.Good(r)
		n := 255 - r.Resid
		if n < 36 || int(buf[4])+5 != n {
			h.T.Fatalf("returned %d bytes, additional length %d", n, buf[4])
		}
		if buf[0] != 0 || buf[2] != 0x06 || buf[3]&0x0f != 2 {
			h.T.Fatalf("peripheral %02x version %02x format %02x", buf[0], buf[2], buf[3])
		}
		if got := strings.TrimSpace(string(buf[8:16])); got != "XENBLK" {
			h.T.Fatalf("vendor %q", got)
		}
	}},
	{Name: "SPC4_4.2.5.6_AllocationLengthTruncatesWithResidual", Run: func(h *H) {
		r, buf := h.In(Inquiry(false, 0, 5), 64)
		h.Good(r)
		if r.Resid != 64-5 || buf[5] != 0 {
			h.T.Fatalf("resid %d (want 59), byte past allocation %02x", r.Resid, buf[5])
		}
		r, _ = h.In(Inquiry(false, 0, 255), 10)
		h.Good(r)
		if r.Resid != 0 {
			h.T.Fatalf("buffer smaller than the data: resid %d, want 0", r.Resid)
		}
	}},
	{Name: "SPC4_6.6_PageCodeWithoutEVPDIsInvalidField", Run: func(h *H) {
		r, _ := h.In(Inquiry(false, 0x80, 255), 255)
		s := h.Check(r, scsi.InvalidFieldInCDB)
		if !s.Field.Valid || !s.Field.InCDB || s.Field.Byte != 2 {
			h.T.Fatalf("field pointer %+v, want CDB byte 2", s.Field)
		}
	}},
	{Name: "SPC4_7.8.13_SupportedVPDPages", Run: func(h *H) {
		r, buf := h.In(Inquiry(true, 0, 255), 255)
		h.Good(r)
		pages := buf[4 : 4+int(binary.BigEndian.Uint16(buf[2:]))]
		for _, want := range []byte{0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2} {
			if bytes.IndexByte(pages, want) < 0 {
				h.T.Fatalf("page %02x missing from % x", want, pages)
			}
		}
	}},
	{Name: "SPC4_7.8.15_UnitSerialNumberIsStable", Run: func(h *H) {
		r1, b1 := h.In(Inquiry(true, 0x80, 255), 255)
		r2, b2 := h.In(Inquiry(true, 0x80, 255), 255)
		h.Good(r1)
		h.Good(r2)
		if b1[1] != 0x80 || b1[3] == 0 || !bytes.Equal(b1, b2) {
			h.T.Fatalf("serial page % x / % x", b1[:24], b2[:24])
		}
	}},
	{Name: "SPC4_7.8.6_DeviceIdentificationHasNAA6AndT10", Run: func(h *H) {
		r, buf := h.In(Inquiry(true, 0x83, 255), 255)
		h.Good(r)
		d := buf[4 : 4+int(binary.BigEndian.Uint16(buf[2:]))]
		var naa, t10 bool
		for len(d) >= 4 {
			l := 4 + int(d[3])
			if l > len(d) {
				h.T.Fatalf("designator overruns the page")
			}
			switch d[1] & 0x0f {
			case 3:
				naa = d[3] == 16 && d[4]>>4 == 6 && d[1]&0x30 == 0
			case 1:
				t10 = strings.HasPrefix(string(d[4:12]), "XENBLK")
			}
			d = d[l:]
		}
		if !naa || !t10 {
			h.T.Fatalf("NAA 6 designator %v, T10 vendor designator %v", naa, t10)
		}
	}},
	{Name: "SBC3_6.6.3_BlockLimits", Run: func(h *H) {
		r, buf := h.In(Inquiry(true, 0xb0, 255), 255)
		h.Good(r)
		if buf[1] != 0xb0 || binary.BigEndian.Uint16(buf[2:]) != 0x3c {
			h.T.Fatalf("header % x", buf[:4])
		}
		if binary.BigEndian.Uint32(buf[8:]) == 0 || buf[5] == 0 || binary.BigEndian.Uint32(buf[24:]) == 0 {
			h.T.Fatalf("max transfer, CAW length or unmap descriptors missing: % x", buf[:40])
		}
	}},
	{Name: "SBC3_6.6.2_BlockDeviceCharacteristicsNonRotational", Run: func(h *H) {
		r, buf := h.In(Inquiry(true, 0xb1, 255), 255)
		h.Good(r)
		if binary.BigEndian.Uint16(buf[4:]) != 1 {
			h.T.Fatalf("medium rotation rate %d, want 1", binary.BigEndian.Uint16(buf[4:]))
		}
	}},
	{Name: "SBC3_6.6.4_LogicalBlockProvisioning", Run: func(h *H) {
		r, buf := h.In(Inquiry(true, 0xb2, 255), 255)
		h.Good(r)
		if buf[5]&0xc4 != 0xc4 {
			h.T.Fatalf("LBPU/LBPWS/LBPRZ byte %02x", buf[5])
		}
	}},
	{Name: "SPC4_InvalidOpcodeIs2000", Run: func(h *H) {
		h.Check(h.Exec([]byte{0xc5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, scsi.DirNone, nil), scsi.InvalidOpcode)
		h.Check(h.Exec([]byte{0x02, 0, 0, 0, 0, 0}, scsi.DirNone, nil), scsi.InvalidOpcode)
	}},
	{Name: "SBC3_5.16_ReadCapacity10", Run: func(h *H) {
		r, buf := h.In([]byte{scsi.OpReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8)
		h.Good(r)
		if uint64(binary.BigEndian.Uint32(buf)) != h.blocks()-1 || binary.BigEndian.Uint32(buf[4:]) != uint32(h.BS) {
			h.T.Fatalf("capacity % x, want last LBA %d, block %d", buf, h.blocks()-1, h.BS)
		}
		r, _ = h.In([]byte{scsi.OpReadCapacity10, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 8)
		h.Check(r, scsi.InvalidFieldInCDB)
	}},
	{Name: "SBC3_5.17_ReadCapacity16", Run: func(h *H) {
		r, buf := h.In(readCapacity16(32), 32)
		h.Good(r)
		if binary.BigEndian.Uint64(buf) != h.blocks()-1 || binary.BigEndian.Uint32(buf[8:]) != uint32(h.BS) {
			h.T.Fatalf("capacity % x", buf[:12])
		}
		wantExp := byte(0)
		if h.BS == 512 {
			wantExp = 3 // 4096-byte physical blocks
		}
		if buf[13]&0x0f != wantExp || buf[14]&0xc0 != 0xc0 {
			h.T.Fatalf("exponent %d (want %d), LBPME/LBPRZ %02x", buf[13]&0x0f, wantExp, buf[14])
		}
	}},
	{Name: "SBC3_5.8_ReadEveryCDBSize", Run: func(h *H) {
		lba := uint32(h.blocks() - 3)
		want := h.content(int(lba)*h.BS, 2*h.BS)
		for _, cdb := range [][]byte{rw6(scsi.OpRead6, lba, 2), Read10(lba, 2), rw12(scsi.OpRead12, lba, 2), Read16(uint64(lba), 2)} {
			r, buf := h.In(cdb, 2*h.BS)
			h.Good(r)
			if !bytes.Equal(buf, want) {
				h.T.Fatalf("%s returned different bytes", scsi.OpName(cdb[0]))
			}
		}
	}},
	{Name: "SBC3_5.32_WriteEveryCDBSizeRoundTrips", Writes: true, Run: func(h *H) {
		for i, op := range []byte{scsi.OpWrite6, scsi.OpWrite10, scsi.OpWrite12, scsi.OpWrite16} {
			lba := uint32(h.blocks()) - 2 - uint32(2*i)
			data := pattern(2*h.BS, byte(i+1))
			var cdb []byte
			switch op {
			case scsi.OpWrite6:
				cdb = rw6(op, lba, 2)
			case scsi.OpWrite10:
				cdb = Write10(lba, 2)
			case scsi.OpWrite12:
				cdb = rw12(op, lba, 2)
			default:
				cdb = Write16(uint64(lba), 2)
			}
			h.Good(h.Out(cdb, data))
			if !bytes.Equal(h.content(int(lba)*h.BS, 2*h.BS), data) {
				h.T.Fatalf("%s did not store the data", scsi.OpName(op))
			}
			r, buf := h.In(Read10(lba, 2), 2*h.BS)
			h.Good(r)
			if !bytes.Equal(buf, data) {
				h.T.Fatalf("read back after %s differs", scsi.OpName(op))
			}
		}
	}},
	{Name: "SBC3_5.8_Read6ZeroLengthMeans256Blocks", Run: func(h *H) {
		r, _ := h.In(rw6(scsi.OpRead6, 0, 0), 256*h.BS)
		if h.blocks() >= 256 {
			h.Good(r)
			if r.Resid != 0 {
				h.T.Fatalf("resid %d", r.Resid)
			}
		} else {
			h.Check(r, scsi.LBAOutOfRange)
		}
	}},
	{Name: "SBC3_4.5_LBAOutOfRangeAtEveryBoundary", Run: func(h *H) {
		last := h.blocks() - 1
		r, _ := h.In(Read16(last, 1), h.BS)
		h.Good(r)
		for _, cdb := range [][]byte{
			Read16(last, 2), Read16(last+1, 1), Read16(1<<63, 1), Read16(^uint64(0), 2),
			Read10(uint32(last), 2), rw12(scsi.OpRead12, uint32(last+1), 1),
		} {
			r, _ := h.In(cdb, 2*h.BS)
			h.Check(r, scsi.LBAOutOfRange)
		}
	}},
	{Name: "SBC3_4.5_WriteOutOfRangeTouchesNothing", Writes: true, Run: func(h *H) {
		before := h.Mem.Contents()
		h.Check(h.Out(Write16(h.blocks()-1, 2), pattern(2*h.BS, 9)), scsi.LBAOutOfRange)
		h.Check(h.Out(Write16(^uint64(0)-1, 2), pattern(2*h.BS, 9)), scsi.LBAOutOfRange)
		if !bytes.Equal(before, h.Mem.Contents()) {
			h.T.Fatalf("an out-of-range write changed the device")
		}
	}},
	{Name: "SBC3_TransferLongerThanBufferIsRefused", Run: func(h *H) {
		r, _ := h.In(Read10(0, 4), 2*h.BS)
		h.Check(r, scsi.InvalidFieldInCDB)
		if r = h.Refusable(AgainstDirection, Read10(0, 1), scsi.DirToDevice, make([]byte, h.BS)); r != nil {
			h.Check(r, scsi.InvalidFieldInCDB)
		}
	}},
	{Name: "SBC3_BufferLongerThanTransferHasResidual", Run: func(h *H) {
		r, _ := h.In(Read10(0, 1), 3*h.BS)
		h.Good(r)
		if r.Resid != 2*h.BS {
			h.T.Fatalf("resid %d, want %d", r.Resid, 2*h.BS)
		}
	}},
	{Name: "SBC3_ProtectionFieldsWithoutPIAreInvalid", Run: func(h *H) {
		cdb := Read10(0, 1)
		cdb[1] = 0x20 // RDPROTECT=1
		r, _ := h.In(cdb, h.BS)
		h.Check(r, scsi.InvalidFieldInCDB)
	}},
	{Name: "SBC3_4.17_WriteProtected", ReadOnly: true, Run: func(h *H) {
		h.Check(h.Out(Write10(0, 1), pattern(h.BS, 1)), scsi.WriteProtected)
		ws := make([]byte, 10)
		ws[0], ws[8] = scsi.OpWriteSame10, 1
		h.Check(h.Out(ws, make([]byte, h.BS)), scsi.WriteProtected)
		r, buf := h.In([]byte{scsi.OpModeSense6, 0x08, 0x3f, 0, 255, 0}, 255)
		h.Good(r)
		if buf[2]&0x80 == 0 {
			h.T.Fatalf("MODE SENSE header lacks WP: % x", buf[:4])
		}
	}},
	{Name: "SBC3_5.32_FUAWriteIsFlushed", Writes: true, Run: func(h *H) {
		before := h.Mem.Flushes.Load()
		h.Good(h.Out(Write10(0, 1), pattern(h.BS, 3)))
		if h.Mem.Flushes.Load() != before {
			h.T.Fatalf("a write without FUA flushed under write-back caching")
		}
		cdb := Write10(0, 1)
		cdb[1] = 0x08
		h.Good(h.Out(cdb, pattern(h.BS, 4)))
		if h.Mem.Flushes.Load() == before {
			h.T.Fatalf("FUA write did not flush")
		}
	}},
	{Name: "SBC3_5.22_SynchronizeCache", Run: func(h *H) {
		before := h.Mem.Flushes.Load()
		h.Good(h.Exec([]byte{scsi.OpSynchronizeCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, scsi.DirNone, nil))
		if h.Mem.Flushes.Load() == before {
			h.T.Fatalf("no flush")
		}
		c := make([]byte, 16)
		c[0] = scsi.OpSynchronizeCache16
		binary.BigEndian.PutUint64(c[2:], h.blocks())
		binary.BigEndian.PutUint32(c[10:], 1)
		h.Check(h.Exec(c, scsi.DirNone, nil), scsi.LBAOutOfRange)
	}},
	{Name: "SPC4_7.5.7_CachingPageWCE", Run: func(h *H) {
		r, buf := h.In([]byte{scsi.OpModeSense6, 0x08, 0x08, 0, 255, 0}, 255)
		h.Good(r)
		if buf[3] != 0 || buf[4] != 0x08 || buf[5] != 18 || buf[6]&0x04 == 0 {
			h.T.Fatalf("caching page % x", buf[:8])
		}
	}},
	{Name: "SPC4_6.11_ModeSenseAllPagesWithBlockDescriptor", Run: func(h *H) {
		r, buf := h.In([]byte{scsi.OpModeSense10, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0}, 256)
		h.Good(r)
		n := int(binary.BigEndian.Uint16(buf)) + 2
		if n != 256-r.Resid || binary.BigEndian.Uint16(buf[6:]) != 8 {
			h.T.Fatalf("length %d returned %d, bd len %d", n, 256-r.Resid, binary.BigEndian.Uint16(buf[6:]))
		}
		if binary.BigEndian.Uint32(buf[12:])&0xffffff != uint32(h.BS) || uint64(binary.BigEndian.Uint32(buf[8:])) != h.blocks() {
			h.T.Fatalf("block descriptor % x", buf[8:16])
		}
		if buf[16] != 0x08 || buf[16+20] != 0x0a {
			h.T.Fatalf("pages % x", buf[16:48])
		}
	}},
	{Name: "SPC4_6.11_ModeSenseSavedValuesNotSupported", Run: func(h *H) {
		r, _ := h.In([]byte{scsi.OpModeSense6, 0, 0xc8, 0, 255, 0}, 255)
		h.Check(r, scsi.SavingParamsNotSupported)
		r, buf := h.In([]byte{scsi.OpModeSense6, 0x08, 0x4a, 0, 255, 0}, 255) // changeable control page
		h.Good(r)
		if buf[4] != 0x0a || buf[6] != 0x04 {
			h.T.Fatalf("changeable control page % x, want only D_SENSE", buf[4:16])
		}
		r, _ = h.In([]byte{scsi.OpModeSense6, 0x08, 0x1c, 0, 255, 0}, 255)
		h.Check(r, scsi.InvalidFieldInCDB)
	}},
	{Name: "SPC4_6.9_ModeSelectDSenseSwitchesToDescriptorSense", Run: func(h *H) {
		r, buf := h.In([]byte{scsi.OpModeSense6, 0x08, 0x0a, 0, 255, 0}, 255)
		h.Good(r)
		page := append([]byte(nil), buf[4:16]...)
		page[2] |= 0x04
		param := append([]byte{0, 0, 0, 0}, page...)
		h.Good(h.Out([]byte{scsi.OpModeSelect6, 0x10, 0, 0, byte(len(param)), 0}, param))
		r, _ = h.In(Read16(h.blocks(), 1), h.BS)
		h.Check(r, scsi.LBAOutOfRange)
		if r.Sense[0] != 0x72 {
			h.T.Fatalf("sense format %02x after D_SENSE=1, want 72", r.Sense[0])
		}
		page[2] &^= 0x04
		h.Good(h.Out([]byte{scsi.OpModeSelect6, 0x10, 0, 0, byte(len(param)), 0}, append([]byte{0, 0, 0, 0}, page...)))
		r, _ = h.In(Read16(h.blocks(), 1), h.BS)
		if r.Sense[0]&0x7f != 0x70 {
			h.T.Fatalf("sense format %02x after D_SENSE=0, want 70", r.Sense[0])
		}
	}},
	{Name: "SPC4_6.9_ModeSelectRefusesUnchangeableBits", Run: func(h *H) {
		r, buf := h.In([]byte{scsi.OpModeSense6, 0x08, 0x0a, 0, 255, 0}, 255)
		h.Good(r)
		page := append([]byte(nil), buf[4:16]...)
		page[3] ^= 0x02 // QERR is not changeable
		param := append([]byte{0, 0, 0, 0}, page...)
		h.Check(h.Out([]byte{scsi.OpModeSelect6, 0x10, 0, 0, byte(len(param)), 0}, param), scsi.InvalidFieldInParamList)
		h.Check(h.Out([]byte{scsi.OpModeSelect6, 0x10, 0, 0, 30, 0}, param), scsi.ParamListLengthError)
		h.Check(h.Out([]byte{scsi.OpModeSelect6, 0x11, 0, 0, byte(len(param)), 0}, param), scsi.InvalidFieldInCDB)
	}},
	{Name: "SPC4_6.33_ReportLunsLUN0", Run: func(h *H) {
		r, buf := h.In([]byte{scsi.OpReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0}, 64)
		h.Good(r)
		if binary.BigEndian.Uint32(buf) != 8 || !bytes.Equal(buf[8:16], make([]byte, 8)) || r.Resid != 48 {
			h.T.Fatalf("REPORT LUNS % x resid %d", buf[:16], r.Resid)
		}
		r, _ = h.In([]byte{scsi.OpReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}, 64)
		h.Check(r, scsi.InvalidFieldInCDB)
	}},
	{Name: "SPC4_6.35_ReportSupportedOperationCodes", Run: func(h *H) {
		cdb := []byte{scsi.OpMaintenanceIn, scsi.SAReportSupportedOpcodes, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0}
		r, buf := h.In(cdb, 4096)
		h.Good(r)
		n := int(binary.BigEndian.Uint32(buf))
		var read10, rc16 bool
		for d := buf[4 : 4+n]; len(d) >= 8; d = d[8:] {
			read10 = read10 || d[0] == scsi.OpRead10
			rc16 = rc16 || (d[0] == scsi.OpServiceActionIn16 && binary.BigEndian.Uint16(d[2:]) == scsi.SAReadCapacity16 && d[5]&1 == 1)
		}
		if !read10 || !rc16 {
			h.T.Fatalf("READ(10) %v, READ CAPACITY(16) %v listed", read10, rc16)
		}
		one := []byte{scsi.OpMaintenanceIn, scsi.SAReportSupportedOpcodes, 1, scsi.OpRead10, 0, 0, 0, 0, 1, 0, 0, 0}
		r, buf = h.In(one, 256)
		h.Good(r)
		if buf[1]&7 != 3 || binary.BigEndian.Uint16(buf[2:]) != 10 || buf[4] != scsi.OpRead10 {
			h.T.Fatalf("one-command data % x", buf[:16])
		}
		one[3] = 0xc5
		r, buf = h.In(one, 256)
		h.Good(r)
		if buf[1]&7 != 1 {
			h.T.Fatalf("unsupported opcode reported support %d", buf[1]&7)
		}
		one[2], one[3] = 1, scsi.OpServiceActionIn16 // needs option 2
		r, _ = h.In(one, 256)
		h.Check(r, scsi.InvalidFieldInCDB)
	}},
	{Name: "SBC3_5.42_WriteSameReplicatesTheBlock", Writes: true, Run: func(h *H) {
		blk := pattern(h.BS, 0x11)
		cdb := make([]byte, 16)
		cdb[0] = scsi.OpWriteSame16
		binary.BigEndian.PutUint64(cdb[2:], 4)
		binary.BigEndian.PutUint32(cdb[10:], 5)
		h.Good(h.Out(cdb, blk))
		for i := 0; i < 5; i++ {
			if !bytes.Equal(h.content((4+i)*h.BS, h.BS), blk) {
				h.T.Fatalf("block %d not written", 4+i)
			}
		}
		binary.BigEndian.PutUint32(cdb[10:], 0)
		h.Check(h.Out(cdb, blk), scsi.InvalidFieldInCDB) // WSNZ=1
		binary.BigEndian.PutUint64(cdb[2:], h.blocks()-1)
		binary.BigEndian.PutUint32(cdb[10:], 2)
		h.Check(h.Out(cdb, blk), scsi.LBAOutOfRange)
	}},
	{Name: "SBC3_5.42_WriteSameUnmapZeroes", Writes: true, Run: func(h *H) {
		cdb := []byte{scsi.OpWriteSame10, 0x08, 0, 0, 0, 2, 0, 0, 3, 0}
		h.Good(h.Out(cdb, make([]byte, h.BS)))
		if !bytes.Equal(h.content(2*h.BS, 3*h.BS), make([]byte, 3*h.BS)) {
			h.T.Fatalf("blocks not zero after WRITE SAME with UNMAP")
		}
	}},
	{Name: "SBC3_5.29_UnmapChecksEveryDescriptorFirst", Writes: true, Run: func(h *H) {
		param := make([]byte, 8+32)
		binary.BigEndian.PutUint16(param[0:], 6+32)
		binary.BigEndian.PutUint16(param[2:], 32)
		binary.BigEndian.PutUint64(param[8:], 0)
		binary.BigEndian.PutUint32(param[16:], 2)
		binary.BigEndian.PutUint64(param[24:], h.blocks()-1)
		binary.BigEndian.PutUint32(param[32:], 2) // runs past the end
		cdb := []byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, byte(len(param)), 0}
		before := append([]byte(nil), h.content(0, 2*h.BS)...)
		h.Check(h.Out(cdb, param), scsi.LBAOutOfRange)
		if !bytes.Equal(before, h.content(0, 2*h.BS)) {
			h.T.Fatalf("first descriptor applied although the second was out of range")
		}
		binary.BigEndian.PutUint32(param[32:], 1)
		h.Good(h.Out(cdb, param))
		if !bytes.Equal(h.content(0, 2*h.BS), make([]byte, 2*h.BS)) {
			h.T.Fatalf("unmapped blocks do not read zero (LBPRZ)")
		}
		h.Check(h.Out([]byte{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, 4, 0}, param[:4]), scsi.ParamListLengthError)
		bad := append([]byte(nil), param...)
		binary.BigEndian.PutUint16(bad[2:], 200)
		h.Check(h.Out(cdb, bad), scsi.InvalidFieldInParamList)
	}},
	{Name: "SBC3_5.33_VerifyByteCheck", Run: func(h *H) {
		h.Good(h.Exec([]byte{scsi.OpVerify10, 0, 0, 0, 0, 1, 0, 0, 2, 0}, scsi.DirNone, nil))
		data := append([]byte(nil), h.content(h.BS, 2*h.BS)...)
		h.Good(h.Out([]byte{scsi.OpVerify10, 0x02, 0, 0, 0, 1, 0, 0, 2, 0}, data))
		data[h.BS+5] ^= 0xff
		s := h.Check(h.Out([]byte{scsi.OpVerify10, 0x02, 0, 0, 0, 1, 0, 0, 2, 0}, data), scsi.Miscompare)
		if !s.InfoValid || s.Info != uint64(h.BS+5) {
			h.T.Fatalf("miscompare INFORMATION %d (valid %v), want %d", s.Info, s.InfoValid, h.BS+5)
		}
		h.Check(h.Exec([]byte{scsi.OpVerify10, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 2, 0}, scsi.DirNone, nil), scsi.LBAOutOfRange)
	}},
	{Name: "SBC3_5.3_CompareAndWrite", Writes: true, Run: func(h *H) {
		cdb := make([]byte, 16)
		cdb[0] = scsi.OpCompareAndWrite
		binary.BigEndian.PutUint64(cdb[2:], 3)
		cdb[13] = 1
		old := append([]byte(nil), h.content(3*h.BS, h.BS)...)
		newData := pattern(h.BS, 0x77)
		h.Good(h.Out(cdb, append(append([]byte(nil), old...), newData...)))
		if !bytes.Equal(h.content(3*h.BS, h.BS), newData) {
			h.T.Fatalf("COMPARE AND WRITE did not write")
		}
		stale := append(append([]byte(nil), old...), pattern(h.BS, 0x99)...)
		if bytes.Equal(old[:h.BS], newData) {
			h.T.Fatalf("test data collide")
		}
		s := h.Check(h.Out(cdb, stale), scsi.Miscompare)
		if !s.InfoValid || s.Info >= uint64(h.BS) {
			h.T.Fatalf("INFORMATION %d valid %v", s.Info, s.InfoValid)
		}
		if !bytes.Equal(h.content(3*h.BS, h.BS), newData) {
			h.T.Fatalf("miscompare still wrote")
		}
		cdb[13] = 2
		h.Check(h.Out(cdb, make([]byte, 4*h.BS)), scsi.InvalidFieldInCDB)
	}},
	{Name: "SBC3_5.20_GetLBAStatusMapped", Run: func(h *H) {
		cdb := make([]byte, 16)
		cdb[0], cdb[1] = scsi.OpServiceActionIn16, scsi.SAGetLBAStatus
		binary.BigEndian.PutUint64(cdb[2:], 5)
		binary.BigEndian.PutUint32(cdb[10:], 64)
		r, buf := h.In(cdb, 64)
		h.Good(r)
		if binary.BigEndian.Uint32(buf) != 20 || binary.BigEndian.Uint64(buf[8:]) != 5 ||
			uint64(binary.BigEndian.Uint32(buf[16:])) != h.blocks()-5 || buf[20]&0x0f != 0 {
			h.T.Fatalf("LBA status % x", buf[:24])
		}
		binary.BigEndian.PutUint64(cdb[2:], h.blocks())
		r, _ = h.In(cdb, 64)
		h.Check(r, scsi.LBAOutOfRange)
	}},
	{Name: "SBC3_5.25_StartStopUnit", Run: func(h *H) {
		h.Good(h.Exec([]byte{scsi.OpStartStopUnit, 0, 0, 0, 1, 0}, scsi.DirNone, nil))
	}},
	{Name: "SPC4_ShortCDBIsRefused", Run: func(h *H) {
		if r := h.Refusable(ShortCDB, []byte{scsi.OpRead10, 0, 0, 0}, scsi.DirFromDevice, make([]byte, h.BS)); r != nil &&
			r.Status != scsi.StatusCheckCondition {
			h.T.Fatalf("a 4-byte READ(10) got %s", scsi.StatusName(r.Status))
		}
		if r := h.Refusable(NoCDB, nil, scsi.DirNone, nil); r != nil {
			h.Check(r, scsi.InvalidOpcode)
		}
	}},
}
