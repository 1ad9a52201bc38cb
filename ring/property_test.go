package ring

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/xenblk/xenblk/internal/shmem"
)

// load32 and store32 read and write a header index as the other end does.
func load32(mem []byte, off int) uint32     { return shmem.MustUint32(mem, off).Load() }
func store32(mem []byte, off int, v uint32) { shmem.MustUint32(mem, off).Store(v) }

// model is the reference for the property test: the same ring in
// unbounded int64 counts (relative to the starting index), where "notify"
// is simply "the event index lies in (old, new]" — no modular arithmetic.
type model struct {
	size                      int64
	reqPvt, reqProd, reqEvent int64 // front produces requests
	reqCons                   int64
	rspPvt, rspProd, rspEvent int64 // back produces responses
	rspCons                   int64
}

func crossed(old, event, nw int64) bool { return old < event && event <= nw }

// Any interleaving of fill, push, consume, respond and final checks keeps
// ring.h's invariants: the front never has more outstanding than slots, the
// back never reads a request twice or skips one, responses arrive in order,
// and every notify and final-check decision equals the reference model's.
func TestRingInvariantsUnderAnyInterleaving(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pages := rapid.SampledFrom([]int{1, 2, 4, 16}).Draw(t, "pages")
		slotSize := rapid.SampledFrom([]int{testSlot, 108, 64}).Draw(t, "slot")
		mem := make([]byte, 4096*pages)
		// Half the runs start just below 2^32 so the indexes wrap.
		start := rapid.OneOf(rapid.Uint32(), rapid.Uint32Range(0xFFFFFF00, 0xFFFFFFFF)).Draw(t, "start")
		binary.LittleEndian.PutUint32(mem[offReqProd:], start)
		binary.LittleEndian.PutUint32(mem[offRspProd:], start)
		binary.LittleEndian.PutUint32(mem[offReqEvent:], start+1)
		binary.LittleEndian.PutUint32(mem[offRspEvent:], start+1)
		f, err := AttachFront(mem, slotSize, start)
		if err != nil {
			t.Fatal(err)
		}
		b, err := AttachBack(mem, slotSize)
		if err != nil {
			t.Fatal(err)
		}
		m := model{size: int64(f.Size()), reqEvent: 1, rspEvent: 1}
		var backPending []uint32 // payloads consumed, not yet answered
		t.Repeat(map[string]func(*rapid.T){
			"fill": func(t *rapid.T) {
				if f.Free() == 0 {
					t.Skip("full")
				}
				n := rapid.Uint32Range(1, f.Free()).Draw(t, "n")
				for i := uint32(0); i < n; i++ {
					binary.LittleEndian.PutUint32(f.RequestAt(i), uint32(m.reqPvt)+i)
				}
				if f.RequestAt(n-1) == nil || (n < f.Free()) != (f.RequestAt(n) != nil) {
					t.Fatal("RequestAt disagrees with Free")
				}
				f.Produce(n)
				m.reqPvt += int64(n)
			},
			"push-requests": func(t *rapid.T) {
				want := crossed(m.reqProd, m.reqEvent, m.reqPvt)
				if got := f.Push(); got != want {
					t.Fatalf("push %d..%d with req_event %d: notify %v, model %v", m.reqProd, m.reqPvt, m.reqEvent, got, want)
				}
				m.reqProd = m.reqPvt
			},
			"consume": func(t *rapid.T) {
				n, err := b.Unconsumed()
				if err != nil {
					t.Fatal(err)
				}
				if int64(n) != m.reqProd-m.reqCons {
					t.Fatalf("back sees %d requests, model %d", n, m.reqProd-m.reqCons)
				}
				if n == 0 {
					t.Skip("empty")
				}
				if n >= 2 && binary.LittleEndian.Uint32(b.Request(1)) != uint32(m.reqCons)+1 {
					t.Fatal("peek at req_cons+1 does not show the next request")
				}
				k := rapid.Uint32Range(1, n).Draw(t, "k")
				for i := uint32(0); i < k; i++ {
					v := binary.LittleEndian.Uint32(b.Request(0))
					if v != uint32(m.reqCons) {
						t.Fatalf("request %d read where %d was due (read twice or skipped)", v, m.reqCons)
					}
					m.reqCons++
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
				m.rspPvt += int64(k)
				backPending = backPending[k:]
			},
			"push-responses": func(t *rapid.T) {
				want := crossed(m.rspProd, m.rspEvent, m.rspPvt)
				if got := b.Push(); got != want {
					t.Fatalf("push responses %d..%d with rsp_event %d: notify %v, model %v", m.rspProd, m.rspPvt, m.rspEvent, got, want)
				}
				m.rspProd = m.rspPvt
			},
			"front-collect": func(t *rapid.T) {
				n := f.Unconsumed()
				if int64(n) != m.rspProd-m.rspCons || f.Overrun() {
					t.Fatalf("front sees %d responses, model %d", n, m.rspProd-m.rspCons)
				}
				k := rapid.Uint32Range(0, n).Draw(t, "k")
				for ; k > 0; k-- {
					if v := binary.LittleEndian.Uint32(f.Response()); v != uint32(m.rspCons) {
						t.Fatalf("response %d where %d was due", v, m.rspCons)
					}
					m.rspCons++
					f.Consume(1)
				}
			},
			"front-final": func(t *rapid.T) {
				want := m.rspProd > m.rspCons
				if !want {
					m.rspEvent = m.rspCons + 1
				}
				if got := f.FinalCheck(); got != want {
					t.Fatalf("front final check %v, model %v", got, want)
				}
			},
			"back-final": func(t *rapid.T) {
				want := m.reqProd > m.reqCons
				if !want {
					m.reqEvent = m.reqCons + 1
				}
				more, err := b.FinalCheck()
				if err != nil || more != want {
					t.Fatalf("back final check %v %v, model %v", more, err, want)
				}
			},
			"": func(t *rapid.T) {
				if int64(f.Free()) != m.size-(m.reqPvt-m.rspCons) || f.Free() > f.Size() {
					t.Fatalf("free %d, model %d", f.Free(), m.size-(m.reqPvt-m.rspCons))
				}
				if int64(b.Pending()) != m.reqCons-m.rspPvt {
					t.Fatalf("back pending %d, model %d", b.Pending(), m.reqCons-m.rspPvt)
				}
				if got := [4]uint32{load32(mem, offReqProd), load32(mem, offReqEvent), load32(mem, offRspProd), load32(mem, offRspEvent)}; got != [4]uint32{start + uint32(m.reqProd), start + uint32(m.reqEvent), start + uint32(m.rspProd), start + uint32(m.rspEvent)} {
					t.Fatalf("shared header %v disagrees with the model %+v", got, m)
				}
			},
		})
	})
}

