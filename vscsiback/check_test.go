package vscsiback

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/vscsiif"
)

// address is a guest's channel:id:lun.
type address struct{ channel, id, lun uint16 }

// fakeVhost is the check's view of a vhost, from the test's tables.
type fakeVhost struct {
	luns []address      // attached, the index is the LUN's
	busy map[uint16]int // rqid in flight -> LUN index
}

func (v *fakeVhost) lun(channel, id, lun uint16) (int, bool) {
	for i, a := range v.luns {
		if a == (address{channel, id, lun}) {
			return i, true
		}
	}
	return 0, false
}

func (v *fakeVhost) inFlight(rqid uint16) (int, bool) {
	l, ok := v.busy[rqid]
	return l, ok
}

// TestRequestTranscripts runs testdata/requests.txt: every answer the
// pure check gives, hostile requests first. Commands:
//
//	vhost [sg-grant=N] [luns=C:T:L,...] [busy=RQID@LUN,...]
//	                the backend's limits and the vhost: feature-sg-grant
//	                (0: not offered), the LUNs attached (index = order),
//	                the requests in flight (rqid on LUN index)
//	check           one request per line:
//	                  ACT [rqid=N] [at=C:T:L] [dir=DIR] [cdb=HEX] [cmdlen=N]
//	                      [segs=SEGS] [lists=SEGS] [nsegs=N] [ref=N]
//	                ACT is cdb, abort, reset or a number; DIR is from, to,
//	                none, bidi or a number; SEGS is gref:offset+length[*count],...
//	                With lists, seg[] holds the lists (nr_segments
//	                SG_GRANT|count) and segs are the data segments as
//	                copied out of the list pages; without, seg[] holds
//	                segs. nsegs overrides the nr_segments byte. Defaults:
//	                rqid 1, at 0:0:0, dir none, cdb TEST UNIT READY,
//	                cmdlen the cdb's length.
//
// Each request goes through the ring's codec (encoded, decoded: the check
// sees what a backend copies out of a slot) and is answered OK with its
// plan, or with the rslt it gets and the reason. An SGGrant request also
// shows how many list pages the queue maps before the check.
func TestRequestTranscripts(t *testing.T) {
	l, v := &limits{}, &fakeVhost{}
	datadriven.RunTest(t, "testdata/requests.txt", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "vhost":
			var err error
			if l, v, err = parseVhost(d.CmdArgs); err != nil {
				d.Fatalf(t, "%v", err)
			}
			return describeVhost(l, v)
		case "check":
			var b strings.Builder
			for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
				r, segs, err := parseRequest(line)
				if err != nil {
					d.Fatalf(t, "%s: %v", line, err)
				}
				fmt.Fprintf(&b, "%s\n  %s\n", line, answer(r, segs, l, v))
			}
			return b.String()
		}
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	})
}

// answer runs a request through the request path's pure steps as the
// queue does: segmentLists names the list pages to map, the copies
// (segs, as the frontend wrote them into those pages) go to the check.
func answer(r *vscsiif.Request, segs []vscsiif.Segment, l *limits, v vhost) string {
	var p plan
	var listed []vscsiif.Segment
	pages := ""
	if n, total, err := segmentLists(r, l); err == nil && n > 0 {
		pages = fmt.Sprintf("lists=%d ", n)
		listed = segs
		if len(listed) > total {
			listed = listed[:total]
		}
	}
	rslt, err := check(r, listed, l, v, &p)
	if (rslt == 0) != (err == nil) {
		return fmt.Sprintf("BUG: rslt %#x with error %v", rslt, err)
	}
	if err != nil {
		return pages + rsltName(rslt) + " " + err.Error()
	}
	return pages + "OK " + describePlan(&p)
}

func rsltName(rslt int32) string {
	switch rslt {
	case vscsiif.ResetFailed:
		return "RESET_FAILED"
	case vscsiif.Result(vscsiif.HostError, 0):
		return "HOST_ERROR"
	case vscsiif.Result(vscsiif.HostNoConnect, 0):
		return "HOST_NO_CONNECT"
	}
	return fmt.Sprintf("rslt=%#x", rslt)
}

