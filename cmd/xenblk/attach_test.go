package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// storeDump renders the whole tree below path, values included, so that a
// test can say "nothing was written" by comparing two dumps.
func storeDump(t *testing.T, st xen.Store, path string) string {
	t.Helper()
	var b strings.Builder
	var walk func(p string)
	walk = func(p string) {
		v, _ := st.Read(p)
		fmt.Fprintf(&b, "%s = %q\n", p, v)
		kids, _ := st.Directory(p)
		sort.Strings(kids)
		for _, k := range kids {
			walk(strings.TrimSuffix(p, "/") + "/" + k)
		}
	}
	walk(path)
	return b.String()
}

// dirListing names every file below dir with its size and mode.
func dirListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s %d %v %v\n", p, fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

// simGuest is a simulated host with one guest, its xenstored served on
// the socket xs until the test ends.
func simGuest(t *testing.T) (h *sim.Host, g *sim.Domain, xs string) {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	if g, err = h.NewDomain("guest"); err != nil {
		t.Fatal(err)
	}
	xs = filepath.Join(t.TempDir(), "xenstored")
	l, err := net.Listen("unix", xs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go h.ServeXenstore(l)
	return h, g, xs
}

// TestAttachChecksBeforeWriting runs `xenblk attach` against a simulated
// host with every kind of bad spec issue 11 found written without a word:
// each exits 2 (a bad value) or 1 (a domain or a disk that is not there),
// says what was wrong in the words serve would log, and leaves xenstore
// and the files exactly as they were. Then good specs attach.
func TestAttachChecksBeforeWriting(t *testing.T) {
	bin := buildXenblk(t)
	h, g, xs := simGuest(t)
	st := h.Store()

	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	qcow := filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(qcow, append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 4088)...), 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.img")
	if err := os.Symlink(filepath.Join(dir, "gone.img"), dangling); err != nil {
		t.Fatal(err)
	}
	empty, odd := filepath.Join(dir, "empty.img"), filepath.Join(dir, "odd.img")
	os.WriteFile(empty, nil, 0o644)
	os.WriteFile(odd, make([]byte, 1<<20+100), 0o644)
	os.WriteFile(filepath.Join(dir, "half.img"), make([]byte, 1<<20+512), 0o644)
	goodPolicy, badPolicy := filepath.Join(dir, "good.policy"), filepath.Join(dir, "bad.policy")
	os.WriteFile(goodPolicy, []byte("# fine\ndefault\n-0x3b\n"), 0o644)
	os.WriteFile(badPolicy, []byte("default\n+0xZZ\n"), 0o644)

	domain := fmt.Sprint(g.ID())
	attach := func(spec string, flags ...string) (string, string, int) {
		args := append([]string{"attach", "--xenstore", xs, "--domain", domain}, flags...)
		return runXenblkCode(t, bin, append(args, spec)...)
	}
	for _, c := range []struct {
		spec  string
		flags []string
		code  int
		want  string
	}{
		{"format=qcow2, vdev=xvda, target=" + raw, nil, 1, raw + " is not a qcow2 image (it does not begin with QFI\\xfb and version 2 or 3), but the spec says format=qcow2; for a raw image, say format=raw"},
		{"format=qcow2, vdev=xvda, target=" + qcow, nil, 1, "qcow2 image " + qcow + ": qcow2: corrupt image"},
		{"format=qed, vdev=xvda, target=" + raw, nil, 2, "the spec says format=qed; xenblk serves raw and qcow2 images only"},
		{"format=vhd, vdev=xvda, target=" + raw, nil, 2, "the spec says format=vhd;"},
		{"vdev=xvda, sector-size=1000, target=" + raw, nil, 2, "sector-size=1000: want 512 or 4096"},
		{"vdev=xvda, scsi=maybe, target=" + raw, nil, 2, "scsi=maybe: want emulate, passthrough or off"},
		{"vdev=xvda, pr=yes, target=" + raw, nil, 2, "pr=yes: want emulate or passthrough"},
		{"vdev=xvda, direct=2, target=" + raw, nil, 2, "direct=2: want 1 or 0"},
		{"vdev=xvda, grant-copy=yes, target=" + raw, nil, 2, "grant-copy=yes: want 1 (copy the guest's pages, never map them) or 0"},
		{"vdev=xvda, rotation-rate=-7, target=" + raw, nil, 2, "rotation-rate=-7: want a number from 0 to 65534"},
		{"vdev=xvda, scsi-policy=+0xZZ, target=" + raw, nil, 2, `scsi-policy=+0xZZ: scsi policy: bad opcode in "+0xZZ"`},
		{"vdev=xvda, scsi-policy=@relative.txt, target=" + raw, nil, 2, `scsi-policy=@relative.txt: policy file "relative.txt": want an absolute path`},
		{"vdev=xvda, target=/nonexistent", nil, 1, "target /nonexistent does not exist"},
		{"vdev=xvda, target=" + raw + ", access=ro", nil, 1, "target= takes the rest of the spec"},
		{"vdev=xvda, target=" + raw, []string{"--domain", "99"}, 1, "--domain 99: no such domain: xenstore has no /local/domain/99"},
		{"vdev=xvda, target=" + raw, []string{"--backend-domain", "42"}, 1, "--backend-domain 42: no such domain"},
		{"vdev=xvda, target=" + dangling, nil, 1, "is a symbolic link to " + filepath.Join(dir, "gone.img") + ", which does not exist"},
		{"vdev=xvda, target=" + qcow, nil, 1, "is a qcow2 image (it begins with QFI\\xfb), but the spec says format=raw"},
		{"vdev=xvda, target=" + dir, nil, 1, "is not a raw image file or a block device"},
		{"vdev=xvda, target=" + empty, nil, 1, "is 0 bytes; give it a size with truncate -s SIZE " + empty},
		{"vdev=xvda, target=" + odd, nil, 1, "its last 100 bytes could never be read or written"},
		{"vdev=xvda, sector-size=4096, target=" + filepath.Join(dir, "half.img"), nil, 1, "not a whole number of 4096-byte sectors"},
		{"vdev=xvda, scsi-policy=@" + filepath.Join(dir, "missing.policy") + ", target=" + raw, nil, 1, "no such file"},
		{"vdev=xvda, scsi-policy=@" + badPolicy + ", target=" + raw, nil, 1, "bad.policy: line 2"},
	} {
		storeBefore, filesBefore := storeDump(t, st, "/"), dirListing(t, dir)
		out, errs, code := attach(c.spec, c.flags...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("attach %v %q: exit %d, stderr %q; want exit %d saying %q", c.flags, c.spec, code, errs, c.code, c.want)
		}
		if strings.Contains(out, "attached") {
			t.Errorf("attach %q printed %q", c.spec, out)
		}
		if after := storeDump(t, st, "/"); after != storeBefore {
			t.Errorf("attach %q changed xenstore:\nbefore:\n%s\nafter:\n%s", c.spec, storeBefore, after)
		}
		if after := dirListing(t, dir); after != filesBefore {
			t.Errorf("attach %q changed the files:\nbefore:\n%s\nafter:\n%s", c.spec, filesBefore, after)
		}
	}

	// Serve, reading the same keys from nodes written by hand, says the
	// same words: one check (diskspec.ParseOptions) behind both.
	vbdDir := "/local/domain/0/backend/xenblk/" + domain + "/999"
	for _, kv := range []string{"sector-size=1000", "scsi=maybe", "direct=2", "grant-copy=yes", "rotation-rate=-7", "scsi-policy=+0xZZ", "scsi-policy=@relative.txt"} {
		key, val, _ := strings.Cut(kv, "=")
		st.Write(vbdDir+"/"+key, val)
		_, errs, _ := attach("vdev=xvda, " + kv + ", target=" + raw)
		_, serveErr := vbd.ReadOptions(st, vbdDir)
		st.Remove(vbdDir)
		if serveErr == nil {
			t.Errorf("serve took %s", kv)
			continue
		}
		said := strings.TrimPrefix(serveErr.Error(), vbdDir+": ")
		if !strings.HasPrefix(said, kv+": ") || !strings.Contains(errs, said) {
			t.Errorf("%s: attach said %q, serve %q", kv, errs, said)
		}
	}
	st.Remove("/local/domain/0/backend")

	raw2, cluster := filepath.Join(dir, "disk2.img"), filepath.Join(dir, "cluster.img")
	os.WriteFile(raw2, make([]byte, 1<<20), 0o644)
	os.WriteFile(cluster, make([]byte, 1<<20), 0o644)
	link := filepath.Join(dir, "link.img")
	os.Symlink(raw2, link)
	for _, spec := range []string{
		"format=raw, vdev=xvda, access=rw, sector-size=4096, direct=1, rotation-rate=1, grant-copy=1, target=" + raw,
		"vdev=xvdb, scsi-policy=@" + goodPolicy + ", target=" + raw2,
		"vdev=xvdc, access=ro, target=" + link, // raw2 by another name: refused beside xvdb
		"vdev=xvdd, shared=1, target=" + cluster,
		"vdev=xvde, access=w!, target=" + cluster,
	} {
		out, errs, code := attach(spec)
		wantOK := !strings.HasPrefix(spec, "vdev=xvdc")
		if wantOK && (code != 0 || !strings.Contains(out, "attached")) {
			t.Errorf("attach %q: exit %d, %q %q", spec, code, out, errs)
		}
		if !wantOK && (code != 1 || !strings.Contains(errs, "vbd xvdb already")) {
			t.Errorf("attach %q beside a read-write vbd of its disk: exit %d, %q; want exit 1 naming that vbd", spec, code, errs)
		}
	}
	// A disk is refused before anything is written when serve could not
	// open it beside the vbds that have it already.
	for _, c := range []struct{ spec, holder string }{
		{"vdev=xvdf, target=" + raw, "xvda"},
		{"vdev=xvdf, access=ro, target=" + raw, "xvda"},
		{"vdev=xvdf, target=" + cluster, "xvdd"},
		{"vdev=xvdf, access=ro, target=" + cluster, "xvdd"},
	} {
		before := storeDump(t, st, "/")
		_, errs, code := attach(c.spec)
		if code != 1 || !strings.Contains(errs, "vbd "+c.holder+" already") || !strings.Contains(errs, "xenblk detach --domain "+domain+" "+c.holder) {
			t.Errorf("attach %q: exit %d, %q; want exit 1 naming %s and how to detach it", c.spec, code, errs, c.holder)
		}
		if after := storeDump(t, st, "/"); after != before {
			t.Errorf("attach %q changed xenstore", c.spec)
		}
	}
	if v, err := st.Read("/local/domain/0/backend/xenblk/" + domain + "/51712/sector-size"); err != nil || v != "4096" {
		t.Errorf("sector-size node %q, %v", v, err)
	}
	if v, err := st.Read("/local/domain/0/backend/xenblk/" + domain + "/51712/grant-copy"); err != nil || v != "1" {
		t.Errorf("grant-copy node %q, %v", v, err)
	}
}