// A million requests and responses (fewer under -race) between two
// goroutines that sleep on event channels exactly when the final checks
// allow: every slot byte is checked against an identically seeded RNG on
// the other side, batch sizes are random on both sides, the indexes cross
// 2^32, and a lost wakeup shows up as a timeout instead of a hang.
func TestConcurrentMillion(t *testing.T) {
	n := 1000000
	if testing.Short() || raceEnabled {
		n = 100000
	}
	mem := make([]byte, 4096*2)
	start := uint32(0xFFFFFFFF - 5000)
	binary.LittleEndian.PutUint32(mem[offReqProd:], start)
	binary.LittleEndian.PutUint32(mem[offRspProd:], start)
	binary.LittleEndian.PutUint32(mem[offReqEvent:], start+1)
	binary.LittleEndian.PutUint32(mem[offRspEvent:], start+1)
	f, _ := AttachFront(mem, testSlot, start)
	b, _ := AttachBack(mem, testSlot)
	toBack, toFront := make(chan struct{}, 1), make(chan struct{}, 1)
	kick := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default: // already pending: notifications coalesce
		}
	}
	var failed atomic.Bool
	sleep := func(c chan struct{}) bool {
		select {
		case <-c:
			return !failed.Load()
		case <-time.After(20 * time.Second):
			failed.Store(true)
			return false
		}
	}
	var backErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer kick(toFront)
		reqs, rsps := rand.New(rand.NewSource(7)), rand.New(rand.NewSource(8))
		batch := rand.New(rand.NewSource(2))
		want := make([]byte, testSlot)
		for done := 0; done < n && !failed.Load(); {
			avail, err := b.Unconsumed()
			if err != nil {
				backErr = err
				failed.Store(true)
				return
			}
			if avail == 0 {
				more, err := b.FinalCheck()
				if err == nil && !more && !sleep(toBack) {
					backErr = fmt.Errorf("back end: no notification after %d requests (lost wakeup)", done)
					return
				}
				continue
			}
			for k := min(avail, uint32(batch.Intn(48)+1)); k > 0; k-- {
				reqs.Read(want)
				if !bytes.Equal(b.Request(0), want) {
					backErr = fmt.Errorf("request %d: slot differs from what the front wrote", done)
					failed.Store(true)
					return
				}
				b.Consume(1)
				rsps.Read(b.NextResponse())
				b.Produce(1)
				done++
			}
			if b.Push() {
				kick(toFront)
			}
		}
	}()
	reqs, rsps := rand.New(rand.NewSource(7)), rand.New(rand.NewSource(8))
	batch := rand.New(rand.NewSource(1))
	want := make([]byte, testSlot)
	notifies := 0
	for sent, got := 0, 0; got < n && !failed.Load(); {
		if k := min(uint32(batch.Intn(40)+1), f.Free(), uint32(n-sent)); k > 0 {
			for i := uint32(0); i < k; i++ {
				reqs.Read(f.RequestAt(i))
			}
			f.Produce(k)
			sent += int(k)
			if f.Push() {
				notifies++
				kick(toBack)
			}
		}
		r := f.Unconsumed()
		for ; r > 0; r-- {
			rsps.Read(want)
			if !bytes.Equal(f.Response(), want) {
				failed.Store(true)
				t.Fatalf("response %d: slot differs from what the back wrote", got)
			}
			f.Consume(1)
			got++
		}
		// Sleep when the ring is full, everything is sent, or (one time in
		// four, as a client with little in flight) whenever a request is
		// outstanding: small pushes then depend on the hold-off being exact.
		idle := f.Free() == 0 || sent == n || batch.Intn(4) == 0
		if idle && got < sent && !f.FinalCheck() && !sleep(toFront) {
			failed.Store(true)
			t.Errorf("front end: no notification after %d responses (lost wakeup)", got)
		}
	}
	failed.Store(true) // release the back end if the front stopped early
	kick(toBack)
	wg.Wait()
	if backErr != nil {
		t.Fatal(backErr)
	}
	if load32(mem, offReqProd) != start+uint32(n) || notifies == 0 {
		t.Fatalf("req_prod %#x after %d requests from %#x, %d notifications", load32(mem, offReqProd), n, start, notifies)
	}
}

