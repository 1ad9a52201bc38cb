package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// ErrCorrupt: the image's metadata contradicts itself or the file (a
// table outside the file, an unaligned offset, a field out of range).
// ErrUnsupported: a valid image using a feature this package does not
// implement. Errors wrap one of them, with the detail, for errors.Is.
var (
	ErrCorrupt     = errors.New("qcow2: corrupt image")
	ErrUnsupported = errors.New("qcow2: unsupported image feature")
)

// Header field offsets (big-endian), from the qcow2 specification.
const (
	offMagic          = 0
	offVersion        = 4
	offBackingOffset  = 8
	offBackingSize    = 16
	offClusterBits    = 20
	offSize           = 24
	offCryptMethod    = 32
	offL1Size         = 36
	offL1Offset       = 40
	offRefTableOffset = 48
	offRefTableClust  = 56
	offNbSnapshots    = 60
	offSnapshotsOff   = 64
	// version 3 only
	offIncompatible   = 72
	offCompatible     = 80
	offAutoclear      = 88
	offRefcountOrder  = 96
	offHeaderLength   = 100
	offCompressionTyp = 104

	headerV2Len = 72
	headerV3Len = 104
	magic       = 0x514649fb // "QFI\xfb"
)

// Incompatible feature bits (version 3).
const (
	incDirty        = 1 << 0 // refcounts may be stale (lazy refcounts)
	incCorrupt      = 1 << 1 // QEMU found corruption and stopped writing
	incExternalData = 1 << 2
	incCompression  = 1 << 3 // the compression type field is not zlib's 0
	incExtendedL2   = 1 << 4
	incKnown        = incDirty | incCorrupt | incExternalData | incCompression | incExtendedL2
)

// Autoclear feature bits (version 3): a writer that does not keep the
// feature's data up to date clears them.
const autoclearBitmaps = 1 << 0

// Limits that bound what an image may make us allocate, the same that
// QEMU imposes, so that images QEMU opens open here too.
const (
	minClusterBits   = 9
	maxClusterBits   = 21
	maxL1Bytes       = 32 << 20
	maxRefTableBytes = 8 << 20
	maxBackingName   = 1023
	// L1/L2/refcount table entries: host offsets in bits 9..55.
	offsetMask = 0x00fffffffffffe00
	flagCopied = 1 << 63 // L1/L2: refcount is exactly 1, written in place
	flagComp   = 1 << 62 // L2: compressed cluster
	flagZero   = 1 << 0  // L2 (v3): the cluster reads as zeros
	// Reserved bits of a standard L2 entry and of an L1 entry.
	l2Reserved = 0x3f000000000001fe
	l1Reserved = 0x7f000000000001ff
)

// Header is the decoded fixed part of a qcow2 header.
type Header struct {
	Version          uint32
	BackingOffset    uint64
	BackingSize      uint32
	ClusterBits      uint32
	Size             uint64 // virtual disk size in bytes
	CryptMethod      uint32
	L1Size           uint32 // entries
	L1Offset         uint64
	RefTableOffset   uint64
	RefTableClusters uint32
	NbSnapshots      uint32
	SnapshotsOffset  uint64
	Incompatible     uint64
	Compatible       uint64
	Autoclear        uint64
	RefcountOrder    uint32
	HeaderLength     uint32
	CompressionType  uint8

	BackingFile   string // "" when there is none
	BackingFormat string // from the header extension; "" when not given
}

// Header extension types.
const (
	extEnd           = 0
	extBackingFormat = 0xe2792aca
	maxFormatName    = 32
)

// parseExtensions reads the header extensions that follow the header
// in the first cluster (first): each a type, a length, and data padded
// to 8 bytes, until type 0. Only the backing format is used.
func (h *Header) parseExtensions(first []byte) error {
	off := int64(h.HeaderLength)
	for off+8 <= int64(len(first)) {
		typ := binary.BigEndian.Uint32(first[off:])
		n := int64(binary.BigEndian.Uint32(first[off+4:]))
		if typ == extEnd {
			return nil
		}
		if n > int64(len(first))-off-8 {
			return fmt.Errorf("%w: header extension %#x of %d bytes at %d runs past the first cluster", ErrCorrupt, typ, n, off)
		}
		if typ == extBackingFormat {
			if n == 0 || n > maxFormatName {
				return fmt.Errorf("%w: backing format name of %d bytes", ErrCorrupt, n)
			}
			h.BackingFormat = string(first[off+8 : off+8+n])
		}
		off += 8 + (n+7)&^7
	}
	return nil
}

