package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQueuesAndGrantFramesAreValidated: a queue count the backend does not
// offer, or a grant table size out of range, is a usage mistake: exit 2,
// one line naming the value, and no image created.
func TestQueuesAndGrantFramesAreValidated(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sim", "--queues", "0"}, `"0" for "--queues"`},
		{[]string{"sim", "--queues", "5"}, `"5" for "--queues"`},
		{[]string{"sim", "--queues", "99"}, `"99" for "--queues"`},
		{[]string{"sim", "--queues", "-1"}, `"-1" for "--queues"`},
		{[]string{"sim", "--queues", "two"}, `"two" for "--queues"`},
		{[]string{"sim", "--grant-frames", "0"}, `"0" for "--grant-frames"`},
		{[]string{"sim", "--grant-frames", "1025"}, `"1025" for "--grant-frames"`},
		{[]string{"host", "--socket", filepath.Join(dir, "h.sock"), "--grant-frames", "0"}, `"0" for "--grant-frames"`},
		{[]string{"front", "--queues", "0"}, `"0" for "--queues"`},
		{[]string{"front", "--queues", "17"}, `"17" for "--queues"`},
	} {
		args := append(c.args, "--disk", img, "--nbd", freePort(t))
		if c.args[0] != "sim" {
			args = c.args
		}
		_, stderr, code := runXenblkCode(t, bin, args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "want a whole number from 1 to") {
			t.Errorf("xenblk %v: exit %d, stderr %q; want exit 2 and one line naming %s", c.args, code, stderr, c.want)
		}
		if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("xenblk %v created the image (%v)", c.args, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "h.sock")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("xenblk %v created the host socket (%v)", c.args, err)
		}
	}
}

// TestSimWithFourQueuesComesUp: the backend's maximum works with Xen's
// default grant table (it hung before: the table held 16384 entries).
func TestSimWithFourQueuesComesUp(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "sim", "--queues", "4", "--disk", filepath.Join(dir, "disk.img"), "--size", "64M", "--nbd", freePort(t))
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		connected := ""
		for sc.Scan() {
			if strings.Contains(sc.Text(), "blkfront") && strings.Contains(sc.Text(), "connected") {
				connected = sc.Text()
				cmd.Process.Signal(syscall.SIGINT)
			}
		}
		err := cmd.Wait()
		if err == nil && !strings.Contains(connected, "connected: 4 queue(s)") {
			err = errors.New("no line says 4 queues connected; got " + connected)
		}
		exited <- err
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("xenblk sim --queues 4: %v: %s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("xenblk sim --queues 4 did not come up and stop in 90s: %s", stderr.String())
	}
}

// TestSimFailsAtOnceWhenTheGrantTableIsTooSmall: a grant table that cannot
// hold the queues even with the smallest pools ends sim with the reason
// (not a wait for the handshake's deadline).
func TestSimFailsAtOnceWhenTheGrantTableIsTooSmall(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	_, stderr, code := runXenblkCode(t, bin, "sim", "--queues", "4", "--grant-frames", "1",
		"--disk", filepath.Join(dir, "disk.img"), "--size", "64M", "--nbd", freePort(t))
	if code != 1 || !strings.Contains(stderr, "4 queue(s) need at least") || !strings.Contains(stderr, "grant table full") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and what 4 queues need of the grant table", code, stderr)
	}
}
