package watchq

import (
	"fmt"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
)

func TestOrderWithoutBlockingTheProducer(t *testing.T) {
	q := New()
	defer q.Stop()
	const n = 10000
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			q.Push(xen.WatchEvent{Path: fmt.Sprint(i)})
		}
		close(done)
	}()
	select {
	case <-done: // nobody read yet: the producer never waited
	case <-time.After(5 * time.Second):
		t.Fatal("Push blocked on a consumer that does not read")
	}
	for i := 0; i < n; i++ {
		if ev := <-q.Events(); ev.Path != fmt.Sprint(i) {
			t.Fatalf("event %d is %q", i, ev.Path)
		}
	}
}

func TestLimitDropsAndStopCloses(t *testing.T) {
	q := New()
	q.SetLimit(3)
	// The pump may take one event into its hand before the limit bites;
	// what matters is that the backlog stays bounded and drops are counted.
	for i := 0; i < 100; i++ {
		q.Push(xen.WatchEvent{Path: "x"})
	}
	if pending, dropped := q.Backlog(); pending > 3 || dropped < 90 {
		t.Fatalf("backlog %d, dropped %d", pending, dropped)
	}
	q.Stop()
	q.Stop()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-q.Events():
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel did not close after Stop")
		}
	}
}
