package nbd

import (
	"fmt"

	"github.com/xenblk/xenblk/storage"
)

// A Client is a storage.Device: a remote export can back a vbd or be
// exported again. Its size is fixed at connection time (NBD has no resize
// notification).
var _ storage.Device = (*Client)(nil)

// Info reports the export's size and capabilities. The logical block size
// is the server's minimum block size when that is 4096, else 512 (the
// client handles any alignment the server accepts).
func (cl *Client) Info() storage.Info {
	logical := uint32(512)
	if cl.minBlock == 4096 {
		logical = 4096
	}
	physical := max(logical, cl.prefBlock)
	if physical&(physical-1) != 0 || physical > 1<<20 {
		physical = logical
	}
	return storage.Info{
		Size:              cl.size,
		LogicalBlockSize:  logical,
		PhysicalBlockSize: physical,
		ReadOnly:          cl.flags&FlagReadOnly != 0,
		CanFlush:          cl.flags&FlagSendFlush != 0,
		CanDiscard:        cl.flags&FlagSendTrim != 0,
		// NBD_CMD_TRIM does not promise zeroes, so DiscardZeroes stays false.
	}
}

// Discard sends NBD_CMD_TRIM. NBD cannot promise secure erasure.
func (cl *Client) Discard(off, n int64, secure bool) error {
	if secure {
		return fmt.Errorf("nbd: secure discard: %w", storage.ErrNotSupported)
	}
	if err := cl.checkRange(off, n); err != nil {
		return err
	}
	return cl.Trim(off, n)
}

// Map asks the server for base:allocation's extents of [off, off+n) (at
// most one request's worth: the answer may end short). A server that did
// not agree to base:allocation has every byte reported as data.
func (cl *Client) Map(off, n int64) ([]storage.Extent, error) {
	if err := cl.checkRange(off, n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if !cl.hasAllocation {
		return []storage.Extent{{Length: n}}, nil
	}
	es, err := cl.send(cmdBlockStatus, 0, uint64(off), uint32(min(n, maxRangeChunk)), nil)
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, &Error{Op: "block status", Errno: EIO}
	}
	return es, nil
}
