package blkif

import (
	"errors"
	"fmt"
)

// Validation of decoded requests. Every check runs on the copy DecodeRequest
// made, never on the ring slot, so the other domain cannot change a field
// between its check and its use. Errors are values a backend turns into
// RspError; none of them is a reason to stop serving the ring.

// SectorsPerPage is the number of 512-byte sectors in a 4096-byte granted
// page: a segment's last_sect is at most SectorsPerPage-1.
const SectorsPerPage = 4096 / SectorSize

// Errors of validation, wrapped with the offending values.
var (
	ErrSegmentCount = errors.New("blkif: bad segment count")
	ErrSegmentRange = errors.New("blkif: bad segment sectors")
	ErrSectorRange  = errors.New("blkif: sectors outside the disk")
	ErrExtraRequest = errors.New("blkif: bad extra request")
)

// ValidateSegment checks first_sect <= last_sect < SectorsPerPage.
func ValidateSegment(s Segment) error {
	if s.FirstSect > s.LastSect || s.LastSect >= SectorsPerPage {
		return fmt.Errorf("%w: first %d last %d (want first <= last <= %d)", ErrSegmentRange, s.FirstSect, s.LastSect, SectorsPerPage-1)
	}
	return nil
}

// ValidateSegmentCount checks the number of segments of a data request:
// a direct read or write carries 1..MaxSegmentsPerRequest, an indirect one
// 1..maxIndirect (the backend's feature-max-indirect-segments, itself at
// most MaxIndirectSegments). Barrier and flush requests may carry none.
func (r *Request) ValidateSegmentCount(maxIndirect int) error {
	n := int(r.NrSegments)
	switch r.Operation &^ OpExtraFlag {
	case OpIndirect:
		limit := min(maxIndirect, MaxIndirectSegments)
		if n == 0 || n > limit {
			return fmt.Errorf("%w: %d indirect segments (want 1..%d)", ErrSegmentCount, n, limit)
		}
	case OpWriteBarrier, OpFlushDiskcache:
		if n > MaxSegmentsPerRequest {
			return fmt.Errorf("%w: %d segments (want 0..%d)", ErrSegmentCount, n, MaxSegmentsPerRequest)
		}
	case OpDiscard:
		// A discard carries sectors, not segments.
	default:
		if n == 0 || n > MaxSegmentsPerRequest {
			return fmt.Errorf("%w: %d segments (want 1..%d)", ErrSegmentCount, n, MaxSegmentsPerRequest)
		}
	}
	return nil
}

// ValidateDirectSegments checks each of a direct request's segments
// (call ValidateSegmentCount first) and returns the sectors they cover.
func (r *Request) ValidateDirectSegments() (sectors uint64, err error) {
	n := min(int(r.NrSegments), MaxSegmentsPerRequest)
	return ValidateSegments(r.Seg[:n])
}

// ValidateSegments checks every segment and returns the sectors they cover.
// Use it on the segments DecodeIndirectSegments copied out.
func ValidateSegments(segs []Segment) (sectors uint64, err error) {
	for i, s := range segs {
		if err := ValidateSegment(s); err != nil {
			return 0, fmt.Errorf("segment %d: %w", i, err)
		}
		sectors += uint64(s.LastSect-s.FirstSect) + 1
	}
	return sectors, nil
}

// ValidateSectorRange checks that count 512-byte sectors starting at
// sector lie inside a disk of diskSectors sectors, without overflow.
func ValidateSectorRange(sector, count, diskSectors uint64) error {
	if sector > diskSectors || count > diskSectors-sector {
		return fmt.Errorf("%w: %d sectors at %d on a disk of %d", ErrSectorRange, count, sector, diskSectors)
	}
	return nil
}

// Validate checks an extra request against the request it follows: the
// ids must match, the command length must lie in 6..MaxCDBLength, and
// DataLen must fit in the segments' total bytes (segBytes), and must be 0
// for a request without data.
func (e *ExtraRequest) Validate(baseID uint64, segBytes uint64) error {
	if e.ID != baseID {
		return fmt.Errorf("%w: id %#x does not match the request's %#x", ErrExtraRequest, e.ID, baseID)
	}
	if e.CmdLen < MinCDBLength || e.CmdLen > MaxCDBLength {
		return fmt.Errorf("%w: cmd_len %d (want %d..%d)", ErrExtraRequest, e.CmdLen, MinCDBLength, MaxCDBLength)
	}
	if uint64(e.DataLen) > segBytes {
		return fmt.Errorf("%w: data_len %d exceeds the segments' %d bytes", ErrExtraRequest, e.DataLen, segBytes)
	}
	return nil
}
