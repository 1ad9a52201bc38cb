package vscsifront_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsifront"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
)

// fakeBack is a hand-driven backend on a frontend's ring, in dom0: the
// test reads each request and writes whatever response it likes.
type fakeBack struct {
	t    *testing.T
	abi  blkif.ABI
	ring *ring.Back
	ch   xen.Channel
}

func newFakeBack(t *testing.T, h *simHost, r vscsibus.Ring) *fakeBack {
	t.Helper()
	m, err := h.host.Dom0().Mapper().Map(h.guest.ID(), []xen.GrantRef{r.Ref}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Unmap() })
	b := &fakeBack{t: t, abi: r.ABI}
	if b.ring, err = ring.AttachBack(m.Bytes(), vscsiif.SlotSize(r.ABI)); err != nil {
		t.Fatal(err)
	}
	if b.ch, err = h.host.Dom0().Events().BindInterdomain(h.guest.ID(), r.Port); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.ch.Close() })
	return b
}

// next waits for the next request.
func (b *fakeBack) next() vscsiif.Request {
	b.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		n, err := b.ring.Unconsumed()
		if err != nil {
			b.t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if more, _ := b.ring.FinalCheck(); more {
			continue
		}
		if time.Now().After(deadline) {
			b.t.Fatal("no request came")
		}
		if _, err := b.ch.Wait(100 * time.Millisecond); err != nil {
			b.t.Fatal(err)
		}
	}
	var r vscsiif.Request
	vscsiif.DecodeRequest(b.abi, b.ring.Request(0), &r)
	b.ring.Consume(1)
	return r
}

// answer publishes rsp; senseLen, if not negative, is written raw over
// its sense_len byte (a hostile claim past the buffer).
func (b *fakeBack) answer(rsp vscsiif.Response, senseLen int) {
	slot := b.ring.NextResponse()
	vscsiif.EncodeResponse(b.abi, slot, &rsp)
	if senseLen >= 0 {
		slot[vscsiif.LayoutOf(b.abi).RspSenseLen] = byte(senseLen)
	}
	b.ring.Produce(1)
	if b.ring.Push() {
		_ = b.ch.Notify()
	}
}

type outcome struct {
	res scsi.Result
	err error
}

// TestHostileBackend: responses the frontend never asked for (an unknown
// rqid, the task management rqid with none on the ring, a second answer
// to a command), a residual past the buffer and a sense length past the
// sense buffer are dropped or clamped; the commands that are answered
// get their answers, and nothing panics.
func TestHostileBackend(t *testing.T) {
	h := newSimHost(t)
	v, err := vscsifront.New(vscsifront.Config{Domain: h.guest, Backend: 0, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Remove)
	r, err := v.Connect(vscsibus.Ring{})
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBack(t, h, r)
	if err := v.Attach(vscsiif.SGTableSize); err != nil {
		t.Fatal(err)
	}
	v.AttachLUN(vscsibus.LUN{Index: 0}, func(error) {})
	l, ok := v.LUNAt(0, 0, 0)
	if !ok {
		t.Fatal("no LUN")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	send := func(cdb []byte, dir scsi.Direction, buf []byte) (vscsiif.Request, chan outcome) {
		out := make(chan outcome, 1)
		go func() {
			res, err := l.ExecSCSI(ctx, cdb, dir, buf)
			out <- outcome{res, err}
		}()
		return b.next(), out
	}
	got := func(c chan outcome) outcome {
		t.Helper()
		select {
		case o := <-c:
			return o
		case <-time.After(waitFor):
			t.Fatal("no outcome")
			return outcome{}
		}
	}

	a, aOut := send([]byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 8, 0}, scsi.DirFromDevice, make([]byte, 4096))
	b.answer(vscsiif.Response{RqID: 99}, -1) // no such rqid

	bReq, bOut := send(tur, scsi.DirNone, nil)
	sense := vscsiif.Response{RqID: a.RqID, Rslt: vscsiif.Result(vscsiif.HostOK, scsi.StatusCheckCondition), ResidualLen: 1 << 31, SenseLen: 96}
	sense.Sense[0], sense.Sense[2] = 0x70, scsi.KeyMediumError
	b.answer(sense, 200)
	o := got(aOut)
	if o.err != nil || o.res.Status != scsi.StatusCheckCondition || o.res.Resid != 4096 || o.res.SenseLen != vscsiif.SenseBufferSize {
		t.Fatalf("READ: %+v (status %#x, resid %d, sense len %d); want CHECK CONDITION, resid clamped to 4096, 96 bytes of sense",
			o.err, o.res.Status, o.res.Resid, o.res.SenseLen)
	}

	c, cOut := send(tur, scsi.DirNone, nil)
	b.answer(vscsiif.Response{RqID: uint16(v.TMFRqID())}, -1) // no task management on the ring
	dReq, dOut := send(tur, scsi.DirNone, nil)
	b.answer(vscsiif.Response{RqID: bReq.RqID}, -1)
	if o := got(bOut); o.err != nil || o.res.Status != scsi.StatusGood {
		t.Fatalf("TEST UNIT READY b: %+v", o)
	}
	eReq, eOut := send(tur, scsi.DirNone, nil)
	// An answer for an in-range rqid no command holds. a's and b's are
	// taken again by now (slots go lowest first, and rqids carry no
	// generation: an answer for a reused rqid belongs to the new command),
	// so the highest command slot, which neither these nor f (sent before
	// the frontend need have read this answer) will take.
	done := uint16(v.TMFRqID() - 1)
	if inFlight := []uint16{c.RqID, dReq.RqID, eReq.RqID}; slices.Contains(inFlight, done) {
		t.Fatalf("rqid %d is in flight: %v", done, inFlight)
	}
	b.answer(vscsiif.Response{RqID: done}, -1)
	_, fOut := send(tur, scsi.DirNone, nil)
	b.answer(vscsiif.Response{RqID: c.RqID}, -1)
	if o := got(cOut); o.err != nil || o.res.Status != scsi.StatusGood {
		t.Fatalf("TEST UNIT READY c: %+v", o)
	}
	cancel() // d, e and f are never answered: given up
	for _, out := range []chan outcome{dOut, eOut, fOut} {
		if o := got(out); o.err != context.Canceled {
			t.Fatalf("an unanswered command: %+v, want context.Canceled", o)
		}
	}
}
