package vscsifront

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/internal/slotlife"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// TestQueueTranscripts runs testdata/queue.txt: commands queued beyond
// the ring's room, on a vhost whose ring is a plain buffer with a
// hand-driven backend at its other end and no reaper (the transcript
// collects where the reaper would). Commands:
//
//	queue slots=N ring=R   a vhost of N command slots on a ring of R
//	                       slots (R-1 for commands), connected; one line
//	                       each:
//	  submit N [lun=L]     slot N is taken, addressed to 0:0:0:L (L 0 if
//	                       not given) and submitted
//	  answer N | answer tmf the backend answers rqid N (or the task
//	                       management request) and the frontend collects
//	  give-up N            N's owner stops waiting (its context ended)
//	  release N            N's owner is done with its outcome
//	  reset L              a LUN RESET of 0:0:0:L is queued
//	  disconnect           the ring goes (Disconnect)
//	  attach               a fresh ring comes, live
//	  remove               the vhost ends (Remove)
//
// Each line prints the slots it moved (with the outcome handed to the
// owner, token, and the slot back on the free list, freed), then what
// the backend has on the ring, unanswered, and the vhost's pending queue.
func TestQueueTranscripts(t *testing.T) {
	datadriven.RunTest(t, "testdata/queue.txt", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "queue" {
			d.Fatalf(t, "unknown command %q", d.Cmd)
		}
		var nslots, nring int
		d.ScanArgs(t, "slots", &nslots)
		d.ScanArgs(t, "ring", &nring)
		q := newQueueRig(nslots, nring)
		var out strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			moved, err := q.do(line)
			if err != nil {
				d.Fatalf(t, "%s: %v", line, err)
			}
			fmt.Fprintf(&out, "%s:%s\n  %s\n", line, moved, q.status())
		}
		return out.String()
	})
}

// queueRig is a vhost and the backend end of its ring.
type queueRig struct {
	v     *Vhost
	nring int
	back  *ring.Back
	// onRing are the requests the backend took off the ring and has not
	// answered, in ring order: a command's rqid, or a task management
	// request's name.
	onRing []string
}

// nullChannel is an event channel that goes nowhere: the transcript
// looks at the ring itself.
type nullChannel struct{ xen.Channel }

func (nullChannel) Notify() error { return nil }
func (nullChannel) Close() error  { return nil }

func newQueueRig(nslots, nring int) *queueRig {
	v := &Vhost{log: slog.New(slog.NewTextHandler(io.Discard, nil)), abi: blkif.Native,
		slots: make([]slot, nslots), tmfID: nslots, pending: newIDQueue(nslots), tmfQ: make([]tmf, 0, nslots+1),
		segments: vscsiif.SGTableSize, closed: make(chan struct{}), resetDone: make(chan resetOutcome, 1),
		luns:     map[int]*LUN{},
		released: true, // no pools to revoke
	}
	v.cond = sync.NewCond(&v.mu)
	for i := nslots - 1; i >= 0; i-- {
		v.slots[i] = slot{state: slotlife.Free, done: make(chan struct{}, 1)}
		v.free = append(v.free, i)
	}
	q := &queueRig{v: v, nring: nring}
	q.attach()
	return q
}

// attach gives the vhost a fresh ring of q.nring slots and makes it live.
func (q *queueRig) attach() {
	size := vscsiif.SlotSize(q.v.abi)
	mem := make([]byte, ring.HeaderSize+q.nring*size)
	f, err := ring.InitFront(mem, size)
	if err != nil {
		panic(err)
	}
	if q.back, err = ring.AttachBack(mem, size); err != nil {
		panic(err)
	}
	q.onRing = nil
	q.v.mu.Lock()
	q.v.front, q.v.ch = f, nullChannel{}
	q.v.issueOnAttach()
	q.v.mu.Unlock()
}

