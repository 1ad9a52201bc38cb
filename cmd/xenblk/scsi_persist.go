package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/sgfmt"
)

// xenblk scsi persist: PERSISTENT RESERVE IN/OUT with sg_persist's flags
// and output.

var persistFlags struct {
	in, out                                               bool
	readKeys, readReservation, readFullStatus, reportCaps bool
	register, registerIgnore, reserve, release, clear     bool
	preempt, preemptAbort, registerMove                   bool
	rk, sark                                              string
	prType                                                int
	aptpl                                                 bool
	// REGISTER AND MOVE's destination.
	transportID string
	rtpi        int
	unreg       bool
}

// PERSISTENT RESERVE IN service actions.
const (
	prInReadKeys        = 0
	prInReadReservation = 1
	prInReportCaps      = 2
	prInReadFullStatus  = 3
)

// PERSISTENT RESERVE OUT service actions.
const (
	prOutRegister       = 0
	prOutReserve        = 1
	prOutRelease        = 2
	prOutClear          = 3
	prOutPreempt        = 4
	prOutPreemptAbort   = 5
	prOutRegisterIgnore = 6
	prOutRegisterMove   = 7
)

var prTypeNames = map[byte]string{
	1: "Write Exclusive", 3: "Exclusive Access", 5: "Write Exclusive, registrants only",
	6: "Exclusive Access, registrants only", 7: "Write Exclusive, all registrants", 8: "Exclusive Access, all registrants",
}

func prTypeName(t byte) string {
	if n, ok := prTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("obsolete [%d]", t)
}

func prScopeName(s byte) string {
	if s == 0 {
		return "LU_SCOPE"
	}
	return fmt.Sprintf("reserved [0x%x]", s)
}

var persistCmd = &cobra.Command{
	Use:   "persist",
	Short: "PERSISTENT RESERVE IN/OUT (like sg_persist)",
	Example: `  xenblk scsi persist --in --read-keys
  xenblk scsi persist --out --register --param-sark 0x1
  xenblk scsi persist --out --reserve --param-rk 0x1 --prout-type 5
  xenblk scsi persist -i -s
  xenblk scsi persist --out --register-move --param-rk 0x1 --param-sark 0x2 \
      --transport-id xen:dom2:/local/domain/0/backend/vbd/2/51712 --unreg`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error {
		pf := &persistFlags
		if pf.in && pf.out {
			return usagef("--in and --out together")
		}
		ins := countTrue(pf.readKeys, pf.readReservation, pf.readFullStatus, pf.reportCaps)
		outs := countTrue(pf.register, pf.registerIgnore, pf.reserve, pf.release, pf.clear, pf.preempt, pf.preemptAbort, pf.registerMove)
		if ins+outs > 1 {
			return usagef("choose one service action")
		}
		if outs == 1 && !pf.out {
			return usagef("a PR OUT service action needs --out")
		}
		if ins == 1 && pf.out {
			return usagef("a PR IN service action with --out")
		}
		if pf.out {
			if outs == 0 {
				return usagef("--out needs a service action (--register, --reserve, ...)")
			}
			cdb, param, err := buildPROut()
			if err != nil {
				return err
			}
			return runSCSI(func(s *scsiSession, _ []string) error {
				if _, err := s.exec(cdb, scsi.DirToDevice, param, 0); err != nil {
					return err
				}
				fmt.Fprintf(s.out, "PR out: command (%s) successful\n", prOutName(cdb[1]&0x1f))
				return nil
			})(cmd, nil)
		}
		sa := byte(prInReadKeys) // sg_persist's default
		switch {
		case pf.readReservation:
			sa = prInReadReservation
		case pf.readFullStatus:
			sa = prInReadFullStatus
		case pf.reportCaps:
			sa = prInReportCaps
		}
		const alloc = 8192
		cdb := make([]byte, 10)
		cdb[0], cdb[1] = scsi.OpPersistentReserveIn, sa
		binary.BigEndian.PutUint16(cdb[7:9], alloc)
		return runSCSI(func(s *scsiSession, _ []string) error {
			r, err := s.exec(cdb, scsi.DirFromDevice, nil, alloc)
			if err != nil {
				return err
			}
			fmt.Fprint(s.out, decodePRIn(r.DataIn, sa))
			return nil
		})(cmd, nil)
	},
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func prOutName(sa byte) string {
	return map[byte]string{prOutRegister: "register", prOutReserve: "reserve", prOutRelease: "release",
		prOutClear: "clear", prOutPreempt: "preempt", prOutPreemptAbort: "preempt and abort",
		prOutRegisterIgnore: "register and ignore existing key", prOutRegisterMove: "register and move"}[sa]
}

// parseKey parses a reservation key as sg_persist does: hex, 0x optional.
func parseKey(flag, v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	k, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(v), "0x"), 16, 64)
	if err != nil {
		return 0, usagef("%s %q: want a hex key: %v", flag, v, err)
	}
	return k, nil
}

