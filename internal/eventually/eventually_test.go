package eventually

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder keeps what True would have failed the test with.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestWithinSeesAConditionComeTrue(t *testing.T) {
	tries := 0
	if !Within(10*time.Second, func() bool { tries++; return tries == 5 }) {
		t.Fatal("a condition true on the 5th try was not seen")
	}
	if tries != 5 {
		t.Fatalf("tried %d times after the condition held, want 5", tries)
	}
}

func TestTrueFailsNamingWhatItWaitedFor(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	True(r, 30*time.Millisecond, "the moon to turn blue", func() bool { return false })
	if !strings.Contains(r.failed, "the moon to turn blue") {
		t.Fatalf("failure %q does not say what was awaited", r.failed)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("gave up before its timeout")
	}
	r.failed = ""
	True(r, time.Second, "something true", func() bool { return true })
	if r.failed != "" {
		t.Fatalf("failed on a true condition: %q", r.failed)
	}
}

func TestBlockedSeesAGoroutineBlocked(t *testing.T) {
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() { blockOn(ch); close(done) }()
	Blocked(t, 10*time.Second, "eventually.blockOn", "chan receive")
	close(ch)
	<-done
	r := &recorder{TB: t}
	Blocked(r, 30*time.Millisecond, "eventually.blockOn", "chan receive")
	if r.failed == "" {
		t.Fatal("saw a goroutine blocked that has returned")
	}
}

//go:noinline
func blockOn(ch chan struct{}) { <-ch }
