package vscsibus

import (
	"strings"
	"testing"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// setLUNState writes only into a directory that is there and over the
// value the machine read.
func TestSetLUNState(t *testing.T) {
	const back, front = "/local/domain/0/backend/vscsi/1/0", "/local/domain/1/device/vscsi/0"
	for _, tc := range []struct {
		name    string
		backend bool
		nodes   map[string]string // written first
		a       Action
		want    string // the node after; "" absent
		refused bool
	}{
		{"backend, as read", true, map[string]string{back + "/vscsi-devs/dev-2/state": "1"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "3", false},
		{"backend, rewritten since", true, map[string]string{back + "/vscsi-devs/dev-2/state": "5"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "5", true},
		{"backend, garbled since", true, map[string]string{back + "/vscsi-devs/dev-2/state": "x"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "x", true},
		{"backend, directory removed", true, map[string]string{back + "/state": "4"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "", true},
		{"backend, state removed", true, map[string]string{back + "/vscsi-devs/dev-2/p-dev": "/img"},
			Action{LUN: 2, From: lunNew, State: lunAttached}, "", true},
		{"backend, directory removed, from anything", true, map[string]string{back + "/state": "4"},
			Action{LUN: 2, State: lunRemoved}, "", true},
		{"backend, from anything", true, map[string]string{back + "/vscsi-devs/dev-2/state": "5"},
			Action{LUN: 2, State: lunRemoved}, "6", false},
		{"frontend, its own first", false, map[string]string{front + "/state": "4"},
			Action{LUN: 2, State: lunConnected}, "4", false},
		{"frontend, directory removed", false, map[string]string{"/local/domain/1/name": "guest"},
			Action{LUN: 2, State: lunConnected}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := sim.NewHost()
			if err != nil {
				t.Fatal(err)
			}
			st := h.Store()
			for k, v := range tc.nodes {
				if err := st.Write(k, v); err != nil {
					t.Fatal(err)
				}
			}
			r := &Runner{Store: st, Self: front, backend: tc.backend}
			if tc.backend {
				r.Self = back
			}
			tc.a.Kind = ActSetLUNState
			dir := r.Self + "/" + vscsiif.DevPath(2)
			_, before := st.Read(dir)
			err = r.setLUNState(tc.a)
			if (err != nil) != tc.refused {
				t.Fatalf("setLUNState(%s) = %v; want refused %v", tc.a, err, tc.refused)
			}
			got, rerr := st.Read(dir + "/state")
			if rerr != nil {
				got = ""
			}
			if got != tc.want {
				t.Fatalf("after %s: node %q, want %q", tc.a, got, tc.want)
			}
			if _, after := st.Read(dir); tc.refused && (before == nil) != (after == nil) {
				t.Fatalf("a refused write changed whether %s exists: %v, then %v", dir, before, after)
			}
		})
	}
}

// readRing takes what a frontend published, and refuses what is
// missing or out of range.
func TestReadRing(t *testing.T) {
	for _, tc := range []struct {
		nodes map[string]string
		want  Ring
		err   string
	}{
		{map[string]string{"ring-ref": "8", "event-channel": "5"}, Ring{Ref: 8, Port: 5, ABI: blkif.Native}, ""},
		{map[string]string{"ring-ref": " 4294967295 ", "event-channel": "0", "protocol": "x86_32-abi"},
			Ring{Ref: 1<<32 - 1, Port: 0, ABI: blkif.X86_32}, ""},
		{map[string]string{"event-channel": "5"}, Ring{}, "has not published"},
		{map[string]string{"ring-ref": "8"}, Ring{}, "has not published"},
		{map[string]string{"ring-ref": "4294967296", "event-channel": "5"}, Ring{}, "over 32 bits"},
		{map[string]string{"ring-ref": "8", "event-channel": "-2"}, Ring{}, "has not published"},
		{map[string]string{"ring-ref": "eight", "event-channel": "5"}, Ring{}, "not a number"},
		{map[string]string{"ring-ref": "8", "event-channel": "5", "protocol": "pdp11"}, Ring{}, "unknown protocol"},
	} {
		read := xenbus.ReaderFunc(func(path string) (string, error) {
			if v, ok := tc.nodes[strings.TrimPrefix(path, "dir/")]; ok {
				return v, nil
			}
			return "", xen.ErrNotFound
		})
		got, err := readRing(read, "dir")
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%v: %+v, %v; want %+v", tc.nodes, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: %v; want an error saying %q", tc.nodes, err, tc.err)
		}
	}
}
