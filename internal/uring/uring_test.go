package uring

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRing makes a ring or skips loudly where the machine forbids io_uring.
func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("SKIPPED: io_uring is not permitted here (%v); the io_uring path is untested on this machine", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func tempFile(t *testing.T, size int) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "ring.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	return f
}

func iovecs(bufs ...[]byte) []unix.Iovec {
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		iov[i].Base = unsafe.SliceData(b)
		iov[i].SetLen(len(b))
	}
	return iov
}

// reapAll collects completions by user data, failing on a duplicate.
func reapAll(t *testing.T, r *Ring, into map[uint64]int32) {
	t.Helper()
	r.Reap(func(c *CQE) {
		if _, dup := into[c.UserData]; dup {
			t.Errorf("user data %d completed twice", c.UserData)
		}
		into[c.UserData] = c.Res
	})
}

func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"SQE", unsafe.Sizeof(SQE{}), 64},
		{"CQE", unsafe.Sizeof(CQE{}), 16},
		{"SQRingOffsets", unsafe.Sizeof(SQRingOffsets{}), 40},
		{"CQRingOffsets", unsafe.Sizeof(CQRingOffsets{}), 40},
		{"Params", unsafe.Sizeof(Params{}), 120},
		{"SQE.UserData", unsafe.Offsetof(SQE{}.UserData), 32},
		{"SQE.Addr3", unsafe.Offsetof(SQE{}.Addr3), 48},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, the kernel's is %d", c.name, c.got, c.want)
		}
	}
}

func TestWritevThenReadvAndRead(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t, 1<<16)
	fd := int(f.Fd())
	a, b := bytes.Repeat([]byte("a"), 3000), bytes.Repeat([]byte("b"), 5192)
	wiov := iovecs(a, b)
	r.NextSQE().PrepWritev(fd, wiov, 4096, 7)
	if n, err := r.SubmitAndWait(1); err != nil || n != 1 {
		t.Fatalf("SubmitAndWait = %d, %v", n, err)
	}
	res := map[uint64]int32{}
	reapAll(t, r, res)
	if res[7] != 8192 {
		t.Fatalf("writev: %v, want 8192 bytes for user data 7", res)
	}
	onDisk := make([]byte, 8192)
	if _, err := f.ReadAt(onDisk, 4096); err != nil || !bytes.Equal(onDisk, append(append([]byte{}, a...), b...)) {
		t.Fatalf("the file does not hold what writev wrote (%v)", err)
	}

	x, y, whole := make([]byte, 100), make([]byte, 8092), make([]byte, 8192)
	riov := iovecs(x, y)
	r.NextSQE().PrepReadv(fd, riov, 4096, 1)
	r.NextSQE().PrepRead(fd, whole, 4096, 2)
	if n, err := r.SubmitAndWait(2); err != nil || n != 2 {
		t.Fatalf("SubmitAndWait = %d, %v", n, err)
	}
	res = map[uint64]int32{}
	reapAll(t, r, res)
	if res[1] != 8192 || res[2] != 8192 {
		t.Fatalf("results %v, want 8192 for user data 1 and 2", res)
	}
	if !bytes.Equal(append(append([]byte{}, x...), y...), onDisk) || !bytes.Equal(whole, onDisk) {
		t.Fatal("read back differs from what was written")
	}

	r.NextSQE().PrepWrite(fd, []byte("tail"), 100, 3)
	r.NextSQE().PrepFsync(fd, true, 4)
	if _, err := r.SubmitAndWait(2); err != nil {
		t.Fatal(err)
	}
	res = map[uint64]int32{}
	reapAll(t, r, res)
	if res[3] != 4 || res[4] != 0 {
		t.Fatalf("write+fdatasync results %v", res)
	}
}

// TestManyInOneEnter submits 100 reads, each of its own 512-byte block,
// with one call, and matches every completion to its user data.
func TestManyInOneEnter(t *testing.T) {
	const n = 100
	r := newRing(t, n)
	f := tempFile(t, n*512)
	img := make([]byte, n*512)
	for i := range img {
		img[i] = byte(i / 512)
	}
	f.WriteAt(img, 0)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 512)
		r.NextSQE().PrepRead(int(f.Fd()), bufs[i], int64(i)*512, uint64(1000+i))
	}
	if sub, err := r.SubmitAndWait(n); err != nil || sub != n {
		t.Fatalf("SubmitAndWait(%d) = %d, %v", n, sub, err)
	}
	if r.Ready() != n {
		t.Fatalf("%d completions ready after waiting for %d", r.Ready(), n)
	}
	res := map[uint64]int32{}
	reapAll(t, r, res)
	if len(res) != n {
		t.Fatalf("%d completions, want %d", len(res), n)
	}
	for i := range bufs {
		if res[uint64(1000+i)] != 512 {
			t.Errorf("read %d: result %d", i, res[uint64(1000+i)])
		}
		if !bytes.Equal(bufs[i], img[i*512:(i+1)*512]) {
			t.Errorf("read %d: wrong block", i)
		}
	}
	if r.Ready() != 0 || r.Unsubmitted() != 0 {
		t.Fatalf("after reaping: %d ready, %d unsubmitted", r.Ready(), r.Unsubmitted())
	}
}