// buildPROut makes the PR OUT CDB and its 24-byte parameter list.
func buildPROut() (cdb, param []byte, err error) {
	pf := &persistFlags
	var sa byte
	switch {
	case pf.register:
		sa = prOutRegister
	case pf.registerIgnore:
		sa = prOutRegisterIgnore
	case pf.reserve:
		sa = prOutReserve
	case pf.release:
		sa = prOutRelease
	case pf.clear:
		sa = prOutClear
	case pf.preempt:
		sa = prOutPreempt
	case pf.preemptAbort:
		sa = prOutPreemptAbort
	case pf.registerMove:
		sa = prOutRegisterMove
	}
	if pf.prType < 0 || pf.prType > 15 {
		return nil, nil, usagef("--prout-type %d (0..15)", pf.prType)
	}
	rk, err := parseKey("--param-rk", pf.rk)
	if err != nil {
		return nil, nil, err
	}
	sark, err := parseKey("--param-sark", pf.sark)
	if err != nil {
		return nil, nil, err
	}
	if sa != prOutRegisterMove && (pf.transportID != "" || pf.unreg) {
		return nil, nil, usagef("--transport-id and --unreg go with --register-move")
	}
	param = make([]byte, 24)
	binary.BigEndian.PutUint64(param[0:8], rk)
	binary.BigEndian.PutUint64(param[8:16], sark)
	if sa == prOutRegisterMove {
		// Parameter list of SPC-4 6.17.4: UNREG and APTPL in byte 17, the
		// relative target port, then the destination's TransportID.
		if pf.transportID == "" {
			return nil, nil, usagef("--register-move needs --transport-id (the destination, e.g. xen:dom2:/local/domain/0/backend/vbd/2/51712, or its hex as --read-full-status prints it)")
		}
		if pf.rtpi < 0 || pf.rtpi > 0xffff {
			return nil, nil, usagef("--relative-target-port %d (0..65535)", pf.rtpi)
		}
		tid, err := parseTransportID(pf.transportID)
		if err != nil {
			return nil, nil, err
		}
		if pf.aptpl {
			param[17] |= 1
		}
		if pf.unreg {
			param[17] |= 2
		}
		binary.BigEndian.PutUint16(param[18:20], uint16(pf.rtpi))
		binary.BigEndian.PutUint32(param[20:24], uint32(len(tid)))
		param = append(param, tid...)
	} else if pf.aptpl {
		param[20] |= 1
	}
	cdb = make([]byte, 10)
	cdb[0], cdb[1], cdb[2] = scsi.OpPersistentReserveOut, sa, byte(pf.prType)&0x0f // scope LU_SCOPE
	binary.BigEndian.PutUint32(cdb[5:9], uint32(len(param)))
	return cdb, param, nil
}

// parseTransportID reads --transport-id: a xenblk nexus name
// (xen:dom<N>:<device>, as READ FULL STATUS shows it) or the TransportID's
// bytes in hex (spaces, commas and colons between bytes allowed).
func parseTransportID(v string) ([]byte, error) {
	if strings.HasPrefix(v, "xen:") {
		n, ok := pr.ParseTransportName(v)
		if !ok {
			return nil, usagef("--transport-id %q: want xen:dom<N>:<device>", v)
		}
		return pr.TransportID(n), nil
	}
	h := strings.NewReplacer(" ", "", ",", "", ":", "", "\t", "").Replace(strings.TrimPrefix(strings.ToLower(v), "0x"))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return nil, usagef("--transport-id %q: want xen:dom<N>:<device> or hex bytes", v)
	}
	return b, nil
}

