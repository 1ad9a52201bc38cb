// Package soak is xenblk's kill -9 soak: verified writes and flushes
// through a frontend's NBD export while the simulated host, the backend
// and the frontend, each a real `xenblk` process, are killed with SIGKILL
// and restarted at seeded random moments; then every block is checked
// against a model of what a disk may hold after a crash.
//
// The model (model.go) and the sector patterns (pattern.go) are pure; the
// processes are machine.go; the schedule and the writers are soak.go.
package soak

import (
	"fmt"
	"slices"
	"sync"
)

// Model is what each block of the disk may hold. Per block it keeps the
// last value whose write was acknowledged before a flush that was issued
// after that acknowledgement and completed ("flushed"), and every value
// issued since (acknowledged or not: a write whose answer was lost in a
// kill may have landed, or half of it may have). A sector read back must
// hold the flushed value or one issued after it; anything older is data
// lost, anything else is corruption. Values are per-block sequence
// numbers from 1; 0 is the zeroed image.
//
// A block has at most one write in flight (its writer owns it), so
// sequence numbers issued for a block are increasing in issue order.
// Safe for concurrent use.
type Model struct {
	mu     sync.Mutex
	blocks []blockState
}

type blockState struct {
	next    uint32   // the last sequence number issued
	acked   uint32   // the newest acknowledged
	flushed uint32   // the newest known durable (0: the zeroed image)
	issued  []uint32 // issued after flushed, ascending
}

// NewModel models a zeroed disk of n blocks.
func NewModel(n int) *Model { return &Model{blocks: make([]blockState, n)} }

// Blocks is the number of blocks modelled.
func (m *Model) Blocks() int { return len(m.blocks) }

// Issue records that a write of block b is about to be sent and returns
// its sequence number.
func (m *Model) Issue(b int) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.blocks[b]
	s.next++
	s.issued = append(s.issued, s.next)
	return s.next
}

// Acked records that the write of seq to block b was acknowledged.
func (m *Model) Acked(b int, seq uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := &m.blocks[b]; seq > s.acked {
		s.acked = seq
	}
}

// FlushStart is taken just before a flush is sent: the writes it covers
// are those acknowledged by now.
func (m *Model) FlushStart() []uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := make([]uint32, len(m.blocks))
	for i := range m.blocks {
		snap[i] = m.blocks[i].acked
	}
	return snap
}

// FlushDone records that the flush started with snap completed: every
// write in snap is durable, and values issued before it may no longer
// be read.
func (m *Model) FlushDone(snap []uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, seq := range snap {
		s := &m.blocks[i]
		if seq <= s.flushed {
			continue
		}
		s.flushed = seq
		k := 0
		for k < len(s.issued) && s.issued[k] <= seq {
			k++
		}
		s.issued = slices.Delete(s.issued, 0, k)
	}
}

// Check says whether seq may be read from block b: nil, or an error that
// tells what the block may hold.
func (m *Model) Check(b int, seq uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &m.blocks[b]
	if seq == s.flushed || slices.Contains(s.issued, seq) {
		return nil
	}
	what := "corrupt: a value never written"
	if seq < s.flushed {
		what = "LOST: older than the last flushed value"
	}
	return fmt.Errorf("block %d holds value %d (%s); flushed %d, acknowledged %d, issued since the flush %v",
		b, seq, what, s.flushed, s.acked, s.issued)
}
