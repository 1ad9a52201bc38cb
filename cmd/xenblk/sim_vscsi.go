package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen/sim"
)

// simLUN is the v-dev of sim --vscsi's LUN, and the name it is exported
// under.
const simLUN = "0:0:0:0"

// simVscsiLUN is sim --vscsi's LUN as the guest holds it.
type simVscsiLUN struct {
	vhost string // the vhost's frontend directory
	lun   *vscsifront.LUN
	dev   storage.Device
}

// attachSimLUN gives the guest the image at path as LUN simLUN of a new
// vhost (the stack's vscsiback serves it) and probes it as a device.
func attachSimLUN(ctx context.Context, stack *simstack.Stack, guest *sim.Domain, path string, log *slog.Logger) (*simVscsiLUN, error) {
	spec, err := vscsispec.Parse(path + ", " + simLUN)
	if err != nil {
		return nil, fmt.Errorf("--vscsi: %w", err)
	}
	vg, err := stack.AttachVhost(ctx, guest, vscsifront.Config{Log: log}, spec)
	if err != nil {
		return nil, fmt.Errorf("--vscsi: %w", err)
	}
	dev, err := probeLUN(ctx, vg.LUNs[0])
	if err != nil {
		return nil, fmt.Errorf("--vscsi: LUN %s: %w", simLUN, err)
	}
	return &simVscsiLUN{vhost: vg.Vhost.FrontendPath(), lun: vg.LUNs[0], dev: dev}, nil
}
