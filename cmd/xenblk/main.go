// Command xenblk is the Xen paravirtual block stack: backend, frontend,
// simulated Xen host, exports and SCSI tools. Each subcommand lives in its
// own file, built by its constructor (newSimCmd, ...) with its flags in a
// struct of its own; newRootCmd assembles the tree, so every call gives a
// fresh tree with nothing shared. This file holds only the root and the
// exit-code convention.
package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes scripts can rely on.
const (
	exitOK       = 0
	exitFailure  = 1 // the operation failed
	exitUsage    = 2 // bad flags or arguments
	exitConflict = 3 // SCSI RESERVATION CONFLICT or CHECK CONDITION (scsi/pr commands)
)

// usageError marks an error as the user's: wrong flags or arguments.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCoder lets a command choose its exit status (for example exitConflict).
type exitCoder interface{ ExitCode() int }

// newRootCmd builds the whole command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "xenblk",
		Short: "A Xen paravirtual block stack: blkback, blkfront, a simulated Xen host, NBD and FUSE exports, SCSI over blkif",
		Long: `xenblk serves virtual disks to Xen guests over the blkif protocol (blkback),
attaches to blkif backends as a guest (blkfront), and runs both against a
simulated Xen host on any Linux machine.

Start with:
  xenblk sim              run a simulated host, our backend and our frontend,
                          and export the disk over NBD`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	setVersion(root)
	root.AddCommand(
		newSimCmd(),
		newHostCmd(),
		newServeCmd(),
		newFrontCmd(),
		newAttachCmd(),
		newDetachCmd(),
		newNBDCmd(),
		newXenstoreCmd(),
		newSCSICmd(),
		newPRCmd(),
		newSCSIPolicyCmd(),
		newBenchCmd(),
		newBenchBackendCmd(),
	)
	return root
}

func main() {
	root := newRootCmd()
	enforceUsage(root)
	err := root.Execute()
	if err == nil {
		os.Exit(exitOK)
	}
	fmt.Fprintln(os.Stderr, "xenblk:", err)
	var ue usageError
	var ec exitCoder
	switch {
	case errors.As(err, &ec):
		os.Exit(ec.ExitCode())
	case errors.As(err, &ue):
		os.Exit(exitUsage)
	default:
		os.Exit(exitFailure)
	}
}

// enforceUsage makes the exit-status convention hold for every command in
// the tree, cobra's help and completion commands included, whoever wrote
// the command:
//   - a command that only groups subcommands refuses to run without one and
//     refuses an unknown one (cobra would print the help and exit 0);
//   - a runnable command without an argument rule takes no arguments
//     (cobra would let any through);
//   - whatever an argument rule or the flag parser refuses is a usage
//     mistake, reported in one line.
func enforceUsage(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{plainFlagError(err)} })
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Annotations[usageEnforced] != "" {
			return
		}
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[usageEnforced] = "yes"
		switch {
		case c.Name() == "help" && c.HasParent():
			c.Args = helpTopic
		case c.HasSubCommands() && !c.Runnable():
			c.Args = knownSubcommand
			c.RunE = needSubcommand
		case c.Args == nil || sameFunc(c.Args, cobra.NoArgs):
			c.Args = noArgs
		default:
			c.Args = usageRule(c.Args)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

const usageEnforced = "xenblk-usage-enforced"

func sameFunc(a, b cobra.PositionalArgs) bool {
	return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
}

// knownSubcommand is the argument rule of a command that groups others:
// arguments reach it only when the first names none of them.
func knownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	return usagef("%s; the commands are %s", msg, subcommandNames(cmd))
}

func needSubcommand(cmd *cobra.Command, _ []string) error {
	return usagef("%s needs a command: %s (%s --help says what each does)", cmd.CommandPath(), subcommandNames(cmd), cmd.CommandPath())
}

func subcommandNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return strings.Join(names, ", ")
}

// helpTopic is the rule of `xenblk help COMMAND...`: the path names a command.
func helpTopic(cmd *cobra.Command, args []string) error {
	_, rest, err := cmd.Root().Find(args)
	if err != nil || len(rest) > 0 {
		return usagef("no help topic %q: %s --help lists the commands", strings.Join(args, " "), cmd.Root().Name())
	}
	return nil
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// usageRule makes whatever rule refuses a usage mistake, with the usage line.
func usageRule(rule cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		err := rule(cmd, args)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return usagef("%s: %v (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())
	}
}

// plainFlagError says what a flag of one of pflag's own types wants
// instead of what Go's parser said of the value ("strconv.ParseBool:
// parsing ...: invalid syntax"). The flag types of flagtypes.go say it
// themselves.
func plainFlagError(err error) error {
	var ive *pflag.InvalidValueError
	var num *strconv.NumError
	if !errors.As(err, &ive) || !errors.As(err, &num) {
		return err
	}
	f := ive.GetFlag()
	want := "a number"
	switch t := f.Value.Type(); {
	case t == "bool":
		want = "true or false"
	case strings.HasSuffix(t, "Slice"):
		want = "numbers separated by commas"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || t == "count":
		want = "a whole number"
	}
	if errors.Is(num.Err, strconv.ErrRange) {
		want += " in range"
	}
	return fmt.Errorf("invalid argument %q for \"--%s\" flag: want %s", ive.GetValue(), f.Name, want)
}
