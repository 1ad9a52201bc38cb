package xenbus

import (
	"sync"
	"testing"
)

// TestCrashClosesOnceAndWaits: the channel is the same before and after
// Do; Do closes it and runs then once, however many call it, and none
// returns before then has.
func TestCrashClosesOnceAndWaits(t *testing.T) {
	var c Crash
	ch := c.Chan()
	runs := 0
	release := make(chan struct{})
	var wg sync.WaitGroup
	returned := make(chan struct{}, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Do(func() { <-release; runs++ })
			returned <- struct{}{}
		}()
	}
	<-ch // closed before then runs
	if len(returned) != 0 {
		t.Fatal("Do returned before then did")
	}
	close(release)
	wg.Wait()
	if runs != 1 || c.Chan() != ch {
		t.Fatalf("then ran %d times; channel changed: %v", runs, c.Chan() != ch)
	}
	c.Do(nil)
}
