package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// TestConformanceAcrossProcesses runs the block-device conformance suite
// through the whole stack with every party in its own process: `xenblk
// host` (the simulated hypervisor), one `xenblk serve` (our backend, which
// serves all the cases' vbds at once), and for each device a `xenblk
// front` guest exporting its disk over NBD, which the suite drives with
// our NBD client. A vbd attached read-only must refuse writes the same way.
func TestConformanceAcrossProcesses(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	serve := startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"), "--journal-dir", filepath.Join(dir, "journal"),
		"--metrics", "127.0.0.1:0")
	metricsURL := strings.TrimPrefix(serve.expect(t, "xenblk serve: metrics at "), "xenblk serve: metrics at ")
	serve.expect(t, "xenblk serve: serving")

	var n, lastDomain atomic.Int32
	open := func(access string) storagetest.Open {
		return func(t *testing.T, size int64) storage.Device {
			i := n.Add(1)
			img := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, size); err != nil {
				t.Fatal(err)
			}
			front := startProc(t, bin, "front", "--host", sock, "--name", fmt.Sprintf("guest%d", i), "--nbd", freePort(t))
			var domid int
			fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
			lastDomain.Store(int32(domid))
			if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
				"format=raw, vdev=xvda, access="+access+", target="+img).CombinedOutput(); err != nil {
				t.Fatalf("attach: %v %s", err, out)
			}
			return dialExport(t, strings.TrimPrefix(front.expect(t, "NBD "), "NBD "))
		}
	}
	t.Run("ReadWrite", func(t *testing.T) { storagetest.Run(t, open("rw")) })
	t.Run("ReadOnlyVBD", func(t *testing.T) {
		d := open("ro")(t, 1<<20)
		if !d.Info().ReadOnly {
			t.Fatal("a vbd attached access=ro is not read-only at the far end")
		}
		if _, err := d.WriteAt(make([]byte, 4096), 0); err == nil {
			t.Fatal("a write to a read-only vbd succeeded across processes")
		}
		if err := d.Discard(0, 4096, false); err == nil {
			t.Fatal("a discard on a read-only vbd succeeded across processes")
		}
	})
	// The backend's counters see a live guest's traffic. Only live vbds are
	// listed: a guest's front ends with its subtest, its domain dies and
	// serve removes its vbds (and their series) as libxl would.
	t.Run("Metrics", func(t *testing.T) {
		d := open("rw")(t, 1<<20)
		buf := make([]byte, 8192)
		if _, err := d.WriteAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadAt(buf, 4096); err != nil {
			t.Fatal(err)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		live := fmt.Sprintf("domain=%q", fmt.Sprint(lastDomain.Load()))
		sums := map[string]uint64{}
		for _, line := range strings.Split(string(body), "\n") {
			name, rest, ok := strings.Cut(line, "{")
			if !ok || strings.HasPrefix(line, "#") {
				continue
			}
			labels, value, _ := strings.Cut(rest, "} ")
			var v uint64
			if _, err := fmt.Sscan(value, &v); err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			if strings.HasPrefix(name, "xenblk_vbd_") && strings.Contains(labels, live) {
				sums[name] += v
			}
		}
		for _, m := range []string{"read_requests", "write_requests", "flush_requests", "read_sectors", "write_sectors"} {
			if sums["xenblk_vbd_"+m+"_total"] == 0 {
				t.Errorf("xenblk_vbd_%s_total{%s} is 0 after a write, a read and a flush:\n%s", m, live, body)
			}
		}
		if !strings.Contains(string(body), "# TYPE xenblk_vbd_error_responses_total counter") {
			t.Errorf("no TYPE line for the error counter:\n%s", body)
		}
	})
}

// dialExport is our NBD client on the export at url (nbd://HOST:PORT/NAME),
// closed when the test ends.
func dialExport(t *testing.T, url string) *nbd.Client {
	t.Helper()
	addr, export, ok := strings.Cut(strings.TrimPrefix(url, "nbd://"), "/")
	if !ok {
		t.Fatalf("NBD URL %q", url)
	}
	d, err := nbd.Dial(addr, export)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
