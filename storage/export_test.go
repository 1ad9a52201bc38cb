package storage

// IsUringBatch reports whether b carries out its operations with
// io_uring, directly or through wrappers' windows.
func IsUringBatch(b Batch) bool {
	for {
		switch x := b.(type) {
		case *fileBatch:
			return x.ring != nil
		case *windowBatch:
			b = x.inner
		default:
			return false
		}
	}
}
