package xenbus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// nodes is a Reader over a map; a value "!eacces" fails the read.
type nodes map[string]string

func (n nodes) Read(path string) (string, error) {
	v, ok := n[path]
	switch {
	case !ok:
		return "", fmt.Errorf("%s: %w", path, xen.ErrNotFound)
	case v == "!eacces":
		return "", xen.ErrPermission
	}
	return v, nil
}

func TestReadNumber(t *testing.T) {
	r := nodes{"n": " 42\n", "neg": "-1", "big": "300", "huge": "99999999999999999999", "word": "two",
		"empty": "", "hex": "0x10", "denied": "!eacces"}
	for _, tc := range []struct {
		read func() (any, error)
		want any
		err  string // a substring of the error; "" for none
	}{
		{func() (any, error) { return xenbus.ReadNumber(r, "n", 7) }, 42, ""},
		{func() (any, error) { return xenbus.ReadNumber(r, "absent", 7) }, 7, ""},
		{func() (any, error) { return xenbus.ReadNumber(r, "absent", uint64(512)) }, uint64(512), ""},
		{func() (any, error) { return xenbus.ReadNumber(r, "neg", 0) }, -1, ""},
		{func() (any, error) { return xenbus.ReadNumber(r, "neg", uint32(0)) }, uint32(0), `neg: "-1" is not a number`},
		{func() (any, error) { return xenbus.ReadNumber(r, "big", uint8(0)) }, uint8(0), `big: "300" is not a number`},
		{func() (any, error) { return xenbus.ReadNumber(r, "big", int16(0)) }, int16(300), ""},
		{func() (any, error) { return xenbus.ReadNumber(r, "huge", int64(0)) }, int64(0), "is not a number"},
		{func() (any, error) { return xenbus.ReadNumber(r, "word", 1) }, 1, `word: "two" is not a number`},
		{func() (any, error) { return xenbus.ReadNumber(r, "empty", 1) }, 1, "is not a number"},
		{func() (any, error) { return xenbus.ReadNumber(r, "hex", 1) }, 1, "is not a number"},
		{func() (any, error) { return xenbus.ReadNumber(r, "denied", 1) }, 1, "permission denied"},
	} {
		got, err := tc.read()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("read %v: error %v, want %q", tc.want, err, tc.err)
			continue
		}
		if tc.err == "" && got != tc.want {
			t.Errorf("read %v (%T): got %v (%T)", tc.want, tc.want, got, got)
		}
	}
}

func TestLookupNumber(t *testing.T) {
	r := xenbus.ReaderFunc(nodes{"n": "0", "word": "x"}.Read)
	if v, ok, err := xenbus.LookupNumber[uint32](r, "n"); v != 0 || !ok || err != nil {
		t.Errorf("present 0: %v %v %v", v, ok, err)
	}
	if v, ok, err := xenbus.LookupNumber[uint32](r, "absent"); v != 0 || ok || err != nil {
		t.Errorf("absent: %v %v %v", v, ok, err)
	}
	if _, ok, err := xenbus.LookupNumber[uint32](r, "word"); ok || err == nil {
		t.Errorf("garbled: ok %v, err %v", ok, err)
	}
}

func newStore(t *testing.T) xen.Store {
	t.Helper()
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	return h.Store()
}

// A value already there is seen without any event but the watch's first.
func TestWaitNodeAlreadyThere(t *testing.T) {
	st := newStore(t)
	st.Write("/a/state", "4")
	v, err := xenbus.WaitNode(context.Background(), st, "/a/state", xenbus.OneOf("4"))
	if v != "4" || err != nil {
		t.Fatalf("got %q, %v", v, err)
	}
}

// Each write wakes the wait; it returns at the value it waits for, and
// an absent node is what it says it is.
func TestWaitNodeFollowsWrites(t *testing.T) {
	st := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for _, v := range []string{"1", "2", " 6\n"} {
			st.Write("/a/state", v)
		}
	}()
	v, err := xenbus.WaitNode(ctx, st, "/a/state", xenbus.OneOf("6"))
	if v != " 6\n" || err != nil {
		t.Fatalf("got %q, %v", v, err)
	}
	go st.Remove("/a")
	_, err = xenbus.WaitNode(ctx, st, "/a/state", func(_ string, err error) bool { return errors.Is(err, xen.ErrNotFound) })
	if !errors.Is(err, xen.ErrNotFound) {
		t.Fatalf("after removing the parent: %v, want not found", err)
	}
	go st.Write("/b", "")
	if _, err := xenbus.WaitNode(ctx, st, "/b", xenbus.Exists); err != nil {
		t.Fatalf("exists: %v", err)
	}
}

// A wait ends with its context, saying what it saw last.
func TestWaitNodeContext(t *testing.T) {
	st := newStore(t)
	st.Write("/a/state", "2")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := xenbus.WaitNode(ctx, st, "/a/state", xenbus.OneOf("6"))
	if v != "2" || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `last value "2"`) {
		t.Fatalf("got %q, %v", v, err)
	}
}

// closedWatchStore's watches deliver nothing and close: a store whose
// connection went.
type closedWatchStore struct{ xen.Store }

type closedWatch chan xen.WatchEvent

func (w closedWatch) Events() <-chan xen.WatchEvent { return w }
func (w closedWatch) Close() error                  { return nil }

func (closedWatchStore) Watch(string, string) (xen.Watch, error) {
	w := make(closedWatch)
	close(w)
	return w, nil
}

func TestWaitNodeConnectionClosed(t *testing.T) {
	st := closedWatchStore{newStore(t)}
	_, err := xenbus.WaitNode(context.Background(), st, "/a", xenbus.Exists)
	if err == nil || !strings.Contains(err.Error(), "connection closed") {
		t.Fatalf("got %v", err)
	}
}
