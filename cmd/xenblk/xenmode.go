package main

import (
	"fmt"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/linux"
	"github.com/xenblk/xenblk/xen/sim"
)

// xenMode is the root's --xen flag: which hypervisor the commands talk to.
var xenMode string

func init() {
	rootCmd.PersistentFlags().StringVar(&xenMode, "xen", "auto",
		"which Xen: linux (real Xen through /dev/xen), sim (a simulated host: --host), or auto (sim when --host is given, else linux when /dev/xen/privcmd exists)")
}

// realXen decides between the real hypervisor and a simulated host whose
// socket is simSocket ("" when none was given).
func realXen(simSocket string) (bool, error) {
	switch xenMode {
	case "linux":
		if simSocket != "" {
			return false, usagef("--xen=linux and --host contradict each other: --host names a simulated host")
		}
		return true, nil
	case "sim":
		if simSocket == "" {
			return false, usagef("--xen=sim needs --host (the socket of `xenblk host`)")
		}
		return false, nil
	case "auto":
		if simSocket != "" {
			return false, nil
		}
		if linux.Available() {
			return true, nil
		}
		return false, usagef("not on Xen (%s is missing): give --host, the socket of a simulated host started with `xenblk host`", linux.DevPrivcmd)
	default:
		return false, usagef("--xen must be auto, linux or sim, not %q", xenMode)
	}
}

// openDomain opens this process's domain: dom0 or a driver domain on real
// Xen, or role on the simulated host at simSocket.
func openDomain(simSocket string, role sim.Role) (xen.Domain, error) {
	real, err := realXen(simSocket)
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
	return sim.Connect(simSocket, role)
}

// openStore connects to xenstore alone: xenstored's socket at socket on a
// simulated host, or the real one.
func openStore(socket string) (xen.Store, error) {
	real, err := realXen(socket)
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

// simOnly refuses --xen=linux for the commands that are the simulated
// host themselves.
func simOnly(command string) error {
	if xenMode == "linux" {
		return usagef("%s runs its own simulated Xen host; --xen=linux does not apply", command)
	}
	return nil
}
