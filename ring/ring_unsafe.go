package ring

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The shared indexes are 32-bit words in memory the other end writes
// concurrently, possibly from another process: every access is atomic.

func word(mem []byte, off int) *uint32 {
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

func load32(mem []byte, off int) uint32 { return atomic.LoadUint32(word(mem, off)) }

// store32 publishes an index with a full barrier: ring.h's pattern
// "publish prod, mb(), read the other end's event index" needs the store
// ordered before the load in every build. atomic.Swap is that on every
// architecture (on amd64 StoreUint32 already is an XCHG; under the race
// detector a plain atomic store was seen to let the load pass it).
func store32(mem []byte, off int, v uint32) { atomic.SwapUint32(word(mem, off), v) }

// checkAlignment: atomics need 4-byte aligned words; mapped pages are
// page-aligned, a Go slice from make([]byte) is 8-aligned.
func checkAlignment(mem []byte) error {
	if len(mem) == 0 {
		return fmt.Errorf("ring: empty memory")
	}
	if uintptr(unsafe.Pointer(&mem[0]))%4 != 0 {
		return fmt.Errorf("ring: memory at %p is not 4-byte aligned", &mem[0])
	}
	return nil
}