func describePlan(p *plan) string {
	switch p.kind {
	case kindAbort:
		return fmt.Sprintf("abort lun=%d ref=%d", p.lun, p.ref)
	case kindReset:
		return fmt.Sprintf("reset lun=%d", p.lun)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "cdb lun=%d cdb=%x %v +%d", p.lun, p.cdb[:p.cdbLen], p.dir, p.length)
	sep := " segs="
	// A run of equal segments reads as one, with its count: gref:start-end*n.
	for i := 0; i < p.nsegs; {
		run := 1
		for i+run < p.nsegs && p.segs[i+run] == p.segs[i] {
			run++
		}
		s := p.segs[i]
		fmt.Fprintf(&b, "%s%d:%d-%d", sep, s.ref, s.start, s.end)
		if run > 1 {
			fmt.Fprintf(&b, "*%d", run)
		}
		sep, i = ",", i+run
	}
	return b.String()
}

func parseVhost(args []datadriven.CmdArg) (*limits, *fakeVhost, error) {
	l, v := &limits{}, &fakeVhost{busy: map[uint16]int{}}
	for _, a := range args {
		for _, val := range a.Vals {
			switch a.Key {
			case "sg-grant":
				n, err := strconv.Atoi(val)
				if err != nil {
					return nil, nil, err
				}
				l.sgGrant = n
			case "luns":
				ad, err := parseAddress(val)
				if err != nil {
					return nil, nil, err
				}
				v.luns = append(v.luns, ad)
			case "busy":
				rq, lun, _ := strings.Cut(val, "@")
				r, err1 := strconv.ParseUint(rq, 0, 16)
				n, err2 := strconv.Atoi(lun)
				if err1 != nil || err2 != nil {
					return nil, nil, fmt.Errorf("busy %q: want RQID@LUN", val)
				}
				v.busy[uint16(r)] = n
			default:
				return nil, nil, fmt.Errorf("unknown vhost key %q", a.Key)
			}
		}
	}
	return l, v, nil
}

func describeVhost(l *limits, v *fakeVhost) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sg-grant=%d", l.sgGrant)
	for i, a := range v.luns {
		fmt.Fprintf(&b, " lun%d=%d:%d:%d", i, a.channel, a.id, a.lun)
	}
	for rq := 0; rq <= 0xffff; rq++ {
		if lun, ok := v.busy[uint16(rq)]; ok {
			fmt.Fprintf(&b, " busy=%d@lun%d", rq, lun)
		}
	}
	return b.String()
}

func parseAddress(s string) (address, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return address{}, fmt.Errorf("address %q: want C:T:L", s)
	}
	var n [3]uint16
	for i, x := range f {
		v, err := strconv.ParseUint(x, 0, 16)
		if err != nil {
			return address{}, fmt.Errorf("address %q: %v", s, err)
		}
		n[i] = uint16(v)
	}
	return address{n[0], n[1], n[2]}, nil
}

var actNames = map[string]uint8{"cdb": vscsiif.ActSCSICDB, "abort": vscsiif.ActSCSIAbort, "reset": vscsiif.ActSCSIReset}

var dirNames = map[string]uint8{"bidi": vscsiif.DirBidirectional, "to": vscsiif.DirToDevice,
	"from": vscsiif.DirFromDevice, "none": vscsiif.DirNone}

func byName(names map[string]uint8, s string) (uint8, error) {
	if v, ok := names[s]; ok {
		return v, nil
	}
	v, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a name nor a number", s)
	}
	return uint8(v), nil
}

