//go:build cinterop

package ringh

import (
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
)

const slot = 112 // sizeof(union blkif_sring_entry) on x86_64

func TestSlotCountIsRingSize(t *testing.T) {
	for order := 0; order <= 5; order++ {
		m := Alloc(1 << order)
		FrontInit(m)
		if got, want := ring.SlotCount(len(m.B), slot), RingSize(); got != want {
			t.Errorf("order %d: SlotCount %d, RING_SIZE %d", order, got, want)
		}
		m.Free()
	}
}

func TestSlotCountIsRingSizeForEverySlotSize(t *testing.T) {
	checked := 0
	for order := 0; order <= 5; order++ {
		m := Alloc(1 << order)
		for _, sz := range SizedSlots {
			want := SizedRingSize(m, sz)
			if want < 0 {
				t.Fatalf("no C ring type for %d-byte slots", sz)
			}
			if got := ring.SlotCount(len(m.B), sz); int(got) != want {
				t.Errorf("order %d, %d-byte slots: SlotCount %d, __RING_SIZE %d", order, sz, got, want)
			}
			checked++
		}
		m.Free()
	}
	if checked != 6*len(SizedSlots) {
		t.Fatalf("checked %d combinations", checked)
	}
}

// startNear2p32 sets all four indexes to start (as if the ring had run
// that long), so that the test crosses the 2^32 wrap.
func startNear2p32(b []byte, start uint32) {
	binary.LittleEndian.PutUint32(b[0:], start)
	binary.LittleEndian.PutUint32(b[4:], start+1)
	binary.LittleEndian.PutUint32(b[8:], start)
	binary.LittleEndian.PutUint32(b[12:], start+1)
}

// goProduce is the Go mirror of c_front_produce.
func goProduce(f *ring.Front, n int, first uint64) bool {
	for i := 0; i < n; i++ {
		blkif.X86_64.EncodeRequest(f.NextRequest(), &blkif.Request{Operation: blkif.OpRead, ID: first + uint64(i)})
		f.Produce(1)
	}
	return f.Push()
}

func goConsume(t *testing.T, f *ring.Front, next *uint64) int {
	n := int(f.Unconsumed())
	var r blkif.Response
	for i := 0; i < n; i++ {
		blkif.X86_64.DecodeResponse(f.Response(), &r)
		if r.ID != *next {
			t.Fatalf("Go front: response id %d, want %d", r.ID, *next)
		}
		*next++
		f.Consume(1)
	}
	return n
}

func goServe(t *testing.T, b *ring.Back, max int, next *uint64) (bool, int) {
	n, err := b.Unconsumed()
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	var r blkif.Request
	for ; served < max && n > 0; n-- {
		blkif.X86_64.DecodeRequest(b.Request(0), &r)
		b.Consume(1)
		if r.ID != *next {
			t.Fatalf("Go back: request id %d, want %d", r.ID, *next)
		}
		*next++
		blkif.X86_64.EncodeResponse(b.NextResponse(), r.ID, r.Operation, blkif.RspOkay)
		b.Produce(1)
		served++
	}
	return b.Push(), served
}

// TestCAndGoDecideAlike runs two rings through the same random sequence:
// ring A has the C front (ring.h macros) and the Go back; ring B has the
// Go front and the C back. Every push's notify decision and every final
// check must be the same on both, step by step, across the 2^32 wrap, and
// every request and response must arrive exactly once, in order.
func TestCAndGoDecideAlike(t *testing.T) {
	for _, order := range []int{0, 2} {
		memA, memB := Alloc(1<<order), Alloc(1<<order)
		start := uint32(0xFFFFFFFF - 3000)
		FrontInit(memA)
		startNear2p32(memA.B, start)
		FrontAttach(memA)
		backA, err := ring.AttachBack(memA.B, slot)
		if err != nil {
			t.Fatal(err)
		}
		clear(memB.B)
		startNear2p32(memB.B, start)
		frontB, err := ring.AttachFront(memB.B, slot, start)
		if err != nil {
			t.Fatal(err)
		}
		BackAttach(memB)

		rng := rand.New(rand.NewSource(int64(order) + 42))
		var sentA, sentB, backNextA, backNextB, frontNextA, frontNextB uint64
		notifies := 0
		for step := 0; step < 20000; step++ {
			free := int(FreeRequests())
			if g := int(frontB.Free()); g != free {
				t.Fatalf("step %d: free requests C %d, Go %d", step, free, g)
			}
			k := rng.Intn(free + 1)
			nA := FrontProduce(k, sentA)
			nB := goProduce(frontB, k, sentB)
			sentA += uint64(k)
			sentB += uint64(k)
			if nA != nB {
				t.Fatalf("step %d: push of %d requests: C front notify=%v, Go front notify=%v", step, k, nA, nB)
			}
			if nA {
				notifies++
			}
			m := rng.Intn(int(ring.SlotCount(len(memA.B), slot)) + 1)
			bA, sA := goServe(t, backA, m, &backNextA)
			bB, sB := BackServe(m, &backNextB)
			if sB < 0 {
				t.Fatalf("step %d: C back saw a request out of order", step)
			}
			if sA != sB || bA != bB {
				t.Fatalf("step %d: back served %d/%d, notify Go=%v C=%v", step, sA, sB, bA, bB)
			}
			if rng.Intn(3) == 0 {
				mA, err := backA.FinalCheck()
				if err != nil {
					t.Fatal(err)
				}
				if mB := BackFinalCheck(); mA != mB {
					t.Fatalf("step %d: back final check Go=%v C=%v", step, mA, mB)
				}
			}
			if rng.Intn(2) == 0 {
				cA := FrontConsume(&frontNextA)
				if cA < 0 {
					t.Fatalf("step %d: C front saw a response out of order", step)
				}
				cB := goConsume(t, frontB, &frontNextB)
				if cA != cB {
					t.Fatalf("step %d: front consumed C %d, Go %d", step, cA, cB)
				}
				if fA, fB := FrontFinalCheck(), frontB.FinalCheck(); fA != fB {
					t.Fatalf("step %d: front final check C=%v Go=%v", step, fA, fB)
				}
			}
		}
		if binary.LittleEndian.Uint32(memA.B[0:]) > start {
			t.Fatalf("order %d: req_prod never wrapped past 2^32", order)
		}
		if sentA < 10000 || notifies == 0 {
			t.Fatalf("order %d: only %d requests, %d notifications", order, sentA, notifies)
		}
		memA.Free()
		memB.Free()
	}
}