// do carries out one line and returns the slots it moved.
func (q *queueRig) do(line string) (string, error) {
	v := q.v
	f := strings.Fields(line)
	arg := func(i int) (int, error) {
		if len(f) <= i {
			return 0, fmt.Errorf("want an argument")
		}
		return strconv.Atoi(f[i])
	}
	before := make([]slotlife.State, len(v.slots))
	for i := range v.slots {
		before[i] = v.slots[i].state
	}
	switch f[0] {
	case "submit":
		id, err := arg(1)
		if err != nil {
			return "", err
		}
		lun := 0
		if len(f) > 2 {
			if _, err := fmt.Sscanf(f[2], "lun=%d", &lun); err != nil {
				return "", err
			}
		}
		v.mu.Lock()
		k := slices.Index(v.free, id)
		if k < 0 {
			v.mu.Unlock()
			return "", fmt.Errorf("slot %d is not free", id)
		}
		v.free = slices.Delete(v.free, k, k+1)
		v.to(id, slotlife.Take)
		s := &v.slots[id]
		s.addr = vscsibus.VDev{LUN: uint16(lun)}
		s.req = vscsiif.Request{RqID: uint16(id), Act: vscsiif.ActSCSICDB, CmdLen: 6, LUN: uint16(lun), DataDirection: vscsiif.DirNone}
		v.mu.Unlock()
		v.submit(id)
	case "answer":
		rsp := vscsiif.Response{}
		want := ""
		if len(f) == 2 && f[1] == "tmf" {
			rsp.RqID, rsp.Rslt = uint16(v.tmfID), vscsiif.ResetSuccess
			k := slices.IndexFunc(q.onRing, func(r string) bool { return strings.Contains(r, "(") })
			if k < 0 {
				return "", fmt.Errorf("no task management on the ring")
			}
			want = q.onRing[k]
		} else {
			id, err := arg(1)
			if err != nil {
				return "", err
			}
			rsp.RqID, want = uint16(id), strconv.Itoa(id)
		}
		k := slices.Index(q.onRing, want)
		if k < 0 {
			return "", fmt.Errorf("%s is not on the ring", want)
		}
		q.onRing = slices.Delete(q.onRing, k, k+1)
		vscsiif.EncodeResponse(v.abi, q.back.NextResponse(), &rsp)
		q.back.Produce(1)
		q.back.Push()
		v.mu.Lock()
		v.collect()
		v.mu.Unlock()
	case "give-up":
		id, err := arg(1)
		if err != nil {
			return "", err
		}
		if v.slots[id].state.HandedOut() {
			return "", fmt.Errorf("slot %d has its outcome: its owner takes it", id)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		v.wait(ctx, id)
	case "release":
		id, err := arg(1)
		if err != nil {
			return "", err
		}
		v.release(id)
	case "reset":
		lun, err := arg(1)
		if err != nil {
			return "", err
		}
		v.mu.Lock()
		v.queueReset(vscsibus.VDev{LUN: uint16(lun)})
		v.mu.Unlock()
	case "disconnect":
		v.Disconnect()
		q.onRing = nil
	case "attach":
		q.attach()
	case "remove":
		v.Remove()
	default:
		return "", fmt.Errorf("unknown line")
	}
	q.see()
	var moved []string
	for i := range v.slots {
		s := &v.slots[i]
		e := ""
		select {
		case <-s.done:
			e = ", token"
		default:
		}
		if s.state == before[i] && e == "" {
			continue
		}
		if s.state == slotlife.Free && before[i] != slotlife.Free {
			e += ", freed"
		}
		moved = append(moved, fmt.Sprintf("slot %d %s -> %s%s", i, before[i], s.state, e))
	}
	if len(moved) == 0 {
		return "", nil
	}
	return " " + strings.Join(moved, "; "), nil
}

// see takes the requests published on the ring, as the backend does.
func (q *queueRig) see() {
	if q.v.front == nil {
		return
	}
	n, err := q.back.Unconsumed()
	if err != nil {
		panic(err)
	}
	var r vscsiif.Request
	for range n {
		vscsiif.DecodeRequest(q.v.abi, q.back.Request(0), &r)
		q.back.Consume(1)
		switch {
		case int(r.RqID) != q.v.tmfID:
			q.onRing = append(q.onRing, strconv.Itoa(int(r.RqID)))
		case r.Act == vscsiif.ActSCSIAbort:
			q.onRing = append(q.onRing, fmt.Sprintf("abort(%d)", r.RefRqID))
		default:
			q.onRing = append(q.onRing, fmt.Sprintf("reset(lun %d)", r.LUN))
		}
	}
}

// status prints what the backend holds and what waits in the vhost.
func (q *queueRig) status() string {
	var pend []string
	for i := range q.v.pending.len() {
		pend = append(pend, strconv.Itoa(q.v.pending.at(i)))
	}
	ringState := "ring [" + strings.Join(q.onRing, " ") + "]"
	if q.v.front == nil {
		ringState = "no ring"
	}
	return fmt.Sprintf("%s pending [%s]", ringState, strings.Join(pend, " "))
}