// parseRequest builds the request a line describes, as a backend copies
// it out of the ring (through the codec), and the data segments an
// SGGrant request's list pages hold.
func parseRequest(line string) (*vscsiif.Request, []vscsiif.Segment, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, nil, fmt.Errorf("empty request")
	}
	act, err := byName(actNames, f[0])
	if err != nil {
		return nil, nil, err
	}
	r := vscsiif.Request{RqID: 1, Act: act, DataDirection: vscsiif.DirNone}
	cdb := make([]byte, 6) // TEST UNIT READY
	cmdLen := -1
	nsegs := -1
	var segs, lists []vscsiif.Segment
	haveLists := false
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		num := func(bits int) uint64 {
			n, perr := strconv.ParseUint(v, 0, bits)
			if perr != nil && err == nil {
				err = fmt.Errorf("%s: %v", kv, perr)
			}
			return n
		}
		switch k {
		case "rqid":
			r.RqID = uint16(num(16))
		case "ref":
			r.RefRqID = uint16(num(16))
		case "at":
			a, e := parseAddress(v)
			if e != nil {
				return nil, nil, e
			}
			r.Channel, r.ID, r.LUN = a.channel, a.id, a.lun
		case "dir":
			if r.DataDirection, err = byName(dirNames, v); err != nil {
				return nil, nil, err
			}
		case "cdb":
			if cdb, err = hex.DecodeString(v); err != nil {
				return nil, nil, err
			}
		case "cmdlen":
			cmdLen = int(num(8))
		case "nsegs":
			nsegs = int(num(8))
		case "segs":
			if segs, err = parseSegments(v); err != nil {
				return nil, nil, err
			}
		case "lists":
			haveLists = true
			if lists, err = parseSegments(v); err != nil {
				return nil, nil, err
			}
		default:
			return nil, nil, fmt.Errorf("unknown field %q", k)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if cmdLen < 0 {
		cmdLen = len(cdb)
	}
	r.CmdLen = uint8(cmdLen)
	copy(r.Cmnd[:], cdb)
	seg := segs
	if haveLists {
		seg = lists
		r.NrSegments = vscsiif.SGGrant | uint8(len(lists))
	} else {
		r.NrSegments = uint8(len(segs))
		segs = nil
	}
	if nsegs >= 0 {
		r.NrSegments = uint8(nsegs)
	}
	copy(r.Seg[:], seg)
	slot := make([]byte, vscsiif.SlotSize(blkif.Native))
	vscsiif.EncodeRequest(blkif.Native, slot, &r)
	var got vscsiif.Request
	vscsiif.DecodeRequest(blkif.Native, slot, &got)
	return &got, segs, nil
}

// parseSegments reads gref:offset+length[*count],...
func parseSegments(s string) ([]vscsiif.Segment, error) {
	var out []vscsiif.Segment
	for _, item := range strings.Split(s, ",") {
		item, count, hasCount := strings.Cut(item, "*")
		n := 1
		if hasCount {
			var err error
			if n, err = strconv.Atoi(count); err != nil {
				return nil, fmt.Errorf("segment count %q", count)
			}
		}
		ref, rng, ok1 := strings.Cut(item, ":")
		off, length, ok2 := strings.Cut(rng, "+")
		g, e1 := strconv.ParseUint(ref, 0, 32)
		o, e2 := strconv.ParseUint(off, 0, 16)
		l, e3 := strconv.ParseUint(length, 0, 16)
		if !ok1 || !ok2 || e1 != nil || e2 != nil || e3 != nil {
			return nil, fmt.Errorf("segment %q: want gref:offset+length", item)
		}
		for range n {
			out = append(out, vscsiif.Segment{Gref: uint32(g), Offset: uint16(o), Length: uint16(l)})
		}
	}
	return out, nil
}

