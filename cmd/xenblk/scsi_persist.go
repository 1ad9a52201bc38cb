package main

import (
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

// persistOptions is one persist command's flags.
type persistOptions struct {
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

func newPersistCmd(t *scsiTarget) *cobra.Command {
	pf := &persistOptions{}
	cmd := &cobra.Command{
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
				cdb, param, err := buildPROut(pf)
				if err != nil {
					return err
				}
				return runSCSI(t, func(s *scsiSession, _ []string) error {
					if _, err := s.exec(cdb[:], scsi.DirToDevice, param, 0); err != nil {
						return err
					}
					fmt.Fprintf(s.out, "PR out: command (%s) successful\n", pr.ParseOutCDB(cdb[:]).Action)
					return nil
				})(cmd, nil)
			}
			sa := pr.InReadKeys // sg_persist's default
			switch {
			case pf.readReservation:
				sa = pr.InReadReservation
			case pf.readFullStatus:
				sa = pr.InReadFullStatus
			case pf.reportCaps:
				sa = pr.InReportCapabilities
			}
			const alloc = 8192
			cdb := pr.InCommand{Action: sa, AllocLen: alloc}.CDB()
			return runSCSI(t, func(s *scsiSession, _ []string) error {
				r, err := s.exec(cdb[:], scsi.DirFromDevice, nil, alloc)
				if err != nil {
					return err
				}
				fmt.Fprint(s.out, sgfmt.PRIn(r.DataIn, sa))
				return nil
			})(cmd, nil)
		},
	}
	f := cmd.Flags()
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
	f.StringVarP(&pf.transportID, "transport-id", "X", "", "--register-move destination: xen:dom<N>:<device>, xen:vm:<initiator>:<vdev> or TransportID hex")
	f.IntVarP(&pf.rtpi, "relative-target-port", "Q", pr.RelativeTargetPort, "--register-move: relative target port identifier (a vbd has one: 1)")
	f.BoolVarP(&pf.unreg, "unreg", "U", false, "--register-move: unregister the source nexus afterwards")
	return cmd
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

// parseKey parses a reservation key as sg_persist does: hex, 0x optional,
// 64 bits at most. A refusal says what a key looks like, not why the
// parser stopped.
func parseKey(flag, v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	k, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(v), "0x"), 16, 64)
	if err != nil {
		return 0, usagef("%s %q: want a hex key of up to 16 digits, such as 0x1234abcd", flag, v)
	}
	return k, nil
}

// buildPROut makes the PR OUT CDB and its parameter list.
func buildPROut(pf *persistOptions) (cdb [10]byte, param []byte, err error) {
	var sa pr.OutAction
	switch {
	case pf.register:
		sa = pr.OutRegister
	case pf.registerIgnore:
		sa = pr.OutRegisterAndIgnore
	case pf.reserve:
		sa = pr.OutReserve
	case pf.release:
		sa = pr.OutRelease
	case pf.clear:
		sa = pr.OutClear
	case pf.preempt:
		sa = pr.OutPreempt
	case pf.preemptAbort:
		sa = pr.OutPreemptAndAbort
	case pf.registerMove:
		sa = pr.OutRegisterAndMove
	}
	if pf.prType < 0 || pf.prType > 15 {
		return cdb, nil, usagef("--prout-type %d (0..15)", pf.prType)
	}
	rk, err := parseKey("--param-rk", pf.rk)
	if err != nil {
		return cdb, nil, err
	}
	sark, err := parseKey("--param-sark", pf.sark)
	if err != nil {
		return cdb, nil, err
	}
	if sa != pr.OutRegisterAndMove && (pf.transportID != "" || pf.unreg) {
		return cdb, nil, usagef("--transport-id and --unreg go with --register-move")
	}
	p := pr.OutParams{Key: rk, SAKey: sark, APTPL: pf.aptpl}
	if sa == pr.OutRegisterAndMove {
		if pf.transportID == "" {
			return cdb, nil, usagef("--register-move needs --transport-id (the destination, e.g. xen:dom2:/local/domain/0/backend/vbd/2/51712, or its hex as --read-full-status prints it)")
		}
		if pf.rtpi < 0 || pf.rtpi > 0xffff {
			return cdb, nil, usagef("--relative-target-port %d (0..65535)", pf.rtpi)
		}
		if p.TransportID, err = parseTransportID(pf.transportID); err != nil {
			return cdb, nil, err
		}
		p.Unreg, p.RelativeTargetPort = pf.unreg, uint16(pf.rtpi)
	}
	param = p.Append(nil, sa)
	// Scope LU_SCOPE, the only one.
	cdb = pr.OutCommand{Action: sa, Type: pr.Type(pf.prType), ParamLen: uint32(len(param))}.CDB()
	return cdb, param, nil
}

// parseTransportID reads --transport-id: a xenblk nexus name
// (xen:dom<N>:<device> or xen:vm:<initiator>:<vdev>, as READ FULL STATUS shows it) or the TransportID's
// bytes in hex (spaces, commas and colons between bytes allowed).
func parseTransportID(v string) ([]byte, error) {
	if strings.HasPrefix(v, "xen:") {
		n, ok := pr.ParseTransportName(v)
		if !ok {
			return nil, usagef("--transport-id %q: want xen:dom<N>:<device> or xen:vm:<initiator>:<vdev>", v)
		}
		return pr.TransportID(n), nil
	}
	h := strings.NewReplacer(" ", "", ",", "", ":", "", "\t", "").Replace(strings.TrimPrefix(strings.ToLower(v), "0x"))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return nil, usagef("--transport-id %q: want xen:dom<N>:<device>, xen:vm:<initiator>:<vdev> or hex bytes", v)
	}
	return b, nil
}
