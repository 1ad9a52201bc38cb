package storage_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/internal/looptest"
	"github.com/xenblk/xenblk/storage"
)

// opener opens one path as a file or a block device with a read-only flag
// and a lock mode.
type opener func(path string, readOnly bool, l storage.Lock) (storage.Device, error)

func openFileLocked(path string, readOnly bool, l storage.Lock) (storage.Device, error) {
	f, err := storage.OpenFile(path, storage.FileOptions{ReadOnly: readOnly, Lock: l})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func openBlockDevLocked(path string, readOnly bool, l storage.Lock) (storage.Device, error) {
	d, err := storage.OpenBlockDev(path, storage.BlockDevOptions{ReadOnly: readOnly, Lock: l})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// checkLocking opens path twice in each pair of ways and checks who may
// go together (internal/imagelock's table, which it walks in full): a
// writer alone, readers together, shared users together, shared and not
// shared never. Each second open is a separate open file description, as
// another process's is (imagelock's tests cross processes too).
func checkLocking(t *testing.T, path string, open opener) {
	type way struct {
		name     string
		readOnly bool
		lock     storage.Lock
	}
	rw := way{"read-write", false, storage.LockExclusive}
	ro := way{"read-only", true, storage.LockExclusive}
	srw := way{"shared read-write", false, storage.LockShared}
	sro := way{"shared read-only", true, storage.LockShared}
	for _, c := range []struct {
		first, second way
		together      bool
	}{
		{rw, rw, false},
		{ro, ro, true},
		{ro, rw, false},
		{rw, ro, false},
		{srw, srw, true},
		{srw, rw, false},
		{rw, srw, false},
		{srw, ro, false},
		{ro, srw, false},
		{srw, sro, true},
	} {
		first, err := open(path, c.first.readOnly, c.first.lock)
		if err != nil {
			t.Fatalf("%s alone: %v", c.first.name, err)
		}
		second, err := open(path, c.second.readOnly, c.second.lock)
		switch {
		case c.together && err != nil:
			t.Errorf("%s beside %s: %v", c.second.name, c.first.name, err)
		case !c.together && err == nil:
			t.Errorf("%s opened beside %s", c.second.name, c.first.name)
		case !c.together && !errors.Is(err, storage.ErrInUse):
			t.Errorf("%s beside %s: %v, want ErrInUse", c.second.name, c.first.name, err)
		case !c.together && !strings.Contains(err.Error(), path):
			t.Errorf("%q does not name %s", err, path)
		}
		if second != nil {
			second.Close()
		}
		first.Close()
	}
	// Close released everything: a writer is alone again.
	d, err := open(path, false, storage.LockExclusive)
	if err != nil {
		t.Fatalf("after every open closed: %v", err)
	}
	d.Close()
}

func TestOpenFileLocks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	checkLocking(t, p, openFileLocked)
}

func TestOpenBlockDevLocks(t *testing.T) {
	dev, _ := looptest.Attach(t, 1<<20)
	checkLocking(t, dev, openBlockDevLocked)
}

// A refused open changes nothing: not the image's size (Create is not
// applied to an image that exists, held or not), not its bytes.
func TestOpenFileInUseChangesNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	data := []byte(strings.Repeat("image lock ", 100000))[:1<<20]
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	held, err := storage.OpenFile(p, storage.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := storage.OpenFile(p, storage.FileOptions{Create: 8 << 20, Direct: true}); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("second open: %v, want ErrInUse", err)
	}
	after, _ := os.Stat(p)
	got, _ := os.ReadFile(p)
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) || string(got) != string(data) {
		t.Fatalf("refused open changed the image: size %d -> %d, mtime %v -> %v", before.Size(), after.Size(), before.ModTime(), after.ModTime())
	}
	if _, err := storage.OpenFile(p, storage.FileOptions{Lock: 9}); err == nil || !strings.Contains(err.Error(), "lock mode 9") {
		t.Fatalf("lock mode 9: %v", err)
	}
}
