package qcow2

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// recorder is a memFile that logs every write and fdatasync, so that a
// crash can be replayed at any point.
type recorder struct {
	memFile
	log []event
}

type event struct {
	off  int64
	data []byte // nil: an fdatasync
}

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	r.log = append(r.log, event{off, bytes.Clone(p)})
	return r.memFile.WriteAt(p, off)
}

func (r *recorder) Sync() error {
	r.log = append(r.log, event{})
	return nil
}

func apply(b []byte, e event) []byte {
	if end := e.off + int64(len(e.data)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[e.off:], e.data)
	return b
}

// TestCrashLeavesLeaksAtMost replays a workload's writes cut at every
// point, in two crash models: a killed process (every write before the
// cut reached the file) and a power loss (since the last fdatasync, an
// arbitrary part of the writes reached it: here the last ones). Each
// crashed image must pass qemu-img check with leaked clusters at most,
// open here, and read every byte as it was at the last flush or as the
// write in progress made it.
func TestCrashLeavesLeaksAtMost(t *testing.T) {
	needTool(t, "qemu-img")
	// 512-byte clusters, 64-bit refcounts: an L2 table maps 32 KiB and a
	// refcount block counts 64 clusters, so a short workload allocates
	// both.
	base, err := newImageBytes(1<<20, 9, 6)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{memFile: memFile{b: bytes.Clone(base)}}
	d, err := open(r, "crash.qcow2", int64(len(base)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	type op struct {
		what    string
		off, n  int64
		discard bool
	}
	ops := []op{
		{"partial writes over 3 clusters", 100, 1500, false},
		{"a new L2 table", 40000, 512, false},
		{"unaligned, two clusters", 70000, 700, false},
		{"in place", 200, 100, false},
		{"40 clusters, a new refcount block", 300000, 20000, false},
		{"discard, one whole cluster", 0, 1100, true},
		{"reallocate", 500, 3000, false},
		{"discard across L2 tables", 30000, 20000, true},
	}
	model := make([]byte, 1<<20)
	var states [][]byte // states[k]: the disk after op k-1 (flushed)
	var ends []int      // ends[k]: log length after op k
	states = append(states, bytes.Clone(model))
	for i, o := range ops {
		if o.discard {
			err = d.Discard(o.off, o.n, false)
			clear(model[o.off : o.off+o.n])
		} else {
			p := bytes.Repeat([]byte{byte(i + 1)}, int(o.n))
			_, err = d.WriteAt(p, o.off)
			copy(model[o.off:], p)
		}
		if err != nil {
			t.Fatalf("%s: %v", o.what, err)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		states = append(states, bytes.Clone(model))
		ends = append(ends, len(r.log))
	}
	during := func(k int) string {
		if k < len(ops) {
			return ops[k].what
		}
		return "after the last op"
	}
	dir := t.TempDir()
	checked := 0
	for cut := 0; cut <= len(r.log); cut++ {
		k := 0 // the op in progress at the cut
		for k < len(ends) && ends[k] < cut {
			k++
		}
		// The power-loss variant: the epoch since the last sync keeps
		// its last writes instead of its first.
		epoch := cut
		for epoch > 0 && r.log[epoch-1].data != nil {
			epoch--
		}
		end := cut
		for end < len(r.log) && r.log[end].data != nil {
			end++
		}
		variants := [][]event{r.log[:cut]}
		if n := cut - epoch; n > 0 && end > cut {
			v := append(append([]event{}, r.log[:epoch]...), r.log[end-n:end]...)
			variants = append(variants, v)
		}
		for vi, evs := range variants {
			img := bytes.Clone(base)
			for _, e := range evs {
				if e.data != nil {
					img = apply(img, e)
				}
			}
			path := filepath.Join(dir, "cut.qcow2")
			if err := os.WriteFile(path, img, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("qemu-img", "check", "-f", "qcow2", path).CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) { // 3: leaks only
				t.Fatalf("cut %d (variant %d, during %q): qemu-img check: %v\n%s", cut, vi, during(k), err, out)
			}
			c, _, err := openMem(img, true)
			if err != nil {
				t.Fatalf("cut %d (variant %d): open: %v", cut, vi, err)
			}
			got := make([]byte, 1<<20)
			if _, err := c.ReadAt(got, 0); err != nil {
				t.Fatalf("cut %d (variant %d): read: %v", cut, vi, err)
			}
			before, after := states[min(k, len(states)-1)], states[min(k+1, len(states)-1)]
			for i := range got {
				if got[i] != before[i] && got[i] != after[i] {
					t.Fatalf("cut %d (variant %d, during %q): byte %d is %#x, neither %#x (flushed) nor %#x (being written)",
						cut, vi, during(k), i, got[i], before[i], after[i])
				}
			}
			checked++
		}
	}
	t.Logf("%d events, %d crashed images checked", len(r.log), checked)
}
