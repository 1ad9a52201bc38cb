// Package watchq delivers one xenstore watch's events: whoever produces
// them (the simulated store under its lock, or a client connection's
// reader) must never wait on a consumer that does not read, and the
// consumer must see them in order. Push appends to an unbounded (or
// limited) queue; one pump goroutine moves the queue to the channel.
package watchq

import (
	"sync"

	"github.com/xenblk/xenblk/xen"
)

// Queue is one watch's delivery queue.
type Queue struct {
	mu      sync.Mutex
	pending []xen.WatchEvent
	limit   int // > 0: events beyond this many undelivered are dropped
	dropped uint64

	wake chan struct{}
	out  chan xen.WatchEvent
	quit chan struct{}
	once sync.Once
}

// New starts a queue and its pump.
func New() *Queue {
	q := &Queue{wake: make(chan struct{}, 1), out: make(chan xen.WatchEvent), quit: make(chan struct{})}
	go q.pump()
	return q
}

// SetLimit bounds the undelivered events; later ones are dropped (as
// xenstored drops a guest's events when it does not read its socket).
func (q *Queue) SetLimit(n int) {
	q.mu.Lock()
	q.limit = n
	q.mu.Unlock()
}

// Push queues ev without blocking; it reports false if ev was dropped.
func (q *Queue) Push(ev xen.WatchEvent) bool {
	q.mu.Lock()
	if q.limit > 0 && len(q.pending) >= q.limit {
		q.dropped++
		q.mu.Unlock()
		return false
	}
	q.pending = append(q.pending, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// Backlog reports the undelivered and the dropped event counts.
func (q *Queue) Backlog() (pending int, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending), q.dropped
}

// Events is the consumer's channel; it closes after Stop.
func (q *Queue) Events() <-chan xen.WatchEvent { return q.out }

// Stop ends delivery (idempotent); undelivered events are discarded.
func (q *Queue) Stop() { q.once.Do(func() { close(q.quit) }) }

func (q *Queue) pump() {
	defer close(q.out)
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, ev := range batch {
			select {
			case q.out <- ev:
			case <-q.quit:
				return
			}
		}
		select {
		case <-q.wake:
		case <-q.quit:
			return
		}
	}
}