// FuzzHostilePeer lets arbitrary bytes play the other end: between the
// honest half's operations they overwrite any shared index (producer or
// event). The honest halves must report overflow or carry on, never panic,
// never see more than a ring's worth, and never write outside the slots
// (the header's private padding and the tail past the last slot stay zero).
func FuzzHostilePeer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 1, 1, 1})
	f.Add([]byte{4, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 7, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		mem := make([]byte, 4096)
		fr, err := InitFront(mem, testSlot)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := AttachBack(mem, testSlot)
		slotsEnd := HeaderSize + int(b.Size())*testSlot
		fill := func(p []byte) {
			for i := range p {
				p[i] = 0xAA
			}
		}
		for i := 0; i+4 < len(ops); i += 5 {
			v := binary.LittleEndian.Uint32(ops[i+1:])
			switch ops[i] % 9 {
			case 0, 1, 2, 3: // the hostile peer writes one shared index
				store32(mem, int(ops[i]%4)*4, v)
			case 4: // back end: serve what it is offered, peeking at pairs
				n, err := b.Unconsumed()
				if err != nil {
					continue
				}
				if n > b.Size() || b.Pending()+n > b.Size() {
					t.Fatalf("%d unconsumed, %d pending in a %d-slot ring", n, b.Pending(), b.Size())
				}
				for ; n > 0; n-- {
					if n >= 2 {
						_ = b.Request(1)[testSlot-1]
					}
					_ = b.Request(0)[testSlot-1]
					b.Consume(1)
					fill(b.NextResponse())
					b.Produce(1)
				}
				b.Push()
			case 5:
				if fr.Unconsumed() > fr.Size() {
					t.Fatal("front sees more responses than slots")
				}
				for n := fr.Unconsumed(); n > 0; n-- {
					_ = fr.Response()[testSlot-1]
					fr.Consume(1)
				}
			case 6:
				for k := v % 8; k > 0; k-- {
					r := fr.NextRequest()
					if r == nil {
						break
					}
					fill(r)
					fr.Produce(1)
				}
				fr.Push()
			case 7:
				b.FinalCheck()
				fr.FinalCheck()
			case 8: // a back end restarted on whatever the indexes say
				b, _ = AttachBack(mem, testSlot)
			}
			for _, c := range append(mem[16:HeaderSize:HeaderSize], mem[slotsEnd:]...) {
				if c != 0 {
					t.Fatal("a write landed outside the slot area")
				}
			}
		}
	})
}
