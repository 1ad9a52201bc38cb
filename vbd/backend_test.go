package vbd_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// The disk spec's own keys reach the served image: attach writes them as
// backend nodes, a backend's vbd.Open reads them. Bad values are errors naming
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
	dir := createVBD(t, st, g.ID(), "format=raw, vdev=xvdb, access=rw, sector-size=4096, physical-sector-size=8192, rotation-rate=7200, direct=1, target="+img)
	dev, err := vbd.Open(st, dir, discardLog)
	if err != nil {
		t.Fatal(err)
	}
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
	dev.Close() // the image is locked while open: the opens below would be refused

	for _, c := range []struct{ node, value, want string }{
		{"sector-size", "1024", "want 512 or 4096"},
		{"sector-size", "many", "want a number"},
		{"physical-sector-size", "2048", "physical-sector-size=2048: want a power of two from sector-size (4096)"},
		{"rotation-rate", "-3", "rotation-rate=-3: want a number"},
		{"direct", "perhaps", "direct=perhaps: want 1 or 0"},
		{"shared", "perhaps", "shared=perhaps: want 1 (several vbds may open the disk together) or 0"},
		{"scsi", "maybe", "scsi=maybe: want emulate, passthrough or off"},
	} {
		saved, _ := st.Read(dir + "/" + c.node)
		st.Write(dir+"/"+c.node, c.value)
		if d, err := vbd.Open(st, dir, discardLog); err == nil {
			d.Close()
			t.Errorf("%s=%s opened", c.node, c.value)
		} else if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), dir+": ") {
			t.Errorf("%s=%s: error %q, want it to name %s and say %q", c.node, c.value, err, dir, c.want)
		}
		if saved == "" {
			st.Remove(dir + "/" + c.node)
		} else {
			st.Write(dir+"/"+c.node, saved)
		}
	}
	// Keys xenblk does not serve are refused by the parser, not ignored.
	for _, key := range []string{"serial=abc", "queues=4", "size=1G"} {
		if _, err := diskspec.Parse("vdev=xvdc, " + key + ", target=" + img); err == nil {
			t.Errorf("%s accepted", key)
		}
	}
}

var discardLog = slog.New(slog.DiscardHandler)

// A backend says what is true about a disk it will not serve as the spec
// asks: format=qcow2 on a raw file is the spec's claim, not the file's; a
// file that does begin with qcow2's magic under format=raw is served raw,
// as attached, with a warning that says what the file is.
func TestOpenSaysWhatIsTrueAboutTheFormat(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	st := h.Store()
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	qcow := filepath.Join(dir, "disk.qcow2")
	head := append([]byte("QFI\xfb"), 0, 0, 0, 3)
	if err := os.WriteFile(qcow, append(head, make([]byte, 1<<20-len(head))...), 0o600); err != nil {
		t.Fatal(err)
	}
	attach := func(spec string) string { return createVBD(t, st, g.ID(), spec) }
	for _, c := range []struct{ spec, want string }{
		{"format=qcow2, vdev=xvdb, target=" + raw, raw + " is not a qcow2 image (it does not begin with QFI\\xfb and version 2 or 3), but the spec says format=qcow2; for a raw image, say format=raw"},
		{"format=vhd, vdev=xvdc, target=" + qcow, "the spec says format=vhd;"},
	} {
		if d, err := vbd.Open(st, attach(c.spec), discardLog); err == nil {
			d.Close()
			t.Errorf("%s: served", c.spec)
		} else if err.Error() != c.want && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q, want %q", c.spec, err, c.want)
		}
	}
	var logged bytes.Buffer
	d, err := vbd.Open(st, attach("format=raw, vdev=xvdd, target="+qcow), slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatalf("a raw spec on a qcow2 file: %v", err)
	}
	d.Close()
	if !strings.Contains(logged.String(), "is a qcow2 image") || !strings.Contains(logged.String(), "the spec says format=raw") {
		t.Errorf("no warning that names the file's format and the spec's; log:\n%s", logged.String())
	}
	logged.Reset()
	d, err = vbd.Open(st, attach("format=raw, vdev=xvde, target="+raw), slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if logged.Len() != 0 {
		t.Errorf("a raw file under format=raw logged:\n%s", logged.String())
	}
}

// createVBD writes a vbd for spec as attach does and returns its backend
// directory.
func createVBD(t *testing.T, st xen.Store, guest xen.DomID, spec string) string {
	t.Helper()
	s, err := diskspec.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	v, err := toolstack.NewVBD(0, guest, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := toolstack.Create(st, v); err != nil {
		t.Fatal(err)
	}
	return v.BackendPath()
}

// A vbd's nexus: named by its initiator node when the toolstack wrote
// one, so that two hosts (whose guests may have one domain id) and a
// guest that moves agree on it; otherwise this host's domain and vbd.
func TestNexusNamedByTheInitiator(t *testing.T) {
	h, _ := sim.NewHost()
	g, _ := h.NewDomain("guest")
	st := h.Store()
	named := createVBD(t, st, g.ID(), "vdev=xvdb, shared=1, initiator=vm-6f1c, target=/dev/null")
	n, err := vbd.Nexus(st, named, g.ID())
	if err != nil || n.Initiator != "vm-6f1c" || n.Device != "51728" || n.Dom != 0 {
		t.Fatalf("named vbd: %+v, %v; want initiator vm-6f1c, device 51728, dom 0", n, err)
	}
	plain := createVBD(t, st, g.ID(), "vdev=xvdc, target=/dev/null")
	if n, err := vbd.Nexus(st, plain, g.ID()); err != nil || n.Initiator != "" || n.Dom != uint16(g.ID()) || n.Device != plain {
		t.Fatalf("plain vbd: %+v, %v", n, err)
	}
	if err := st.Write(named+"/initiator", "two words"); err != nil {
		t.Fatal(err)
	}
	if _, err := vbd.Nexus(st, named, g.ID()); err == nil || !strings.Contains(err.Error(), "initiator=two words: want printable ASCII") {
		t.Fatalf("a bad initiator node: %v", err)
	}
}
