package nbdstore

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/storage"
)

// memDev is a minimal in-memory device to export.
type memDev struct {
	mu   sync.Mutex
	data []byte
}

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(p, m.data[off:]), nil
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, int64(len(p)), int64(len(m.data))); err != nil {
		return 0, err
	}
	return copy(m.data[off:], p), nil
}

func (m *memDev) Info() storage.Info {
	return storage.Info{Size: int64(len(m.data)), LogicalBlockSize: 512, PhysicalBlockSize: 4096, CanFlush: true, CanDiscard: true}
}
func (m *memDev) Flush() error { return nil }
func (m *memDev) Discard(off, n int64, secure bool) error {
	return m.WriteZeroes(off, n)
}
func (m *memDev) WriteZeroes(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := storage.CheckRange(off, n, int64(len(m.data))); err != nil {
		return err
	}
	clear(m.data[off : off+n])
	return nil
}
func (m *memDev) Close() error { return nil }

// open exports a fresh memory device of size bytes over a unix socket with
// our server and opens it through nbdstore.
func open(t *testing.T, size int64, readOnly bool) *Device {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	s := &nbd.Server{Exports: []nbd.Export{{Name: "m", Device: &memDev{data: make([]byte, size)}, ReadOnly: readOnly}}}
	go s.Serve(l)
	d, err := Open(nbd.ListenerURL(l, "m"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); l.Close(); s.Close() })
	return d
}

func exercise(t *testing.T, d storage.Device) {
	info := d.Info()
	if info.ReadOnly || !info.CanFlush || info.LogicalBlockSize != 512 {
		t.Fatalf("info %+v", info)
	}
	size := info.Size
	p := make([]byte, 70_001)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	for _, off := range []int64{0, 1, 511, size - int64(len(p))} {
		if n, err := d.WriteAt(p, off); err != nil || n != len(p) {
			t.Fatalf("write at %d: %d %v", off, n, err)
		}
		got := make([]byte, len(p))
		if n, err := d.ReadAt(got, off); err != nil || n != len(p) || !bytes.Equal(got, p) {
			t.Fatalf("read at %d: %d %v", off, n, err)
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteZeroes(1, 1000); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1002)
	d.ReadAt(got, 0)
	if got[0] != p[0] || !bytes.Equal(got[1:1001], make([]byte, 1000)) || got[1001] != p[1001] {
		t.Fatal("write zeroes wrong")
	}
	if err := d.Discard(0, 4096, true); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("secure discard: %v", err)
	}
	if info.CanDiscard {
		if err := d.Discard(0, 4096, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ off, n int64 }{{size, 1}, {size - 1, 2}, {-1, 1}} {
		if _, err := d.ReadAt(make([]byte, c.n), c.off); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("read [%d,+%d): %v", c.off, c.n, err)
		}
		if _, err := d.WriteAt(make([]byte, c.n), c.off); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("write [%d,+%d): %v", c.off, c.n, err)
		}
		if err := d.WriteZeroes(c.off, c.n); !errors.Is(err, storage.ErrOutOfRange) {
			t.Errorf("write zeroes [%d,+%d): %v", c.off, c.n, err)
		}
	}
}

func TestOverOurServer(t *testing.T) {
	d := open(t, 4<<20, false)
	if d.Info().Size != 4<<20 || !d.Info().CanDiscard {
		t.Fatalf("info %+v", d.Info())
	}
	exercise(t, d)
}

func TestReadOnly(t *testing.T) {
	d := open(t, 1<<20, true)
	if !d.Info().ReadOnly {
		t.Fatal("not read-only")
	}
	if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write: %v", err)
	}
	if err := d.WriteZeroes(0, 1); !errors.Is(err, storage.ErrReadOnly) {
		t.Fatalf("write zeroes: %v", err)
	}
}

func TestOverNbdkit(t *testing.T) {
	kit, err := exec.LookPath("nbdkit")
	if err != nil {
		t.Fatalf("nbdkit not installed (scripts/deps.txt lists it): %v", err)
	}
	sock := filepath.Join(t.TempDir(), "kit.sock")
	cmd := exec.Command(kit, "-f", "-U", sock, "memory", "16M")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var d *Device
	for range 100 {
		if d, err = Open("nbd+unix:///?socket="+sock, ""); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Info().Size != 16<<20 {
		t.Fatalf("size %d", d.Info().Size)
	}
	exercise(t, d)
}
