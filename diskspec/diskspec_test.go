package diskspec

import (
	"strings"
	"testing"
)

// The equivalences are the examples of xl-disk-configuration(5).
func TestManPageEquivalences(t *testing.T) {
	groups := [][]string{
		{
			"/dev/vg/guest-volume,,hda",
			"/dev/vg/guest-volume,raw,hda,rw",
			"format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
			"raw:/dev/vg/guest-volume,hda,w",
		},
		{
			"/root/image.iso,,hdc,cdrom",
			"/root/image.iso,,hdc,,cdrom",
			"/root/image.iso,raw,hdc,devtype=cdrom",
			"format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
			"raw:/root/image.iso,hdc:cdrom,ro",
		},
	}
	for _, g := range groups {
		want, err := Parse(g[0])
		if err != nil {
			t.Fatalf("Parse(%q): %v", g[0], err)
		}
		for _, s := range g[1:] {
			got, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse(%q): %v", s, err)
			}
			if got.String() != want.String() {
				t.Errorf("Parse(%q) = %s, want %s", s, got, want)
			}
		}
	}
}

func TestFields(t *testing.T) {
	s, err := Parse("format=raw, vdev=xvdb, access=ro, discard, backendtype=phy, scsi-policy=default,+0x35, target=/a,b c")
	if err == nil {
		t.Fatalf("a bare +0x35 positional after all positionals should fail, got %+v", s)
	}
	s, err = Parse("vdev=xvdb, access=ro, discard, backendtype=phy, rotation-rate=1, target=/dir/with,comma.img")
	if err != nil {
		t.Fatal(err)
	}
	if s.Target != "/dir/with,comma.img" {
		t.Errorf("target %q: a named target must swallow commas", s.Target)
	}
	if !s.ReadOnly || s.Vdev != "xvdb" || s.BackendType != "phy" || s.Discard == nil || !*s.Discard || s.Extra["rotation-rate"] != "1" {
		t.Errorf("fields wrong: %+v", s)
	}
	s, err = Parse("phy:/dev/sdb1,xvda1,w")
	if err != nil {
		t.Fatal(err)
	}
	if s.Target != "/dev/sdb1" || s.BackendType != "phy" || s.ReadOnly {
		t.Errorf("legacy phy: prefix: %+v", s)
	}
	s, err = Parse("tap:aio:/img,xvdc,r")
	if err != nil || s.Target != "/img" || s.BackendType != "tap" || !s.ReadOnly {
		t.Errorf("legacy tap:aio: %+v %v", s, err)
	}
}

func TestErrors(t *testing.T) {
	for _, bad := range []string{
		"",                              // no vdev
		"/img",                          // no vdev
		"/img,raw,xvda,rw,extra",        // too many positionals
		"/img,raw,xvda,rx",              // bad access
		"/img,vmdk,xvda",                // bad format
		"vdev=xvda,vdev=xvdb,target=/x", // twice
		"/img,,xvda,,bogus=1",           // unknown key
		"/img,,floppy",                  // bad vdev
		"vdev=xvda",                     // no target, not a cdrom
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", bad)
		} else if !strings.HasPrefix(err.Error(), "diskspec: ") {
			t.Errorf("Parse(%q) error %q lacks the package prefix", bad, err)
		}
	}
	if s, err := Parse("vdev=hdc,devtype=cdrom"); err != nil || !s.CDROM || !s.ReadOnly {
		t.Errorf("an empty CD-ROM drive must parse: %+v %v", s, err)
	}
}