// decodePRIn renders PERSISTENT RESERVE IN data like sg_persist.
func decodePRIn(b []byte, sa byte) string {
	var w strings.Builder
	if sa == prInReportCaps {
		if len(b) < 8 {
			return fmt.Sprintf("Report capabilities response: short (%d bytes)\n", len(b))
		}
		bit := func(v byte, n uint) int { return int(v>>n) & 1 }
		w.WriteString("Report capabilities response:\n")
		fmt.Fprintf(&w, "  Compatible Reservation Handling(CRH): %d\n", bit(b[2], 4))
		fmt.Fprintf(&w, "  Specify Initiator Ports Capable(SIP_C): %d\n", bit(b[2], 3))
		fmt.Fprintf(&w, "  All Target Ports Capable(ATP_C): %d\n", bit(b[2], 2))
		fmt.Fprintf(&w, "  Persist Through Power Loss Capable(PTPL_C): %d\n", bit(b[2], 0))
		fmt.Fprintf(&w, "  Type Mask Valid(TMV): %d\n", bit(b[3], 7))
		fmt.Fprintf(&w, "  Allow Commands: %d\n", b[3]>>4&7)
		fmt.Fprintf(&w, "  Persist Through Power Loss Active(PTPL_A): %d\n", bit(b[3], 0))
		if b[3]&0x80 != 0 {
			w.WriteString("    Support indicated in Type mask:\n")
			fmt.Fprintf(&w, "      %s: %d\n", prTypeNames[7], bit(b[4], 7))
			fmt.Fprintf(&w, "      %s: %d\n", prTypeNames[6], bit(b[4], 6))
			fmt.Fprintf(&w, "      %s: %d\n", prTypeNames[5], bit(b[4], 5))
			fmt.Fprintf(&w, "      %s: %d\n", prTypeNames[3], bit(b[4], 3))
			fmt.Fprintf(&w, "      %s: %d\n", prTypeNames[1], bit(b[4], 1))
			fmt.Fprintf(&w, "      %s: %d\n", prTypeNames[8], bit(b[5], 0))
		}
		return w.String()
	}
	if len(b) < 8 {
		return fmt.Sprintf("PR in: short response (%d bytes)\n", len(b))
	}
	gen := binary.BigEndian.Uint32(b[0:4])
	n := int(binary.BigEndian.Uint32(b[4:8]))
	body := b[8:]
	truncated := false
	if n < len(body) {
		body = body[:n]
	} else if n > len(body) {
		truncated = true
	}
	switch sa {
	case prInReadKeys:
		keys := len(body) / 8
		if n == 0 {
			fmt.Fprintf(&w, "  PR generation=0x%x, there are NO registered reservation keys\n", gen)
			break
		}
		fmt.Fprintf(&w, "  PR generation=0x%x, %d registered reservation key%s follow%s:\n", gen, n/8, plural(n/8), map[bool]string{true: "s", false: ""}[n/8 == 1])
		for i := 0; i < keys; i++ {
			fmt.Fprintf(&w, "    0x%x\n", binary.BigEndian.Uint64(body[i*8:]))
		}
	case prInReadReservation:
		if n == 0 || len(body) < 16 {
			fmt.Fprintf(&w, "  PR generation=0x%x, there is NO reservation held\n", gen)
			break
		}
		fmt.Fprintf(&w, "  PR generation=0x%x, Reservation follows:\n", gen)
		fmt.Fprintf(&w, "    Key=0x%x\n", binary.BigEndian.Uint64(body[0:8]))
		fmt.Fprintf(&w, "    scope: %s,  type: %s\n", prScopeName(body[13]>>4), prTypeName(body[13]&0xf))
	case prInReadFullStatus:
		fmt.Fprintf(&w, "  PR generation=0x%x\n", gen)
		if n == 0 {
			w.WriteString("  No full status descriptors\n")
		}
		for len(body) >= 24 {
			d := body
			l := 24 + int(binary.BigEndian.Uint32(d[20:24]))
			if l > len(d) || l < 24 {
				truncated = true
				break
			}
			fmt.Fprintf(&w, "    Key=0x%x\n", binary.BigEndian.Uint64(d[0:8]))
			if d[12]&2 != 0 {
				w.WriteString("      All target ports bit set\n")
			} else {
				w.WriteString("      All target ports bit clear\n")
				fmt.Fprintf(&w, "      Relative port address: 0x%x\n", binary.BigEndian.Uint16(d[18:20]))
			}
			if d[12]&1 != 0 {
				w.WriteString("      << Reservation holder >>\n")
				fmt.Fprintf(&w, "      scope: %s,  type: %s\n", prScopeName(d[13]>>4), prTypeName(d[13]&0xf))
			} else {
				w.WriteString("      not reservation holder\n")
			}
			if l > 24 {
				fmt.Fprintf(&w, "      Transport Id of initiator:\n        %s\n", hex.EncodeToString(d[24:l]))
				if n, ok := pr.ParseTransportID(d[24:l]); ok {
					fmt.Fprintf(&w, "        (%s)\n", pr.TransportName(n))
				}
			}
			body = body[l:]
		}
	default:
		fmt.Fprintf(&w, "PR in service action 0x%x:\n%s", sa, sgfmt.HexDump(b))
	}
	if truncated {
		w.WriteString("  (response truncated)\n")
	}
	return w.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func init() {
	f := persistCmd.Flags()
	pf := &persistFlags
	f.BoolVarP(&pf.in, "in", "i", false, "PERSISTENT RESERVE IN (the default)")
	f.BoolVarP(&pf.out, "out", "o", false, "PERSISTENT RESERVE OUT")
	f.BoolVarP(&pf.readKeys, "read-keys", "k", false, "PR IN: read the registered keys")
	f.BoolVarP(&pf.readReservation, "read-reservation", "r", false, "PR IN: read the reservation")
	f.BoolVarP(&pf.readFullStatus, "read-full-status", "s", false, "PR IN: read full status")
	f.BoolVarP(&pf.reportCaps, "report-capabilities", "c", false, "PR IN: report capabilities")
	f.BoolVarP(&pf.register, "register", "G", false, "PR OUT: register --param-sark (with --param-rk the current key)")
	f.BoolVarP(&pf.registerIgnore, "register-ignore", "I", false, "PR OUT: register and ignore the existing key")
	f.BoolVarP(&pf.reserve, "reserve", "R", false, "PR OUT: reserve with --param-rk, --prout-type")
	f.BoolVarP(&pf.release, "release", "L", false, "PR OUT: release")
	f.BoolVarP(&pf.clear, "clear", "C", false, "PR OUT: clear every registration and the reservation")
	f.BoolVarP(&pf.preempt, "preempt", "P", false, "PR OUT: preempt the holder of --param-sark")
	f.BoolVarP(&pf.preemptAbort, "preempt-abort", "A", false, "PR OUT: preempt and abort")
	f.BoolVarP(&pf.registerMove, "register-move", "M", false, "PR OUT: register and move")
	f.StringVarP(&pf.rk, "param-rk", "K", "", "reservation key (hex)")
	f.StringVarP(&pf.sark, "param-sark", "S", "", "service action reservation key (hex)")
	f.IntVarP(&pf.prType, "prout-type", "T", 0, "reservation type (1 WE, 3 EA, 5 WE-RO, 6 EA-RO, 7 WE-AR, 8 EA-AR)")
	f.BoolVarP(&pf.aptpl, "param-aptpl", "Z", false, "activate persist through power loss")
	f.StringVarP(&pf.transportID, "transport-id", "X", "", "--register-move destination: xen:dom<N>:<device> or TransportID hex")
	f.IntVarP(&pf.rtpi, "relative-target-port", "Q", pr.RelativeTargetPort, "--register-move: relative target port identifier (a vbd has one: 1)")
	f.BoolVarP(&pf.unreg, "unreg", "U", false, "--register-move: unregister the source nexus afterwards")
	scsiCmd.AddCommand(persistCmd)
}
