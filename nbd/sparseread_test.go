package nbd

import (
	"bytes"
	"crypto/sha256"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/storage"
)

func TestSparsePieces(t *testing.T) {
	data := func(k int64) storage.Extent { return storage.Extent{Length: k} }
	hole := func(k int64) storage.Extent { return storage.Extent{Length: k, Hole: true, Zero: true} }
	for _, c := range []struct {
		name string
		es   []storage.Extent
		n    int64
		want []readPiece
	}{
		{"all data", []storage.Extent{data(100)}, 100, []readPiece{{0, 100, false}}},
		{"all hole", []storage.Extent{hole(100)}, 100, []readPiece{{0, 100, true}}},
		{"hole data hole", []storage.Extent{hole(10), data(20), hole(70)}, 100,
			[]readPiece{{0, 10, true}, {10, 20, false}, {30, 70, true}}},
		// Allocated zeros (a qcow2 zero cluster with a host cluster) read
		// as zeros: a hole chunk too.
		{"allocated zeros", []storage.Extent{data(10), {Length: 10, Zero: true}, hole(10)}, 30,
			[]readPiece{{0, 10, false}, {10, 20, true}}},
		// Unallocated but not known to read as zeros (a backing file
		// shows through): data.
		{"hole of unknown bytes", []storage.Extent{{Length: 10, Hole: true}, hole(10)}, 20,
			[]readPiece{{0, 10, false}, {10, 10, true}}},
		{"map stops short", []storage.Extent{hole(40)}, 100, []readPiece{{0, 40, true}, {40, 60, false}}},
		{"map runs past the read", []storage.Extent{data(10), hole(500)}, 100, []readPiece{{0, 10, false}, {10, 90, true}}},
		{"empty map", nil, 100, []readPiece{{0, 100, false}}},
		{"neighbours merge", []storage.Extent{data(10), data(10), hole(5), {Length: 5, Zero: true}}, 30,
			[]readPiece{{0, 20, false}, {20, 10, true}}},
		{"zero-length extents skipped", []storage.Extent{{Length: 0, Zero: true}, data(10)}, 10, []readPiece{{0, 10, false}}},
	} {
		if got := sparsePieces(c.es, c.n); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: sparsePieces(%v, %d) = %v, want %v", c.name, c.es, c.n, got, c.want)
		}
	}
}

// countingConn counts the bytes read from the server.
type countingConn struct {
	net.Conn
	in atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

// dialCounting opens export at a unix socket, counting what arrives.
func dialCounting(t *testing.T, sock, export string) (*Client, *countingConn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: c}
	cl, err := NewClient(cc, export)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, cc
}

// sparseImage writes a raw image of size bytes holding 0xaa in data's
// [offset, offset+length) ranges and holes elsewhere, and returns its path
// and content; no handle stays open, so another program may lock it.
func sparseImage(t *testing.T, size int64, data ...[2]int64) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sparse.raw")
	want := make([]byte, size)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		b := want[d[0] : d[0]+d[1]]
		for i := range b {
			b[i] = 0xaa
		}
		if _, err := f.WriteAt(b, d[0]); err != nil {
			t.Fatal(err)
		}
	}
	return path, want
}

