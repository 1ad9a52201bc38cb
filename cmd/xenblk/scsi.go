package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/sgfmt"
)

// The xenblk scsi commands: sg3_utils-like tools that send SCSI commands
// to a disk a running xenblk process (xenblk sim) holds, through its
// control socket (package control). Exit status: 0 GOOD, 3 (exitConflict)
// for any other SCSI status (CHECK CONDITION, RESERVATION CONFLICT, ...),
// 1 when the command could not be sent, 2 for usage mistakes.

// scsiTarget is the disk a command of xenblk scsi or xenblk pr reaches:
// its --control and --device flags, which each of those two groups gives
// all its commands.
type scsiTarget struct {
	control string
	device  string
}

func newSCSICmd() *cobra.Command {
	t := &scsiTarget{}
	cmd := &cobra.Command{
		Use:   "scsi",
		Short: "Send SCSI commands to a running xenblk sim's disk (sg3_utils-like)",
		Long: `scsi sends SCSI commands to the guest disk of a running xenblk sim over its
control socket, and decodes the answers much like sg3_utils does.

Exit status: 0 GOOD; 3 CHECK CONDITION, RESERVATION CONFLICT or another
non-GOOD status; 1 the command could not be sent; 2 usage mistakes.`,
		Example: `  xenblk scsi inquiry
  xenblk scsi inquiry --vpd 0xb1
  xenblk scsi readcap --16
  xenblk scsi persist --in --read-keys
  xenblk scsi raw 12 00 00 00 24 00 --request 36`,
	}
	pf := cmd.PersistentFlags()
	socketPathVar(pf, &t.control, "control", "", "control socket of the xenblk sim (default $XENBLK_CONTROL or "+control.DefaultPath()+")")
	pf.StringVar(&t.device, "device", "", "device name (default: the only one the sim serves)")
	cmd.AddCommand(newInquiryCmd(t), newReadcapCmd(t), newLunsCmd(t), newTurCmd(t), newSenseCmd(t), newRawCmd(t), newPersistCmd(t))
	return cmd
}

// scsiStatusError is a command the device answered with a status other
// than GOOD; the answer has already been printed.
type scsiStatusError struct{ status byte }

func (e scsiStatusError) Error() string {
	return "SCSI status " + scsi.StatusName(e.status)
}
func (e scsiStatusError) ExitCode() int { return exitConflict }

// scsiSession is one connection to the control socket with the device chosen.
type scsiSession struct {
	c      *control.Client
	device string
	out    io.Writer
}

// open connects to t's control socket and chooses its device.
func (t *scsiTarget) open(cmd *cobra.Command) (*scsiSession, error) {
	path := t.control
	if path == "" {
		path = control.DefaultPath()
	}
	c, err := control.Dial(path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is xenblk sim running? see --control)", path, err)
	}
	dev := t.device
	if dev == "" {
		devs, err := c.Devices()
		if err != nil {
			c.Close()
			return nil, err
		}
		switch len(devs) {
		case 0:
			c.Close()
			return nil, fmt.Errorf("control socket %s serves no device", path)
		case 1:
			dev = devs[0]
		default:
			c.Close()
			return nil, usagef("several devices (%s): choose one with --device", strings.Join(devs, ", "))
		}
	}
	return &scsiSession{c: c, device: dev, out: cmd.OutOrStdout()}, nil
}

// exec runs cdb and, for a status other than GOOD, prints the status and
// decoded sense and returns a scsiStatusError.
func (s *scsiSession) exec(cdb []byte, dir scsi.Direction, dataOut []byte, dataInLen int) (control.Result, error) {
	r, err := s.c.Exec(s.device, cdb, dir, dataOut, dataInLen)
	if err != nil {
		return r, err
	}
	if r.Status != scsi.StatusGood {
		s.printStatus(cdb[0], r)
		return r, scsiStatusError{r.Status}
	}
	return r, nil
}

func (s *scsiSession) printStatus(op byte, r control.Result) {
	fmt.Fprintf(s.out, "%s: SCSI status %s\n", scsi.OpName(op), scsi.StatusName(r.Status))
	if m := sgfmt.StatusMeaning(r.Status); m != "" {
		fmt.Fprintln(s.out, m)
	}
	if len(r.Sense) > 0 {
		fmt.Fprintf(s.out, "%s\n", sgfmt.Sense(r.Sense))
	}
}

