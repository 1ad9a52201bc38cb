package ring

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

const testSlot = 112 // blkif's slot on x86_64

func newPair(t testing.TB, pages int) (*Front, *Back, []byte) {
	mem := make([]byte, 4096*pages)
	f, err := InitFront(mem, testSlot)
	if err != nil {
		t.Fatal(err)
	}
	b, err := AttachBack(mem, testSlot)
	if err != nil {
		t.Fatal(err)
	}
	return f, b, mem
}

func TestSlotCountMatchesRingH(t *testing.T) {
	// __RING_SIZE for blkif: 32 slots of 112 bytes in one page, 16 of 108
	// would fit 37 but rounds down to 32 as well.
	for _, c := range []struct {
		bytes, slot int
		want        uint32
	}{
		{4096, 112, 32}, {4096, 108, 32}, {8192, 112, 64}, {4096 << 4, 112, 512},
		{4096, 4096, 0}, {64, 8, 0}, {4096, 64, 32}, {4096, 63, 64},
	} {
		if got := SlotCount(c.bytes, c.slot); got != c.want {
			t.Errorf("SlotCount(%d, %d) = %d, want %d", c.bytes, c.slot, got, c.want)
		}
	}
}

func TestInitFrontSetsEventIndexes(t *testing.T) {
	_, _, mem := newPair(t, 1)
	if binary.LittleEndian.Uint32(mem[offReqEvent:]) != 1 || binary.LittleEndian.Uint32(mem[offRspEvent:]) != 1 {
		t.Fatal("req_event and rsp_event must start at 1")
	}
}

func TestNotifyHoldOff(t *testing.T) {
	f, b, _ := newPair(t, 1)
	f.Produce(1)
	if !f.Push() { // req_event = 1: the first request notifies
		t.Fatal("first push must notify")
	}
	f.Produce(1)
	if f.Push() { // back has not asked again
		t.Fatal("second push notified though req_event was not advanced")
	}
	n, _ := b.Unconsumed()
	b.Consume(n)
	if more, _ := b.FinalCheck(); more {
		t.Fatal("nothing more expected")
	}
	f.Produce(3)
	if !f.Push() {
		t.Fatal("push after FinalCheck must notify")
	}
}

func TestWrapAtIndex2Pow32(t *testing.T) {
	mem := make([]byte, 4096)
	start := uint32(0xFFFFFFF0)
	binary.LittleEndian.PutUint32(mem[offReqProd:], start)
	binary.LittleEndian.PutUint32(mem[offRspProd:], start)
	binary.LittleEndian.PutUint32(mem[offReqEvent:], start+1)
	binary.LittleEndian.PutUint32(mem[offRspEvent:], start+1)
	f, err := AttachFront(mem, testSlot, start)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := AttachBack(mem, testSlot)
	for i := 0; i < 100; i++ {
		slot := f.NextRequest()
		binary.LittleEndian.PutUint32(slot, uint32(i))
		f.Produce(1)
		f.Push()
		n, err := b.Unconsumed()
		if err != nil || n != 1 {
			t.Fatalf("step %d: unconsumed %d %v", i, n, err)
		}
		if got := binary.LittleEndian.Uint32(b.Request(0)); got != uint32(i) {
			t.Fatalf("step %d: read %d", i, got)
		}
		b.Consume(1)
		binary.LittleEndian.PutUint32(b.NextResponse(), uint32(i)+1000)
		b.Produce(1)
		b.Push()
		if f.Unconsumed() != 1 || binary.LittleEndian.Uint32(f.Response()) != uint32(i)+1000 {
			t.Fatalf("step %d: response lost", i)
		}
		f.Consume(1)
	}
	if f.ReqProdPvt() != start+100 {
		t.Fatal("index did not wrap through 2^32")
	}
}

func TestProdOverflowDetected(t *testing.T) {
	_, b, mem := newPair(t, 1)
	binary.LittleEndian.PutUint32(mem[offReqProd:], 33) // 32 slots
	if _, err := b.Unconsumed(); err == nil {
		t.Fatal("req_prod 33 ahead of a 32-slot ring must be an error")
	}
	binary.LittleEndian.PutUint32(mem[offReqProd:], 32)
	if n, err := b.Unconsumed(); err != nil || n != 32 {
		t.Fatalf("a full ring is legal: %d %v", n, err)
	}
	binary.LittleEndian.PutUint32(mem[offReqProd:], 0xFFFFFFFF) // behind us
	if _, err := b.Unconsumed(); err == nil {
		t.Fatal("req_prod behind rsp_prod must be an error")
	}
}

func TestProdMovedBackBehindConsDetected(t *testing.T) {
	f, b, mem := newPair(t, 1)
	f.Produce(10)
	f.Push()
	b.Consume(10) // consumed, none answered yet
	binary.LittleEndian.PutUint32(mem[offReqProd:], 5)
	if n, err := b.Unconsumed(); !errors.Is(err, ErrProdOverflow) {
		t.Fatalf("req_prod moved back behind req_cons: %d requests, %v; want ErrProdOverflow", n, err)
	}
	if _, err := b.FinalCheck(); !errors.Is(err, ErrProdOverflow) {
		t.Fatalf("FinalCheck: %v", err)
	}
}

// On an idle ring (every request answered) a req_prod moved back is also
// more than a ring ahead of the responses, modulo 2^32; the reason names
// what the front did.
func TestProdMovedBackOnAnIdleRingSaysSo(t *testing.T) {
	f, b, mem := newPair(t, 1)
	f.Produce(10)
	f.Push()
	b.Consume(10)
	b.Produce(10)
	b.Push()
	binary.LittleEndian.PutUint32(mem[offReqProd:], 8)
	_, err := b.Unconsumed()
	if !errors.Is(err, ErrProdOverflow) || !strings.Contains(err.Error(), "went back") {
		t.Fatalf("req_prod 8 after 10 answered: %v; want ErrProdOverflow saying it went back", err)
	}
}

