package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/eventually"
)

// runTool runs a peer tool and fails the test with its output if it fails.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuIO runs qemu-io's commands on an NBD export, seen raw.
func qemuIO(t *testing.T, url string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runTool(t, "qemu-io", append(args, url)...)
	if strings.Contains(out, "failed") {
		t.Fatalf("qemu-io %v: %s", cmds, out)
	}
}

// stopProc interrupts p as Ctrl-C would and waits for it to exit 0.
func stopProc(t *testing.T, p *proc) {
	t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() {
		for range p.lines {
		}
		done <- p.cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v after Ctrl-C: %v\n%s", p.cmd.Args, err, p.errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not exit in 30s after Ctrl-C", p.cmd.Args)
	}
}

// checkQcow2 has qemu-img find img clean and its disk identical to the
// raw file want.
func checkQcow2(t *testing.T, img, want string) {
	t.Helper()
	runTool(t, "qemu-img", "check", "-f", "qcow2", img)
	runTool(t, "qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", img, want)
}

// writeAt writes b into the raw file at off (the test's expected disk).
func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestNBDServeQcow2: `xenblk nbd serve` finds an image qemu-img made to
// be qcow2 by its first bytes (one standing alone, one over a raw
// backing file named relative to it) and serves the disk inside it:
// qemu-io writes through the export, nbdcopy copies the disk out, and
// qemu-img finds the image clean and identical to the expected disk.
func TestNBDServeQcow2(t *testing.T) {
	bin := buildXenblk(t)
	for _, withBacking := range []bool{false, true} {
		t.Run(fmt.Sprintf("backing=%v", withBacking), func(t *testing.T) {
			dir := t.TempDir()
			img, want := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "want.raw")
			base := bytes.Repeat([]byte{0}, 16<<20)
			if withBacking {
				for i := range base {
					base[i] = byte(i / 4096)
				}
				if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
					t.Fatal(err)
				}
				runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", img)
			} else {
				runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "16M")
			}
			if err := os.WriteFile(want, base, 0o644); err != nil {
				t.Fatal(err)
			}
			sock := filepath.Join(dir, "nbd.sock")
			srv := startProc(t, bin, "nbd", "serve", "--listen", "unix:"+sock, img)
			line := srv.expect(t, "serving ")
			if !strings.Contains(line, "(qcow2)") {
				t.Errorf("banner %q does not say qcow2", line)
			}
			url := line[strings.LastIndex(line, " ")+1:]
			qemuIO(t, url, "write -P 0x5a 1M 64k", "write -P 0xa5 3000k 6k", "flush")
			writeAt(t, want, bytes.Repeat([]byte{0x5a}, 64<<10), 1<<20)
			writeAt(t, want, bytes.Repeat([]byte{0xa5}, 6<<10), 3000<<10)
			out := filepath.Join(dir, "out.raw")
			runTool(t, "nbdcopy", url, out)
			runTool(t, "qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", out, want)
			stopProc(t, srv)
			checkQcow2(t, img, want)
		})
	}
}

// TestSimQcow2: `xenblk sim --format qcow2 --size` makes a qcow2 image;
// a later sim finds it qcow2 by itself and says so, as it does an image
// qemu-img made over it as a backing file; what qemu-io wrote through
// the guest's NBD export is in the image, which qemu-img finds clean.
func TestSimQcow2(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img, want := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "want.raw")
	if err := os.WriteFile(want, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(want, 32<<20)
	sim := func(args ...string) (p *proc, banner, url string) {
		p = startProc(t, bin, append([]string{"sim", "--disk", img, "--nbd", freePort(t), "--control", filepath.Join(dir, "control.sock")}, args...)...)
		banner = p.expect(t, "  dom0 ")
		url = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(p.expect(t, "  NBD ")), "NBD"))
		return p, banner, url
	}
	p, banner, url := sim("--format", "qcow2", "--size", "32M")
	if !strings.Contains(banner, "created and serving "+img+" (qcow2,") {
		t.Errorf("banner %q does not say it created a qcow2 image", banner)
	}
	qemuIO(t, url, "write -P 0x33 0 128k", "write -P 0x44 20M 4k", "flush")
	stopProc(t, p)
	writeAt(t, want, bytes.Repeat([]byte{0x33}, 128<<10), 0)
	writeAt(t, want, bytes.Repeat([]byte{0x44}, 4<<10), 20<<20)
	checkQcow2(t, img, want)

	p, banner, url = sim()
	if !strings.Contains(banner, "serving "+img+" (qcow2, 33554432 bytes)") {
		t.Errorf("banner %q does not say it serves a qcow2 image", banner)
	}
	out := filepath.Join(dir, "out.raw")
	runTool(t, "nbdcopy", url, out)
	runTool(t, "qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", out, want)
	qemuIO(t, url, "write -P 0x55 8M 64k", "flush")
	stopProc(t, p)
	writeAt(t, want, bytes.Repeat([]byte{0x55}, 64<<10), 8<<20)
	checkQcow2(t, img, want)

	// An image qemu-img made over a backing file (the image above,
	// named relative to it): sim serves the disk with the backing
	// file's bytes showing through, and writes land in the top image.
	top := filepath.Join(dir, "top.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "disk.qcow2", "-F", "qcow2", top)
	img = top
	p, banner, url = sim()
	if !strings.Contains(banner, "serving "+top+" (qcow2, 33554432 bytes)") {
		t.Errorf("banner %q does not say it serves a qcow2 image", banner)
	}
	qemuIO(t, url, "read -P 0x55 8M 64k", "write -P 0x66 8M 4k", "write -P 0x77 30M 1k", "flush")
	stopProc(t, p)
	writeAt(t, want, bytes.Repeat([]byte{0x66}, 4<<10), 8<<20)
	writeAt(t, want, bytes.Repeat([]byte{0x77}, 1<<10), 30<<20)
	checkQcow2(t, top, want)
	runTool(t, "qemu-img", "check", "-f", "qcow2", filepath.Join(dir, "disk.qcow2"))

	// --format qcow2 on a raw file says what the file is not.
	raw := filepath.Join(dir, "raw.img")
	os.WriteFile(raw, make([]byte, 1<<20), 0o644)
	_, stderr, code := runXenblkCode(t, bin, "nbd", "serve", "--format", "qcow2", "--listen", "unix:"+filepath.Join(dir, "x.sock"), raw)
	if code != 1 || !strings.Contains(stderr, "is not a qcow2 image") || !strings.Contains(stderr, "--format qcow2 was given") {
		t.Errorf("nbd serve --format qcow2 on a raw file: exit %d, %s", code, stderr)
	}
}

