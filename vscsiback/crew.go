package vscsiback

import (
	"sync"
	"time"

	"github.com/xenblk/xenblk/scsi"
)

// crew runs the commands of one pass at once: a fixed set of helper
// goroutines per vhost, started with its ring's service and stopped with
// it, so a vhost's READs and WRITEs wait on their device side by side (a
// LUN on a disk or an NBD server gets the queue depth the guest asked)
// rather than one after another. There is no goroutine per request.
//
// A pass is fork-join: its commands are handed out, the pass's own
// goroutine runs some too, and the pass waits for all before copying
// data back and answering. So every command the ring gave is finished by
// the end of its pass, as in the serial loop: task management (which
// acts at accept, on the commands queued in the pass) and the check of
// rqids in flight see exactly what they saw before.
type crew struct {
	work chan *pending
	wg   sync.WaitGroup // the commands of the pass under way not yet run
	done sync.WaitGroup // the helpers not yet stopped
}

// startCrew starts helpers goroutines executing with q; nil when helpers
// is below 1 (every pass serial).
func startCrew(q *queue, helpers int) *crew {
	if helpers < 1 {
		return nil
	}
	c := &crew{work: make(chan *pending, len(q.pend))}
	c.done.Add(helpers)
	for range helpers {
		go func() {
			defer c.done.Done()
			for p := range c.work {
				q.execute(p)
				c.wg.Done()
			}
		}()
	}
	return c
}

// stop ends the helpers once no pass is under way.
func (c *crew) stop() {
	if c != nil {
		close(c.work)
		c.done.Wait()
	}
}

// concurrent reports whether a command may run beside the others of its
// pass: READ and WRITE, the SIMPLE tasks a guest's block layer sends,
// whose order SCSI leaves to the target. Any other command (reservations,
// mode pages, a cache sync, REPORT LUNS) makes its pass run serially, in
// ring order, so a PERSISTENT RESERVE OUT takes effect exactly between
// the commands around it.
func concurrent(op byte) bool {
	switch op {
	case scsi.OpRead6, scsi.OpRead10, scsi.OpRead12, scsi.OpRead16,
		scsi.OpWrite6, scsi.OpWrite10, scsi.OpWrite12, scsi.OpWrite16:
		return true
	}
	return false
}

// defaultCrewAfter is Config.CrewAfter's default: commands quicker than
// this (reads from the page cache or from memory) gain less from
// overlapping than waking the helpers, often on the other CPU, costs.
const defaultCrewAfter = 25 * time.Microsecond

// probeEvery: while a vhost's passes run on the crew, one in probeEvery
// runs serially to measure its pace afresh.
const probeEvery = 64

// executeAll runs every command of the pass that is to run: on the crew
// when there is one, more than one command, all of them concurrent and
// crewTurn says so; otherwise one after another in ring order, timing
// them for the vhost's pace.
func (q *queue) executeAll() {
	n, all := 0, true
	for i := range q.pend[:q.npend] {
		if p := &q.pend[i]; !p.answered && !p.failed {
			n++
			all = all && concurrent(p.plan.cdb[0])
		}
	}
	if q.crew != nil && n >= 2 && all && q.crewTurn() {
		q.runCrew(n)
		return
	}
	start := time.Now()
	for i := range q.pend[:q.npend] {
		if p := &q.pend[i]; !p.answered && !p.failed {
			q.execute(p)
		}
	}
	if n > 0 {
		q.pace += (time.Since(start)/time.Duration(n) - q.pace) / 4
	}
}

// crewTurn reports whether a pass that may use the crew does: always
// when CrewAfter is negative; otherwise while the vhost's pace (the time
// a command took, averaged over recent serial passes) is at least
// CrewAfter, except one pass in probeEvery, which runs serially to
// measure it again. Passes on the crew do not measure it: there a
// command's time includes waiting for the others' CPU.
func (q *queue) crewTurn() bool {
	if q.crewAfter < 0 {
		return true
	}
	if q.pace < q.crewAfter {
		return false
	}
	q.probe++
	return q.probe%probeEvery != 0
}

// runCrew runs the pass's n commands on the crew and waits for them.
func (q *queue) runCrew(n int) {
	c := q.crew
	c.wg.Add(n)
	for i := range q.pend[:q.npend] {
		if p := &q.pend[i]; !p.answered && !p.failed {
			c.work <- p // never blocks: the channel holds a ring's worth
		}
	}
	// The pass's goroutine helps rather than waits idle.
	for helping := true; helping; {
		select {
		case p := <-c.work:
			q.execute(p)
			c.wg.Done()
		default:
			helping = false
		}
	}
	c.wg.Wait()
}
