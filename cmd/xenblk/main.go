// Command xenblk is the Xen paravirtual block stack: backend, frontend,
// simulated Xen host, exports and SCSI tools. Each subcommand lives in its
// own file and registers itself on rootCmd from an init function; this file
// holds only the root and the exit-code convention.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
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

var rootCmd = &cobra.Command{
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

func main() {
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	err := rootCmd.Execute()
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