func TestFreeRequestsAccounting(t *testing.T) {
	f, b, _ := newPair(t, 1)
	if f.Free() != 32 {
		t.Fatal(f.Free())
	}
	f.Produce(32)
	if !f.Full() || f.NextRequest() != nil {
		t.Fatal("ring should be full")
	}
	f.Push()
	n, _ := b.Unconsumed()
	b.Consume(n)
	b.Produce(5)
	b.Push()
	f.Consume(f.Unconsumed())
	if f.Free() != 5 {
		t.Fatalf("free %d, want 5", f.Free())
	}
}

func TestHostileResponseProducerClamped(t *testing.T) {
	f, _, mem := newPair(t, 1)
	f.Produce(2)
	f.Push()
	binary.LittleEndian.PutUint32(mem[offRspProd:], 1000)
	if f.Unconsumed() != 2 || !f.Overrun() {
		t.Fatalf("unconsumed %d overrun %v", f.Unconsumed(), f.Overrun())
	}
}

func TestMisalignedMemoryRejected(t *testing.T) {
	mem := make([]byte, 4097)
	if _, err := InitFront(mem[1:], testSlot); err == nil {
		t.Fatal("misaligned memory accepted")
	}
}

func TestHotPathAllocatesNothing(t *testing.T) {
	f, b, _ := newPair(t, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		f.NextRequest()[0] = 1
		f.Produce(1)
		f.Push()
		n, _ := b.Unconsumed()
		_ = b.Request(0)
		b.Consume(n)
		b.NextResponse()[0] = 2
		b.Produce(1)
		b.Push()
		f.Consume(f.Unconsumed())
		f.FinalCheck()
		b.FinalCheck()
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per round trip", allocs)
	}
}

func TestPeekRequestPair(t *testing.T) {
	f, b, _ := newPair(t, 1)
	f.NextRequest()[0] = 0xA1
	f.Produce(1)
	f.Push()
	if n, _ := b.Unconsumed(); n != 1 {
		t.Fatalf("unconsumed %d, want 1", n)
	}
	// The back may look at req_cons+1 only once Unconsumed says it is there;
	// it must be able to wait for the pair without consuming the first.
	f.NextRequest()[0] = 0xA2
	f.Produce(1)
	f.Push()
	if n, _ := b.Unconsumed(); n != 2 || b.Request(0)[0] != 0xA1 || b.Request(1)[0] != 0xA2 {
		t.Fatalf("pair not visible in order: n=%d", n)
	}
	b.Consume(2)
	if b.ReqCons() != 2 || b.Pending() != 2 {
		t.Fatalf("req_cons %d pending %d", b.ReqCons(), b.Pending())
	}
}

func TestBackAttachAfterRestartRedoesUnanswered(t *testing.T) {
	f, b, mem := newPair(t, 1)
	f.Produce(5)
	f.Push()
	b.Consume(5)
	b.Produce(2) // answered 2, crashed with 3 in flight
	b.Push()
	b2, err := AttachBack(mem, testSlot)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b2.Unconsumed(); err != nil || n != 3 || b2.ReqCons() != 2 {
		t.Fatalf("restarted back sees %d (req_cons %d), %v; want the 3 unanswered", n, b2.ReqCons(), err)
	}
}

func BenchmarkPushPop(b *testing.B) {
	f, bk, _ := newPair(b, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.NextRequest()[0] = 1
		f.Produce(1)
		f.Push()
		n, _ := bk.Unconsumed()
		bk.Consume(n)
		bk.NextResponse()[0] = 2
		bk.Produce(1)
		bk.Push()
		f.Consume(f.Unconsumed())
	}
}

func BenchmarkPushPopBatch32(b *testing.B) {
	f, bk, _ := newPair(b, 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for k := uint32(0); k < 32; k++ {
			f.RequestAt(k)[0] = 1
		}
		f.Produce(32)
		f.Push()
		n, _ := bk.Unconsumed()
		for k := uint32(0); k < n; k++ {
			_ = bk.Request(0)[0]
			bk.Consume(1)
			bk.NextResponse()[0] = 2
			bk.Produce(1)
		}
		bk.Push()
		f.Consume(f.Unconsumed())
	}
	b.SetBytes(32 * testSlot)
}

// BenchmarkRingPingPong: a front and a back goroutine, both busy-polling,
// one request in flight; ns/op is one round trip. Compare with the C ring.h
// pair of internal/cbaseline.
func BenchmarkRingPingPong(b *testing.B) {
	f, bk, _ := newPair(b, 1)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			n, err := bk.Unconsumed()
			if err != nil {
				panic(err)
			}
			if n == 0 {
				runtime.Gosched() // a loaded machine may give us one P
				continue
			}
			for ; n > 0; n-- {
				v := bk.Request(0)[0]
				bk.Consume(1)
				bk.NextResponse()[0] = v
				bk.Produce(1)
			}
			bk.Push()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.NextRequest()[0] = byte(i)
		f.Produce(1)
		f.Push()
		for f.Unconsumed() == 0 {
			runtime.Gosched()
		}
		if f.Response()[0] != byte(i) {
			b.Fatal("wrong response")
		}
		f.Consume(1)
	}
	b.StopTimer()
	stop.Store(true)
	<-done
}
