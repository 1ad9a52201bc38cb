package vscsiback

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/vscsispec"
)

// TestHostDisk: a host SCSI device named by address or by its SCSI
// generic node is served through its disk's block device, as sysfs
// links them; a device without one (a tape, an enclosure) is not a
// disk, and a device that is not there says so.
func TestHostDisk(t *testing.T) {
	sysfs := t.TempDir()
	mk := func(dir string) {
		if err := os.MkdirAll(filepath.Join(sysfs, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk("class/scsi_device/2:0:1:0/device/block/sdb")
	mk("class/scsi_generic/sg3/device/block/sdc")
	mk("class/scsi_device/2:0:2:0/device/scsi_tape")
	mk("class/scsi_generic/sg4/device/block")
	for _, tc := range []struct{ pdev, want, err string }{
		{"2:0:1:0", "/dev/sdb", ""},
		{"/dev/sg3", "/dev/sdc", ""},
		{"2:0:2:0", "", "not a disk"},
		{"/dev/sg4", "", "not a disk"},
		{"3:0:0:0", "", "no such host SCSI device"},
		{"/dev/sg9", "", "no such host SCSI device"},
	} {
		p, err := vscsispec.ParsePDev(tc.pdev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := hostDisk(sysfs, p)
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("%s: %q, %v; want %s", tc.pdev, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q, %v; want an error saying %q", tc.pdev, got, err, tc.err)
		}
	}
}
