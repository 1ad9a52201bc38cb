package nbd

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// startServer serves exports on a unix socket in a temp dir and returns
// the listener; the server stops at the end of the test.
func startServer(t testing.TB, exports ...Export) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "nbd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Exports: exports, Logf: t.Logf}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); s.Close(); <-done })
	return l
}

func randomFill(b []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

func TestClientServerRoundTrip(t *testing.T) {
	dev := newMemDev(8 << 20)
	l := startServer(t, Export{Name: "disk", Description: "test disk", Device: dev})
	cl, err := Dial(ListenerURL(l, "disk"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Size() != 8<<20 {
		t.Fatalf("size %d", cl.Size())
	}
	want := uint16(FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes | FlagCanMultiConn | FlagSendCache | FlagSendFastZero)
	if cl.Flags() != want {
		t.Fatalf("flags %#x, want %#x", cl.Flags(), want)
	}
	if mn, pref, mx := cl.BlockSizes(); mn != 1 || pref != 4096 || mx != MaxPayload {
		t.Fatalf("block sizes %d %d %d", mn, pref, mx)
	}

	// Many goroutines, each owning a region, write and read back unaligned spans.
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := int64(g) << 20
			buf := make([]byte, 300_001)
			got := make([]byte, len(buf))
			for i := range 5 {
				randomFill(buf, uint64(g*100+i))
				off := base + int64(i*777)
				if _, err := cl.WriteAt(buf, off); err != nil {
					t.Error(err)
					return
				}
				if _, err := cl.ReadAt(got, off); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(got, buf) {
					t.Errorf("goroutine %d pass %d: read back differs", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()

	// Flush, FUA, trim and write zeroes reach the device.
	if err := cl.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WriteAtFUA([]byte("fua"), 5); err != nil {
		t.Fatal(err)
	}
	if f := dev.Flushes.Load(); f != 2 {
		t.Fatalf("device saw %d flushes, want 2", f)
	}
	if err := cl.Trim(0, 4096); err != nil {
		t.Fatal(err)
	}
	if d := dev.Discards.Load(); d != 1 {
		t.Fatalf("device saw %d discards, want 1", d)
	}
	for _, noHole := range []bool{false, true} {
		zero := cl.WriteZeroes
		if noHole {
			zero = cl.WriteZeroesNoHole
		}
		if _, err := cl.WriteAt(bytes.Repeat([]byte{0xee}, 10000), 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := zero(1<<20+1, 9998); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 10000)
		if _, err := cl.ReadAt(got, 1<<20); err != nil {
			t.Fatal(err)
		}
		if got[0] != 0xee || got[9999] != 0xee || !bytes.Equal(got[1:9999], make([]byte, 9998)) {
			t.Fatalf("noHole=%v: write zeroes wrong", noHole)
		}
	}
	// A read larger than the maximum payload is split by the client.
	big := make([]byte, MaxPayload/4)
	if _, err := cl.ReadAt(big, 0); err != nil {
		t.Fatal(err)
	}
	// Out of range is refused locally.
	if _, err := cl.ReadAt(make([]byte, 2), 8<<20-1); !errors.Is(err, storage.ErrOutOfRange) {
		t.Fatalf("read past the end: %v", err)
	}
}

func TestDefaultExportAndUnknownExport(t *testing.T) {
	l := startServer(t, Export{Name: "a", Device: newMemDev(4096)}, Export{Name: "b", Device: newMemDev(8192)})
	cl, err := Dial(ListenerURL(l, ""), "")
	if err != nil {
		t.Fatal(err)
	}
	if cl.Size() != 4096 {
		t.Fatalf("default export size %d, want the first export's 4096", cl.Size())
	}
	cl.Close()
	cl, err = Dial(ListenerURL(l, "b"), "")
	if err != nil {
		t.Fatal(err)
	}
	if cl.Size() != 8192 {
		t.Fatalf("export b size %d", cl.Size())
	}
	cl.Close()
	if _, err := Dial(ListenerURL(l, "nope"), ""); err == nil {
		t.Fatal("unknown export accepted")
	}
}

func TestReadOnlyExport(t *testing.T) {
	dev := newMemDev(1 << 20)
	l := startServer(t, Export{Name: "ro", Device: dev, ReadOnly: true})
	cl, err := Dial(ListenerURL(l, "ro"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Flags()&FlagReadOnly == 0 {
		t.Fatal("read-only flag not advertised")
	}
	if _, err := cl.WriteAt([]byte{1}, 0); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("client-side write on read-only export: %v", err)
	}
	// Bypass the client's own check: the server must refuse too.
	cl.flags &^= FlagReadOnly
	if _, err := cl.WriteAt([]byte{1}, 0); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("server-side write on read-only export: %v", err)
	}
	if err := cl.WriteZeroes(0, 10); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write zeroes on read-only export: %v", err)
	}
	if devBytes(t, dev, 0, 1)[0] != 0 {
		t.Fatal("read-only device modified")
	}
}

func TestServerRefusesOutOfRangeAndBadCommands(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(1 << 20)})
	cl, err := Dial(ListenerURL(l, "d"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Send requests the client API would not: out of range, overflowing
	// offset, an oversized read and an unknown command. Each gets an errno
	// and the connection survives.
	cases := []struct {
		cmd    uint16
		off    uint64
		length uint32
		errno  uint32
	}{
		{cmdRead, 1 << 20, 1, EINVAL},
		{cmdRead, ^uint64(0), 2, EINVAL},
		{cmdRead, 0, MaxPayload + 1, EOVERFLOW},
		{cmdTrim, 1<<20 - 1, 2, EINVAL},
		{99, 0, 0, EINVAL},
	}
	for _, c := range cases {
		var buf []byte
		if c.cmd == cmdRead {
			buf = make([]byte, 0)
		}
		err := cl.do(c.cmd, 0, c.off, c.length, buf)
		var ne *Error
		if !errors.As(err, &ne) || ne.Errno != c.errno {
			t.Errorf("cmd %d off %#x len %d: %v, want errno %d", c.cmd, c.off, c.length, err, c.errno)
		}
	}
	if _, err := cl.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatalf("connection broken after errors: %v", err)
	}
}

// A device error maps to the protocol's errno and back.
func TestErrnoMapping(t *testing.T) {
	cases := map[error]uint32{
		storage.ErrOutOfRange:      EINVAL,
		storage.ErrReadOnly:        EPERM,
		storage.ErrNotSupported:    ENOTSUP,
		errors.New("disk on fire"): EIO,
	}
	for err, want := range cases {
		if got := errnoFor(err); got != want {
			t.Errorf("%v -> %d, want %d", err, got, want)
		}
	}
	if !errors.Is(&Error{Errno: ENOTSUP}, storage.ErrNotSupported) {
		t.Error("ENOTSUP is not ErrNotSupported")
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in   string
		want Target
	}{
		{"nbd://127.0.0.1:1234/disk", Target{"tcp", "127.0.0.1:1234", "disk"}},
		{"nbd://example.com/x", Target{"tcp", "example.com:10809", "x"}},
		{"nbd+unix:///d?socket=/tmp/s.sock", Target{"unix", "/tmp/s.sock", "d"}},
		{"nbd+unix:///?socket=/tmp/s.sock", Target{"unix", "/tmp/s.sock", ""}},
		{"unix:/run/x.sock", Target{"unix", "/run/x.sock", ""}},
		{"/run/x.sock", Target{"unix", "/run/x.sock", ""}},
		{"localhost:10809", Target{"tcp", "localhost:10809", ""}},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in)
		if err != nil || got != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, got, err, c.want)
		}
		back, err := ParseTarget(got.URL())
		if err != nil || back != c.want {
			t.Errorf("%q: URL %q parses to %+v %v", c.in, got.URL(), back, err)
		}
	}
	for _, bad := range []string{"nbd+unix:///x", "nbd:///x", "junk"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
