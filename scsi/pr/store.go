package pr

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// MemoryStore keeps state in memory (tests, and units without APTPL needs).
type MemoryStore struct {
	mu   sync.Mutex
	data map[string][]byte
	ver  map[string]uint64
}

func NewMemoryStore() *MemoryStore {
	return &MemoryStore{data: map[string][]byte{}, ver: map[string]uint64{}}
}

func (m *MemoryStore) Load(lu string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data[lu]...), m.ver[lu], nil
}

func (m *MemoryStore) CompareAndSwap(lu string, old uint64, data []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ver[lu] != old {
		return 0, ErrVersionConflict
	}
	m.ver[lu]++
	m.data[lu] = append([]byte(nil), data...)
	return m.ver[lu], nil
}

// FileStore keeps each unit's state in a file of its own under Dir,
// replaced atomically (write, fsync, rename, fsync the directory), so a
// backend killed at any instant leaves either the old or the new state.
type FileStore struct {
	Dir string
	mu  sync.Mutex
}

type fileRecord struct {
	Version uint64
	LU      string
	Data    json.RawMessage
}

func (f *FileStore) path(lu string) string {
	h := sha256.Sum256([]byte(lu))
	return filepath.Join(f.Dir, "pr-"+hex.EncodeToString(h[:8])+".json")
}

func (f *FileStore) Load(lu string) ([]byte, uint64, error) {
	b, err := os.ReadFile(f.path(lu))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var r fileRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, 0, fmt.Errorf("pr: %s: %w", f.path(lu), err)
	}
	if r.LU != lu {
		return nil, 0, fmt.Errorf("pr: %s holds %q, not %q", f.path(lu), r.LU, lu)
	}
	return r.Data, r.Version, nil
}

func (f *FileStore) CompareAndSwap(lu string, old uint64, data []byte) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, cur, err := f.Load(lu)
	if err != nil {
		return 0, err
	}
	if cur != old {
		return 0, ErrVersionConflict
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return 0, err
	}
	b, err := json.Marshal(fileRecord{Version: old + 1, LU: lu, Data: data})
	if err != nil {
		return 0, err
	}
	p := f.path(lu)
	tmp, err := os.CreateTemp(f.Dir, ".pr-*")
	if err != nil {
		return 0, err
	}
	_, werr := tmp.Write(b)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return 0, err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return 0, err
	}
	d, err := os.Open(f.Dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return 0, err
	}
	return old + 1, nil
}
