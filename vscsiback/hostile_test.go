package vscsiback_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiif"
)

// TestHostileRequests: requests a hostile or broken frontend sends, all
// pushed at once between two good READs of another LUN: each is answered
// on its own (host ERROR, or NO_CONNECT for a LUN not attached), the
// READs get their data, and the vhost keeps serving both LUNs.
func TestHostileRequests(t *testing.T) {
	r := newRig(t)
	lun0, lun1, disk1 := at{0, 0, 0}, at{0, 1, 0}, newDisk(t)
	f := r.vhost("1/0", 64, r.lun(lun0, "disk0", newDisk(t)), r.lun(lun1, "disk1", disk1))
	f.spoken(lun0, lun1)

	// A page the guest granted to another guest, not to the backend.
	stranger, err := r.host.NewDomain("stranger")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := r.guest.Granter().Grant(stranger.ID(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.guest.Granter().Revoke(theirs) })

	read := func(a at, page int) *vscsiif.Request {
		req := f.cdb(a, scsitest.Read10(8, 8), vscsiif.DirFromDevice, 0)
		f.setSegments(req, []vscsiif.Segment{{Gref: uint32(f.data.Refs[page]), Length: 4096}})
		return req
	}
	withGref := func(gref uint32) *vscsiif.Request {
		req := f.cdb(lun0, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 0)
		f.setSegments(req, []vscsiif.Segment{{Gref: gref, Length: 4096}})
		return req
	}
	first := read(lun1, 1)
	tooMany := read(lun0, 0)
	tooMany.NrSegments = 27
	listTooMany := read(lun0, 0)
	listTooMany.NrSegments = vscsiif.SGGrant | 27
	notGranted := withGref(30000)
	grantedElsewhere := withGref(uint32(theirs.Refs[0]))
	readOnlyForData := withGref(uint32(f.ro.Refs[0]))
	listNotGranted := f.cdb(lun0, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 0)
	listNotGranted.Seg[0] = vscsiif.Segment{Gref: 30001, Length: 8}
	listNotGranted.NrSegments = vscsiif.SGGrant | 1
	notAttached := read(at{0, 2, 0}, 0)
	listNotAttached := f.cdb(at{0, 2, 0}, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 0)
	listNotAttached.Seg[0] = vscsiif.Segment{Gref: 30001, Length: 8}
	listNotAttached.NrSegments = vscsiif.SGGrant | 1
	longCDB := f.cdb(lun0, tur, vscsiif.DirNone, 0)
	longCDB.CmdLen = 17
	unknownAct := f.cdb(lun0, tur, vscsiif.DirNone, 0)
	unknownAct.Act = 9
	contradiction := f.cdb(lun0, scsitest.Write10(0, 8), vscsiif.DirFromDevice, 4096)
	last := read(lun1, 2)

	hostError := vscsiif.Result(vscsiif.HostError, 0)
	want := []struct {
		req  *vscsiif.Request
		rslt int32
	}{
		{first, 0},
		{tooMany, hostError},
		{listTooMany, hostError},
		{notGranted, hostError},
		{grantedElsewhere, hostError},
		{readOnlyForData, hostError},
		{listNotGranted, hostError},
		{notAttached, vscsiif.Result(vscsiif.HostNoConnect, 0)},
		{listNotAttached, vscsiif.Result(vscsiif.HostNoConnect, 0)},
		{longCDB, hostError},
		{unknownAct, hostError},
		{contradiction, hostError},
		{last, 0},
	}
	var reqs []*vscsiif.Request
	for _, w := range want {
		reqs = append(reqs, w.req)
	}
	clear(f.data.Mem[:3*4096])
	f.push(reqs...)
	got := byRqID(t, f.collect(len(reqs)))
	for _, w := range want {
		rsp, ok := got[w.req.RqID]
		if !ok {
			t.Fatalf("rqid %d not answered", w.req.RqID)
		}
		rslt(t, rsp, w.rslt)
		if rsp.SenseLen != 0 && w.rslt != 0 {
			t.Errorf("rqid %d: refused with %d bytes of sense", rsp.RqID, rsp.SenseLen)
		}
	}
	for _, page := range []int{1, 2} {
		if !bytes.Equal(f.page(page), image(t, disk1, 8*512, 4096)) {
			t.Fatalf("LUN 1's READ into page %d: data differs from its image", page)
		}
	}
	if !bytes.Equal(f.page(0), make([]byte, 4096)) {
		t.Fatal("a refused READ wrote the guest's page")
	}
	good(t, f.do(read(lun0, 0)))
	good(t, f.do(read(lun1, 0)))
}

// TestRingOverflowStopsOnlyThatVhost: a req_prod claiming more requests
// than the ring holds breaks the ring itself: that vhost's Run returns
// an error (nothing of the claim is served), and another vhost of the
// same guest on the same disk keeps serving.
func TestRingOverflowStopsOnlyThatVhost(t *testing.T) {
	r := newRig(t)
	disk := newDisk(t)
	bad := r.vhost("1/0", 0, r.lun(at{}, "disk", disk))
	good0 := r.vhost("1/1", 0, r.lun(at{}, "disk", disk))
	bad.spoken(at{})
	good0.spoken(at{})

	bad.ring.Produce(bad.ring.Free() + 1)
	bad.push()
	select {
	case err := <-bad.done:
		if err == nil {
			t.Fatal("Run returned nil for an overflowing req_prod")
		}
		bad.done <- nil // what the cleanup waits for
	case <-time.After(10 * time.Second):
		t.Fatal("Run still serving 10s after req_prod overflowed the ring")
	}
	read := good0.cdb(at{}, scsitest.Read10(8, 8), vscsiif.DirFromDevice, 4096)
	good(t, good0.do(read))
	if !bytes.Equal(good0.page(0), image(t, disk, 8*512, 4096)) {
		t.Fatal("the other vhost's READ: data differs from the image")
	}
}
