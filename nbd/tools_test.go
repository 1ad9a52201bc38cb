package nbd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/storage"
)

// tool returns the path of a peer program from scripts/deps.txt. CI has
// them all; a missing one fails the test rather than skipping it.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (scripts/deps.txt lists it): %v", name, err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool(t, name), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func tcpServer(t *testing.T, exports ...Export) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Exports: exports, Logf: t.Logf}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); s.Close(); <-done })
	return l
}

func TestNbdinfo(t *testing.T) {
	l := startServer(t, Export{Name: "disk", Description: "a test disk", Device: newMemDev(3 << 20)},
		Export{Name: "ro", Device: newMemDev(1 << 20), ReadOnly: true})
	out := run(t, "nbdinfo", "--json", ListenerURL(l, "disk"))
	var info struct {
		Exports []struct {
			Name        string `json:"export-name"`
			Description string `json:"description"`
			Size        int64  `json:"export-size"`
			ReadOnly    bool   `json:"is_read_only"`
			CanFlush    bool   `json:"can_flush"`
			CanFUA      bool   `json:"can_fua"`
			CanTrim     bool   `json:"can_trim"`
			CanZero     bool   `json:"can_zero"`
			CanFastZero bool   `json:"can_fast_zero"`
			CanCache    bool   `json:"can_cache"`
			CanMulti    bool   `json:"can_multi_conn"`
			MinBlock    int    `json:"block_size_minimum"`
			MaxBlock    int    `json:"block_size_maximum"`
		} `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo output %v:\n%s", err, out)
	}
	e := info.Exports[0]
	if e.Name != "disk" || e.Description != "a test disk" || e.Size != 3<<20 || e.ReadOnly ||
		!e.CanFlush || !e.CanFUA || !e.CanTrim || !e.CanZero || !e.CanFastZero || !e.CanCache || !e.CanMulti || e.MinBlock != 1 || e.MaxBlock != MaxPayload {
		t.Fatalf("nbdinfo saw %+v\n%s", e, out)
	}
	out = run(t, "nbdinfo", "--json", ListenerURL(l, "ro"))
	if !strings.Contains(out, `"is_read_only": true`) {
		t.Fatalf("read-only export not read-only:\n%s", out)
	}
	out = run(t, "nbdinfo", "--list", ListenerURL(l, ""))
	if !strings.Contains(out, "disk") || !strings.Contains(out, "ro") {
		t.Fatalf("nbdinfo --list:\n%s", out)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestCopyToolsRoundTrip(t *testing.T) {
	const size = 8 << 20
	src := newMemDev(size)
	data := make([]byte, size)
	randomFill(data, 42)
	if _, err := src.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	l := tcpServer(t, Export{Name: "src", Device: src}, Export{Name: "dst", Device: newMemDev(size)},
		Export{Name: "dst2", Device: newMemDev(size)})
	dir := t.TempDir()

	// nbdcopy: export -> file -> export.
	f1 := filepath.Join(dir, "nbdcopy.raw")
	run(t, "nbdcopy", ListenerURL(l, "src"), f1)
	if fileSum(t, f1) != want {
		t.Fatal("nbdcopy export->file differs")
	}
	run(t, "nbdcopy", f1, ListenerURL(l, "dst"))
	if sha256.Sum256(l2dev(t, l, "dst")) != want {
		t.Fatal("nbdcopy file->export differs")
	}

	// qemu-img convert: export -> file -> export.
	f2 := filepath.Join(dir, "qemu.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", ListenerURL(l, "src"), f2)
	if fileSum(t, f2) != want {
		t.Fatal("qemu-img export->file differs")
	}
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", f2, ListenerURL(l, "dst2"))
	if sha256.Sum256(l2dev(t, l, "dst2")) != want {
		t.Fatal("qemu-img file->export differs")
	}
}

// l2dev reads a whole export back through our own client.
func l2dev(t *testing.T, l net.Listener, name string) []byte {
	cl, err := Dial(ListenerURL(l, name), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	b := make([]byte, cl.Size())
	if _, err := cl.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestQemuIO(t *testing.T) {
	dev := newMemDev(4 << 20)
	l := startServer(t, Export{Name: "d", Device: dev}, Export{Name: "ro", Device: newMemDev(1 << 20), ReadOnly: true})
	out := run(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
		"-c", "flush", "-c", "write -P 0xcd -f 1M 64k", ListenerURL(l, "d"))
	if strings.Contains(out, "Pattern verification failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	if got := devBytes(t, dev, 0, 1<<20+1); !bytes.Equal(got[:1<<20], bytes.Repeat([]byte{0xab}, 1<<20)) || got[1<<20] != 0xcd {
		t.Fatal("qemu-io writes did not reach the device")
	}
	if f := dev.Flushes.Load(); f < 2 {
		t.Fatalf("device saw %d flushes after flush and a FUA write", f)
	}
	out = run(t, "qemu-io", "-f", "raw", "-c", "discard 0 64k", "-c", "read -P 0 0 64k", "-c", "read -P 0xab 64k 64k", ListenerURL(l, "d"))
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io discard:\n%s", out)
	}
	if d := dev.Discards.Load(); d == 0 {
		t.Fatalf("discard did not reach the device:\n%s", out)
	}
	// A read-only export refuses writes.
	cmd := exec.Command(tool(t, "qemu-io"), "-f", "raw", "-c", "write -P 1 0 4k", ListenerURL(l, "ro"))
	out2, _ := cmd.CombinedOutput()
	if !strings.Contains(strings.ToLower(string(out2)), "read-only") && !strings.Contains(strings.ToLower(string(out2)), "permission") {
		t.Fatalf("write to read-only export was not refused:\n%s", out2)
	}
}

// startNbdkit runs nbdkit's memory plugin with size bytes and connects
// to it.
func startNbdkit(t *testing.T, size int64) *Client {
	t.Helper()
	cl, err := Dial("unix:"+socketActivated(t, "nbdkit", "memory", fmt.Sprint(size)), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Our client against nbdkit's memory plugin.
func TestClientAgainstNbdkit(t *testing.T) {
	cl := startNbdkit(t, 64<<20)
	if cl.Size() != 64<<20 {
		t.Fatalf("size %d", cl.Size())
	}
	buf := make([]byte, 1<<20+123)
	randomFill(buf, 7)
	if _, err := cl.WriteAt(buf, 5000); err != nil {
		t.Fatal(err)
	}
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(buf))
	if _, err := cl.ReadAt(got, 5000); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("read back: %v", err)
	}
	if err := cl.Trim(0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteZeroesNoHole(1<<20, 4096); err != nil {
		t.Fatal(err)
	}
	z := make([]byte, 4096)
	if _, err := cl.ReadAt(z, 1<<20); err != nil || !bytes.Equal(z, make([]byte, 4096)) {
		t.Fatalf("zeroed range: %v", err)
	}
	// nbdkit's memory plugin zeroes trimmed ranges.
	if _, err := cl.ReadAt(z, 8192); err != nil || !bytes.Equal(z, make([]byte, 4096)) {
		t.Fatalf("trimmed range: %v", err)
	}
	if _, err := cl.ReadAt(z, 64<<20-1); !errors.Is(err, storage.ErrOutOfRange) {
		t.Fatalf("out of range: %v", err)
	}
}
