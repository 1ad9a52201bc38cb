package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/xen/sim"
)

// The disk spec's own keys reach the served image: attach writes them as
// backend nodes, serve's openVBD reads them. Bad values are errors naming
// the node, never silently the default.
func TestVBDImageOptionsFromTheDiskSpec(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	st := h.Store()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	spec, err := diskspec.Parse("format=raw, vdev=xvdb, access=rw, sector-size=4096, physical-sector-size=8192, rotation-rate=7200, direct=1, target=" + img)
	if err != nil {
		t.Fatal(err)
	}
	vbd, err := toolstack.NewVBD(0, g.ID(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := toolstack.Create(st, vbd); err != nil {
		t.Fatal(err)
	}
	dev, err := openVBD(st, vbd.BackendPath())
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	in := dev.Info()
	if in.LogicalBlockSize != 4096 || in.PhysicalBlockSize != 8192 || in.RotationRate != 7200 {
		t.Errorf("served %d/%d bytes, rotation %d; want 4096/8192, 7200", in.LogicalBlockSize, in.PhysicalBlockSize, in.RotationRate)
	}
	// O_DIRECT: an aligned 4 KiB write and read go through.
	buf := make([]byte, 4096)
	buf[0] = 0x5a
	if _, err := dev.WriteAt(buf, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := dev.ReadAt(got, 4096); err != nil || got[0] != 0x5a {
		t.Fatalf("read back %x, %v", got[0], err)
	}

	dir := vbd.BackendPath()
	for _, c := range []struct{ node, value, want string }{
		{"sector-size", "1024", "want 512 or 4096"},
		{"sector-size", "many", "want a number"},
		{"physical-sector-size", "2048", "physical block size 2048"},
		{"rotation-rate", "-3", "want a number"},
		{"direct", "perhaps", "want 1 or 0"},
	} {
		saved, _ := st.Read(dir + "/" + c.node)
		st.Write(dir+"/"+c.node, c.value)
		if d, err := openVBD(st, dir); err == nil {
			d.Close()
			t.Errorf("%s=%s opened", c.node, c.value)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%s: error %q, want it to say %q", c.node, c.value, err, c.want)
		}
		st.Write(dir+"/"+c.node, saved)
	}
	// Keys xenblk does not serve are refused by the parser, not ignored.
	for _, key := range []string{"serial=abc", "queues=4", "size=1G"} {
		if _, err := diskspec.Parse("vdev=xvdc, " + key + ", target=" + img); err == nil {
			t.Errorf("%s accepted", key)
		}
	}
}
