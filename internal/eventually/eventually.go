// Package eventually is the tests' one way to wait for something another
// goroutine or process makes true: a condition polled with a short
// backoff, or a goroutine seen blocked where the test needs it, each with
// a deadline so that no wait hangs.
package eventually

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// backoff bounds the pause between two tries: short at first (most
// conditions come true within a few milliseconds), capped so that a slow
// one costs the CI box little.
const (
	firstPause = time.Millisecond
	maxPause   = 50 * time.Millisecond
)

// Within tries cond until it holds (true) or timeout has passed (false).
// cond is tried once more after the deadline, so a condition that came
// true during the last pause is not missed. cond runs on the caller's
// goroutine: it may call t.Fatal.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := firstPause
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPause)
	}
}

// True waits like Within and fails t, saying what it waited for, when
// cond does not hold within timeout.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("not within %v: %s", timeout, what)
	}
}

// Blocked waits until some goroutine is blocked in a frame whose name
// contains fn, with state (e.g. "chan receive", "sync.Cond.Wait",
// "IO wait", "syscall") at the start of its status. A test that must act
// while a call is blocked (close under a Wait, cancel under a Reap)
// waits for this instead of guessing how long the call takes to block.
func Blocked(t testing.TB, timeout time.Duration, fn, state string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	True(t, timeout, "a goroutine blocked ["+state+"] in "+fn, func() bool {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			header, frames, _ := strings.Cut(g, "\n")
			// The "created by" line names the goroutine's creator, not
			// a frame it is in.
			frames, _, _ = strings.Cut(frames, "\ncreated by ")
			if strings.Contains(header, "["+state) && strings.Contains(frames, fn) {
				return true
			}
		}
		return false
	})
}
