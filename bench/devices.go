package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// DeviceMemory is the resident memory of one backend process serving
// Devices idle vbds, against the same process serving none.
type DeviceMemory struct {
	Backend string `json:"backend"`
	Devices int    `json:"devices"`
	// Before and After are the backend process's VmRSS, RssAnon and
	// RssShmem (the shared-memory mappings of grants and rings) with no
	// device and with every device connected and idle.
	Before RSS `json:"before"`
	After  RSS `json:"after"`
	// PerDevice is (After.Total - Before.Total) / Devices, in bytes.
	PerDevice float64 `json:"per_device_bytes"`
}

// RSS is a process's resident memory by kind, in bytes.
type RSS struct {
	Total int64 `json:"total"`
	Anon  int64 `json:"anon"`
	Shmem int64 `json:"shmem"`
}

// settle is how long the backend is left alone before its memory is read,
// so that goroutines started by the connections have parked.
const settle = time.Second

// MeasureDevices starts one backend process (o.BackendCommand), reads its
// resident memory, attaches n vbds of the backend, each to a guest of its
// own (one queue each, the frontend's defaults), reads and writes one 4 KiB block on each
// (so each has a persistent grant mapped and its buffers touched), leaves
// them idle and reads the memory again.
func MeasureDevices(ctx context.Context, backend string, n int, o Options) (DeviceMemory, error) {
	o.defaults()
	if o.BackendCommand == nil {
		return DeviceMemory{}, fmt.Errorf("bench: the device count is measured in a backend process of its own")
	}
	dm := DeviceMemory{Backend: backend, Devices: n}
	s, err := startBackendProcess(backend, o)
	if err != nil {
		return dm, err
	}
	defer s.Close() // the frontends first, then the backend process
	time.Sleep(settle)
	if dm.Before, err = readRSS(s.BackendPID); err != nil {
		return dm, err
	}
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		// A guest per device: a guest's grant table holds the pools of
		// only a few frontends (each grants up to 4096 data pages).
		d, err := attachDisk(s, fmt.Sprintf("bench%d", i), 1, o.Log)
		if err != nil {
			return dm, fmt.Errorf("bench: frontend xvda: %w", err)
		}
		if _, err := d.WriteAt(ctx, buf, 0); err != nil {
			return dm, fmt.Errorf("bench: write to device %d: %w", i, err)
		}
		if _, err := d.ReadAt(ctx, buf, 0); err != nil {
			return dm, fmt.Errorf("bench: read from device %d: %w", i, err)
		}
		if o.Progress != nil && (i+1)%16 == 0 {
			fmt.Fprintf(o.Progress, "devices: %d of %d attached\n", i+1, n)
		}
	}
	time.Sleep(settle)
	if dm.After, err = readRSS(s.BackendPID); err != nil {
		return dm, err
	}
	if n > 0 {
		dm.PerDevice = float64(dm.After.Total-dm.Before.Total) / float64(n)
	}
	return dm, nil
}

// readRSS reads VmRSS, RssAnon and RssShmem of pid.
func readRSS(pid int) (RSS, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return RSS{}, err
	}
	defer f.Close()
	return parseStatusRSS(f)
}

func parseStatusRSS(in io.Reader) (RSS, error) {
	var r RSS
	found := false
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst, found = &r.Total, true
		case "RssAnon":
			dst = &r.Anon
		case "RssShmem":
			dst = &r.Shmem
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return r, fmt.Errorf("bench: /proc status %s: %q", k, v)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return r, fmt.Errorf("bench: /proc status %s: %w", k, err)
		}
		*dst = kb << 10
	}
	if err := sc.Err(); err != nil {
		return r, err
	}
	if !found {
		return r, fmt.Errorf("bench: no VmRSS in /proc status")
	}
	return r, nil
}
