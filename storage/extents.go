package storage

// Extent is a run of a device's bytes that share one allocation state.
type Extent struct {
	Length int64
	// Hole: no storage backs the run (writing it may need space).
	Hole bool
	// Zero: the run reads as zeros.
	Zero bool
}

// Mapper is an optional interface: a device that knows which of its ranges
// hold data. Map describes [off, off+n) as consecutive extents starting at
// off; it may stop short of off+n (the caller asks again from where the
// answer ends) but describes at least one byte when n > 0. A range outside
// the device fails with ErrOutOfRange.
type Mapper interface {
	Map(off, n int64) ([]Extent, error)
}

// Map asks dev for the extents of [off, off+n); a device that is not a
// Mapper reports the whole range as data.
func Map(dev Device, off, n int64) ([]Extent, error) {
	if m, ok := dev.(Mapper); ok {
		return m.Map(off, n)
	}
	if err := CheckRange(off, n, dev.Info().Size); err != nil {
		return nil, err
	}
	return []Extent{{Length: n}}, nil
}

// maxExtents bounds one Map answer, so that a badly fragmented range costs
// a bounded allocation per call.
const maxExtents = 1024

// appendExtent adds e to es, merging it into the last extent when their
// states are equal.
func appendExtent(es []Extent, e Extent) []Extent {
	if e.Length <= 0 {
		return es
	}
	if k := len(es) - 1; k >= 0 && es[k].Hole == e.Hole && es[k].Zero == e.Zero {
		es[k].Length += e.Length
		return es
	}
	return append(es, e)
}
