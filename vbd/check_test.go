package vbd_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/vbd"
)

// TestCheckLocal: what a backend on this host would refuse to open is
// refused before the vbd is written, in words that say how to fix it.
func TestCheckLocal(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	raw := write("disk.img", make([]byte, 1<<20))
	qcow := write("disk.qcow2", append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 4088)...))
	empty := write("empty.img", nil)
	half := write("half.img", make([]byte, 1<<20+512))
	good := write("good.policy", []byte("# fine\ndefault\n-0x3b\n"))
	bad := write("bad.policy", []byte("default\n+0xZZ\n"))
	dangling := filepath.Join(dir, "dangling.img")
	if err := os.Symlink(filepath.Join(dir, "gone.img"), dangling); err != nil {
		t.Fatal(err)
	}
	checkLocalCases(t, []checkLocalCase{
		{"vdev=xvda, target=" + raw, ""},
		{"vdev=xvda, sector-size=4096, target=" + raw, ""},
		{"vdev=xvda, scsi-policy=@" + good + ", target=" + raw, ""},
		{"vdev=xvda, target=" + filepath.Join(dir, "missing.img"), "does not exist; the backend (domain 0) opens it on this host"},
		{"vdev=xvda, target=" + dangling, "is a symbolic link to " + filepath.Join(dir, "gone.img") + ", which does not exist"},
		{"vdev=xvda, target=" + qcow, "is a qcow2 image"},
		{"vdev=xvda, target=" + empty, "is 0 bytes"},
		{"vdev=xvda, sector-size=4096, target=" + half, "not a whole number of 4096-byte sectors"},
		{"vdev=xvda, target=" + dir, "is not a raw image file or a block device"},
		{"vdev=xvda, scsi-policy=@" + bad + ", target=" + raw, "scsi-policy=@" + bad + ": " + bad + ": line 2"},
		{"vdev=xvda, scsi-policy=@" + filepath.Join(dir, "none.policy") + ", target=" + raw, "no such file"},
	})
}

// checkLocalCase is a spec and what CheckLocal says of it: "" nothing,
// else a part of its error.
type checkLocalCase struct{ spec, want string }

func checkLocalCases(t *testing.T, cases []checkLocalCase) {
	t.Helper()
	for _, c := range cases {
		spec, err := diskspec.Parse(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		o, err := spec.Options()
		if err != nil {
			t.Fatal(err)
		}
		err = vbd.CheckLocal(spec, o)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.spec, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want an error saying %q", c.spec, err, c.want)
		}
	}
}