// ClusterSize is 1<<ClusterBits.
func (h *Header) ClusterSize() int64 { return 1 << h.ClusterBits }

// ParseHeader decodes and checks the header at the start of an image of
// fileSize bytes; b holds at least the image's first cluster or the whole
// file if it is shorter. Every table the header names is checked to lie
// inside the file, aligned, and of a size that fits the limits; a feature
// this package cannot serve is refused with ErrUnsupported, naming it.
// Features that only forbid writing (dirty, corrupt, snapshots) are left
// to Open, which knows whether the image is opened for writing.
func ParseHeader(b []byte, fileSize int64) (*Header, error) {
	if len(b) < headerV2Len {
		return nil, fmt.Errorf("%w: %d bytes is too short for a qcow2 header", ErrCorrupt, len(b))
	}
	be := binary.BigEndian
	if m := be.Uint32(b[offMagic:]); m != magic {
		return nil, fmt.Errorf("%w: magic %#08x is not qcow2's (QFI\\xfb)", ErrCorrupt, m)
	}
	h := &Header{
		Version:          be.Uint32(b[offVersion:]),
		BackingOffset:    be.Uint64(b[offBackingOffset:]),
		BackingSize:      be.Uint32(b[offBackingSize:]),
		ClusterBits:      be.Uint32(b[offClusterBits:]),
		Size:             be.Uint64(b[offSize:]),
		CryptMethod:      be.Uint32(b[offCryptMethod:]),
		L1Size:           be.Uint32(b[offL1Size:]),
		L1Offset:         be.Uint64(b[offL1Offset:]),
		RefTableOffset:   be.Uint64(b[offRefTableOffset:]),
		RefTableClusters: be.Uint32(b[offRefTableClust:]),
		NbSnapshots:      be.Uint32(b[offNbSnapshots:]),
		SnapshotsOffset:  be.Uint64(b[offSnapshotsOff:]),
		RefcountOrder:    4,
		HeaderLength:     headerV2Len,
	}
	switch h.Version {
	case 2:
	case 3:
		if len(b) < headerV3Len {
			return nil, fmt.Errorf("%w: %d bytes is too short for a version 3 header", ErrCorrupt, len(b))
		}
		h.Incompatible = be.Uint64(b[offIncompatible:])
		h.Compatible = be.Uint64(b[offCompatible:])
		h.Autoclear = be.Uint64(b[offAutoclear:])
		h.RefcountOrder = be.Uint32(b[offRefcountOrder:])
		h.HeaderLength = be.Uint32(b[offHeaderLength:])
		if h.HeaderLength < headerV3Len || h.HeaderLength%8 != 0 {
			return nil, fmt.Errorf("%w: header length %d (want a multiple of 8, at least %d)", ErrCorrupt, h.HeaderLength, headerV3Len)
		}
		if int64(h.HeaderLength) > int64(len(b)) {
			return nil, fmt.Errorf("%w: header length %d runs past the first cluster or the file", ErrCorrupt, h.HeaderLength)
		}
		if h.HeaderLength > offCompressionTyp {
			h.CompressionType = b[offCompressionTyp]
		}
	default:
		return nil, fmt.Errorf("%w: qcow2 version %d (this reads versions 2 and 3)", ErrUnsupported, h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, fmt.Errorf("%w: cluster_bits %d (want %d..%d)", ErrCorrupt, h.ClusterBits, minClusterBits, maxClusterBits)
	}
	cs := h.ClusterSize()
	if int64(len(b)) < min(cs, fileSize) || fileSize < int64(h.HeaderLength) {
		return nil, fmt.Errorf("%w: the image (%d bytes) is shorter than its header", ErrCorrupt, fileSize)
	}
	if h.RefcountOrder > 6 {
		return nil, fmt.Errorf("%w: refcount_order %d (want 0..6)", ErrCorrupt, h.RefcountOrder)
	}
	if unknown := h.Incompatible &^ incKnown; unknown != 0 {
		return nil, fmt.Errorf("%w: incompatible feature bits %#x this does not know; refusing the image rather than misreading it", ErrUnsupported, unknown)
	}
	if h.Incompatible&incExternalData != 0 {
		return nil, fmt.Errorf("%w: external data file", ErrUnsupported)
	}
	if h.Incompatible&incExtendedL2 != 0 {
		return nil, fmt.Errorf("%w: extended L2 entries (subclusters); convert with qemu-img convert -O qcow2 -o extended_l2=off", ErrUnsupported)
	}
	if h.CompressionType != 0 {
		return nil, fmt.Errorf("%w: compression type %d (only zlib, 0, is read); convert with qemu-img convert -O qcow2 -o compression_type=zlib", ErrUnsupported, h.CompressionType)
	}
	if h.CryptMethod != 0 {
		return nil, fmt.Errorf("%w: encryption method %d; decrypt with qemu-img convert first", ErrUnsupported, h.CryptMethod)
	}
	first := min(int64(len(b)), cs)
	if h.BackingOffset != 0 {
		if h.BackingSize == 0 || h.BackingSize > maxBackingName || h.BackingOffset > uint64(first) || uint64(h.BackingSize) > uint64(first)-h.BackingOffset {
			return nil, fmt.Errorf("%w: backing file name (%d bytes at %d) is not inside the first cluster", ErrCorrupt, h.BackingSize, h.BackingOffset)
		}
		h.BackingFile = string(b[h.BackingOffset : h.BackingOffset+uint64(h.BackingSize)])
	}
	if err := h.parseExtensions(b[:first]); err != nil {
		return nil, err
	}
	if h.Size > 1<<62 {
		return nil, fmt.Errorf("%w: virtual size %d", ErrCorrupt, h.Size)
	}
	// The L1 table must map every cluster of the virtual disk.
	if need := l1Needed(h.Size, h.ClusterBits); uint64(h.L1Size) < need {
		return nil, fmt.Errorf("%w: L1 table of %d entries cannot map %d bytes (needs %d)", ErrCorrupt, h.L1Size, h.Size, need)
	}
	if uint64(h.L1Size)*8 > maxL1Bytes {
		return nil, fmt.Errorf("%w: L1 table of %d entries is over the %d-byte limit", ErrCorrupt, h.L1Size, maxL1Bytes)
	}
	if err := checkTable("L1 table", h.L1Offset, uint64(h.L1Size)*8, cs, fileSize); err != nil {
		return nil, err
	}
	if h.RefTableClusters == 0 || uint64(h.RefTableClusters)<<h.ClusterBits > maxRefTableBytes {
		return nil, fmt.Errorf("%w: refcount table of %d clusters (want 1..%d bytes)", ErrCorrupt, h.RefTableClusters, maxRefTableBytes)
	}
	if err := checkTable("refcount table", h.RefTableOffset, uint64(h.RefTableClusters)<<h.ClusterBits, cs, fileSize); err != nil {
		return nil, err
	}
	if h.NbSnapshots != 0 {
		if err := checkTable("snapshot table", h.SnapshotsOffset, 0, 8, fileSize); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// l1Needed is the number of L1 entries that map size bytes with
// clusters of 1<<cb bytes (size at most 1<<62).
func l1Needed(size uint64, cb uint32) uint64 {
	perL2 := uint64(1) << (cb - 3)
	clusters := (size + 1<<cb - 1) >> cb
	return (clusters + perL2 - 1) / perL2
}

// checkTable checks that a table of n bytes at off is aligned to align
// and lies inside a file of fileSize bytes, beyond the header cluster.
func checkTable(what string, off, n uint64, align, fileSize int64) error {
	if off == 0 || off%uint64(align) != 0 {
		return fmt.Errorf("%w: %s offset %#x is not aligned to %d (or is the header's)", ErrCorrupt, what, off, align)
	}
	end, carry := bits.Add64(off, n, 0)
	if carry != 0 || end > uint64(fileSize) {
		return fmt.Errorf("%w: %s (%d bytes at %#x) runs past the end of the file (%d bytes)", ErrCorrupt, what, n, off, fileSize)
	}
	return nil
}

// encodeHeaderV3 writes a version 3 header of headerV3Len bytes into b.
func encodeHeaderV3(b []byte, h *Header) {
	be := binary.BigEndian
	be.PutUint32(b[offMagic:], magic)
	be.PutUint32(b[offVersion:], 3)
	be.PutUint32(b[offClusterBits:], h.ClusterBits)
	be.PutUint64(b[offSize:], h.Size)
	be.PutUint32(b[offL1Size:], h.L1Size)
	be.PutUint64(b[offL1Offset:], h.L1Offset)
	be.PutUint64(b[offRefTableOffset:], h.RefTableOffset)
	be.PutUint32(b[offRefTableClust:], h.RefTableClusters)
	be.PutUint32(b[offRefcountOrder:], h.RefcountOrder)
	be.PutUint32(b[offHeaderLength:], headerV3Len)
}
