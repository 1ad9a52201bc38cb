// Package reaper is what a frontend's reaper (the one goroutine per
// connection that sleeps on the event channel, so that a response nobody
// polls for still reaches its owner) does at its edges: poll the ring a
// while for responses before it sleeps, sleep until the backend's next
// notification, and be stopped. blkfront's queues and vscsifront's vhosts
// both run one.
package reaper

import (
	"runtime"
	"time"

	"github.com/xenblk/xenblk/xen"
)

// SafetyNet bounds each sleep. It is not the stop signal (Stop closes
// the channel, which ends a Wait at once): under the race detector Go's
// atomics are acquire/release, not sequentially consistent, so the ring's
// store-then-load notification check can miss, and the look the timeout
// forces then finds the work.
const SafetyNet = 500 * time.Millisecond

// Sleep waits on ch for the backend's next notification, at most
// SafetyNet. again: the reaper looks at the ring again. Otherwise it must
// end, and lost says why: the channel failed under a reaper that was not
// stopped, so the backend went away; not lost, Stop closed it.
func Sleep(ch xen.Channel, stop <-chan struct{}) (again, lost bool) {
	if _, err := ch.Wait(SafetyNet); err == nil {
		return true, false
	}
	select {
	case <-stop:
		return false, false
	default:
		return false, true
	}
}

// Stop ends a reaper started with stop, ch and reaped (which the reaper
// closes as it returns): it closes stop, then ch, which wakes a Sleep, and
// waits until the reaper has returned. A nil one is skipped: nothing of it
// was started.
func Stop(stop, reaped chan struct{}, ch xen.Channel) {
	if stop != nil {
		close(stop)
	}
	if ch != nil {
		_ = ch.Close()
	}
	if reaped != nil {
		<-reaped
	}
}

// Poll calls look, yielding the processor before each call, until it
// reports true (Poll then does too), deadline passes or stop closes. The
// clock and stop are read once in pollEvery looks: a look is a load of
// the ring's index, far cheaper than either.
func Poll(stop <-chan struct{}, deadline time.Time, look func() bool) bool {
	for i := 1; ; i++ {
		runtime.Gosched()
		if look() {
			return true
		}
		if i%pollEvery == 0 {
			select {
			case <-stop:
				return false
			default:
			}
			if !time.Now().Before(deadline) {
				return false
			}
		}
	}
}

// pollEvery: Poll reads the clock and stop once in this many looks.
const pollEvery = 8