// runSCSI wraps a command body with opening and closing a session to t.
func runSCSI(t *scsiTarget, body func(s *scsiSession, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		s, err := t.open(cmd)
		if err != nil {
			return err
		}
		defer s.c.Close()
		return body(s, args)
	}
}

func newInquiryCmd(t *scsiTarget) *cobra.Command {
	var o struct {
		vpd string
		hex bool
	}
	cmd := &cobra.Command{
		Use:     "inquiry",
		Example: "  xenblk scsi inquiry\n  xenblk scsi inquiry --vpd 0xb1\n  xenblk scsi inquiry --vpd 0x83 --control /run/xenblk/sim.sock",
		Short:   "INQUIRY: standard data or a VPD page (like sg_inq)",
		Args:    cobra.NoArgs,
		RunE: runSCSI(t, func(s *scsiSession, _ []string) error {
			cdb := []byte{scsi.OpInquiry, 0, 0, 0, 0, 0}
			var page byte
			if o.vpd != "" {
				page, _ = parsePageCode(o.vpd) // checked when the flag was parsed
				cdb[1], cdb[2] = 1, page
			}
			const alloc = 1024
			binary.BigEndian.PutUint16(cdb[3:5], alloc)
			r, err := s.exec(cdb, scsi.DirFromDevice, nil, alloc)
			if err != nil {
				return err
			}
			if o.hex {
				fmt.Fprint(s.out, sgfmt.HexDump(r.DataIn))
				return nil
			}
			if o.vpd == "" {
				fmt.Fprint(s.out, sgfmt.Inquiry(r.DataIn))
				return nil
			}
			text, err := sgfmt.VPD(r.DataIn, page)
			if err != nil {
				return err
			}
			fmt.Fprint(s.out, text)
			return nil
		}),
	}
	f := cmd.Flags()
	pageCodeVar(f, &o.vpd, "vpd", "VPD page to fetch (0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2, ...)")
	f.BoolVar(&o.hex, "hex", false, "print the response in hex instead of decoding it")
	return cmd
}

func newReadcapCmd(t *scsiTarget) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:     "readcap",
		Example: "  xenblk scsi readcap",
		Short:   "READ CAPACITY (10) or, with --16, (16) (like sg_readcap)",
		Args:    cobra.NoArgs,
		RunE: runSCSI(t, func(s *scsiSession, _ []string) error {
			var cdb []byte
			n := 8
			if long {
				n = 32
				cdb = make([]byte, 16)
				cdb[0], cdb[1] = scsi.OpServiceActionIn16, scsi.SAReadCapacity16
				binary.BigEndian.PutUint32(cdb[10:14], uint32(n))
			} else {
				cdb = make([]byte, 10)
				cdb[0] = scsi.OpReadCapacity10
			}
			r, err := s.exec(cdb, scsi.DirFromDevice, nil, n)
			if err != nil {
				return err
			}
			text, err := sgfmt.ReadCapacity(r.DataIn, long)
			if err != nil {
				return err
			}
			fmt.Fprint(s.out, text)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&long, "16", false, "use READ CAPACITY (16)")
	return cmd
}

func newLunsCmd(t *scsiTarget) *cobra.Command {
	return &cobra.Command{
		Use:     "luns",
		Example: "  xenblk scsi luns",
		Short:   "REPORT LUNS (like sg_luns)",
		Args:    cobra.NoArgs,
		RunE: runSCSI(t, func(s *scsiSession, _ []string) error {
			const alloc = 8192
			cdb := make([]byte, 12)
			cdb[0] = scsi.OpReportLuns
			binary.BigEndian.PutUint32(cdb[6:10], alloc)
			r, err := s.exec(cdb, scsi.DirFromDevice, nil, alloc)
			if err != nil {
				return err
			}
			fmt.Fprint(s.out, sgfmt.ReportLUNs(r.DataIn))
			return nil
		}),
	}
}

func newTurCmd(t *scsiTarget) *cobra.Command {
	return &cobra.Command{
		Use:     "tur",
		Example: "  xenblk scsi tur",
		Short:   "TEST UNIT READY (like sg_turs)",
		Args:    cobra.NoArgs,
		RunE: runSCSI(t, func(s *scsiSession, _ []string) error {
			if _, err := s.exec([]byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}, scsi.DirNone, nil, 0); err != nil {
				return err
			}
			fmt.Fprintln(s.out, "TEST UNIT READY: ready")
			return nil
		}),
	}
}

