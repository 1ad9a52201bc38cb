package soak

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// SectorSize is the unit a crash may tear a write at: each sector of a
// block says which value of which block it belongs to, and is checked on
// its own.
const SectorSize = 512

// A sector of value seq of block b: magic, run seed, b, seq, sector
// index, then bytes that follow from all of those, so that a sector
// misplaced, stale from another run, or damaged anywhere is caught.
const (
	magic      = "XBSOAK01"
	offSeed    = 8
	offBlock   = 16
	offSeq     = 20
	offSector  = 24
	headerSize = 28
)

// Fill writes value seq of block b into p (a whole block, a multiple of
// SectorSize).
func Fill(p []byte, seed uint64, b int, seq uint32) {
	for i := 0; i*SectorSize < len(p); i++ {
		fillSector(p[i*SectorSize:(i+1)*SectorSize], seed, b, seq, i)
	}
}

func fillSector(p []byte, seed uint64, b int, seq uint32, i int) {
	copy(p, magic)
	binary.LittleEndian.PutUint64(p[offSeed:], seed)
	binary.LittleEndian.PutUint32(p[offBlock:], uint32(b))
	binary.LittleEndian.PutUint32(p[offSeq:], seq)
	binary.LittleEndian.PutUint32(p[offSector:], uint32(i))
	x := seed ^ uint64(b)<<40 ^ uint64(seq)<<8 ^ uint64(i) ^ 0x9e3779b97f4a7c15
	for o := headerSize; o < len(p); o += 4 {
		x ^= x << 13 // xorshift64
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint32(p[o:], uint32(x))
	}
}

// SectorValue returns the value sector i of block b holds: 0 for zeros,
// else the sequence number its header names, after checking every byte
// against what that value's sector must be.
func SectorValue(p []byte, seed uint64, b, i int) (uint32, error) {
	if isZero(p) {
		return 0, nil
	}
	if string(p[:len(magic)]) != magic {
		return 0, fmt.Errorf("block %d sector %d: no soak header (% x...)", b, i, p[:16])
	}
	gotSeed := binary.LittleEndian.Uint64(p[offSeed:])
	gotB := binary.LittleEndian.Uint32(p[offBlock:])
	seq := binary.LittleEndian.Uint32(p[offSeq:])
	gotI := binary.LittleEndian.Uint32(p[offSector:])
	if gotSeed != seed || gotB != uint32(b) || gotI != uint32(i) {
		return 0, fmt.Errorf("block %d sector %d holds seed %d block %d sector %d value %d: misplaced or stale", b, i, gotSeed, gotB, gotI, seq)
	}
	want := make([]byte, len(p))
	fillSector(want, seed, b, seq, i)
	if !bytes.Equal(p, want) {
		return 0, fmt.Errorf("block %d sector %d: value %d damaged", b, i, seq)
	}
	return seq, nil
}

func isZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

// CheckBlocks checks data, the blocks from first on, sector by sector
// against m. It returns the first violation.
func CheckBlocks(m *Model, data []byte, seed uint64, first, blockSize int) error {
	for off := 0; off < len(data); off += SectorSize {
		b := first + off/blockSize
		seq, err := SectorValue(data[off:off+SectorSize], seed, b, (off%blockSize)/SectorSize)
		if err != nil {
			return err
		}
		if err := m.Check(b, seq); err != nil {
			return fmt.Errorf("sector %d: %w", (off%blockSize)/SectorSize, err)
		}
	}
	return nil
}
