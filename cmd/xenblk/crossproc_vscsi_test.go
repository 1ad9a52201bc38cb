package main

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// TestVscsiConformanceAcrossProcesses runs the block-device conformance
// suite through PVSCSI with every party in its own process: `xenblk
// host`, one `xenblk serve` (our vscsi backend, serving every case's
// vhost), and for each device a `xenblk front --vhost 0` guest whose LUN
// (an image file, attached with attach --vscsi) is exported over NBD,
// which the suite drives with our NBD client. Every operation is SCSI
// on the vscsiif ring between the two processes.
func TestVscsiConformanceAcrossProcesses(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := crossProcHost(t, bin, dir)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		i := n.Add(1)
		img := filepath.Join(dir, fmt.Sprintf("lun%d.img", i))
		newImage(t, img, size)
		_, _, _, url := startFrontVhost(t, bin, sock, xs, dir, fmt.Sprintf("guest%d", i), img, "")
		return dialExport(t, url)
	})
}
