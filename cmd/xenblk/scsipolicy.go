package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/scsi"
)

// newSCSIPolicyCmd builds scsi-policy, which checks a SCSI command policy
// (the disk spec's scsi-policy= value or a policy file) and lists what it
// allows, so an administrator sees the effect before a guest does.
func newSCSIPolicyCmd() *cobra.Command {
	var base, file string
	cmd := &cobra.Command{
		Use:     "scsi-policy [SPEC]",
		Example: "  xenblk scsi-policy\n  xenblk scsi-policy default,+0x35,-0x2a",
		Short:   "Check a SCSI command policy and list the commands it allows",
		Long: `Parses a SCSI policy as the backend will and lists the allowed commands.

SPEC is the disk spec's scsi-policy= value, e.g. default,+0x35,-0x42,+0x9e/0x10;
--file reads a policy file (the same items, one or more per line, # comments);
a disk spec names one as scsi-policy=@/absolute/path, read by the backend.
"default" means the --base set: emulated (every emulated command) or
passthrough (the conservative set for whole SCSI disks).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var def *scsi.Policy
			switch base {
			case "emulated":
				def = scsi.EmulatedPolicy()
			case "passthrough":
				def = scsi.PassthroughPolicy()
			default:
				return usagef("--base %q: want emulated or passthrough", base)
			}
			var p *scsi.Policy
			var err error
			switch {
			case file != "" && len(args) > 0:
				return usagef("give a SPEC or --file, not both")
			case file != "":
				f, ferr := os.Open(file)
				if ferr != nil {
					return ferr
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.IsDir() {
					return fmt.Errorf("--file %s is a directory; give a policy file", file)
				}
				if p, err = scsi.ReadPolicyFile(f, def); err != nil {
					return usagef("%s: %v", file, err)
				}
			case len(args) == 1:
				if p, err = scsi.ParsePolicy(args[0], def); err != nil {
					return usagef("%v", err)
				}
			default:
				p = def
			}
			return printPolicy(c.OutOrStdout(), p)
		},
	}
	cmd.Flags().StringVar(&base, "base", "emulated", `what "default" means: emulated or passthrough`)
	cmd.Flags().StringVar(&file, "file", "", "read the policy from this file")
	return cmd
}

func printPolicy(w io.Writer, p *scsi.Policy) error {
	for op := 0; op < 256; op++ {
		if !scsi.HasServiceAction(byte(op)) {
			if p.AllowsAction(byte(op), 0) {
				if _, err := fmt.Fprintf(w, "0x%02x      %s\n", op, scsi.OpName(byte(op))); err != nil {
					return err
				}
			}
			continue
		}
		all := true
		for sa := uint16(0); sa < 32; sa++ {
			all = all && p.AllowsAction(byte(op), sa)
		}
		if all {
			if _, err := fmt.Fprintf(w, "0x%02x/*    %s\n", op, scsi.OpName(byte(op))); err != nil {
				return err
			}
			continue
		}
		for sa := uint16(0); sa < 32; sa++ {
			if p.AllowsAction(byte(op), sa) {
				if _, err := fmt.Fprintf(w, "0x%02x/0x%02x %s\n", op, sa, scsi.OpName(byte(op))); err != nil {
					return err
				}
			}
		}
	}
	_, err := fmt.Fprintf(w, "canonical: %s\n", p)
	return err
}
