package bench

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain doubles as the backend process of the cross-process tests:
// started with XENBLK_BENCH_BACKEND=socket, it serves null vbds there.
func TestMain(m *testing.M) {
	if sock := os.Getenv("XENBLK_BENCH_BACKEND"); sock != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		backend, dir, size := "null", "", int64(16<<20)
		if k := os.Getenv("XENBLK_BENCH_BACKEND_KIND"); k != "" { // testBackendCommandFor's
			backend, dir = k, os.Getenv("XENBLK_BENCH_BACKEND_DIR")
			size, _ = strconv.ParseInt(os.Getenv("XENBLK_BENCH_BACKEND_SIZE"), 10, 64)
		}
		if err := ServeBackend(ctx, sock, backend, Options{Dir: dir, FileSize: size}); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testBackendCommand(sock, _ string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "XENBLK_BENCH_BACKEND="+sock)
	return cmd
}

// testBackendCommandFor is testBackendCommand serving the backend it is
// asked for, from dir, size bytes.
func testBackendCommandFor(dir string, size int64) func(sock, backend string) *exec.Cmd {
	return func(sock, backend string) *exec.Cmd {
		cmd := testBackendCommand(sock, backend)
		cmd.Env = append(cmd.Env, "XENBLK_BENCH_BACKEND_KIND="+backend, "XENBLK_BENCH_BACKEND_DIR="+dir,
			"XENBLK_BENCH_BACKEND_SIZE="+strconv.FormatInt(size, 10))
		return cmd
	}
}

func TestMeasureDevicesGrowsWithDevices(t *testing.T) {
	dm, err := MeasureDevices(context.Background(), "null", 4, Options{FileSize: 16 << 20, BackendCommand: testBackendCommand})
	if err != nil {
		t.Fatal(err)
	}
	if dm.Devices != 4 || dm.Before.Total <= 0 || dm.After.Total <= dm.Before.Total {
		t.Fatalf("four connected devices did not show in the backend's memory: %+v", dm)
	}
	if want := float64(dm.After.Total-dm.Before.Total) / 4; dm.PerDevice != want {
		t.Fatalf("per device %.0f, want %.0f", dm.PerDevice, want)
	}
	rep := &Report{Devices: &dm}
	found := false
	for _, tg := range rep.Targets() {
		found = found || strings.HasPrefix(tg.Name, "RSS per idle device")
	}
	if !found {
		t.Fatal("the device memory is not among the targets")
	}
}

func TestMeasureDevicesNeedsABackendProcess(t *testing.T) {
	if _, err := MeasureDevices(context.Background(), "null", 1, Options{}); err == nil {
		t.Fatal("measured devices without a backend process")
	}
}

func TestParseStatusRSS(t *testing.T) {
	in := "Name:\txenblk\nVmRSS:\t   41400 kB\nRssAnon:\t   30000 kB\nRssFile:\t 1000 kB\nRssShmem:\t   10400 kB\n"
	r, err := parseStatusRSS(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if r != (RSS{Total: 41400 << 10, Anon: 30000 << 10, Shmem: 10400 << 10}) {
		t.Fatalf("%+v", r)
	}
	for _, bad := range []string{"Name: x\n", "VmRSS: 12 MB\n", "VmRSS: x kB\n"} {
		if _, err := parseStatusRSS(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMedianTakesEachFigureOnItsOwn(t *testing.T) {
	us := time.Microsecond
	runs := []Result{
		{IOPS: 300, P50: 9 * us, P99: 10 * us, P999: 30 * us},
		{IOPS: 100, P50: 1 * us, P99: 50 * us, P999: 90 * us},
		{IOPS: 200, P50: 5 * us, P99: 20 * us, P999: 10 * us},
	}
	m := median(runs)
	if m.IOPS != 200 || m.P50 != 5*us || m.P99 != 20*us || m.P999 != 30*us || m.Runs != 3 || m.IOPSMin != 100 || m.IOPSMax != 300 {
		t.Fatalf("%+v", m)
	}
}
