package main

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/linux"
	"github.com/xenblk/xenblk/xen/sim"
)

// xenMode is the --xen flag of the commands that talk to a hypervisor:
// which one, "auto", "linux" or "sim". Only those commands have the flag
// (addXenFlag); the value is checked when the flag is parsed.
type xenMode string

type xenModeValue struct{ p *xenMode }

func (v xenModeValue) String() string {
	if v.p == nil {
		return ""
	}
	return string(*v.p)
}
func (xenModeValue) Type() string { return "auto|linux|sim" }
func (v xenModeValue) Set(s string) error {
	switch s {
	case "auto", "linux", "sim":
		*v.p = xenMode(s)
		return nil
	}
	return fmt.Errorf("want auto, linux or sim")
}

// addXenFlag gives a command the --xen flag, read into *p ("auto" until
// given); socketHint says how that command is given a simulated host's
// socket (its flag, e.g. "--host").
func addXenFlag(f *pflag.FlagSet, p *xenMode, socketHint string) {
	*p = "auto"
	f.Var(xenModeValue{p}, "xen", "which Xen: linux (real Xen through /dev/xen), sim (a simulated host: "+socketHint+
		"), or auto (sim when "+socketHint+" is given, else linux when "+linux.DevPrivcmd+" exists)")
}

// realXen decides, as mode says, between the real hypervisor and a
// simulated host whose socket is simSocket ("" when none was given);
// socketHint says how the command is given that socket, for the messages.
func realXen(mode xenMode, simSocket, socketHint string) (bool, error) {
	switch mode {
	case "linux":
		if simSocket != "" {
			return false, usagef("--xen=linux and %s contradict each other: %s names a simulated host", socketHint, socketHint)
		}
		return true, nil
	case "sim":
		if simSocket == "" {
			return false, usagef("--xen=sim needs %s (the socket of `xenblk host`)", socketHint)
		}
		return false, nil
	case "auto":
		if simSocket != "" {
			return false, nil
		}
		if linux.Available() {
			return true, nil
		}
		return false, usagef("not on Xen (%s is missing): give %s, the socket of a simulated host started with `xenblk host`", linux.DevPrivcmd, socketHint)
	default:
		return false, usagef("--xen must be auto, linux or sim, not %q", mode)
	}
}

// openDomain opens this process's domain: dom0 or a driver domain on real
// Xen, or role on the simulated host at simSocket (realXen decides which).
func openDomain(mode xenMode, simSocket, socketHint string, role sim.Role) (xen.Domain, error) {
	real, err := realXen(mode, simSocket, socketHint)
	if err != nil {
		return nil, err
	}
	if real {
		d, err := linux.Open()
		if err != nil {
			return nil, fmt.Errorf("open real Xen: %w", err)
		}
		return d, nil
	}
	d, err := sim.Connect(simSocket, role)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w (no simulated host listens there: start one with `xenblk host`, and give its socket with %s)", err, socketHint)
	}
	return d, err
}

// openStore connects to xenstore alone: xenstored's socket at socket on a
// simulated host, or the real one.
func openStore(mode xenMode, socket, socketHint string) (xen.Store, error) {
	real, err := realXen(mode, socket, socketHint)
	if err != nil {
		return nil, err
	}
	if real {
		st, err := linux.DialStore()
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	return dialStore(socket)
}
