package reaper

import (
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// channel is an event channel whose Wait answers as told: at once with
// next, or, when block is set, not before Close.
type channel struct {
	xen.Channel
	next    error
	block   bool
	once    sync.Once
	closed  chan struct{}
	timeout time.Duration
}

func newChannel() *channel { return &channel{closed: make(chan struct{})} }

func (c *channel) Wait(timeout time.Duration) (bool, error) {
	c.timeout = timeout
	if c.block {
		<-c.closed
		return false, xen.ErrClosed
	}
	return c.next == nil, c.next
}

func (c *channel) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// TestSleep: a notification or the safety net's timeout has the reaper
// look again; a failing channel ends it, lost unless it was stopped.
func TestSleep(t *testing.T) {
	open, closed := make(chan struct{}), make(chan struct{})
	close(closed)
	for _, c := range []struct {
		name        string
		err         error
		stop        chan struct{}
		again, lost bool
	}{
		{name: "signalled", stop: open, again: true},
		{name: "failed, not stopped", err: xen.ErrClosed, stop: open, lost: true},
		{name: "failed, stopped", err: xen.ErrClosed, stop: closed},
	} {
		ch := newChannel()
		ch.next = c.err
		again, lost := Sleep(ch, c.stop)
		if again != c.again || lost != c.lost {
			t.Errorf("%s: again %v lost %v, want %v %v", c.name, again, lost, c.again, c.lost)
		}
		if ch.timeout != SafetyNet {
			t.Errorf("%s: waited %v, want SafetyNet", c.name, ch.timeout)
		}
	}
}

// TestStopEndsASleepingReaper: Stop closes stop and the channel, so a
// reaper asleep in Sleep ends, not lost, before Stop returns; with
// nothing started, Stop does nothing.
func TestStopEndsASleepingReaper(t *testing.T) {
	ch := newChannel()
	ch.block = true
	stop, reaped := make(chan struct{}), make(chan struct{})
	var lost bool
	go func() {
		defer close(reaped)
		for {
			again, l := Sleep(ch, stop)
			if !again {
				lost = l
				return
			}
		}
	}()
	Stop(stop, reaped, ch)
	if lost {
		t.Error("a stopped reaper says the backend went away")
	}
	Stop(nil, nil, nil)
}

// TestPoll: Poll ends at the look that finds work, and otherwise at the
// first reading of a closed stop or a passed deadline, which it makes
// once in pollEvery looks.
func TestPoll(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	future := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name     string
		stop     chan struct{}
		deadline time.Time
		findAt   int // the look that finds work; 0: none does
		want     bool
		looks    int
	}{
		{"found at once", nil, future, 1, true, 1},
		{"found later", nil, future, 20, true, 20},
		{"found before the stop is read", closed, future, 3, true, 3},
		{"stop read at the eighth look", closed, future, 0, false, pollEvery},
		{"deadline read at the eighth look", nil, time.Now(), 0, false, pollEvery},
		{"found at the look that would read the deadline", nil, time.Now(), pollEvery, true, pollEvery},
	} {
		t.Run(tc.name, func(t *testing.T) {
			looks := 0
			got := Poll(tc.stop, tc.deadline, func() bool {
				looks++
				return looks == tc.findAt
			})
			if got != tc.want || looks != tc.looks {
				t.Fatalf("Poll: %v after %d looks, want %v after %d", got, looks, tc.want, tc.looks)
			}
		})
	}
}
