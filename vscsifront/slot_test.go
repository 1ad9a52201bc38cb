package vscsifront

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/vscsiif"
)

// TestSlotTranscripts runs testdata/slots.txt: a slot's life, event by
// event, on a vhost with no ring (Vhost.to, and the response and abort
// handling around it). Commands:
//
//	table  the whole state table: for each state, where each event it
//	       takes moves it
//	life   a fresh vhost of two command slots; one line each:
//	         EVENT N        slot N takes a table event (to)
//	         response N     a response with rqid N comes (complete)
//	         abort-sent N   slot N's TASK_ABORT is on the ring
//	         abort-answered the abort on the ring is answered
//	       Each line prints the slot's move and what it did: the
//	       outcome handed to the owner (token), the slot back on the
//	       free list (freed). An event the state does not take is
//	       refused (to panics), the state unchanged.
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
	v := &Vhost{log: slog.New(slog.NewTextHandler(io.Discard, nil)), slots: make([]slot, 2), free: []int{1, 0}, tmfID: 2}
	v.cond = sync.NewCond(&v.mu)
	for i := range v.slots {
		v.slots[i] = slot{state: slotlife.Free, done: make(chan struct{}, 1)}
	}
	var out strings.Builder
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
		f := strings.Fields(line)
		if len(f) == 1 && f[0] == "abort-answered" {
			ref := v.tmfCur.ref
			from := v.slots[ref].state
			v.tmfAnswered(vscsiif.ResetSuccess)
			fmt.Fprintf(&out, "%s (slot %d): %s -> %s%s\n", line, ref, from, v.slots[ref].state, effects(v, ref, from))
			continue
		}
		id := 0
		if len(f) != 2 {
			d.Fatalf(t, "line %q: want EVENT N", line)
		}
		if _, err := fmt.Sscan(f[1], &id); err != nil || id < 0 || id > 1 {
			d.Fatalf(t, "slot %q: want 0 or 1", f[1])
		}
		s := &v.slots[id]
		from := s.state
		switch f[0] {
		case "response":
			v.complete(&vscsiif.Response{RqID: uint16(id)})
		case "abort-sent":
			s.abortOut, v.tmfBusy = true, true
			v.tmfCur = tmf{act: vscsiif.ActSCSIAbort, ref: id, gen: s.gen}
		default:
			ev, ok := slotlife.ParseEvent(f[0])
			if !ok {
				d.Fatalf(t, "unknown event %q", f[0])
			}
			if _, ok := slotTable.On(from, ev); !ok {
				fmt.Fprintf(&out, "%s: refused in state %s\n", line, from)
				continue
			}
			v.to(id, ev)
		}
		fmt.Fprintf(&out, "%s: %s -> %s%s\n", line, from, s.state, effects(v, id, from))
	}
	return out.String()
}

// effects drains what slot id's move from from did: its token, and
// whether it came back to the free list.
func effects(v *Vhost, id int, from slotlife.State) string {
	var e []string
	select {
	case <-v.slots[id].done:
		e = append(e, "token")
	default:
	}
	for _, f := range v.free {
		if f == id && from != slotlife.Free {
			e = append(e, "freed")
			break
		}
	}
	if len(e) == 0 {
		return ""
	}
	return ", " + strings.Join(e, ", ")
}

// TestSlotTable: the table draws no move from or to a state that is not
// one, and exactly the moves slot.go's table draws; a new one must be
// added there and to testdata/slots.txt deliberately.
func TestSlotTable(t *testing.T) {
	if err := slotTable.Check(); err != nil {
		t.Error(err)
	}
	if n := slotTable.Moves(); n != 19 {
		t.Errorf("%d legal moves, want 19", n)
	}
}
