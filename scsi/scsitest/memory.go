// Package scsitest is the SCSI conformance suite (SPC-4, SBC-3 behaviours,
// one case per clause) that every xenblk SCSI target runs: the emulation
// over memory, and the pass-through over a fake SG_IO disk. The devices
// under it are storage's memory, counted and guarded by storagetest's
// wrappers.
package scsitest

import (
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// Memory is storage.Memory described as a test needs, counting the
// operations that reach it (Flushes, Discards, ...). A read-only one
// keeps the rest of its description (discard, say), as a target under
// test may be handed, and refuses changes; Fill still loads it.
type Memory struct {
	storagetest.Counter
	mem      *storage.Memory
	readOnly bool
}

// NewMemory returns a zeroed device described by info (info.Size bytes).
func NewMemory(info storage.Info) *Memory {
	ro := info.ReadOnly
	info.ReadOnly = false
	m := storage.NewMemoryAs(info)
	return &Memory{Counter: storagetest.Counter{Device: m}, mem: m, readOnly: ro}
}

func (m *Memory) Info() storage.Info {
	in := m.Counter.Info()
	in.ReadOnly = m.readOnly
	return in
}

func (m *Memory) WriteAt(p []byte, off int64) (int, error) {
	if m.readOnly {
		return 0, storage.ErrReadOnly
	}
	return m.Counter.WriteAt(p, off)
}

func (m *Memory) Discard(off, n int64, secure bool) error {
	if m.readOnly {
		return storage.ErrReadOnly
	}
	return m.Counter.Discard(off, n, secure)
}

func (m *Memory) WriteZeroes(off, n int64) error {
	if m.readOnly {
		return storage.ErrReadOnly
	}
	return m.Counter.WriteZeroes(off, n)
}

// Resize grows or shrinks the device, as an online resize does.
func (m *Memory) Resize(size int64) { m.mem.Resize(size) }

// Contents is a copy of the whole device, read past the counters.
func (m *Memory) Contents() []byte {
	b := make([]byte, m.mem.Info().Size)
	if _, err := m.mem.ReadAt(b, 0); err != nil {
		panic(err) // the whole of a memory device is always in range
	}
	return b
}

// Fill writes v over the whole device, past the counters.
func (m *Memory) Fill(v byte) {
	b := make([]byte, m.mem.Info().Size)
	fill(b, v)
	if _, err := m.mem.WriteAt(b, 0); err != nil {
		panic(err) // tests fill writable devices
	}
}
