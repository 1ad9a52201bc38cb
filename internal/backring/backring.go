// Package backring is the serve loop of a backend's ring, shared by
// blkback's queues and vscsiback's vhosts: Xen's notification scheme
// (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY by the pass, then
// RING_FINAL_CHECK_FOR_REQUESTS before sleeping) with an adaptive
// busy-poll after work, so that under load neither end makes an
// event-channel call. What a pass does with the requests is the
// driver's.
package backring

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/xenblk/xenblk/internal/adaptpoll"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/xen"
)

// ErrFatal marks a ring-level protocol violation (a req_prod claiming
// more than the ring holds): the device that owns the ring disconnects,
// only that one.
var ErrFatal = errors.New("fatal ring error")

// DefaultPoll is how long to poll after a pass that found work when the
// driver's configuration leaves it unset. Short: on a busy frontend the
// next request comes within microseconds; on an idle one it costs a few
// microseconds of CPU per burst.
const DefaultPoll = 20 * time.Microsecond

// safetyWait bounds each sleep on the event channel. It is a safety net,
// not the stop signal (closing the channel is): under the race detector
// Go's atomics are acquire/release, not sequentially consistent, so the
// ring's store-then-load notification check can miss, and the look it
// forces then finds the work.
const safetyWait = 200 * time.Millisecond

// Pass handles every request the ring holds, publishes the responses
// and notifies the frontend if it asked. handled is how many requests it
// consumed; waitPair says the frontend published only part of a request
// that spans slots (the rest's push notifies).
type Pass func() (handled int, waitPair bool, err error)

// Serve runs pass over r until pass or ch fails (a closed channel is
// xen.ErrClosed) or stop is closed (nil: never). poll bounds the
// adaptive poll window: 0 is DefaultPoll, negative never polls.
//
// After a pass that found work it keeps polling the ring for the
// window without re-arming req_event: a frontend pushing meanwhile sees
// a stale event index and sends no notification. Only when the window
// passes empty does it arm (FinalCheck) and sleep. A pass that found
// nothing (a spurious or close wake-up) arms at once: the poll follows
// work only. The window adapts (internal/adaptpoll): a ring its
// frontend keeps busy polls, an idle one, or a machine too loaded for
// polling to pay, sleeps.
func Serve(r *ring.Back, ch xen.Channel, poll time.Duration, stop <-chan struct{}, pass Pass) error {
	if poll == 0 {
		poll = DefaultPoll
	}
	var window adaptpoll.Window
	window.Init(poll)
	for {
		n, waitPair, err := pass()
		if err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		default:
		}
		if waitPair {
			if _, err := ch.Wait(safetyWait); err != nil {
				return err
			}
			continue
		}
		if n > 0 {
			if w := window.Next(); w > 0 {
				if spin(r, w) {
					window.Hit()
					continue
				}
				window.Miss()
			}
		}
		more, err := r.FinalCheck()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrFatal, err)
		}
		if more {
			continue
		}
		if _, err := ch.Wait(safetyWait); err != nil {
			return err
		}
	}
}

// Unconsumed is r.Unconsumed with a violation marked ErrFatal.
func Unconsumed(r *ring.Back) (uint32, error) {
	n, err := r.Unconsumed()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrFatal, err)
	}
	return n, nil
}

// spin busy-polls r for up to window; reports whether work arrived. The
// ring's index is a plain load; the event channel is not asked (a
// system call): nothing but ring work is signalled on it, and a close is
// seen by the Wait that follows the window. Each turn yields the
// processor, so in one process the frontend's goroutines run.
func spin(r *ring.Back, window time.Duration) bool {
	deadline := time.Now().Add(window)
	for i := 1; ; i++ {
		if n, _ := r.Unconsumed(); n > 0 {
			return true
		}
		if i%clockEvery == 0 && !time.Now().Before(deadline) {
			return false
		}
		runtime.Gosched()
	}
}

// clockEvery: spin reads the clock once in this many turns.
const clockEvery = 8
