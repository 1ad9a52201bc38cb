package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/vbd"
)

// imageState is what "nothing changed" compares: contents, size, mtime.
type imageState struct {
	sum   [32]byte
	size  int64
	mtime time.Time
}

func stateOf(t *testing.T, path string) imageState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return imageState{sha256.Sum256(b), st.Size(), st.ModTime()}
}

// TestSecondServerOfAnImageIsRefused: while `xenblk sim` serves an image,
// a second sim (other control socket, other NBD port) and an `nbd serve`
// of the same image exit 1 naming the image and the first sim's pid, and
// neither changes the image or creates its sockets. Two writers would
// corrupt the image.
func TestSecondServerOfAnImageIsRefused(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	data := bytes.Repeat([]byte("xenblk image lock "), 4<<20/18+1)[:4<<20]
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	first := startProc(t, bin, "sim", "--disk", img, "--nbd", freePort(t), "--control", filepath.Join(dir, "first.sock"))
	first.expect(t, "Ctrl-C to stop")
	before := stateOf(t, img)
	holder := fmt.Sprintf("pid %d (xenblk) has it open read-write", first.cmd.Process.Pid)

	otherCtl := filepath.Join(dir, "other.sock")
	nbdSock := filepath.Join(dir, "nbd.sock")
	for _, args := range [][]string{
		{"sim", "--disk", img, "--nbd", freePort(t), "--control", otherCtl},
		{"sim", "--disk", img, "--read-only", "--nbd", freePort(t), "--control", otherCtl},
		{"nbd", "serve", "--listen", "unix:" + nbdSock, img},
		{"nbd", "serve", "--read-only", "--listen", "unix:" + nbdSock, img},
	} {
		// A second server that starts would serve until killed: 30 s is
		// its bound, refusing takes milliseconds.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		_ = cmd.Run() // the exit code below says how it went
		timedOut := ctx.Err() != nil
		cancel()
		stderr, code := errb.String(), cmd.ProcessState.ExitCode()
		if timedOut {
			t.Errorf("%v served the image beside the first sim (killed after 30 s)", args)
		} else if code != 1 {
			t.Errorf("%v: exit %d, want 1; stderr %s", args, code, stderr)
		}
		for _, want := range []string{"disk image " + img + " is in use", holder} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: stderr %q does not say %q", args, stderr, want)
			}
		}
		for _, p := range []string{otherCtl, nbdSock} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%v created %s", args, p)
			}
		}
		if after := stateOf(t, img); after != before {
			t.Fatalf("%v changed the image: %+v, was %+v", args, after, before)
		}
	}

	// Once the first is gone, the image is free.
	first.cmd.Process.Kill()
	first.cmd.Wait()
	second := startProc(t, bin, "nbd", "serve", "--listen", "unix:"+nbdSock, img)
	second.expect(t, "serving ")
}

// TestSharedDiskServedToTwoVBDs: a disk spec's shared=1 (or xl's w!) lets
// two vbds of one serve process open one image read-write, each served,
// each seeing the other's writes. A vbd that is not shared is refused
// beside them, and a shared one beside a vbd that is not; the refusal is
// the vbd's error node, naming the image and the key to give.
func TestSharedDiskServedToTwoVBDs(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stack := simstack.ForTest(t, nil, simstack.Options{OpenTimeout: 30 * time.Second})
	stack.Serve(blkback.Config{Log: log}, vbd.Opener(log))
	st := stack.Host.Store()
	ctx := context.Background()
	newImage := func(name string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 4<<20); err != nil {
			t.Fatal(err)
		}
		return p
	}
	guest := 0
	attach := func(spec string) *simstack.Guest {
		t.Helper()
		guest++
		s, err := diskspec.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		g, err := stack.NewGuest(fmt.Sprintf("guest-%d", guest), s)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	connect := func(spec string) *blkfront.Disk {
		t.Helper()
		g := attach(spec)
		if err := stack.Open(ctx, g, blkfront.Config{}); err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		return g.Disk
	}
	refused := func(spec, img string) {
		t.Helper()
		vbd := attach(spec).VBD
		errNode := vbd.BackendPath() + "/error"
		w, err := st.Watch(errNode, "refused")
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		deadline := time.After(30 * time.Second)
		for {
			if msg, err := st.Read(errNode); err == nil {
				for _, want := range []string{"disk image " + img + " is in use", "shared=1"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: error node %q does not say %q", spec, msg, want)
					}
				}
				return
			}
			select {
			case <-w.Events():
			case <-deadline:
				t.Fatalf("%s: no error node in 30s", spec)
			}
		}
	}

	shared := newImage("shared.img")
	a := connect("vdev=xvdb, shared=1, target=" + shared)
	b := connect("vdev=xvdb, access=w!, target=" + shared)
	want := bytes.Repeat([]byte{0xc5}, 4096)
	if _, err := a.WriteAt(ctx, want, 8192); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := b.ReadAt(ctx, got, 8192); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the second vbd of the shared disk read %x..., %v; want the first's write", got[:4], err)
	}
	refused("vdev=xvdb, target="+shared, shared)
	refused("vdev=xvdb, access=ro, target="+shared, shared)

	alone := newImage("alone.img")
	connect("vdev=xvdb, target=" + alone)
	refused("vdev=xvdb, shared=1, target="+alone, alone)
}
