// Package nbdstore is a storage.Device backed by an export on a remote NBD
// server, through the nbd package's pipelined client.
package nbdstore

import (
	"fmt"

	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/storage"
)

// Device is a remote NBD export as a storage.Device. Its size is fixed at
// connection time (NBD has no resize notification).
type Device struct {
	cl *nbd.Client
}

var _ storage.Device = (*Device)(nil)

// Open connects to target (an nbd:// or nbd+unix:// URI, unix:PATH or
// host:port; see nbd.ParseTarget) and opens export, or the URI's export
// when export is empty.
func Open(target, export string) (*Device, error) {
	cl, err := nbd.Dial(target, export)
	if err != nil {
		return nil, fmt.Errorf("nbdstore: %w", err)
	}
	return New(cl), nil
}

// New wraps a connected client; the Device owns it from now on.
func New(cl *nbd.Client) *Device { return &Device{cl: cl} }

// Client is the underlying connection, for NBD-specific calls such as
// WriteAtFUA.
func (d *Device) Client() *nbd.Client { return d.cl }

func (d *Device) ReadAt(p []byte, off int64) (int, error)  { return d.cl.ReadAt(p, off) }
func (d *Device) WriteAt(p []byte, off int64) (int, error) { return d.cl.WriteAt(p, off) }

// Info reports the export's size and capabilities. The logical block size
// is the server's minimum block size when that is 4096, else 512 (the
// client handles any alignment the server accepts).
func (d *Device) Info() storage.Info {
	flags := d.cl.Flags()
	minimum, preferred, _ := d.cl.BlockSizes()
	logical := uint32(512)
	if minimum == 4096 {
		logical = 4096
	}
	physical := max(logical, preferred)
	if physical&(physical-1) != 0 || physical > 1<<20 {
		physical = logical
	}
	return storage.Info{
		Size:              d.cl.Size(),
		LogicalBlockSize:  logical,
		PhysicalBlockSize: physical,
		ReadOnly:          flags&nbd.FlagReadOnly != 0,
		CanFlush:          flags&nbd.FlagSendFlush != 0,
		CanDiscard:        flags&nbd.FlagSendTrim != 0,
		// NBD_CMD_TRIM does not promise zeroes, so DiscardZeroes stays false.
	}
}

// Flush sends NBD_CMD_FLUSH when the server has a cache to flush.
func (d *Device) Flush() error { return d.cl.Flush() }

// Discard sends NBD_CMD_TRIM. NBD cannot promise secure erasure.
func (d *Device) Discard(off, n int64, secure bool) error {
	if secure {
		return fmt.Errorf("nbdstore: secure discard: %w", storage.ErrNotSupported)
	}
	if err := storage.CheckRange(off, n, d.cl.Size()); err != nil {
		return err
	}
	if d.cl.Flags()&nbd.FlagSendTrim == 0 {
		return fmt.Errorf("nbdstore: server does not trim: %w", storage.ErrNotSupported)
	}
	return d.cl.Trim(off, n)
}

// WriteZeroes sends NBD_CMD_WRITE_ZEROES (the server may punch a hole), or
// writes zeroes when the server lacks the command.
func (d *Device) WriteZeroes(off, n int64) error { return d.cl.WriteZeroes(off, n, false) }

// Close disconnects.
func (d *Device) Close() error { return d.cl.Close() }
