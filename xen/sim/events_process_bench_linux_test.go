package sim

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkEventPingPongCrossProcess is BenchmarkEventPingPong with the
// two ends in two processes (this one attached as dom0, a child as the
// guest), as blkback and blkfront are in xenblk bench --cross-process:
// every wake-up is a thread of another process woken by the kernel.
func BenchmarkEventPingPongCrossProcess(b *testing.B) {
	for _, role := range []string{"pingpong", "relay"} {
		b.Run(role, func(b *testing.B) { benchPingPong(b, role) })
	}
}

// benchPingPong pings a child in role: pingpong answers from the
// goroutine that Wait woke; relay from another goroutine it hands the
// wake-up to, as blkfront's event goroutine wakes a request's (a waiter
// that kept the thread's scheduler slot while it sleeps would stall it).
func benchPingPong(b *testing.B, role string) {
	ch, c := startPingPong(b, role, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ch.Notify(); err != nil {
			b.Fatal(err)
		}
		if ok, err := ch.Wait(10 * time.Second); err != nil || !ok {
			b.Fatalf("ping %d lost: signalled %v, %v", i, ok, err)
		}
	}
	b.StopTimer()
	fmt.Fprintln(c.in, "bye")
	c.wait(b)
}