// TestBadFDCompletesWithError: an operation on a closed fd comes back as
// a CQE carrying -EBADF (no hang), and its neighbours still complete.
func TestBadFDCompletesWithError(t *testing.T) {
	r := newRing(t, 4)
	f := tempFile(t, 4096)
	bad := tempFile(t, 4096)
	badFD := int(bad.Fd())
	bad.Close()
	buf, buf2 := make([]byte, 512), make([]byte, 512)
	r.NextSQE().PrepRead(int(f.Fd()), buf, 0, 1)
	r.NextSQE().PrepRead(badFD, buf2, 0, 2)
	r.NextSQE().PrepNop(3)
	res := map[uint64]int32{}
	for len(res) < 3 {
		if _, err := r.SubmitAndWait(uint32(3 - len(res))); err != nil {
			t.Fatal(err)
		}
		reapAll(t, r, res)
	}
	if res[1] != 512 || res[2] != -int32(unix.EBADF) || res[3] != 0 {
		t.Fatalf("results %v: want 512, -EBADF (%d), 0", res, -int32(unix.EBADF))
	}
}

// TestFullQueue: NextSQE refuses once every slot is taken and works again
// after a submit; the completion queue holds twice the submission queue.
func TestFullQueue(t *testing.T) {
	r := newRing(t, 8)
	if r.SQEntries() != 8 || r.CQEntries() != 16 {
		t.Fatalf("SQ %d, CQ %d: want 8 and 16", r.SQEntries(), r.CQEntries())
	}
	for round := 0; round < 2; round++ {
		for i := 0; i < 8; i++ {
			s := r.NextSQE()
			if s == nil {
				t.Fatalf("round %d: no slot for SQE %d of 8", round, i)
			}
			s.PrepNop(uint64(round*8 + i))
		}
		if s := r.NextSQE(); s != nil {
			t.Fatal("a ninth SQE was handed out by an 8-slot queue")
		}
		if n, err := r.Submit(); err != nil || n != 8 {
			t.Fatalf("Submit = %d, %v", n, err)
		}
	}
	if err := r.Wait(16); err != nil {
		t.Fatal(err)
	}
	res := map[uint64]int32{}
	reapAll(t, r, res)
	if len(res) != 16 {
		t.Fatalf("%d completions for 16 NOPs", len(res))
	}
}

func TestDropUnsubmitted(t *testing.T) {
	r := newRing(t, 4)
	r.NextSQE().PrepNop(1)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	r.NextSQE().PrepNop(2)
	r.NextSQE().PrepNop(3)
	var dropped []uint64
	if n := r.DropUnsubmitted(func(ud uint64) { dropped = append(dropped, ud) }); n != 2 || len(dropped) != 2 || dropped[0] != 2 || dropped[1] != 3 {
		t.Fatalf("dropped %d: %v, want [2 3]", n, dropped)
	}
	r.NextSQE().PrepNop(4)
	if _, err := r.SubmitAndWait(2); err != nil {
		t.Fatal(err)
	}
	res := map[uint64]int32{}
	reapAll(t, r, res)
	if len(res) != 2 || res[1] != 0 || res[4] != 0 {
		t.Fatalf("completions %v: want exactly 1 and 4", res)
	}
}

func TestCloseTwice(t *testing.T) {
	r := newRing(t, 2)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if r.NextSQE() != nil {
		t.Fatal("a closed ring handed out an SQE")
	}
	if _, err := r.SubmitAndWait(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("SubmitAndWait on a closed ring: %v", err)
	}
	if r.Reap(func(*CQE) {}) != 0 || r.Ready() != 0 || r.Unsubmitted() != 0 {
		t.Fatal("a closed ring reports work")
	}
}

func TestBadEntries(t *testing.T) {
	for _, n := range []uint32{0, MaxEntries + 1} {
		if _, err := New(n); err == nil {
			t.Errorf("New(%d) succeeded", n)
		}
	}
}

func TestReapAllocatesNothing(t *testing.T) {
	r := newRing(t, 4)
	count := 0
	onCQE := func(*CQE) { count++ }
	allocs := testing.AllocsPerRun(100, func() {
		r.NextSQE().PrepNop(1)
		r.NextSQE().PrepNop(2)
		if _, err := r.SubmitAndWait(2); err != nil {
			t.Fatal(err)
		}
		r.Reap(onCQE)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per submit+reap", allocs)
	}
	if count != 202 {
		t.Fatalf("%d completions reaped, want 202", count)
	}
}

// TestCloseReleasesEverything: rings made and closed in a loop leave no
// fd behind.
func TestCloseReleasesEverything(t *testing.T) {
	newRing(t, 2) // skips loudly where io_uring is not permitted
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("SKIPPED: no /proc/self/fd to count fds: %v", err)
		}
		return len(ents)
	}
	before := fds()
	for i := 0; i < 200; i++ {
		r, err := New(64)
		if err != nil {
			t.Fatal(err)
		}
		r.NextSQE().PrepNop(1)
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := fds(); after > before {
		t.Fatalf("%d fds open after 200 rings were closed, %d before", after, before)
	}
}
