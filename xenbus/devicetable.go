package xenbus

import (
	"errors"
	"strings"
	"sync"

	"github.com/xenblk/xenblk/xen"
)

// DeviceTable is what a backend server knows of its devices, by backend
// directory: a running device (non-nil), or one that could not be
// started (nil), which is not tried again until its directory is gone,
// so that the error node it writes, or any other event, does not retry
// it in a loop. It is safe for concurrent use; the zero value is empty.
type DeviceTable[T any] struct {
	mu   sync.Mutex
	devs map[string]*T
}

// Consider looks at one device directory on behalf of Devices.Start. A
// device known (running or failed) is left alone: a running one is its
// runner's, and a failed one is forgotten once its state node is gone,
// so that a new device there is tried. Any other is started (start,
// with no lock held) once the toolstack has written its whole directory
// (state, written last) and it is online. A start that fails has its
// error written to the directory's error node and is remembered as
// failed. A device started is added unless stop is closed by then, and
// returned: then (stopped) the caller must undo the start, as a server
// that crashed starts nothing and lists its devices to stop only after
// closing stop. A nil stop is never closed.
func (t *DeviceTable[T]) Consider(st xen.Store, dir string, stop <-chan struct{}, start func() (*T, error)) (d *T, stopped bool) {
	t.mu.Lock()
	d, known := t.devs[dir]
	t.mu.Unlock()
	if known {
		if d == nil {
			if _, err := st.Read(dir + "/state"); errors.Is(err, xen.ErrNotFound) {
				t.Remove(dir)
			}
		}
		return nil, false
	}
	if _, err := st.Read(dir + "/state"); err != nil {
		return nil, false
	}
	if v, err := st.Read(dir + "/online"); err != nil || strings.TrimSpace(v) != "1" {
		return nil, false
	}
	d, err := start()
	if err != nil {
		_ = st.Write(dir+"/error", err.Error())
		t.set(dir, nil)
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if isClosed(stop) {
		return d, true
	}
	t.setLocked(dir, d)
	return d, false
}

func (t *DeviceTable[T]) set(dir string, d *T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setLocked(dir, d)
}

func (t *DeviceTable[T]) setLocked(dir string, d *T) {
	if t.devs == nil {
		t.devs = map[string]*T{}
	}
	t.devs[dir] = d
}

// Remove forgets dir: a device whose run ended, or a failed one whose
// directory is gone.
func (t *DeviceTable[T]) Remove(dir string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.devs, dir)
}

// Reset forgets every device.
func (t *DeviceTable[T]) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.devs = nil
}

// Get returns the running device at dir, nil if none.
func (t *DeviceTable[T]) Get(dir string) *T {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.devs[dir]
}

// Failed lists the directories under prefix of the devices that could
// not be started (Devices.Failed).
func (t *DeviceTable[T]) Failed(prefix string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var dirs []string
	for dir, d := range t.devs {
		if d == nil && strings.HasPrefix(dir, prefix) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

// Dirs lists the directories of the running devices.
func (t *DeviceTable[T]) Dirs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for dir, d := range t.devs {
		if d != nil {
			out = append(out, dir)
		}
	}
	return out
}

// Running lists the running devices.
func (t *DeviceTable[T]) Running() []*T {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*T
	for _, d := range t.devs {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}
