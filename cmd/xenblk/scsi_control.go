package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/control"
)

// simControlPath is sim's --control flag: where its control socket listens.
var simControlPath string

func init() {
	socketPathVar(simCmd.Flags(), &simControlPath, "control", "", "control socket for xenblk scsi (default "+control.DefaultPath()+")")
	simCmd.Flags().Var(rotationRateValue{}, "rotation-rate", "rotation rate the disk reports in VPD page 0xb1 (0 not reported, 1 non-rotating, else rpm; default: from the image's filesystem device)")
	simExtras = append(simExtras, startSimControl)
	// Refuse to start at all (before the disk is opened) when another live
	// sim answers on the control socket.
	prev := simCmd.PreRunE
	simCmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(cmd, args); err != nil {
				return err
			}
		}
		if c, err := control.Dial(simControlSocket()); err == nil {
			c.Close()
			return fmt.Errorf("control socket %s: %w (another xenblk sim running? pick another with --control)", simControlSocket(), control.ErrInUse)
		}
		return nil
	}
}

// rotationRateValue is sim's --rotation-rate: 0..65535, or unset (shown
// as no default, since the help says where the rate comes from then).
type rotationRateValue struct{}

func (rotationRateValue) Type() string { return "rpm" }
func (rotationRateValue) String() string {
	if rotationRateOverride < 0 {
		return ""
	}
	return strconv.Itoa(rotationRateOverride)
}
func (rotationRateValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 0xffff {
		return fmt.Errorf("want a number from 0 to 65535")
	}
	rotationRateOverride = n
	return nil
}

func simControlSocket() string {
	if simControlPath != "" {
		return simControlPath
	}
	return control.DefaultPath()
}

// startSimControl serves the guest's disk, under its vdev name, on the
// control socket; stopping it closes the listener, which removes the socket.
func startSimControl(_ context.Context, disk *blkfront.Disk, vdev string, out io.Writer) (stopper, error) {
	path := simControlSocket()
	l, err := control.Listen(path)
	if errors.Is(err, control.ErrInUse) {
		return nil, fmt.Errorf("control socket: %w (another xenblk sim running? pick another with --control)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		control.Serve(l, map[string]control.Target{vdev: disk})
	}()
	fmt.Fprintf(out, "  SCSI     xenblk scsi --control %s inquiry --vpd 0xb1\n", path)
	return stopFunc(func() {
		l.Close()
		<-done
	}), nil
}
