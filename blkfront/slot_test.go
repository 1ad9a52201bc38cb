package blkfront

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/xenblk/xenblk/internal/slotlife"
)

// TestSlotTranscripts runs testdata/slots.txt: a slot's life, event by
// event, on a queue with no ring (queue.to alone: the state table and
// what a new state asks of the queue). Commands:
//
//	table            the whole state table: for each state, where each
//	                 event it takes moves it
//	life [batch]     a fresh queue of two slots and four pool pages; one
//	                 event per line, "event" for slot 0 or "event N" for
//	                 slot N, "scsi" making slot 0 a SCSI request paired
//	                 with slot 1. Each line prints the move, and what
//	                 it did: the outcome handed out (a done token, or with
//	                 batch the batch's ready list), the slot (and its
//	                 pages) freed. An event the state does not take is
//	                 refused (queue.to panics), the state unchanged.
func TestSlotTranscripts(t *testing.T) {
	datadriven.RunTest(t, "testdata/slots.txt", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "table":
			return slotTable.String()
		case "life":
			return slotLife(t, d)
		default:
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		}
	})
}

func slotLife(t *testing.T, d *datadriven.TestData) string {
	q := &queue{slots: make([]slot, 2), freePage: []int{3, 2, 1, 0}}
	q.cond = sync.NewCond(&q.mu)
	for i := range q.slots {
		q.slots[i].state.Store(uint32(slotlife.Free))
		q.slots[i].done = make(chan struct{}, 1)
	}
	q.free = []int{1, 0}
	var b *Batch
	if d.HasArg("batch") {
		b = &Batch{q: q, readyIDs: make([]int, 0, 2), wake: make(chan struct{}, 1)}
	}
	var out strings.Builder
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 && f[0] == "scsi" {
			q.slots[0].kind, q.slots[0].partner = kindSCSI, 1
			fmt.Fprintf(&out, "scsi: slot 0 pairs with slot 1\n")
			continue
		}
		id := 0
		if len(f) == 2 {
			if _, err := fmt.Sscan(f[1], &id); err != nil || id < 0 || id > 1 {
				d.Fatalf(t, "slot %q: want 0 or 1", f[1])
			}
		} else if len(f) != 1 {
			d.Fatalf(t, "%q: want an event and maybe a slot", line)
		}
		ev, ok := slotlife.ParseEvent(f[0])
		if !ok {
			d.Fatalf(t, "unknown event %q", f[0])
		}
		s := &q.slots[id]
		if _, ok := slotTable.On(s.load(), ev); !ok && (ev == slotlife.Take || ev == slotlife.Pair) {
			fmt.Fprintf(&out, "%s %d: %s refuses it\n", ev, id, s.load())
			continue
		}
		if ev == slotlife.Take {
			// Take as queue.take does, with two pages, for the batch if any.
			q.free = removeID(q.free, id)
			q.takeSlot(id, 2)
			s.batch = b
			fmt.Fprintf(&out, "take %d: free -> %s, pages %v\n", id, s.load(), s.pages)
			continue
		}
		if ev == slotlife.Pair {
			q.free = removeID(q.free, id)
		}
		from := s.load()
		frees, ready, token := len(q.free), len(readyOf(b)), len(s.done)
		next, refused := slotMove(q, id, ev)
		if refused {
			fmt.Fprintf(&out, "%s %d: %s refuses it\n", ev, id, from)
			continue
		}
		fmt.Fprintf(&out, "%s %d: %s -> %s", ev, id, from, next)
		if len(s.done) > token {
			out.WriteString(", token sent")
		}
		if len(readyOf(b)) > ready {
			fmt.Fprintf(&out, ", ready list %v", readyOf(b))
		}
		if len(q.free) > frees {
			fmt.Fprintf(&out, ", freed: free slots %v, free pages %d", q.free, len(q.freePage))
		}
		out.WriteString("\n")
	}
	return out.String()
}

// slotMove is q.to, reporting a refused event instead of panicking.
func slotMove(q *queue, id int, ev slotlife.Event) (next slotlife.State, refused bool) {
	defer func() {
		if recover() != nil {
			refused = true
		}
	}()
	return q.to(id, ev), false
}

func readyOf(b *Batch) []int {
	if b == nil {
		return nil
	}
	return b.readyIDs
}

func removeID(ids []int, id int) []int {
	for i, v := range ids {
		if v == id {
			return append(ids[:i:i], ids[i+1:]...)
		}
	}
	return ids
}

// TestSlotTable: the table draws no move from or to a state that is
// not one, and exactly the moves slot.go's table draws; a new one must be
// added there and to testdata/slots.txt deliberately.
func TestSlotTable(t *testing.T) {
	if err := slotTable.Check(); err != nil {
		t.Error(err)
	}
	if n := slotTable.Moves(); n != 24 {
		t.Errorf("%d legal moves, want 24", n)
	}
}
