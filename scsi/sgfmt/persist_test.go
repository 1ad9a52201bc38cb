package sgfmt

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
)

func TestPRIn(t *testing.T) {
	tid := pr.TransportID(scsi.Nexus{Dom: 2, Device: "xvdb"})
	status := append([]byte{0, 0, 0, 4, 0, 0, 0, byte(24 + len(tid)),
		0, 0, 0, 0, 0, 0, 0, 0xb, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0, 1, 0, 0, 0, byte(len(tid))}, tid...)
	for _, c := range []struct {
		name string
		b    []byte
		sa   pr.InAction
		want string
	}{
		{"keys", []byte{0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2}, pr.InReadKeys,
			"  PR generation=0x1, 2 registered reservation keys follow:\n    0x1\n    0x2\n"},
		{"one key of two", []byte{0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1}, pr.InReadKeys,
			"  PR generation=0x1, 2 registered reservation keys follow:\n    0x1\n  (response truncated)\n"},
		{"one key", []byte{0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1}, pr.InReadKeys,
			"  PR generation=0x1, 1 registered reservation key follows:\n    0x1\n"},
		{"no reservation", []byte{0, 0, 0, 3, 0, 0, 0, 0}, pr.InReadReservation,
			"  PR generation=0x3, there is NO reservation held\n"},
		{"reservation", []byte{0, 0, 0, 3, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0xa, 0, 0, 0, 0, 0, 6, 0, 0}, pr.InReadReservation,
			"  PR generation=0x3, Reservation follows:\n    Key=0xa\n    scope: LU_SCOPE,  type: Exclusive Access, registrants only\n"},
		{"full status", status, pr.InReadFullStatus,
			"  PR generation=0x4\n    Key=0xb\n      All target ports bit clear\n      Relative port address: 0x1\n" +
				"      << Reservation holder >>\n      scope: LU_SCOPE,  type: Write Exclusive, registrants only\n" +
				"      Transport Id of initiator:\n        " + fmt.Sprintf("%x", tid) + "\n        (xen:dom2:xvdb)\n"},
		{"capabilities", []byte{0, 8, 0x11, 0x81, 0xea, 1, 0, 0}, pr.InReportCapabilities,
			"Report capabilities response:\n  Compatible Reservation Handling(CRH): 1\n  Specify Initiator Ports Capable(SIP_C): 0\n" +
				"  All Target Ports Capable(ATP_C): 0\n  Persist Through Power Loss Capable(PTPL_C): 1\n  Type Mask Valid(TMV): 1\n" +
				"  Allow Commands: 0\n  Persist Through Power Loss Active(PTPL_A): 1\n    Support indicated in Type mask:\n" +
				"      Write Exclusive, all registrants: 1\n      Exclusive Access, registrants only: 1\n" +
				"      Write Exclusive, registrants only: 1\n      Exclusive Access: 1\n      Write Exclusive: 1\n" +
				"      Exclusive Access, all registrants: 1\n"},
		{"short", []byte{0, 0, 0}, pr.InReadKeys, "PR in: short response (3 bytes)\n"},
	} {
		if got := PRIn(c.b, c.sa); got != c.want {
			t.Errorf("%s:\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

// FuzzPRIn: PR IN data renders without a panic for any service action,
// and reads nothing past its declared length (REPORT CAPABILITIES: past
// its 8 bytes).
func FuzzPRIn(f *testing.F) {
	seeds(f)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2})
	f.Add([]byte{0, 8, 0x11, 0x81, 0xea, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		declared := len(b) >= 8 && 8+uint64(binary.BigEndian.Uint32(b[4:8])) <= uint64(len(b))
		for _, sa := range []pr.InAction{pr.InReadKeys, pr.InReadReservation, pr.InReadFullStatus} {
			ignoresJunk(t, sa.String(), b, declared, func(b []byte) string { return PRIn(b, sa) })
		}
		ignoresJunk(t, "report capabilities", b, len(b) >= 8, func(b []byte) string { return PRIn(b, pr.InReportCapabilities) })
		PRIn(b, pr.InAction(b2(b)))
	})
}
