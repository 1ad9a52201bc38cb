package storage

import "unsafe"

// alignedBuffer returns n bytes starting on a 4096-byte boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+4096)
	o := int(-uintptr(unsafe.Pointer(&b[0])) & 4095)
	return b[o : o+n : o+n]
}

func isAligned(p []byte, a uintptr) bool {
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))%a == 0
}
