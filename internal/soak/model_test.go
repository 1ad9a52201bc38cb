package soak

import (
	"strings"
	"testing"
)

// The rule the soak enforces, on one block: after a completed flush the
// value it covered is the oldest that may be read; values issued later
// may be read whether or not they were acknowledged.
func TestModelFlushedValueIsTheFloor(t *testing.T) {
	m := NewModel(2)
	if err := m.Check(0, 0); err != nil {
		t.Fatalf("a zeroed block before any flush: %v", err)
	}
	s1 := m.Issue(0)
	m.Acked(0, s1)
	snap := m.FlushStart()
	s2 := m.Issue(0) // issued while the flush is in flight: not covered
	m.Acked(0, s2)
	m.FlushDone(snap)
	for _, ok := range []uint32{s1, s2} {
		if err := m.Check(0, ok); err != nil {
			t.Errorf("value %d: %v", ok, err)
		}
	}
	if err := m.Check(0, 0); err == nil || !strings.Contains(err.Error(), "LOST") {
		t.Errorf("zeros after value %d was flushed: %v, want LOST", s1, err)
	}
	s3 := m.Issue(0) // never acknowledged (its answer lost in a kill)
	if err := m.Check(0, s3); err != nil {
		t.Errorf("an issued, unacknowledged value: %v", err)
	}
	m.FlushDone(m.FlushStart()) // covers s2 (acknowledged), not s3
	if err := m.Check(0, s1); err == nil {
		t.Errorf("value %d read after %d was flushed", s1, s2)
	}
	if err := m.Check(0, s3); err != nil {
		t.Errorf("value %d issued after the flushed one: %v", s3, err)
	}
	if err := m.Check(0, s3+1); err == nil || !strings.Contains(err.Error(), "never written") {
		t.Errorf("a value never issued: %v", err)
	}
	if err := m.Check(1, 0); err != nil {
		t.Errorf("another block's flush touched block 1: %v", err)
	}
	// A failed flush (FlushDone never called) promises nothing.
	m.FlushStart()
	if err := m.Check(0, s2); err != nil {
		t.Errorf("after a flush that did not complete: %v", err)
	}
}

func TestSectorsCheckedOneByOne(t *testing.T) {
	const seed, bs = 42, 4096
	m := NewModel(4)
	old, cur := m.Issue(2), m.Issue(2)
	m.Acked(2, old)
	data := make([]byte, 4*bs)
	Fill(data[2*bs:3*bs], seed, 2, old)
	// A write torn by a crash: its first sectors new, the rest old. Fine
	// sector by sector while neither value is below the flushed one.
	Fill(data[2*bs:2*bs+2*SectorSize], seed, 2, cur)
	if err := CheckBlocks(m, data, seed, 0, bs); err != nil {
		t.Fatalf("a torn unflushed write: %v", err)
	}
	m.FlushDone(m.FlushStart()) // old is durable now; cur was never acknowledged
	if err := CheckBlocks(m, data, seed, 0, bs); err != nil {
		t.Fatalf("after the flush of the older value: %v", err)
	}

	damaged := append([]byte(nil), data...)
	damaged[2*bs+3*SectorSize+100] ^= 1
	if err := CheckBlocks(m, damaged, seed, 0, bs); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a flipped bit: %v", err)
	}
	misplaced := append([]byte(nil), data...)
	copy(misplaced[3*bs:4*bs], data[2*bs:3*bs]) // block 2's value written at block 3
	if err := CheckBlocks(m, misplaced, seed, 0, bs); err == nil || !strings.Contains(err.Error(), "misplaced") {
		t.Errorf("a misplaced block: %v", err)
	}
	if err := CheckBlocks(m, data, seed+1, 0, bs); err == nil {
		t.Error("a stale image of another run passed")
	}
	zeroed := append([]byte(nil), data...)
	clear(zeroed[2*bs+SectorSize*7 : 2*bs+SectorSize*8])
	if err := CheckBlocks(m, zeroed, seed, 0, bs); err == nil || !strings.Contains(err.Error(), "LOST") {
		t.Errorf("a flushed sector read back as zeros: %v", err)
	}
}
