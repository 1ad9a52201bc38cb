package vscsiback

import "time"

// Concurrent is concurrent, for the external tests.
var Concurrent = concurrent

// CrewTurns runs crewTurn passes times on a queue whose CrewAfter is
// after and whose pace is pace, and says how many used the crew.
func CrewTurns(after, pace time.Duration, passes int) int {
	q := &queue{crewAfter: after, pace: pace}
	n := 0
	for range passes {
		if q.crewTurn() {
			n++
		}
	}
	return n
}
