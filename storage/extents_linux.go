package storage

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Map finds the file's holes with SEEK_DATA and SEEK_HOLE. A filesystem
// without them answers the whole range as data. The seeks move the file
// offset, which nothing else uses: every read and write is positional.
func (d *File) Map(off, n int64) ([]Extent, error) {
	if err := CheckRange(off, n, d.size); err != nil {
		return nil, err
	}
	fd := int(d.f.Fd())
	var es []Extent
	for end := off + n; off < end && len(es) < maxExtents; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // no data from off to the end of the file
			data = end
		case err != nil:
			return appendExtent(es, Extent{Length: end - off}), nil
		}
		if data > off {
			k := min(data, end) - off
			es = appendExtent(es, Extent{Length: k, Hole: true, Zero: true})
			off += k
			continue
		}
		hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
		if err != nil {
			hole = end
		}
		k := min(max(hole, off+1), end) - off
		es = appendExtent(es, Extent{Length: k})
		off += k
	}
	return es, nil
}
