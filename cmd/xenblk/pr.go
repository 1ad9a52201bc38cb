package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/scsi/pr"
)

// xenblk pr: persistent reservations through the dedicated blkif
// operation (docs/PROTOCOL.md part 3) rather than SCSI CDBs, with the
// vocabulary of Linux's pr_ops and blkpr(8). It reaches the disk through
// the same control socket as xenblk scsi.

// prOptions is one pr action command's flags.
type prOptions struct {
	key, oldKey string
	typ         string
	ignore      bool
	aptpl       bool
}

// prConflictError is a RESERVATION CONFLICT: exit status 3.
type prConflictError struct{ action string }

func (e prConflictError) Error() string { return e.action + ": reservation conflict" }
func (e prConflictError) ExitCode() int { return exitConflict }

func newPRCmd() *cobra.Command {
	t := &scsiTarget{}
	cmd := &cobra.Command{
		Use:   "pr",
		Short: "Persistent reservations through the blkif reservation operation (like blkpr)",
		Long: `pr registers, reserves, releases, preempts and clears persistent reservations on
the guest disk of a running xenblk process (xenblk sim) through the dedicated
blkif reservation operation, and reads the keys and the reservation back.
On a PVSCSI LUN (xenblk front --vhost, xenblk sim --vscsi) the same
actions travel as PERSISTENT RESERVE OUT and IN commands.
Actions and flags follow Linux's pr_ops (and blkpr): keys are hex (0x
optional), --type is we, ea, we-ro, ea-ro, we-ar or ea-ar.

Output: the actions print one line "ACTION: ok"; read-keys prints
"generation=0xG keys=N" then one key per line; read-reservation prints
"generation=0xG key=0xK type=T" or "generation=0xG no reservation".

Exit status: 0 done; 3 RESERVATION CONFLICT; 1 failure (no socket, the
backend does not offer the operation, ...); 2 usage mistakes.`,
		Example: `  # node A (xvdb in its guest) takes a write-exclusive, registrants-only reservation
  xenblk pr register --key 0xa --device xvdb
  xenblk pr reserve --key 0xa --type we-ro
  # node B fences A off: registers, then preempts A's key and aborts its commands
  xenblk pr register --key 0xb --control /run/xenblk/node-b.sock
  xenblk pr preempt-abort --key 0xb --old-key 0xa --type we-ro --control /run/xenblk/node-b.sock
  xenblk pr read-keys
  xenblk pr read-reservation
  xenblk pr register --key 0x2 --old-key 0xa     # replace key 0xa by 0x2
  xenblk pr register --key 0x2 --ignore --aptpl  # whatever is registered; persist through power loss
  xenblk pr clear --key 0x2`,
	}
	pf := cmd.PersistentFlags()
	socketPathVar(pf, &t.control, "control", "", "control socket of the xenblk process (default $XENBLK_CONTROL or "+control.DefaultPath()+")")
	pf.StringVar(&t.device, "device", "", "device name (default: the only one served)")
	for _, a := range prActions {
		cmd.AddCommand(newPRActionCmd(t, a))
	}
	return cmd
}

// newPRActionCmd builds the command of action a, reaching the disk t.
func newPRActionCmd(t *scsiTarget, a prAction) *cobra.Command {
	o := &prOptions{}
	c := &cobra.Command{Use: a.name, Short: a.short, Example: a.example, Args: noPRArgs, RunE: runPR(t, o, a)}
	f := c.Flags()
	if a.flags&prKey != 0 {
		f.StringVar(&o.key, "key", "", "our reservation key (hex)")
	}
	if a.flags&prOldKey != 0 {
		f.StringVar(&o.oldKey, "old-key", "", a.oldKeyHelp)
	}
	if a.flags&prType != 0 {
		f.StringVar(&o.typ, "type", "", "reservation type: "+strings.Join(pr.TypeAbbrevs(), ", "))
	}
	if a.name == control.PRRegister {
		f.BoolVar(&o.ignore, "ignore", false, "replace whatever key is registered (REGISTER AND IGNORE EXISTING KEY)")
		f.BoolVar(&o.aptpl, "aptpl", false, "persist the registrations and reservation through power loss")
	}
	return c
}

const (
	prKey = 1 << iota
	prOldKey
	prType
)

// prAction is one `xenblk pr` subcommand: its name (a control.PR*
// action), help, and which of --key, --old-key, --type it takes.
type prAction struct {
	name, short, oldKeyHelp, example string
	flags                            int
}

