package vbd_test

import (
	"testing"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen/sim"
)

// TestWhatIsWrittenReadsBack: the nodes a spec becomes (what toolstack
// writes) read back, through the same names, as the disk and unit the
// spec describes; libxl's mode w! reads as shared.
func TestWhatIsWrittenReadsBack(t *testing.T) {
	h, _ := sim.NewHost()
	st := h.Store()
	for i, c := range []struct {
		spec     string
		mode     string // written over the mode node when not ""
		readOnly bool
		shared   bool
	}{
		{"vdev=xvda, target=/img/a", "", false, false},
		{"vdev=xvda, access=ro, target=/img/a", "", true, false},
		{"vdev=xvda, shared=1, scsi=passthrough, pr=passthrough, sector-size=4096, target=/dev/sdb", "", false, true},
		{"vdev=xvda, target=/img/a", "w!", false, true},
	} {
		spec, err := diskspec.Parse(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		dir := "/local/domain/0/backend/xenblk/1/" + string(rune('a'+i))
		for _, n := range vbd.BackendNodes(spec, "/local/domain/1/device/vbd/51712", 1) {
			st.Write(dir+"/"+n.Key, n.Value)
		}
		if c.mode != "" {
			st.Write(dir+"/"+vbd.KeyMode, c.mode)
		}
		d, err := vbd.ReadDisk(st, dir)
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		want, _ := spec.Options()
		want.Shared = c.shared
		if d.Name != dir || d.Path != spec.Target || d.ReadOnly != c.readOnly || d.Options != want {
			t.Errorf("%s (mode %q): read %+v; want path %s, read-only %v, options %+v", c.spec, c.mode, d, spec.Target, c.readOnly, want)
		}
		u, err := vbd.ReadUnit(st, dir)
		if err != nil || u.Name != dir || u.ID != spec.Target || u.Path != spec.Target || u.Options.SCSI != want.SCSI || u.Options.PR != want.PR {
			t.Errorf("%s: unit %+v, %v", c.spec, u, err)
		}
	}
	// A vbd without params: its unit is named by its directory, with no
	// path to pass through to.
	dir := "/local/domain/0/backend/xenblk/2/51712"
	st.Write(dir+"/"+vbd.KeyFrontendID, "2")
	if u, err := vbd.ReadUnit(st, dir); err != nil || u.ID != dir || u.Path != "" {
		t.Errorf("no params: unit %+v, %v", u, err)
	}
	if _, err := vbd.ReadDisk(st, dir); err == nil {
		t.Error("no params: a disk was read")
	}
}
