// Package storetest is the conformance suite every pr.Store passes (the
// memory, file and etcd stores), and the further tests of a
// pr.SharedStore seen through two clients, as two hosts see it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
)

// Run runs every test of Tests on stores newStore makes (a fresh, empty
// store for each test).
func Run(t *testing.T, newStore func(t *testing.T) pr.Store) {
	for name, test := range Tests {
		t.Run(name, func(t *testing.T) { test(t, newStore(t)) })
	}
}

// state is a small encoded state that says which step wrote it.
func state(t *testing.T, key uint64) []byte {
	t.Helper()
	b, err := pr.Encode(pr.State{Generation: uint32(key), Registrations: []pr.Registration{{Nexus: scsi.Nexus{Dom: 1, Device: "d"}, Key: key}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Tests are the conformance tests, by name.
var Tests = map[string]func(t *testing.T, s pr.Store){
	"EmptyLoad": func(t *testing.T, s pr.Store) {
		b, v, err := s.Load("lu")
		if b != nil || v != 0 || err != nil {
			t.Fatalf("Load of a unit never stored = %q, %d, %v; want nil, 0, nil", b, v, err)
		}
	},
	"SwapThenLoad": func(t *testing.T, s pr.Store) {
		v1, err := s.CompareAndSwap("lu", 0, state(t, 1))
		if err != nil || v1 == 0 {
			t.Fatalf("first CompareAndSwap = %d, %v", v1, err)
		}
		b, v, err := s.Load("lu")
		if err != nil || v != v1 || !bytes.Equal(b, state(t, 1)) {
			t.Fatalf("Load = %q, %d, %v; want %q, %d", b, v, err, state(t, 1), v1)
		}
		v2, err := s.CompareAndSwap("lu", v1, state(t, 2))
		if err != nil || v2 <= v1 {
			t.Fatalf("second CompareAndSwap = %d, %v; want a version above %d", v2, err, v1)
		}
		b, v, err = s.Load("lu")
		if err != nil || v != v2 || !bytes.Equal(b, state(t, 2)) {
			t.Fatalf("Load = %q, %d, %v; want %q, %d", b, v, err, state(t, 2), v2)
		}
	},
	"StaleVersionConflicts": func(t *testing.T, s pr.Store) {
		v1, err := s.CompareAndSwap("lu", 0, state(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CompareAndSwap("lu", 0, state(t, 9)); !errors.Is(err, pr.ErrVersionConflict) {
			t.Fatalf("CompareAndSwap from version 0 after a store: %v; want ErrVersionConflict", err)
		}
		if _, err := s.CompareAndSwap("lu", v1+1000, state(t, 9)); !errors.Is(err, pr.ErrVersionConflict) {
			t.Fatalf("CompareAndSwap from a future version: %v; want ErrVersionConflict", err)
		}
		b, v, err := s.Load("lu")
		if err != nil || v != v1 || !bytes.Equal(b, state(t, 1)) {
			t.Fatalf("after refused swaps Load = %q, %d, %v; want the first state at %d", b, v, err, v1)
		}
	},
	"UnitsAreIndependent": func(t *testing.T, s pr.Store) {
		va, err := s.CompareAndSwap("/images/a.img", 0, state(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		vb, err := s.CompareAndSwap("/images/b.img", 0, state(t, 2))
		if err != nil {
			t.Fatalf("a unit's first swap after another unit's: %v", err)
		}
		for lu, want := range map[string]struct {
			v   uint64
			key uint64
		}{"/images/a.img": {va, 1}, "/images/b.img": {vb, 2}} {
			b, v, err := s.Load(lu)
			if err != nil || v != want.v || !bytes.Equal(b, state(t, want.key)) {
				t.Errorf("Load(%s) = %q, %d, %v", lu, b, v, err)
			}
		}
	},
	"OneOfConcurrentSwapsWins": func(t *testing.T, s pr.Store) {
		const n = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		won := map[int]uint64{}
		for i := range n {
			wg.Go(func() {
				v, err := s.CompareAndSwap("lu", 0, state(t, uint64(i+1)))
				if err == nil {
					mu.Lock()
					won[i] = v
					mu.Unlock()
				} else if !errors.Is(err, pr.ErrVersionConflict) {
					t.Errorf("swap %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%d of %d swaps from version 0 stored; want exactly 1", len(won), n)
		}
		for i, v := range won {
			b, got, err := s.Load("lu")
			if err != nil || got != v || !bytes.Equal(b, state(t, uint64(i+1))) {
				t.Fatalf("Load = %q, %d, %v; want swap %d's state at %d", b, got, err, i, v)
			}
		}
	},
	"UnitOverStore": func(t *testing.T, s pr.Store) {
		u, err := pr.Open(s, "lu", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := scsi.Nexus{Dom: 1, Device: "xvda"}
		if st := Register(u, a, 0x1234); st != scsi.StatusGood {
			t.Fatalf("REGISTER: status %#x", st)
		}
		b, v, err := s.Load("lu")
		if err != nil || v == 0 {
			t.Fatalf("after REGISTER Load = %q, %d, %v", b, v, err)
		}
		got, err := pr.Decode(b)
		if err != nil || len(got.Registrations) != 1 || got.Registrations[0].Key != 0x1234 {
			t.Fatalf("stored state %+v, %v; want A's registration", got, err)
		}
	},
}

// RunShared runs every test of SharedTests; newClients makes two
// clients of one fresh, empty shared store (two hosts).
func RunShared(t *testing.T, newClients func(t *testing.T) (pr.SharedStore, pr.SharedStore)) {
	for name, test := range SharedTests {
		t.Run(name, func(t *testing.T) {
			a, b := newClients(t)
			test(t, a, b)
		})
	}
}

// SharedTests are the tests of a shared store through two clients.
var SharedTests = map[string]func(t *testing.T, a, b pr.SharedStore){
	"SwapSeenByOtherClient": func(t *testing.T, a, b pr.SharedStore) {
		v, err := a.CompareAndSwap("lu", 0, state(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		got, gv, err := b.Load("lu")
		if err != nil || gv != v || !bytes.Equal(got, state(t, 1)) {
			t.Fatalf("other client's Load = %q, %d, %v; want %d", got, gv, err, v)
		}
		if _, err := b.CompareAndSwap("lu", 0, state(t, 2)); !errors.Is(err, pr.ErrVersionConflict) {
			t.Fatalf("other client's stale swap: %v; want ErrVersionConflict", err)
		}
		if _, err := b.CompareAndSwap("lu", v, state(t, 2)); err != nil {
			t.Fatalf("other client's current swap: %v", err)
		}
	},
	"WatchDeliversEveryChangeInOrder": func(t *testing.T, a, b pr.SharedStore) {
		// Watching from a version the test stored: nothing after it
		// can be missed, however late the watch starts.
		v, err := a.CompareAndSwap("first", 0, state(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		changes := watch(t, b, v)
		var versions []uint64
		for i := range 10 {
			lu := fmt.Sprintf("lu%d", i%3)
			_, cur, err := a.Load(lu)
			if err != nil {
				t.Fatal(err)
			}
			if v, err = a.CompareAndSwap(lu, cur, state(t, uint64(i+2))); err != nil {
				t.Fatal(err)
			}
			versions = append(versions, v)
		}
		for i, want := range versions {
			c := next(t, changes)
			if c.Version != want || c.LU != fmt.Sprintf("lu%d", i%3) || c.State.Generation != uint32(i+2) {
				t.Fatalf("change %d = %s at %d (generation %d); want lu%d at %d", i, c.LU, c.Version, c.State.Generation, i%3, want)
			}
		}
	},
	"WatchFromVersionReplays": func(t *testing.T, a, b pr.SharedStore) {
		v1, err := a.CompareAndSwap("lu", 0, state(t, 1))
		if err != nil {
			t.Fatal(err)
		}
		v2, err := a.CompareAndSwap("lu", v1, state(t, 2))
		if err != nil {
			t.Fatal(err)
		}
		changes := watch(t, b, v1)
		if c := next(t, changes); c.Version != v2 || c.State.Generation != 2 {
			t.Fatalf("watch from %d: first change %+v; want generation 2 at %d", v1, c, v2)
		}
	},
}

// watch runs s.Watch from version from until t's cleanup, and returns
// the changes it delivers.
func watch(t *testing.T, s pr.SharedStore, from uint64) <-chan pr.Change {
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan pr.Change, 64)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, from, func(c pr.Change) {
			select {
			case changes <- c:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return changes
}

// nextTimeout bounds the wait for a change a test knows was stored.
const nextTimeout = 30 * time.Second

func next(t *testing.T, ch <-chan pr.Change) pr.Change {
	t.Helper()
	timer := time.NewTimer(nextTimeout)
	defer timer.Stop()
	select {
	case c := <-ch:
		return c
	case <-timer.C:
		t.Fatalf("no change delivered within %v", nextTimeout)
		return pr.Change{}
	}
}

// Register sends PERSISTENT RESERVE OUT REGISTER (service action key
// key, APTPL) from n to u and returns the status.
func Register(u *pr.Unit, n scsi.Nexus, key uint64) byte {
	p := pr.OutParams{SAKey: key, APTPL: true}
	param := p.Append(nil, pr.OutRegister)
	c := pr.OutCommand{Action: pr.OutRegister, ParamLen: uint32(len(param))}
	cdb := c.CDB()
	var res scsi.Result
	u.Execute(n, &scsi.Command{CDB: cdb[:], Dir: scsi.DirToDevice, Data: param}, &res, false)
	return res.Status
}