var prActions = []prAction{
	{control.PRRegister, "register --key (replacing --old-key; --key 0 unregisters)", "the key registered now (hex; none: first registration)", "  xenblk pr register --key 0xa1\n  xenblk pr register --old-key 0xa1 --key 0xa2 --aptpl", prKey | prOldKey},
	{control.PRReserve, "reserve with --key, --type", "", "  xenblk pr reserve --key 0xa1 --type we-ro", prKey | prType},
	{control.PRRelease, "release the reservation held with --key, --type", "", "  xenblk pr release --key 0xa1 --type we-ro", prKey | prType},
	{control.PRPreempt, "preempt --old-key's registrations (and reservation) with --key, --type", "the key to preempt (hex)", "  xenblk pr preempt --key 0xb2 --old-key 0xa1 --type we-ro", prKey | prOldKey | prType},
	{control.PRPreemptAbort, "preempt and abort the preempted initiators' commands", "the key to preempt (hex)", "  xenblk pr preempt-abort --key 0xb2 --old-key 0xa1 --type ea", prKey | prOldKey | prType},
	{control.PRClear, "remove every registration and the reservation (--key must be registered)", "", "  xenblk pr clear --key 0xb2", prKey},
	{control.PRReadKeys, "list the registered keys", "", "  xenblk pr read-keys --control /run/xenblk/sim.sock", 0},
	{control.PRReadReservation, "show the reservation", "", "  xenblk pr read-reservation", 0},
}

// noPRArgs refuses positional arguments as a usage mistake (exit 2).
func noPRArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q); see --help", cmd.CommandPath(), args)
	}
	return nil
}

// prRequest validates the flags o of action into a control request.
func prRequest(o *prOptions, action string, flags int) (control.PRRequest, error) {
	r := control.PRRequest{Action: action, Ignore: o.ignore, APTPL: o.aptpl}
	var err error
	if flags&prKey != 0 {
		if o.key == "" && action != control.PRRegister {
			return r, usagef("%s needs --key", action)
		}
		if r.Key, err = parseKey("--key", o.key); err != nil {
			return r, err
		}
	}
	if flags&prOldKey != 0 {
		if o.oldKey == "" && action != control.PRRegister {
			return r, usagef("%s needs --old-key (the key to preempt)", action)
		}
		if r.OldKey, err = parseKey("--old-key", o.oldKey); err != nil {
			return r, err
		}
	}
	if action == control.PRRegister && o.key == "" {
		return r, usagef("register needs --key (0 unregisters)")
	}
	if action == control.PRRegister && o.ignore && o.oldKey != "" {
		return r, usagef("--ignore replaces whatever is registered: no --old-key")
	}
	if flags&prType != 0 {
		if o.typ == "" {
			return r, usagef("%s needs --type (%s)", action, strings.Join(pr.TypeAbbrevs(), ", "))
		}
		t, ok := pr.ParseTypeAbbrev(o.typ)
		if !ok {
			return r, usagef("--type %q: want we, ea, we-ro, ea-ro, we-ar or ea-ar", o.typ)
		}
		r.Type = t
	}
	return r, nil
}

func runPR(t *scsiTarget, o *prOptions, a prAction) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		req, err := prRequest(o, a.name, a.flags)
		if err != nil {
			return err
		}
		s, err := t.open(cmd)
		if err != nil {
			return err
		}
		defer s.c.Close()
		res, err := s.c.PR(s.device, req)
		if errors.Is(err, control.ErrReservationConflict) {
			fmt.Fprintf(s.out, "%s: RESERVATION CONFLICT\n", a.name)
			return prConflictError{a.name}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		switch a.name {
		case control.PRReadKeys:
			fmt.Fprintf(s.out, "generation=%#x keys=%d\n", res.Generation, len(res.Keys))
			for _, k := range res.Keys {
				fmt.Fprintf(s.out, "%#x\n", k)
			}
		case control.PRReadReservation:
			if !res.Held {
				fmt.Fprintf(s.out, "generation=%#x no reservation\n", res.Generation)
			} else {
				fmt.Fprintf(s.out, "generation=%#x key=%#x type=%s\n", res.Generation, res.Key, res.Type.Abbrev())
			}
		default:
			fmt.Fprintf(s.out, "%s: ok\n", a.name)
		}
		return nil
	}
}
