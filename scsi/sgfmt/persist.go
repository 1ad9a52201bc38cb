package sgfmt

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/xenblk/xenblk/scsi/pr"
)

// PRIn renders PERSISTENT RESERVE IN parameter data of service action sa
// like sg_persist.
func PRIn(b []byte, sa pr.InAction) string {
	var w strings.Builder
	if sa == pr.InReportCapabilities {
		c, ok := pr.ParseCapabilities(b)
		if !ok {
			return fmt.Sprintf("Report capabilities response: short (%d bytes)\n", len(b))
		}
		w.WriteString("Report capabilities response:\n")
		fmt.Fprintf(&w, "  Compatible Reservation Handling(CRH): %d\n", bit(c.CRH))
		fmt.Fprintf(&w, "  Specify Initiator Ports Capable(SIP_C): %d\n", bit(c.SIPC))
		fmt.Fprintf(&w, "  All Target Ports Capable(ATP_C): %d\n", bit(c.ATPC))
		fmt.Fprintf(&w, "  Persist Through Power Loss Capable(PTPL_C): %d\n", bit(c.PTPLC))
		fmt.Fprintf(&w, "  Type Mask Valid(TMV): %d\n", bit(c.TMV))
		fmt.Fprintf(&w, "  Allow Commands: %d\n", c.AllowCommands)
		fmt.Fprintf(&w, "  Persist Through Power Loss Active(PTPL_A): %d\n", bit(c.PTPLA))
		if c.TMV {
			w.WriteString("    Support indicated in Type mask:\n")
			for _, t := range []pr.Type{pr.TypeWriteExclusiveAllRegs, pr.TypeExclusiveAccessRegOnly, pr.TypeWriteExclusiveRegOnly,
				pr.TypeExclusiveAccess, pr.TypeWriteExclusive, pr.TypeExclusiveAccessAllRegs} {
				fmt.Fprintf(&w, "      %s: %d\n", t, bit(c.Supports(t)))
			}
		}
		return w.String()
	}
	d, ok := pr.ParseInData(b)
	if !ok {
		return fmt.Sprintf("PR in: short response (%d bytes)\n", len(b))
	}
	truncated := d.Truncated()
	switch sa {
	case pr.InReadKeys:
		if d.Length == 0 {
			fmt.Fprintf(&w, "  PR generation=0x%x, there are NO registered reservation keys\n", d.Generation)
			break
		}
		n := d.Length / 8
		fmt.Fprintf(&w, "  PR generation=0x%x, %d registered reservation key%s follow%s:\n", d.Generation, n, plural(n), singular(n))
		for _, k := range d.AppendKeys(nil) {
			fmt.Fprintf(&w, "    0x%x\n", k)
		}
	case pr.InReadReservation:
		r, held := d.Reservation()
		if !held {
			fmt.Fprintf(&w, "  PR generation=0x%x, there is NO reservation held\n", d.Generation)
			break
		}
		fmt.Fprintf(&w, "  PR generation=0x%x, Reservation follows:\n", d.Generation)
		fmt.Fprintf(&w, "    Key=0x%x\n", r.Key)
		fmt.Fprintf(&w, "    scope: %s,  type: %s\n", scopeName(r.Scope), r.Type)
	case pr.InReadFullStatus:
		fmt.Fprintf(&w, "  PR generation=0x%x\n", d.Generation)
		if d.Length == 0 {
			w.WriteString("  No full status descriptors\n")
		}
		for body := d.Body; len(body) >= 24; {
			sd, n, ok := pr.ParseStatusDescriptor(body)
			if !ok {
				truncated = true
				break
			}
			fullStatus(&w, &sd)
			body = body[n:]
		}
	default:
		fmt.Fprintf(&w, "PR in service action 0x%x:\n%s", uint8(sa), HexDump(b))
	}
	if truncated {
		w.WriteString("  (response truncated)\n")
	}
	return w.String()
}

func fullStatus(w *strings.Builder, sd *pr.StatusDescriptor) {
	fmt.Fprintf(w, "    Key=0x%x\n", sd.Key)
	if sd.AllTargetPorts {
		w.WriteString("      All target ports bit set\n")
	} else {
		w.WriteString("      All target ports bit clear\n")
		fmt.Fprintf(w, "      Relative port address: 0x%x\n", sd.RelativeTargetPort)
	}
	if sd.Holder {
		w.WriteString("      << Reservation holder >>\n")
		fmt.Fprintf(w, "      scope: %s,  type: %s\n", scopeName(sd.Scope), sd.Type)
	} else {
		w.WriteString("      not reservation holder\n")
	}
	if len(sd.TransportID) > 0 {
		fmt.Fprintf(w, "      Transport Id of initiator:\n        %s\n", hex.EncodeToString(sd.TransportID))
		if n, ok := pr.ParseTransportID(sd.TransportID); ok {
			fmt.Fprintf(w, "        (%s)\n", pr.TransportName(n))
		}
	}
}

func scopeName(s byte) string {
	if s == 0 {
		return "LU_SCOPE"
	}
	return fmt.Sprintf("reserved [0x%x]", s)
}

func bit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// plural and singular are the endings of "N key(s) follow(s)".
func plural(n uint32) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func singular(n uint32) string {
	if n == 1 {
		return "s"
	}
	return ""
}
