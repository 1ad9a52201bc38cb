package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/scsi/pr"
)

// fakePR is a PRTarget with a one-holder reservation model: enough to see
// every action's arguments arrive and every answer come back.
type fakePR struct {
	fakeTarget
	calls []string
	keys  []uint64
	gen   uint32
	res   blkfront.PRReservation
}

func (f *fakePR) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakePR) PRRegister(_ context.Context, oldKey, newKey uint64, ignore, aptpl bool) error {
	f.record("register old=%#x new=%#x ignore=%v aptpl=%v", oldKey, newKey, ignore, aptpl)
	if oldKey == 0xdead {
		return errors.New("backend refused")
	}
	f.keys = append(f.keys, newKey)
	f.gen++
	return nil
}

func (f *fakePR) PRReserve(_ context.Context, key uint64, typ pr.Type) error {
	f.record("reserve key=%#x type=%d", key, typ)
	if f.res.Held && f.res.Key != key {
		return fmt.Errorf("wrapped: %w", blkfront.ErrReservationConflict)
	}
	f.res = blkfront.PRReservation{Held: true, Key: key, Type: typ}
	return nil
}

func (f *fakePR) PRRelease(_ context.Context, key uint64, typ pr.Type) error {
	f.record("release key=%#x type=%d", key, typ)
	f.res = blkfront.PRReservation{}
	return nil
}

func (f *fakePR) PRPreempt(_ context.Context, key, oldKey uint64, typ pr.Type, abort bool) error {
	f.record("preempt key=%#x old=%#x type=%d abort=%v", key, oldKey, typ, abort)
	f.res = blkfront.PRReservation{Held: true, Key: key, Type: typ}
	return nil
}

func (f *fakePR) PRClear(_ context.Context, key uint64) error {
	f.record("clear key=%#x", key)
	f.keys, f.res = nil, blkfront.PRReservation{}
	return nil
}

func (f *fakePR) PRReadKeys(context.Context) (uint32, []uint64, error) {
	f.record("read-keys")
	return f.gen, f.keys, nil
}

func (f *fakePR) PRReadReservation(context.Context) (blkfront.PRReservation, error) {
	f.record("read-reservation")
	r := f.res
	r.Generation = f.gen
	return r, nil
}

func TestPRRoundTrip(t *testing.T) {
	fp := &fakePR{}
	path := start(t, map[string]Target{"xvda": fp, "plain": &fakeTarget{}})
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	must := func(r PRRequest) PRResult {
		t.Helper()
		res, err := c.PR("xvda", r)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		return res
	}
	// Keys above 2^53 must survive JSON exactly.
	const big = 0xfedcba9876543210
	must(PRRequest{Action: PRRegister, Key: big, APTPL: true})
	must(PRRequest{Action: PRRegister, Key: 0x2, OldKey: 0x1, Ignore: true})
	must(PRRequest{Action: PRReserve, Key: big, Type: 5})
	if _, err := c.PR("xvda", PRRequest{Action: PRReserve, Key: 0x2, Type: 5}); !errors.Is(err, ErrReservationConflict) || !errors.Is(err, blkfront.ErrReservationConflict) {
		t.Fatalf("conflicting reserve: %v", err)
	}
	if got := must(PRRequest{Action: PRReadReservation}); !reflect.DeepEqual(got, PRResult{Generation: 2, Held: true, Key: big, Type: 5}) {
		t.Fatalf("read-reservation = %+v", got)
	}
	if got := must(PRRequest{Action: PRReadKeys}); got.Generation != 2 || len(got.Keys) != 2 || got.Keys[0] != big || got.Keys[1] != 2 {
		t.Fatalf("read-keys = %+v", got)
	}
	must(PRRequest{Action: PRPreempt, Key: 0x2, OldKey: big, Type: 1})
	must(PRRequest{Action: PRPreemptAbort, Key: 0x2, OldKey: big, Type: 3})
	must(PRRequest{Action: PRRelease, Key: 0x2, Type: 3})
	must(PRRequest{Action: PRClear, Key: 0x2})
	if got := must(PRRequest{Action: PRReadReservation}); got.Held {
		t.Fatalf("after clear: %+v", got)
	}
	want := []string{
		"register old=0x0 new=0xfedcba9876543210 ignore=false aptpl=true",
		"register old=0x1 new=0x2 ignore=true aptpl=false",
		"reserve key=0xfedcba9876543210 type=5",
		"reserve key=0x2 type=5",
		"read-reservation",
		"read-keys",
		"preempt key=0x2 old=0xfedcba9876543210 type=1 abort=false",
		"preempt key=0x2 old=0xfedcba9876543210 type=3 abort=true",
		"release key=0x2 type=3",
		"clear key=0x2",
		"read-reservation",
	}
	if strings.Join(fp.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(fp.calls, "\n"), strings.Join(want, "\n"))
	}

	// Errors: a backend failure, a device without the operation, an
	// unknown action, an unknown device. The connection stays usable.
	if _, err := c.PR("xvda", PRRequest{Action: PRRegister, OldKey: 0xdead, Key: 1}); err == nil || err.Error() != "backend refused" {
		t.Errorf("backend failure: %v", err)
	}
	if _, err := c.PR("plain", PRRequest{Action: PRReadKeys}); err == nil || !strings.Contains(err.Error(), "does not carry the reservation operation") {
		t.Errorf("non-PR target: %v", err)
	}
	if _, err := c.PR("xvda", PRRequest{Action: "steal"}); err == nil || !strings.Contains(err.Error(), "unknown pr action") {
		t.Errorf("unknown action: %v", err)
	}
	if _, err := c.PR("xvdz", PRRequest{Action: PRReadKeys}); err == nil || !strings.Contains(err.Error(), "no device") {
		t.Errorf("unknown device: %v", err)
	}
	if got := must(PRRequest{Action: PRReadKeys}); got.Generation != 2 {
		t.Errorf("connection after errors: %+v", got)
	}
}

// FuzzHandle: any request line decodes to a response, never a panic, and
// an exec or pr request the server answers successfully was well formed.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(`{"op":"pr","device":"xvda","pr":{"action":"reserve","key":1,"type":5}}`))
	f.Add([]byte(`{"op":"pr","device":"xvda"}`))
	f.Add([]byte(`{"op":"pr","device":"plain","pr":{"action":"read-keys"}}`))
	f.Add([]byte(`{"op":"exec","device":"xvda","cdb":"EgAAACQA","dir":2,"data_in_len":36}`))
	f.Add([]byte(`{"op":"list"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var req Request
		if json.Unmarshal(line, &req) != nil {
			return
		}
		devs := map[string]Target{"xvda": &fakePR{}, "plain": &fakeTarget{}}
		resp := handle(&req, NewDevices(devs))
		if req.Op == "pr" && resp.Error == "" && !resp.Conflict && resp.PR == nil {
			t.Fatalf("pr %+v: empty success", req.PR)
		}
		if req.Op == "exec" && resp.Error == "" && (len(req.CDB) == 0 || len(req.CDB) > 32) {
			t.Fatalf("exec of a %d-byte CDB accepted", len(req.CDB))
		}
	})
}
