package storage

import (
	"bytes"
	"errors"
	"math/rand"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/internal/uring"
)

// completionFixture is an io_uring batch on a file of known bytes, whose
// completions a test posts itself, in any order and with any result, as
// the kernel might.
func completionFixture(t *testing.T) (*File, *fileBatch, []byte) {
	t.Helper()
	f, err := OpenFile(filepath.Join(t.TempDir(), "cqe.img"), FileOptions{Create: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	img := make([]byte, 1<<20)
	rand.New(rand.NewSource(3)).Read(img)
	if _, err := f.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	b, err := f.NewBatch(8, 16)
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("SKIPPED: io_uring is not permitted here (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	fb := b.(*fileBatch)
	// The ring's write completions are under test too, as block devices
	// and O_DIRECT files see them.
	fb.t.writeInline = false
	// As Submit would have set it: the tests drive the steps themselves.
	fb.done = func(uint32, error) {}
	return f, fb, img
}

// TestBufferedFileWritesInline: a batch on a file written through the
// page cache writes with pwrite beside the ring, reads on it.
func TestBufferedFileWritesInline(t *testing.T) {
	f, err := OpenFile(filepath.Join(t.TempDir(), "inline.img"), FileOptions{Create: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := f.NewBatch(4, 4)
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("SKIPPED: io_uring is not permitted here (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fb := b.(*fileBatch)
	w := bytes.Repeat([]byte{0xcd}, 4096)
	r := make([]byte, 4096)
	if err := b.Add(true, [][]byte{w}, 8192, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(false, [][]byte{r}, 0, 2); err != nil {
		t.Fatal(err)
	}
	if len(fb.segs) != 1 || !fb.ops[0].sync || fb.ops[1].sync {
		t.Fatalf("%d ring segments, inline %v %v; want the read alone on the ring", len(fb.segs), fb.ops[0].sync, fb.ops[1].sync)
	}
	if err := b.Submit(func(tag uint32, err error) {
		if err != nil {
			t.Errorf("op %d: %v", tag, err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := f.ReadAt(got, 8192); err != nil || !bytes.Equal(got, w) {
		t.Fatalf("the inline write did not land: %v", err)
	}
}

// TestCompletionsOutOfOrderAndShort posts completions in reverse order:
// a full one, a short read and a short write (finished synchronously), an
// EAGAIN (redone synchronously) and an EIO (reported with its errno).
// Each operation is reported as its completion is reaped, in the
// kernel's order: the first one posted is not held by the others.
func TestCompletionsOutOfOrderAndShort(t *testing.T) {
	f, b, img := completionFixture(t)
	full := [][]byte{make([]byte, 4096)}
	short := [][]byte{make([]byte, 4096), make([]byte, 4096)}
	again := [][]byte{make([]byte, 512)}
	failed := [][]byte{make([]byte, 512)}
	written := [][]byte{bytes.Repeat([]byte{0xAA}, 3000), bytes.Repeat([]byte{0xBB}, 2000)}
	for i, op := range []struct {
		write bool
		bufs  [][]byte
		off   int64
	}{{false, failed, 0}, {false, again, 512}, {true, written, 1 << 19}, {false, short, 8192}, {false, full, 65536}} {
		if err := b.Add(op.write, op.bufs, op.off, uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.segs) != 5 {
		t.Fatalf("%d segments for 5 single-SQE operations", len(b.segs))
	}
	// What the kernel would have moved before posting each result.
	copy(full[0], img[65536:])
	copy(short[0][:1000], img[8192:])
	f.WriteAt(written[0][:100], 1<<19)
	b.waiting = len(b.segs)
	var reported []uint32
	b.done = func(tag uint32, err error) { reported = append(reported, tag) }
	for _, c := range []uring.CQE{
		{UserData: 4, Res: 4096},
		{UserData: 3, Res: 1000},
		{UserData: 2, Res: 100},
		{UserData: 1, Res: -int32(unix.EAGAIN)},
		{UserData: 0, Res: -int32(unix.EIO)},
	} {
		b.onCQE(&c)
	}
	if b.waiting != 0 {
		t.Fatalf("%d segments still waited for", b.waiting)
	}
	if want := []uint32{4, 3, 2, 1, 0}; !slices.Equal(reported, want) {
		t.Errorf("reported %v as the completions were reaped, want %v", reported, want)
	}
	for i, st := range b.ops {
		if st.segsLeft != 0 {
			t.Errorf("op %d: %d segments left", i, st.segsLeft)
		}
		if want := i == 0; (st.err != nil) != want {
			t.Errorf("op %d: error %v", i, st.err)
		}
	}
	if !errors.Is(b.ops[0].err, unix.EIO) {
		t.Errorf("the EIO completion reported %v", b.ops[0].err)
	}
	if !bytes.Equal(bytes.Join(short, nil), img[8192:8192+8192]) {
		t.Error("the short read was not finished")
	}
	if !bytes.Equal(again[0], img[512:1024]) {
		t.Error("the EAGAIN read was not redone")
	}
	onDisk := make([]byte, 5000)
	f.ReadAt(onDisk, 1<<19)
	if !bytes.Equal(onDisk, bytes.Join(written, nil)) {
		t.Error("the short write was not finished")
	}
	b.reset()
}

// TestRingFailureFallsBackToSync: after an io_uring_enter error waiting
// cannot cure, what the kernel never took is done synchronously and the
// batch carries on without the ring.
func TestRingFailureFallsBackToSync(t *testing.T) {
	_, b, img := completionFixture(t)
	buf := [][]byte{make([]byte, 4096)}
	b.Add(false, buf, 4096, 7)
	for i := range b.segs {
		b.prep(b.ring.NextSQE(), i)
		b.waiting++
	}
	if err := b.fail(unix.EFAULT); !errors.Is(err, unix.EFAULT) {
		t.Fatalf("fail returned %v", err)
	}
	if b.ops[0].err != nil || !bytes.Equal(buf[0], img[4096:8192]) {
		t.Fatalf("the unsubmitted read was not done synchronously: %v", b.ops[0].err)
	}
	b.reset()
	if IsUringBatch(b) {
		t.Fatal("the batch still uses the broken ring")
	}
	clear(buf[0])
	var got error = errors.New("not called")
	if err := b.Add(false, buf, 8192, 8); err != nil {
		t.Fatal(err)
	}
	if err := b.Submit(func(tag uint32, err error) { got = err }); err != nil || got != nil || !bytes.Equal(buf[0], img[8192:12288]) {
		t.Fatalf("Submit without the ring: %v, op %v", err, got)
	}
}
