package vscsifront

import (
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
)

// slot is one command's place in the vhost: its index is the rqid of its
// request on the ring. There are more slots than the ring has room for
// (Config.QueueDepth): a submitted slot waits in the vhost's pending
// queue until the ring has room, and the ring never overflows because
// only issuePending writes commands on it, within ringRoom. Everything a
// slot needs is allocated when the vhost is built.
type slot struct {
	state slotlife.State
	done  chan struct{} // buffered(1): the outcome is there for the owner
	addr  vscsibus.VDev // the LUN addressed
	req   vscsiif.Request
	rsp   vscsiif.Response
	pages []int // pool pages holding the data, in order
	// dataLen is the command's data length, in pages.
	dataLen int
	// gen counts the slot's lives, so that an abort queued for one life
	// never reaches the next.
	gen uint32
	// Orphaned only: answered, the command's response came; abortOut, its
	// TASK_ABORT is on the ring. The slot is free once the first holds
	// and the second does not: the backend may still write the pages
	// until it answered the command, and an abort answered after the
	// slot's rqid was reused would name the wrong command.
	answered, abortOut bool
}

// slotTable is a vscsifront slot's life: slotlife.Core, and more. Abort
// is the vhost's removal, and an orphan stays orphaned through its answer
// and a removal (see slot.answered) until released. testdata/slots.txt prints it whole.
var slotTable = func() slotlife.Table {
	t := slotlife.Core()
	t[slotlife.Orphaned][slotlife.Answer] = slotlife.Orphaned // recorded in answered; freed by release
	t[slotlife.Orphaned][slotlife.Abort] = slotlife.Orphaned
	t[slotlife.Orphaned][slotlife.Release] = slotlife.Free
	// A command pending for room on the ring may be answered without
	// reaching it: too large for the backend's new limit, or cleared by
	// a reset of its LUN (Vhost.answerLocally).
	t[slotlife.Submitted][slotlife.Answer] = slotlife.Answered
	// An answered slot keeps its outcome through a removal (Answered
	// takes no abort): its owner may be reading it without the lock.
	return t
}()

// owned reports whether a slot in state s belongs to a caller, who may
// be touching its pages: the pool stays granted while any does.
func owned(s slotlife.State) bool {
	return s != slotlife.Free && s != slotlife.Orphaned && s != slotlife.None
}
