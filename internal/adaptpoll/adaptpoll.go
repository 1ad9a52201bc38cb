// Package adaptpoll decides how long to busy-poll a ring before sleeping
// on its event channel, adapting as KVM's halt-polling does: a poll that
// finds what it waited for doubles the window (up to its maximum), one
// that expires empty halves it, down to none; at none, every
// ProbeEvery-th poll asked for uses the full window to see whether
// polling pays again. So an end whose peer keeps it busy polls, and an
// idle one, or a machine too loaded for polling to pay, sleeps.
//
// blkback polls for requests after a pass that found work, blkfront for
// responses (a lone request's and a Batch's), vscsifront's reaper for the
// answers of the commands on its ring. The poll loops themselves
// stay with their rings; this package holds only the window.
package adaptpoll

import (
	"sync/atomic"
	"time"
)

// ProbeEvery: with the window shrunk to none, one poll in this many is
// a probe of the full window.
const ProbeEvery = 16

// Window is an adaptive poll window. Its methods may be called from
// several goroutines: concurrent updates may lose one another, which
// only delays the adaptation. The zero Window never polls; Init sets it.
type Window struct {
	max    time.Duration
	cur    atomic.Int64  // nanoseconds, 0 or in [max/8, max]
	probes atomic.Uint32 // polls asked for while cur is 0
}

// Init sets the window's maximum and starts it there. A max of zero or
// less never polls.
func (w *Window) Init(limit time.Duration) {
	w.max = limit
	w.cur.Store(int64(max(limit, 0)))
	w.probes.Store(0)
}

// Max is the window's maximum, as Init set it.
func (w *Window) Max() time.Duration { return w.max }

// Next is how long the next poll may last; 0: do not poll, sleep. The
// caller reports the poll's outcome with Hit or Miss.
func (w *Window) Next() time.Duration {
	if w.max <= 0 {
		return 0
	}
	if d := time.Duration(w.cur.Load()); d > 0 {
		return d
	}
	if w.probes.Add(1)%ProbeEvery != 0 {
		return 0
	}
	return w.max // probe: would polling pay again?
}

// Hit: the poll found what it waited for; the window doubles, to at
// least max/8 and at most max.
func (w *Window) Hit() {
	w.cur.Store(min(int64(w.max), max(2*w.cur.Load(), int64(w.max/8))))
}

// Miss: the poll expired empty; the window halves, and below max/8 it is
// none.
func (w *Window) Miss() {
	c := w.cur.Load() / 2
	if c < int64(w.max/8) {
		c = 0
	}
	w.cur.Store(c)
}