// TestServeAttachQcow2: across processes, a vbd attached with
// format=qcow2 is served from the image (over its backing file): the
// guest's writes land in the qcow2 image, the backing file is untouched,
// and qemu-img finds the image clean and identical to the expected disk.
func TestServeAttachQcow2(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	base := bytes.Repeat([]byte{0x77}, 8<<20)
	baseFile, img, want := filepath.Join(dir, "base.raw"), filepath.Join(dir, "top.qcow2"), filepath.Join(dir, "want.raw")
	os.WriteFile(baseFile, base, 0o644)
	os.WriteFile(want, base, 0o644)
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", img)
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	serve := startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"), "--journal-dir", filepath.Join(dir, "journal"))
	serve.expect(t, "xenblk serve:")
	front := startProc(t, bin, "front", "--host", sock, "--name", "guest1", "--nbd", freePort(t))
	var domid int
	fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
		"format=qcow2, vdev=xvda, access=rw, target="+img).CombinedOutput(); err != nil {
		t.Fatalf("attach: %v %s", err, out)
	}
	url := strings.TrimPrefix(front.expect(t, "NBD "), "NBD ")
	qemuIO(t, url, "read -P 0x77 0 64k", "write -P 0x12 64k 192k", "flush")
	writeAt(t, want, bytes.Repeat([]byte{0x12}, 192<<10), 64<<10)
	if out, err := exec.Command(bin, "detach", "--xenstore", xs, "--domain", fmt.Sprint(domid), "xvda", "--force", "--timeout", "5s").CombinedOutput(); err != nil {
		t.Fatalf("detach: %v %s", err, out)
	}
	// The backend closes the image on detach: wait until qemu-img may
	// take it (its lock is free).
	eventually.True(t, 30*time.Second, "the backend letting go of the image", func() bool {
		return exec.Command("qemu-img", "info", img).Run() == nil
	})
	checkQcow2(t, img, want)
	if got, _ := os.ReadFile(baseFile); !bytes.Equal(got, base) {
		t.Error("the backing file changed")
	}
}

// TestNBDServeQcow2KilledUnderWrites: `xenblk nbd serve` killed with
// SIGKILL while allocating writes go through it leaves an image
// qemu-img check finds consistent (leaked clusters at most), with every
// write flushed before the kill in it.
func TestNBDServeQcow2KilledUnderWrites(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.qcow2")
	runTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, "128M")
	sock := filepath.Join(dir, "nbd.sock")
	srv := startProc(t, bin, "nbd", "serve", "--listen", "unix:"+sock, img)
	line := srv.expect(t, "serving ")
	url := line[strings.LastIndex(line, " ")+1:]
	qemuIO(t, url, "write -P 0x11 0 4M", "flush")
	st, _ := os.Stat(img)
	flushedSize := st.Size()

	// A workload of many allocating writes (4 KiB clusters), still
	// running at the kill: it has grown the file by a few MiB.
	done := make(chan error, 1)
	go func() {
		args := []string{"-f", "raw"}
		for off := int64(4 << 20); off < 120<<20; off += 256 << 10 {
			args = append(args, "-c", fmt.Sprintf("write -P 0x22 %d 64k", off))
		}
		done <- exec.Command("qemu-io", append(args, url)...).Run()
	}()
	eventually.True(t, 30*time.Second, "the workload growing the image", func() bool {
		st, err := os.Stat(img)
		return (err == nil && st.Size() > flushedSize+2<<20) || len(done) > 0
	})
	if len(done) > 0 {
		t.Fatalf("the workload ended before the kill: %v", <-done)
	}
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.cmd.Wait()
	select { // the client sees the connection go
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("qemu-io did not end in 30s after the server was killed")
	}

	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", img).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 3: // leaked clusters only
	default:
		t.Fatalf("qemu-img check after SIGKILL: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "ERROR") {
		t.Fatalf("qemu-img check after SIGKILL:\n%s", out)
	}
	got := runTool(t, "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0x11 0 4M", img)
	if strings.Contains(got, "failed") || strings.Contains(got, "Pattern verification failed") {
		t.Fatalf("writes flushed before the kill are not in the image:\n%s", got)
	}
	t.Logf("qemu-img check after SIGKILL:\n%s", out)
}
