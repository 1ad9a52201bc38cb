package blkback

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/xenblk/xenblk/blkif"
)

// TestRequestTranscripts runs testdata/requests.txt: every answer the
// pure check gives, hostile requests first. Commands:
//
//	limits [sectors=N] [block=N] [indirect=N] [ro] [discard] [secure-discard]
//	       [no-barrier] [no-flush]
//	                    the device's limits (default: 2048 sectors, 512-byte
//	                    blocks, barrier and flush, no discard, no indirect)
//	check               one request per line:
//	                      OP [id=N] [sector=N] [segs=SEGS] [nsegs=N]
//	                         [iop=OP] [nr=N] [secure]
//	                    OP is read, write, barrier, flush, discard, indirect
//	                    or a number; SEGS is ref:first-last[*count],...;
//	                    nsegs overrides the count the request claims; iop
//	                    is an indirect request's inner operation, whose
//	                    segments are SEGS as copied out of its pages.
//	check-scsi          the same for extension pairs, with OP the base
//	                    operation and [cmdlen=N] [dlen=N] [xid=N] for the
//	                    extra slot (default cmdlen 10, dlen 0, xid = id).
//
// Each request is answered with its status and either the plan (operation,
// byte range, segments) or the reason it was refused. An indirect request
// also shows how many indirect pages the queue maps before the check.
func TestRequestTranscripts(t *testing.T) {
	l := testLimits(nil)
	datadriven.RunTest(t, "testdata/requests.txt", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "limits":
			l = testLimits(d.CmdArgs)
			return describeLimits(l)
		case "check", "check-scsi":
			var b strings.Builder
			for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
				r, ex, segs, err := parseRequest(line, d.Cmd == "check-scsi")
				if err != nil {
					d.Fatalf(t, "%s: %v", line, err)
				}
				fmt.Fprintf(&b, "%s\n  %s\n", line, answer(r, ex, segs, l))
			}
			return b.String()
		}
		d.Fatalf(t, "unknown command %q", d.Cmd)
		return ""
	})
}

// answer runs a request through the request path's pure steps as the
// queue does: indirectPages names the pages to fetch, the fetched copies
// (segs, as the frontend wrote them into those pages) go to the check.
func answer(r *blkif.Request, ex *blkif.ExtraRequest, segs []blkif.Segment, l *limits) string {
	var p plan
	var fetched []blkif.Segment
	pages := ""
	base := r.Operation &^ blkif.OpExtraFlag
	if base == blkif.OpIndirect && (ex != nil || r.Operation == blkif.OpIndirect) {
		n := indirectPages(r, l)
		pages = fmt.Sprintf("pages=%d ", n)
		if n > 0 {
			fetched = segs
		}
	}
	if ex != nil {
		if err := checkSCSI(r, ex, fetched, l, &p); err != nil {
			return pages + "ERROR " + err.Error()
		}
		return pages + "OKAY " + describePlan(&p, false)
	}
	status, err := check(r, fetched, l, &p)
	if (status == blkif.RspOkay) != (err == nil) {
		return fmt.Sprintf("BUG: status %d with error %v", status, err)
	}
	if err != nil {
		return pages + statusName(status) + " " + err.Error()
	}
	return pages + "OKAY " + describePlan(&p, true)
}

func statusName(s int16) string {
	switch s {
	case blkif.RspOkay:
		return "OKAY"
	case blkif.RspError:
		return "ERROR"
	case blkif.RspEOPNOTSUPP:
		return "EOPNOTSUPP"
	}
	return strconv.Itoa(int(s))
}

var kindNames = [...]string{opRead: "read", opWrite: "write", opFlush: "flush", opBarrier: "barrier", opDiscard: "discard"}

func describePlan(p *plan, disk bool) string {
	var b strings.Builder
	b.WriteString(kindNames[p.kind])
	if disk {
		fmt.Fprintf(&b, " at %d", p.offset)
	}
	fmt.Fprintf(&b, " +%d", p.length)
	if p.secure {
		b.WriteString(" secure")
	}
	if p.nsegs > 0 {
		b.WriteString(" segs=")
		for i := 0; i < p.nsegs; i++ {
			if i == 3 && p.nsegs > 4 {
				fmt.Fprintf(&b, " ...(%d in all)", p.nsegs)
				break
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			s := p.segs[i]
			fmt.Fprintf(&b, "%d:%d-%d", s.ref, s.start, s.end)
		}
	}
	return b.String()
}

func testLimits(args []datadriven.CmdArg) *limits {
	l := &limits{logicalBlock: 512, barrier: true, flush: true}
	l.sectors.Store(2048)
	for _, a := range args {
		v := uint64(0)
		if len(a.Vals) > 0 {
			v, _ = strconv.ParseUint(a.Vals[0], 0, 64)
		}
		switch a.Key {
		case "sectors":
			l.sectors.Store(v)
		case "block":
			l.logicalBlock = uint32(v)
		case "indirect":
			l.indirectSegments = int(v)
		case "ro":
			l.readOnly = true
		case "discard":
			l.discard = true
		case "secure-discard":
			l.secureDiscard = true
		case "no-barrier":
			l.barrier = false
		case "no-flush":
			l.flush = false
		default:
			panic(fmt.Sprintf("unknown limit %q", a.Key))
		}
	}
	return l
}

func describeLimits(l *limits) string {
	return fmt.Sprintf("sectors=%d block=%d indirect=%d ro=%v discard=%v secure-discard=%v barrier=%v flush=%v",
		l.sectors.Load(), l.logicalBlock, l.indirectSegments, l.readOnly, l.discard, l.secureDiscard, l.barrier, l.flush)
}

var opNames = map[string]uint8{"read": blkif.OpRead, "write": blkif.OpWrite, "barrier": blkif.OpWriteBarrier,
	"flush": blkif.OpFlushDiskcache, "discard": blkif.OpDiscard, "indirect": blkif.OpIndirect}

func parseOp(s string) (uint8, error) {
	if op, ok := opNames[s]; ok {
		return op, nil
	}
	v, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("operation %q is neither a name nor a number", s)
	}
	return uint8(v), nil
}