func TestVirtualDevice(t *testing.T) {
	cases := map[string]uint32{
		"xvda":  51712, // 202<<8
		"xvdb":  51728,
		"xvdd":  51760, // the xenlab README's example
		"xvda1": 51713,
		"xvdq":  1<<28 | 16<<8,
		"xvdaa": 1<<28 | 26<<8,
		"hda":   3 << 8,
		"hdb":   3<<8 | 64,
		"hdc":   22 << 8,
		"sda":   8 << 8,
		"sdb2":  8<<8 | 16 | 2,
		"d0p1":  51713,
		"d20p3": 1<<28 | 20<<8 | 3,
		"51712": 51712,
	}
	for name, want := range cases {
		got, err := VirtualDevice(name)
		if err != nil || got != want {
			t.Errorf("VirtualDevice(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	for _, bad := range []string{"xvd", "xvdaaa", "hde", "sdq", "xvda0", "dXp1", "nvme0n1"} {
		if _, err := VirtualDevice(bad); err == nil {
			t.Errorf("VirtualDevice(%q) succeeded", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/dev/vg/guest-volume,,hda", "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso", "raw:/root/image.iso,hdc:cdrom,ro", "d0p1", ",,,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			return
		}
		// What parses renders to a spec that parses to the same thing.
		again, err := Parse(spec.String())
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", spec.String(), s, err)
		}
		if again.String() != spec.String() {
			t.Fatalf("round trip changed %q to %q", spec.String(), again.String())
		}
	})
}

// A disk shared on purpose: xenblk's shared=1, or xl's access=w! (rw!);
// it renders as shared=1 and parses back to the same. A contradiction or
// a value that is not 1/0 is an error echoing what was given.
func TestShared(t *testing.T) {
	shared := func(s Spec) bool {
		o, err := s.Options()
		return err == nil && o.Shared
	}
	for _, s := range []string{
		"vdev=xvdb, shared=1, target=/dev/vg/cluster",
		"vdev=xvdb, access=w!, target=/dev/vg/cluster",
		"/dev/vg/cluster,raw,xvdb,rw!",
		"vdev=xvdb, access=rw, shared=true, target=/dev/vg/cluster",
		"vdev=xvdb, shared=1, access=w!, target=/dev/vg/cluster",
	} {
		spec, err := Parse(s)
		if err != nil || !shared(spec) || spec.ReadOnly {
			t.Fatalf("Parse(%q) = %+v, %v; want shared read-write", s, spec, err)
		}
		again, err := Parse(spec.String())
		if err != nil || !shared(again) || !strings.Contains(spec.String(), "shared=") {
			t.Errorf("%q renders as %q, which parses to %+v, %v", s, spec, again, err)
		}
	}
	if spec, err := Parse("vdev=xvdb, access=ro, shared=1, target=/img"); err != nil || !shared(spec) || !spec.ReadOnly {
		t.Errorf("a shared reader: %+v, %v", spec, err)
	}
	for _, s := range []string{"vdev=xvdb, target=/img", "vdev=xvdb, shared=0, target=/img"} {
		if spec, err := Parse(s); err != nil || shared(spec) {
			t.Errorf("Parse(%q) = %s, %v; want a disk that is not shared", s, spec, err)
		}
	}
	for bad, want := range map[string]string{
		"vdev=xvdb, shared=yes, target=/img":          `shared=yes: want 1`,
		"vdev=xvdb, access=w!, shared=0, target=/img": `access=w! shares the disk, but shared=0 says otherwise`,
		"vdev=xvdb, shared=0, access=w!, target=/img": `access=w! shares the disk, but shared=0 says otherwise`,
		"vdev=xvdb, access=r!, target=/img":           `unknown access "r!"`,
	} {
		if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): %v, want an error saying %q", bad, err, want)
		}
	}
}

// initiator= names the guest for reservations on every host: it renders
// and parses back; an empty, spaced or overlong name says what it wants.
func TestInitiator(t *testing.T) {
	spec, err := Parse("vdev=xvdb, shared=1, initiator=6f1c0a52-7d4e-4f0b-9a51-0c2b4d7e9f10, target=/dev/vg/cluster")
	if err != nil {
		t.Fatal(err)
	}
	o, err := spec.Options()
	if err != nil || o.Initiator != "6f1c0a52-7d4e-4f0b-9a51-0c2b4d7e9f10" {
		t.Fatalf("initiator: %+v, %v", o, err)
	}
	if again, err := Parse(spec.String()); err != nil || again.Extra[KeyInitiator] != o.Initiator {
		t.Fatalf("%q parses back to %+v, %v", spec, again, err)
	}
	for _, v := range []string{"", "two words", strings.Repeat("x", MaxInitiator+1), "caf\u00e9"} {
		_, err := ParseOptions(map[string]string{KeyInitiator: v})
		if err == nil || !strings.Contains(err.Error(), "initiator=") || !strings.Contains(err.Error(), "want") {
			t.Errorf("initiator=%q: %v", v, err)
		}
	}
}
