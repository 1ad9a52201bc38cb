package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/control"
)

// simSCSI is sim's SCSI side: the control socket through which xenblk
// scsi and xenblk pr reach the guest's disk (--control), and the rotation
// rate the disk reports (--rotation-rate).
type simSCSI struct {
	control      string
	rotationRate int // ownRotationRate: the image's filesystem device's
	// more are devices served beside the guest's disk (sim --vscsi's
	// LUN), by name; set before start.
	more map[string]control.Target
}

func (s *simSCSI) addFlags(f *pflag.FlagSet) {
	socketPathVar(f, &s.control, "control", "", "control socket for xenblk scsi (default "+control.DefaultPath()+")")
	f.Var(rotationRateValue{&s.rotationRate}, "rotation-rate", "rotation rate the disk reports in VPD page 0xb1 (0 not reported, 1 non-rotating, else rpm; default: from the image's filesystem device)")
}

// rotationRateValue is sim's --rotation-rate: 0..65535, or unset (shown
// as no default, since the help says where the rate comes from then).
type rotationRateValue struct{ p *int }

func (rotationRateValue) Type() string { return "rpm" }
func (v rotationRateValue) String() string {
	if v.p == nil || *v.p < 0 {
		return ""
	}
	return strconv.Itoa(*v.p)
}
func (v rotationRateValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 0xffff {
		return fmt.Errorf("want a number from 0 to 65535")
	}
	*v.p = n
	return nil
}

func (s *simSCSI) socket() string {
	if s.control != "" {
		return s.control
	}
	return control.DefaultPath()
}

// checkFree refuses to start at all (before the disk is opened) when
// another live sim answers on the control socket.
func (s *simSCSI) checkFree() error {
	if c, err := control.Dial(s.socket()); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: %w (another xenblk sim running? pick another with --control)", s.socket(), control.ErrInUse)
	}
	return nil
}

// start serves the guest's disk, under its vdev name, on the control
// socket (a simExtra); stopping it closes the listener, which removes the
// socket.
func (s *simSCSI) start(_ context.Context, disk *blkfront.Disk, vdev string, out io.Writer) (stopper, error) {
	path := s.socket()
	l, err := control.Listen(path)
	if errors.Is(err, control.ErrInUse) {
		return nil, fmt.Errorf("control socket: %w (another xenblk sim running? pick another with --control)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	devices := control.NewDevices(s.more)
	devices.Add(vdev, disk)
	done := make(chan struct{})
	go func() {
		defer close(done)
		control.ServeDevices(l, devices)
	}()
	if len(s.more) == 0 {
		fmt.Fprintf(out, "  SCSI     xenblk scsi --control %s inquiry --vpd 0xb1\n", path)
	} else {
		fmt.Fprintf(out, "  SCSI     xenblk scsi --control %s --device %s inquiry --vpd 0xb1\n", path, vdev)
		for _, name := range slices.Sorted(maps.Keys(s.more)) {
			fmt.Fprintf(out, "  SCSI     xenblk scsi --control %s --device %s inquiry --vpd 0x83\n", path, name)
		}
	}
	return stopFunc(func() {
		l.Close()
		<-done
	}), nil
}