// A READ over holes is answered with hole chunks: the server reads only
// the data from the device, sends little more than the data, and our
// client puts the zeros back.
func TestSparseReadSendsHoles(t *testing.T) {
	const size = 8 << 20
	layout := [][2]int64{{1 << 20, 64 << 10}, {3 << 20, 1 << 20}}
	path, want := sparseImage(t, size, layout...)
	f, err := storage.OpenFile(path, storage.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	dev := &byteCounter{Device: f}
	l := startServer(t, Export{Name: "s", Device: dev})
	cl, cc := dialCounting(t, l.Addr().String(), "s")
	got := make([]byte, size)
	for i := range got {
		got[i] = 0x55 // what a hole chunk must overwrite
	}
	before := cc.in.Load()
	// 8 MiB: one request at most MaxPayload, each answered in pieces.
	if _, err := cl.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sparse read returned wrong bytes")
	}
	const dataBytes = 64<<10 + 1<<20
	if r := dev.read.Load(); r != dataBytes {
		t.Errorf("server read %d bytes from the device, want the %d of data", r, dataBytes)
	}
	if in := cc.in.Load() - before; in > dataBytes+4096 {
		t.Errorf("%d bytes came over the wire for %d of data", in, dataBytes)
	}

	// A read shorter than sparseReadMin is one data chunk.
	dev.read.Store(0)
	small := make([]byte, 4096)
	if _, err := cl.ReadAt(small, 0); err != nil || !bytes.Equal(small, want[:4096]) {
		t.Fatalf("small read: %v", err)
	}
	if r := dev.read.Load(); r != 4096 {
		t.Errorf("small read read %d bytes from the device", r)
	}
}

// libnbd (nbdcopy, reading everything with --no-extents) takes our hole
// chunks: the copy is exact and the server read only the data.
func TestNbdcopyReadsHoleChunks(t *testing.T) {
	const size = 64 << 20
	layout := [][2]int64{{0, 4096}, {5 << 20, 3 << 20}, {40 << 20, 128 << 10}}
	path, want := sparseImage(t, size, layout...)
	f, err := storage.OpenFile(path, storage.FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	dev := &byteCounter{Device: f}
	l := tcpServer(t, Export{Name: "s", Device: dev})
	out := filepath.Join(t.TempDir(), "copy.raw")
	run(t, "nbdcopy", "--no-extents", ListenerURL(l, "s"), out)
	if fileSum(t, out) != sha256.Sum256(want) {
		t.Fatal("nbdcopy's copy differs from the image")
	}
	var dataBytes int64
	for _, d := range layout {
		dataBytes += d[1]
	}
	// nbdcopy's requests need not line up with the data: each may read
	// up to a cluster of the file system's blocks around it.
	if r := dev.read.Load(); r < dataBytes || r > dataBytes+4<<20 {
		t.Errorf("server read %d bytes for %d of data in %d", r, dataBytes, size)
	}
}

// socketActivated runs argv with a unix socket it inherits already
// listening (LISTEN_FDS), as systemd would start it, and returns the
// socket's path: dialling it succeeds at once, no waiting for the
// program to start.
func socketActivated(t *testing.T, argv ...string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "peer.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	// LISTEN_PID must name the program itself: the shell execs it.
	cmd := exec.Command("sh", append([]string{"-c", `LISTEN_PID=$$ exec "$@"`, "sh", tool(t, argv[0])}, argv[1:]...)...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{f} // descriptor 3, as LISTEN_FDS says
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); l.Close() })
	return sock
}

// Our client reads qemu-nbd's sparse replies: qemu-nbd answers a READ
// over holes with hole chunks, which our client zero-fills.
func TestClientReadsQemuNbdHoles(t *testing.T) {
	const size = 16 << 20
	layout := [][2]int64{{2 << 20, 256 << 10}, {9 << 20, 1 << 20}}
	path, want := sparseImage(t, size, layout...)
	sock := socketActivated(t, "qemu-nbd", "--format=raw", "--read-only", "--persistent", path)
	cl, cc := dialCounting(t, sock, "")
	got := make([]byte, size)
	for i := range got {
		got[i] = 0x55
	}
	before := cc.in.Load()
	if _, err := cl.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("read from qemu-nbd returned wrong bytes")
	}
	in := cc.in.Load() - before
	t.Logf("qemu-nbd sent %d bytes for %d of data in %d", in, 256<<10+1<<20, size)
	if in > size/2 {
		t.Errorf("qemu-nbd sent %d bytes for a %d-byte read of %d of data: no hole chunks to test",
			in, size, 256<<10+1<<20)
	}
}