// TestCheckAllocatesNothing: a served request, and the refusals a scan
// or a flood of aborts brings, allocate nothing.
func TestCheckAllocatesNothing(t *testing.T) {
	v := &fakeVhost{luns: []address{{0, 0, 0}}, busy: map[uint16]int{5: 0}}
	l := &limits{sgGrant: 128}
	read := vscsiif.Request{RqID: 1, Act: vscsiif.ActSCSICDB, CmdLen: 10, Cmnd: [16]byte{scsi.OpRead10, 0, 0, 0, 0, 0, 0, 0, 8},
		DataDirection: vscsiif.DirFromDevice, NrSegments: 1, Seg: [vscsiif.SGTableSize]vscsiif.Segment{{Gref: 7, Length: 4096}}}
	scan := vscsiif.Request{RqID: 2, Act: vscsiif.ActSCSICDB, CmdLen: 6, ID: 3, DataDirection: vscsiif.DirNone}
	abort := vscsiif.Request{RqID: 3, Act: vscsiif.ActSCSIAbort, RefRqID: 99, DataDirection: vscsiif.DirNone}
	var p plan
	allocs := testing.AllocsPerRun(1000, func() {
		if rslt, _ := check(&read, nil, l, v, &p); rslt != 0 {
			t.Fatal("read refused")
		}
		if rslt, _ := check(&scan, nil, l, v, &p); rslt != vscsiif.Result(vscsiif.HostNoConnect, 0) {
			t.Fatal("scan answered")
		}
		if rslt, _ := check(&abort, nil, l, v, &p); rslt != vscsiif.ResetFailed {
			t.Fatal("abort answered")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs", allocs)
	}
}

// FuzzCheck: whatever the slot, the limits and the vhost, the check never
// panics, answers with rslt 0 exactly when it plans, and never plans a
// byte outside the segments the request (or its lists) gave.
func FuzzCheck(f *testing.F) {
	slot := make([]byte, 252)
	r := vscsiif.Request{RqID: 1, Act: vscsiif.ActSCSICDB, CmdLen: 10, Cmnd: [16]byte{scsi.OpWrite10},
		DataDirection: vscsiif.DirToDevice, NrSegments: 2, Seg: [vscsiif.SGTableSize]vscsiif.Segment{{Gref: 1, Length: 4096}, {Gref: 2, Offset: 512, Length: 512}}}
	vscsiif.EncodeRequest(blkif.Native, slot, &r)
	f.Add(slot, uint16(128), uint8(1), uint16(5))
	r.NrSegments, r.Seg[0], r.Seg[1] = vscsiif.SGGrant|1, vscsiif.Segment{Gref: 9, Offset: 8, Length: 24}, vscsiif.Segment{}
	vscsiif.EncodeRequest(blkif.Native, slot, &r)
	list := make([]byte, 24)
	for i := range 3 {
		vscsiif.EncodeSegment(list[8*i:], vscsiif.Segment{Gref: uint32(10 + i), Offset: 0, Length: 4096})
	}
	f.Add(append(slot, list...), uint16(26), uint8(2), uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, sgGrant uint16, nLUNs uint8, busy uint16) {
		if len(b) < 252 {
			return
		}
		var r vscsiif.Request
		vscsiif.DecodeRequest(blkif.Native, b, &r)
		l := &limits{sgGrant: int(sgGrant) % (2 * maxSGGrant)}
		v := &fakeVhost{busy: map[uint16]int{}}
		for i := range int(nLUNs % 4) {
			v.luns = append(v.luns, address{0, uint16(i), 0})
			v.busy[busy+uint16(i)] = i
		}
		// The queue's fetch: the list pages' bytes follow the slot.
		var listed []vscsiif.Segment
		n, total, err := segmentLists(&r, l)
		if err == nil && n > 0 {
			raw := make([]byte, total*vscsiif.SegmentSize)
			copy(raw, b[252:])
			listed = make([]vscsiif.Segment, total)
			vscsiif.DecodeSegments(raw, listed)
		}
		var p plan
		rslt, err := check(&r, listed, l, v, &p)
		if (rslt == 0) != (err == nil) {
			t.Fatalf("rslt %#x with error %v", rslt, err)
		}
		if err != nil || p.kind != kindCDB {
			return
		}
		given := r.Seg[:min(r.SegmentCount(), vscsiif.SGTableSize)]
		if r.Indirect() {
			given = listed
		}
		if p.nsegs != len(given) {
			t.Fatalf("planned %d segments of the %d given", p.nsegs, len(given))
		}
		var length int64
		for i, s := range p.segs[:p.nsegs] {
			g := given[i]
			if s.start >= s.end || s.end > vscsiif.PageSize || uint32(s.ref) != g.Gref || s.start != g.Offset || int(s.end-s.start) != int(g.Length) {
				t.Fatalf("segment %d planned as %+v from %+v", i, s, g)
			}
			length += int64(s.end - s.start)
		}
		if length != p.length || p.cdbLen < minCDB || p.cdbLen > vscsiif.MaxCommandSize || p.lun < 0 || p.lun >= len(v.luns) {
			t.Fatalf("plan %+v", p)
		}
		if p.dir == scsi.DirNone && p.nsegs > 0 {
			t.Fatal("segments planned for a command without data")
		}
	})
}