// parseRequest builds the request a line describes, as DecodeRequest
// would have copied it out of the ring (a direct request's Seg holds at
// most MaxSegmentsPerRequest segments, whatever nr_segments claims), and
// the segments an indirect request's pages hold.
func parseRequest(line string, extension bool) (*blkif.Request, *blkif.ExtraRequest, []blkif.Segment, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, nil, nil, fmt.Errorf("empty request")
	}
	op, err := parseOp(f[0])
	if err != nil {
		return nil, nil, nil, err
	}
	r := &blkif.Request{Operation: op, ID: 1}
	var ex *blkif.ExtraRequest
	if extension {
		r.Operation |= blkif.OpExtraFlag
		ex = &blkif.ExtraRequest{Type: blkif.ExtraTypeSCSI, CmdLen: 10}
	}
	var segs []blkif.Segment
	nsegs := -1
	xid := int64(-1)
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		num := func() uint64 {
			n, perr := strconv.ParseUint(v, 0, 64)
			if perr != nil && err == nil {
				err = fmt.Errorf("%s: %v", kv, perr)
			}
			return n
		}
		switch k {
		case "id":
			r.ID = num()
		case "sector":
			r.Sector = num()
		case "nr":
			r.NrSectors = num()
		case "secure":
			r.Flag |= blkif.DiscardSecure
		case "nsegs":
			nsegs = int(num())
		case "iop":
			var e error
			if r.IndirectOp, e = parseOp(v); e != nil {
				return nil, nil, nil, e
			}
		case "segs":
			if segs, err = parseSegments(v); err != nil {
				return nil, nil, nil, err
			}
		case "cmdlen":
			ex.CmdLen = uint8(num())
		case "dlen":
			ex.DataLen = uint32(num())
		case "xid":
			xid = int64(num())
		default:
			return nil, nil, nil, fmt.Errorf("unknown field %q", k)
		}
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if nsegs < 0 {
		nsegs = len(segs)
	}
	r.NrSegments = uint16(nsegs)
	if r.Operation&^blkif.OpExtraFlag != blkif.OpIndirect {
		if nsegs > 255 {
			return nil, nil, nil, fmt.Errorf("a direct request's nr_segments is one byte: %d", nsegs)
		}
		copy(r.Seg[:], segs)
		segs = nil
	}
	if ex != nil {
		ex.ID = r.ID
		if xid >= 0 {
			ex.ID = uint64(xid)
		}
	}
	return r, ex, segs, nil
}

// parseSegments reads ref:first-last[*count],...
func parseSegments(s string) ([]blkif.Segment, error) {
	var segs []blkif.Segment
	for _, part := range strings.Split(s, ",") {
		count := 1
		if body, rep, ok := strings.Cut(part, "*"); ok {
			n, err := strconv.Atoi(rep)
			if err != nil {
				return nil, fmt.Errorf("segment %q: bad count", part)
			}
			part, count = body, n
		}
		var ref, first, last uint64
		if _, err := fmt.Sscanf(part, "%d:%d-%d", &ref, &first, &last); err != nil {
			return nil, fmt.Errorf("segment %q is not ref:first-last", part)
		}
		for range count {
			segs = append(segs, blkif.Segment{Gref: uint32(ref), FirstSect: uint8(first), LastSect: uint8(last)})
		}
	}
	return segs, nil
}

// The check runs once per request: it allocates nothing, whether it
// accepts a request (direct or with 4096 indirect segments) or refuses one
// the backend does not offer.
func TestCheckAllocatesNothing(t *testing.T) {
	l := testLimits(nil)
	l.indirectSegments = maxIndirectSegments
	l.sectors.Store(1 << 20)
	direct := &blkif.Request{Operation: blkif.OpWrite, NrSegments: 2, Sector: 8,
		Seg: [blkif.MaxSegmentsPerRequest]blkif.Segment{{Gref: 7, LastSect: 7}, {Gref: 8, LastSect: 7}}}
	indirect := &blkif.Request{Operation: blkif.OpIndirect, IndirectOp: blkif.OpRead, NrSegments: maxIndirectSegments}
	segs := make([]blkif.Segment, maxIndirectSegments)
	for i := range segs {
		segs[i] = blkif.Segment{Gref: uint32(i), FirstSect: 0, LastSect: 0}
	}
	discard := &blkif.Request{Operation: blkif.OpDiscard, NrSectors: 8}
	p := new(plan)
	for _, c := range []struct {
		name string
		r    *blkif.Request
		segs []blkif.Segment
		want int16
	}{
		{"direct write", direct, nil, blkif.RspOkay},
		{"indirect read of 4096 segments", indirect, segs, blkif.RspOkay},
		{"discard not offered", discard, nil, blkif.RspEOPNOTSUPP},
	} {
		var status int16
		allocs := testing.AllocsPerRun(100, func() {
			if n := indirectPages(c.r, l); n != blkif.IndirectPages(len(c.segs)) {
				t.Fatalf("%s: %d indirect pages", c.name, n)
			}
			status, _ = check(c.r, c.segs, l, p)
		})
		if status != c.want || allocs != 0 {
			t.Errorf("%s: status %d, %.1f allocations; want status %d, 0 allocations", c.name, status, allocs, c.want)
		}
	}
}
