package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool fails (not skips) when CI should have installed the tool.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed; `make deps` (scripts/install-deps.sh) installs it", name)
	}
	return p
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSimCommandServesNBD runs the README's main job as a user would: the
// built binary, a fresh image, real NBD clients, Ctrl-C; and again with
// the disk attached in grant-copy mode.
func TestSimCommandServesNBD(t *testing.T) {
	t.Run("map", func(t *testing.T) { testSimCommandServesNBD(t) })
	t.Run("grant-copy", func(t *testing.T) {
		stderr := testSimCommandServesNBD(t, "--grant-copy", "--verbose")
		if !strings.Contains(stderr, "grant-copy=true") {
			t.Errorf("the backend did not serve in grant-copy mode:\n%s", stderr)
		}
	})
}

func testSimCommandServesNBD(t *testing.T, flags ...string) (stderrText string) {
	needTool(t, "nbdinfo")
	needTool(t, "qemu-img")
	dir := t.TempDir()
	bin := filepath.Join(dir, "xenblk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	img := filepath.Join(dir, "disk.img")
	addr := freePort(t)
	cmd := exec.Command(bin, append([]string{"sim", "--disk", img, "--size", "64M", "--nbd", addr}, flags...)...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var url string
	deadline := time.After(30 * time.Second)
	lines := make(chan string)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sim exited before printing its NBD URL: %s", stderr.String())
			}
			if f := strings.Fields(l); len(f) == 2 && f[0] == "NBD" {
				url = f[1]
			}
		case <-deadline:
			t.Fatal("sim did not start in 30s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	out, err := exec.Command("nbdinfo", "--size", url).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(64<<20) {
		t.Fatalf("nbdinfo --size: %q %v", out, err)
	}
	// Write a random image through NBD with qemu-img, read it back, compare.
	src := filepath.Join(dir, "src.raw")
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	os.WriteFile(src, data, 0o644)
	if out, err := exec.Command("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, url).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert to NBD: %v\n%s", err, out)
	}
	back := filepath.Join(dir, "back.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "raw", url, back).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert from NBD: %v\n%s", err, out)
	}
	got, _ := os.ReadFile(back)
	if len(got) != 64<<20 || sha256.Sum256(got[:8<<20]) != sha256.Sum256(data) {
		t.Fatal("data read back through the stack differs")
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sim exited with %v after Ctrl-C: %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sim did not stop after Ctrl-C")
	}
	// What went through the guest is in the image, durable.
	onDisk, _ := os.ReadFile(img)
	if sha256.Sum256(onDisk[:8<<20]) != sha256.Sum256(data) {
		t.Fatal("the image does not hold what was written")
	}
	return stderr.String()
}
