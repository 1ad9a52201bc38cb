package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNBDServeSeveralExports: `nbd serve --export NAME=FILE` serves more
// images from one server, each under its name, with a banner line each.
func TestNBDServeSeveralExports(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(p, 4<<20)
	}
	sock := filepath.Join(dir, "nbd.sock")
	srv := startProc(t, bin, "nbd", "serve", "--listen", "unix:"+sock, "--name", "a", a, "--export", "b="+b)
	var urls []string
	for range 2 {
		line := srv.expect(t, "serving ")
		urls = append(urls, line[strings.LastIndex(line, " ")+1:])
	}
	if !strings.Contains(urls[0], "/a?") || !strings.Contains(urls[1], "/b?") {
		t.Fatalf("banners give %v", urls)
	}
	list := runTool(t, "nbdinfo", "--list", "--json", urls[0])
	if !strings.Contains(list, `"export-name": "a"`) || !strings.Contains(list, `"export-name": "b"`) {
		t.Fatalf("nbdinfo --list:\n%s", list)
	}
	qemuIO(t, urls[1], "write -P 0x5b 64k 4k", "flush")
	stopProc(t, srv)
	got, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[64<<10:68<<10], bytes.Repeat([]byte{0x5b}, 4096)) {
		t.Fatal("the write to export b is not in b.img")
	}
	if got, _ := os.ReadFile(a); !bytes.Equal(got, make([]byte, 4<<20)) {
		t.Fatal("the write to export b reached a.img")
	}
	for _, c := range []struct{ export, want string }{
		{"b", "want NAME=FILE"},
		{"=" + b, "want NAME=FILE"},
		{"a=" + b, `export name "a" is taken`},
	} {
		_, errs, code := runXenblkCode(t, bin, "nbd", "serve", "--listen", "unix:"+sock, "--name", "a", a, "--export", c.export)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("--export %q: exit %d, stderr %q; want %d and %q", c.export, code, errs, exitUsage, c.want)
		}
	}
}