func newSenseCmd(t *scsiTarget) *cobra.Command {
	return &cobra.Command{
		Use:     "sense",
		Example: "  xenblk scsi sense",
		Short:   "REQUEST SENSE, decoded (like sg_requests)",
		Args:    cobra.NoArgs,
		RunE: runSCSI(t, func(s *scsiSession, _ []string) error {
			const alloc = 252
			cdb := []byte{scsi.OpRequestSense, 0, 0, 0, alloc, 0}
			r, err := s.exec(cdb, scsi.DirFromDevice, nil, alloc)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "Decode parameter data as sense data:\n%s\n", sgfmt.Sense(r.DataIn))
			return nil
		}),
	}
}

// minCDB is the shortest CDB SCSI has (group 0's six bytes).
const minCDB = 6

func newRawCmd(t *scsiTarget) *cobra.Command {
	var o struct {
		request int
		send    int
		infile  string
		outfile string
	}
	cmd := &cobra.Command{
		Use:   "raw CDB-HEX...",
		Short: "Send any CDB (like sg_raw); prints the status, the sense and the data-in",
		Example: `  xenblk scsi raw 12 00 00 00 24 00 --request 36
  xenblk scsi raw 3b 02 00 00 00 00 00 02 00 00 --infile buf.bin`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cdb, err := hex.DecodeString(strings.Join(args, ""))
			if err != nil {
				return usagef("CDB %q: want hex bytes, e.g. 12 00 00 00 24 00", strings.Join(args, " "))
			}
			if len(cdb) < minCDB || len(cdb) > scsi.MaxCDB {
				return usagef("CDB of %d bytes: a CDB is %d to %d bytes", len(cdb), minCDB, scsi.MaxCDB)
			}
			if o.request < 0 || o.request > control.MaxData {
				return usagef("--request %d: want a byte count from 0 to %d", o.request, control.MaxData)
			}
			var dataOut []byte
			if o.infile != "" || o.send > 0 {
				if o.request > 0 {
					return usagef("--request and --send/--infile: a command has one data direction")
				}
				if o.infile == "" {
					return usagef("--send needs --infile")
				}
				data, err := os.ReadFile(o.infile)
				if err != nil {
					return err
				}
				if o.send > 0 {
					if o.send > len(data) {
						return usagef("--send %d: %s has %d bytes", o.send, o.infile, len(data))
					}
					data = data[:o.send]
				}
				if len(data) > control.MaxData {
					return usagef("%s: %d bytes, at most %d", o.infile, len(data), control.MaxData)
				}
				dataOut = data
			}
			dir := scsi.DirNone
			switch {
			case o.request > 0:
				dir = scsi.DirFromDevice
			case dataOut != nil:
				dir = scsi.DirToDevice
			}
			s, err := t.open(cmd)
			if err != nil {
				return err
			}
			defer s.c.Close()
			r, err := s.c.Exec(s.device, cdb, dir, dataOut, o.request)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "SCSI Status: %s\n\n", scsi.StatusName(r.Status))
			if len(r.Sense) > 0 {
				fmt.Fprintf(s.out, "Sense Information:\n%s\n\n", sgfmt.Sense(r.Sense))
			}
			if dir == scsi.DirFromDevice && r.Status == scsi.StatusGood {
				if o.outfile != "" {
					if err := os.WriteFile(o.outfile, r.DataIn, 0o644); err != nil {
						return err
					}
					fmt.Fprintf(s.out, "Received %d bytes of data, written to %s\n", len(r.DataIn), o.outfile)
				} else {
					fmt.Fprintf(s.out, "Received %d bytes of data:\n%s", len(r.DataIn), sgfmt.HexDump(r.DataIn))
				}
			}
			if r.Status != scsi.StatusGood {
				return scsiStatusError{r.Status}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.request, "request", 0, "data-in length to ask for")
	f.IntVar(&o.send, "send", 0, "data-out length to send from --infile (default: the whole file)")
	f.StringVar(&o.infile, "infile", "", "file holding the data-out to send")
	f.StringVar(&o.outfile, "outfile", "", "write the data-in to this file instead of a hex dump")
	return cmd
}
