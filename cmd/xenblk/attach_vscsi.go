package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
)

// The PVSCSI forms of attach and detach, after xl's proposed
// vscsi-attach and vscsi-detach: `attach --vscsi 'PDEV, VDEV[, OPTION...]'`,
// `detach --vscsi VDEV` (a LUN; its vhost too if it is the last) and
// `detach --vhost N` (a whole vhost).

// checkVscsiForm refuses what does not go with --vscsi or --vhost.
func checkVscsiForm(cmd *cobra.Command, args []string, what string) error {
	if len(args) > 0 {
		return usagef("%s names the device; give no argument beside it (a %s is for vbds)", what, cmd.Use[len(cmd.Name())+1:])
	}
	if cmd.Flags().Changed("backend-type") {
		return usagef("--backend-type is for vbds; a vhost's directory is backend/vscsi, as vscsiif.h has it")
	}
	return nil
}

func runAttachVscsi(cmd *cobra.Command, o *vbdOptions, args []string) error {
	// Everything is checked before anything is written: the spec's
	// syntax and keys, what serve would refuse, then what a backend on
	// this host would open.
	if err := checkVscsiForm(cmd, args, "--vscsi"); err != nil {
		return err
	}
	spec, err := vscsispec.Parse(o.vscsi)
	if err != nil {
		return usagef("--vscsi: %v", err)
	}
	if spec.FeatureHost {
		return usagef("--vscsi: feature-host asks for a whole host adapter passed through, which xenblk serve refuses (docs/PROTOCOL.md, Part 4); drop the option")
	}
	if spec.PDev.Kind == vscsispec.PDevNBD {
		if _, err := nbd.ParseTarget(spec.PDev.Name); err != nil {
			return usagef("--vscsi: p-dev %q: %v", spec.PDev.Name, err)
		}
	}
	st, err := o.store()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := o.domainsExist(st); err != nil {
		return err
	}
	if o.backend == 0 {
		if err := checkLocalLUN(spec); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	p, err := toolstack.AttachVscsi(ctx, st, xen.DomID(o.backend), xen.DomID(o.domain), spec)
	if err != nil {
		if errors.Is(err, toolstack.ErrNotReconfigured) {
			return fmt.Errorf("%w (is xenblk serve running for domain %d? a longer --timeout waits more)", err, o.backend)
		}
		return err
	}
	vhost := fmt.Sprintf("vhost %d", p.Vhost.DevID)
	if p.NewVhost {
		vhost = "a new " + vhost
	}
	fmt.Fprintf(cmd.OutOrStdout(), "attached %s at %s to domain %d: dev-%d of %s, %s\n",
		spec.PDev.Name, spec.VDev, o.domain, p.Index, vhost, p.Vhost.BackendPath())
	return nil
}

// checkLocalLUN checks what a backend in domain 0 (this host) will open
// for a LUN: an image or a block device as attach checks a vbd's target
// (vbd.CheckLocal), a SCSI generic node or a host SCSI device that is
// there, and a policy file that reads.
func checkLocalLUN(spec vscsispec.Spec) error {
	disk := diskspec.Spec{}
	switch spec.PDev.Kind {
	case vscsispec.PDevPath:
		disk.Target = spec.PDev.Name
	case vscsispec.PDevSG:
		fi, err := os.Stat(spec.PDev.Name)
		if err != nil {
			return fmt.Errorf("p-dev: %w", err)
		}
		if fi.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("p-dev %s is not a SCSI generic node (a character device; lsscsi -g lists them)", spec.PDev.Name)
		}
	case vscsispec.PDevHost:
		sys := "/sys/class/scsi_device/" + spec.PDev.Host.String()
		if _, err := os.Stat(sys); err != nil {
			return fmt.Errorf("p-dev %s: this host has no such SCSI device (no %s; lsscsi lists them)", spec.PDev.Name, sys)
		}
	}
	return vbd.CheckLocal(disk, spec.Options())
}

func runDetachVscsi(cmd *cobra.Command, o *vbdOptions, args []string) error {
	switch {
	case o.vscsi != "" && o.vhost >= 0:
		return usagef("give --vscsi VDEV (a LUN) or --vhost N (a whole vhost), not both")
	case o.vscsi != "":
		if err := checkVscsiForm(cmd, args, "--vscsi"); err != nil {
			return err
		}
	default:
		if err := checkVscsiForm(cmd, args, "--vhost"); err != nil {
			return err
		}
		if o.vhost > 1<<32-1 {
			return usagef("--vhost %d: a vhost's device id is at most %d", o.vhost, uint32(1<<32-1))
		}
	}
	var vdev vscsibus.VDev
	if o.vscsi != "" {
		var err error
		if vdev, err = vscsibus.ParseVDev(o.vscsi); err != nil {
			return usagef("--vscsi: %v", err)
		}
	}
	st, err := o.store()
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	hint := func(err error) error {
		if errors.Is(err, toolstack.ErrNotClosed) || errors.Is(err, toolstack.ErrNotReconfigured) {
			return fmt.Errorf("%w (give --force to remove it anyway, or a longer --timeout)", err)
		}
		return err
	}
	if o.vscsi == "" {
		v := toolstack.Vhost{BackendDom: xen.DomID(o.backend), FrontendDom: xen.DomID(o.domain), DevID: uint32(o.vhost)}
		if err := toolstack.RemoveVhost(ctx, st, v, o.force); err != nil {
			return hint(err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "detached vhost %d from domain %d\n", o.vhost, o.domain)
		return nil
	}
	d, err := toolstack.DetachVscsi(ctx, st, xen.DomID(o.backend), xen.DomID(o.domain), vdev, o.force)
	if err != nil {
		return hint(err)
	}
	also := ""
	if d.VhostRemoved {
		also = ", its last LUN: the vhost is removed"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "detached %s (dev-%d of vhost %d) from domain %d%s\n", vdev, d.Index, d.Vhost.DevID, o.domain, also)
	return nil
}
