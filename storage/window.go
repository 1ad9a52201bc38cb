package storage

import "fmt"

// Slice is a window [Offset, Offset+Size) of a device: a guest given a
// partition or part of a disk sees only that range, as offsets 0..Size.
// Every access is checked against the window before it is moved.
type Slice struct {
	Dev    Device
	Offset int64
	Size   int64
}

// NewSlice checks that the window lies within dev.
func NewSlice(dev Device, off, size int64) (*Slice, error) {
	if err := CheckRange(off, size, dev.Info().Size); err != nil {
		return nil, fmt.Errorf("storage: slice %d+%d of a %d-byte device: %w", off, size, dev.Info().Size, err)
	}
	return &Slice{Dev: dev, Offset: off, Size: size}, nil
}

func (s *Slice) Info() Info {
	in := s.Dev.Info()
	in.Size = s.Size
	return in
}
func (s *Slice) ReadAt(p []byte, off int64) (int, error) {
	if err := CheckRange(off, int64(len(p)), s.Size); err != nil {
		return 0, err
	}
	return s.Dev.ReadAt(p, s.Offset+off)
}
func (s *Slice) WriteAt(p []byte, off int64) (int, error) {
	if err := CheckRange(off, int64(len(p)), s.Size); err != nil {
		return 0, err
	}
	return s.Dev.WriteAt(p, s.Offset+off)
}
func (s *Slice) Flush() error { return s.Dev.Flush() }
func (s *Slice) Discard(off, n int64, secure bool) error {
	if err := CheckRange(off, n, s.Size); err != nil {
		return err
	}
	return s.Dev.Discard(s.Offset+off, n, secure)
}
func (s *Slice) WriteZeroes(off, n int64) error {
	if err := CheckRange(off, n, s.Size); err != nil {
		return err
	}
	return s.Dev.WriteZeroes(s.Offset+off, n)
}
func (s *Slice) Close() error { return s.Dev.Close() }

// ReadOnly refuses every change to dev.
func ReadOnly(dev Device) Device { return readOnly{dev} }

type readOnly struct{ Device }

func (r readOnly) Info() Info {
	in := r.Device.Info()
	in.ReadOnly, in.CanDiscard, in.CanSecureDiscard = true, false, false
	return in
}
func (r readOnly) WriteAt(p []byte, off int64) (int, error) { return 0, ErrReadOnly }
func (r readOnly) Discard(off, n int64, secure bool) error  { return ErrReadOnly }
func (r readOnly) WriteZeroes(off, n int64) error           { return ErrReadOnly }
