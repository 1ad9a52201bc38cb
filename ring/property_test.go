package ring

import (
	"encoding/binary"
	"math/rand"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// Any interleaving of produce, push, consume, respond and final checks keeps
// ring.h's invariants: the front never has more outstanding than slots, the
// back never reads a request twice or skips one, responses arrive in order,
// and after a final check that says "nothing more" the next push notifies.
func TestRingInvariantsUnderAnyInterleaving(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pages := rapid.IntRange(1, 4).Draw(t, "pages")
		mem := make([]byte, 4096*pages)
		f, _ := InitFront(mem, testSlot)
		start := rapid.Uint32().Draw(t, "start")
		binary.LittleEndian.PutUint32(mem[offReqProd:], start)
		binary.LittleEndian.PutUint32(mem[offRspProd:], start)
		binary.LittleEndian.PutUint32(mem[offReqEvent:], start+1)
		binary.LittleEndian.PutUint32(mem[offRspEvent:], start+1)
		f, _ = AttachFront(mem, testSlot, start)
		b, _ := AttachBack(mem, testSlot)
		var nextReq, gotReq, nextRsp uint32 // payload counters
		var backPending []uint32
		backArmed, frontArmed := true, true // the event index asks for the next one
		t.Repeat(map[string]func(*rapid.T){
			"produce": func(t *rapid.T) {
				if f.Free() == 0 {
					t.Skip("full")
				}
				n := rapid.Uint32Range(1, f.Free()).Draw(t, "n")
				for i := uint32(0); i < n; i++ {
					binary.LittleEndian.PutUint32(f.RequestAt(i), nextReq+i)
				}
				f.Produce(n)
				nextReq += n
				notify := f.Push()
				if backArmed && !notify {
					t.Fatal("the back end asked for a notification and did not get one")
				}
				if notify {
					backArmed = false
				}
			},
			"consume": func(t *rapid.T) {
				n, err := b.Unconsumed()
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					t.Skip("empty")
				}
				k := rapid.Uint32Range(1, n).Draw(t, "k")
				for i := uint32(0); i < k; i++ {
					v := binary.LittleEndian.Uint32(b.Request(0))
					if v != gotReq {
						t.Fatalf("request %d read where %d was due (read twice or skipped)", v, gotReq)
					}
					gotReq++
					b.Consume(1)
					backPending = append(backPending, v)
				}
			},
			"respond": func(t *rapid.T) {
				if len(backPending) == 0 {
					t.Skip("nothing to answer")
				}
				k := rapid.IntRange(1, len(backPending)).Draw(t, "k")
				for _, v := range backPending[:k] {
					binary.LittleEndian.PutUint32(b.NextResponse(), v)
					b.Produce(1)
				}
				backPending = backPending[k:]
				notify := b.Push()
				if frontArmed && !notify {
					t.Fatal("the front end asked for a notification and did not get one")
				}
				if notify {
					frontArmed = false
				}
			},
			"front-collect": func(t *rapid.T) {
				for n := f.Unconsumed(); n > 0; n-- {
					if v := binary.LittleEndian.Uint32(f.Response()); v != nextRsp {
						t.Fatalf("response %d where %d was due", v, nextRsp)
					}
					nextRsp++
					f.Consume(1)
				}
				if !f.FinalCheck() {
					frontArmed = true
				}
			},
			"back-final": func(t *rapid.T) {
				more, err := b.FinalCheck()
				if err != nil {
					t.Fatal(err)
				}
				if !more {
					backArmed = true
				}
			},
		})
		if f.Free() > f.Size() {
			t.Fatalf("free %d > size %d", f.Free(), f.Size())
		}
	})
}

// A million requests and responses between two goroutines, each side
// verifying the other's payloads with an identically seeded RNG.
func TestConcurrentMillion(t *testing.T) {
	n := 1000000
	if testing.Short() || raceEnabled {
		n = 100000
	}
	mem := make([]byte, 4096*2)
	f, _ := InitFront(mem, testSlot)
	b, _ := AttachBack(mem, testSlot)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // back end: echo each payload
		defer wg.Done()
		want := rand.New(rand.NewSource(7))
		for done := 0; done < n; {
			k, err := b.Unconsumed()
			if err != nil {
				t.Error(err)
				return
			}
			for ; k > 0; k-- {
				v := binary.LittleEndian.Uint64(b.Request(0))
				if w := want.Uint64(); v != w {
					t.Errorf("request %d: %x, want %x", done, v, w)
					return
				}
				b.Consume(1)
				binary.LittleEndian.PutUint64(b.NextResponse(), v)
				b.Produce(1)
				done++
			}
			b.Push()
		}
	}()
	gen, check := rand.New(rand.NewSource(7)), rand.New(rand.NewSource(7))
	batch := rand.New(rand.NewSource(1))
	for sent, got := 0, 0; got < n; {
		k := min(uint32(batch.Intn(40)+1), f.Free(), uint32(n-sent))
		for i := uint32(0); i < k; i++ {
			binary.LittleEndian.PutUint64(f.RequestAt(i), gen.Uint64())
		}
		f.Produce(k)
		sent += int(k)
		f.Push()
		for r := f.Unconsumed(); r > 0; r-- {
			if v, w := binary.LittleEndian.Uint64(f.Response()), check.Uint64(); v != w {
				t.Fatalf("response %d: %x, want %x", got, v, w)
			}
			f.Consume(1)
			got++
		}
	}
	wg.Wait()
}

// FuzzHostilePeer lets arbitrary bytes drive the shared indexes between
// operations: the back end must report overflow or carry on, never panic
// or touch memory outside the slots.
func FuzzHostilePeer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		mem := make([]byte, 4096)
		fr, _ := InitFront(mem, testSlot)
		b, _ := AttachBack(mem, testSlot)
		for i := 0; i+4 < len(ops); i += 5 {
			v := binary.LittleEndian.Uint32(ops[i+1:])
			switch ops[i] % 6 {
			case 0:
				binary.LittleEndian.PutUint32(mem[offReqProd:], v)
			case 1:
				binary.LittleEndian.PutUint32(mem[offRspProd:], v)
			case 2:
				n, err := b.Unconsumed()
				if err != nil {
					continue
				}
				if n > b.Size() {
					t.Fatalf("%d unconsumed in a %d-slot ring", n, b.Size())
				}
				for ; n > 0; n-- {
					_ = b.Request(0)[testSlot-1]
					b.Consume(1)
					b.NextResponse()[0] = 1
					b.Produce(1)
				}
				b.Push()
			case 3:
				if fr.Unconsumed() > fr.Size() {
					t.Fatal("front sees more responses than slots")
				}
				fr.Consume(fr.Unconsumed())
			case 4:
				if r := fr.NextRequest(); r != nil {
					r[0] = 1
					fr.Produce(1)
					fr.Push()
				}
			case 5:
				b.FinalCheck()
				fr.FinalCheck()
			}
		}
	})
}
