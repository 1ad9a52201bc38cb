package vscsibus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/xenblk/xenblk/xenbus"
)

// machine is what the transcripts drive: a Backend or a Frontend.
type machine interface {
	Step(Event) []Action
	Self() xenbus.State
	Peer() xenbus.State
	Removed() bool
	LUNs() []string
}

// The transcripts in testdata feed events to a machine and print, per
// event, the actions it returns and where it stands after. Commands:
//
//	backend                 a fresh Backend
//	frontend [segments=N]   a fresh Frontend (N data segments, default 26)
//	step                    one event per line:
//	    start [feature-host=V] | peer <State or number> | connect-done [fail]
//	    offline | lost | done dev-N [fail]
//	    luns [sg-grant=V] [| dev-N [state=V] [p-dev=V] [v-dev=V]]...
//	vdev                    one v-dev or dev-N name per line: parsed, or why not
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var m machine
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "backend":
				m = NewBackend()
				return "ok"
			case "frontend":
				segs := 26
				if d.HasArg("segments") {
					d.ScanArgs(t, "segments", &segs)
				}
				m = NewFrontend(segs)
				return "ok"
			case "step":
				var b strings.Builder
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					ev, err := parseEvent(line)
					if err != nil {
						d.Fatalf(t, "%v", err)
					}
					fmt.Fprintf(&b, "%s\n", line)
					acts := m.Step(ev)
					for _, a := range acts {
						fmt.Fprintf(&b, "  %s\n", a)
					}
					if len(acts) == 0 {
						b.WriteString("  -\n")
					}
					fmt.Fprintf(&b, "  = self=%s peer=%s", m.Self(), m.Peer())
					if l := m.LUNs(); len(l) > 0 {
						fmt.Fprintf(&b, " luns=[%s]", strings.Join(l, ", "))
					}
					if m.Removed() {
						b.WriteString(" removed")
					}
					b.WriteString("\n")
				}
				return b.String()
			case "vdev":
				var b strings.Builder
				for _, line := range strings.Split(d.Input, "\n") {
					if strings.HasPrefix(line, "dev") {
						n, err := ParseDevName(line)
						if err != nil {
							fmt.Fprintf(&b, "%-24q refused: %v\n", line, err)
						} else {
							fmt.Fprintf(&b, "%-24q LUN %d\n", line, n)
						}
						continue
					}
					v, err := ParseVDev(line)
					if err != nil {
						fmt.Fprintf(&b, "%-24q refused: %v\n", line, err)
					} else {
						fmt.Fprintf(&b, "%-24q host %d channel %d target %d lun %d\n", line, v.Host, v.Channel, v.Target, v.LUN)
					}
				}
				return b.String()
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

func parseEvent(line string) (Event, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return Event{}, errors.New("empty event")
	}
	fail := len(f) > 1 && f[len(f)-1] == "fail"
	switch f[0] {
	case "start":
		ev := Event{Kind: EvStart}
		if len(f) > 1 {
			ev.FeatureHost, _ = strings.CutPrefix(f[1], "feature-host=")
		}
		return ev, nil
	case "offline":
		return Event{Kind: EvOffline}, nil
	case "lost":
		return Event{Kind: EvPeerLost}, nil
	case "connect-done":
		ev := Event{Kind: EvConnectDone}
		if fail {
			ev.Err = errors.New("cannot map ring")
		}
		return ev, nil
	case "done":
		if len(f) < 2 {
			return Event{}, fmt.Errorf("done needs dev-N: %q", line)
		}
		n, err := ParseDevName(f[1])
		if err != nil {
			return Event{}, err
		}
		ev := Event{Kind: EvLUNDone, LUN: n}
		if fail {
			ev.Err = errors.New("cannot open")
		}
		return ev, nil
	case "peer":
		if len(f) != 2 {
			return Event{}, fmt.Errorf("peer needs a state: %q", line)
		}
		if n, err := strconv.Atoi(f[1]); err == nil {
			return Event{Kind: EvPeerState, State: xenbus.State(n)}, nil
		}
		for s := xenbus.Unknown; s <= xenbus.Reconfigured; s++ {
			if s.String() == f[1] {
				return Event{Kind: EvPeerState, State: s}, nil
			}
		}
		return Event{}, fmt.Errorf("unknown state %q", f[1])
	case "luns":
		ev := Event{Kind: EvLUNs}
		parts := strings.Split(strings.TrimPrefix(line, "luns"), "|")
		for _, kv := range strings.Fields(parts[0]) {
			v, ok := strings.CutPrefix(kv, "sg-grant=")
			if !ok {
				return Event{}, fmt.Errorf("luns: unknown option %q", kv)
			}
			ev.SGGrant = v
		}
		for _, p := range parts[1:] {
			w := strings.Fields(p)
			if len(w) == 0 {
				return Event{}, fmt.Errorf("luns: empty directory in %q", line)
			}
			d := DevNodes{Name: w[0]}
			for _, kv := range w[1:] {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "state":
					d.State = v
				case "p-dev":
					d.PDev = v
				case "v-dev":
					d.VDev = v
				default:
					return Event{}, fmt.Errorf("luns: unknown node %q", k)
				}
			}
			ev.Devs = append(ev.Devs, d)
		}
		return ev, nil
	}
	return Event{}, fmt.Errorf("unknown event %q", line)
}

// A flood of LUN directories costs no more than MaxLUNs of them: the
// rest, in index order, are refused with a warning each.
func TestSnapshotBounds(t *testing.T) {
	var devs []DevNodes
	for n := MaxLUNs + 75; n >= 0; n-- {
		devs = append(devs, DevNodes{Name: devName(n), State: "1", PDev: "/img", VDev: fmt.Sprintf("0:0:%d:0", n)})
	}
	warnings := 0
	s := readSnapshot(devs, func(string) { warnings++ })
	if len(s.order) != MaxLUNs || s.order[0] != 0 || s.order[MaxLUNs-1] != MaxLUNs-1 || warnings != 76 {
		t.Fatalf("kept %d (dev-%d..dev-%d), warned %d; want dev-0..dev-%d and 76",
			len(s.order), s.order[0], s.order[len(s.order)-1], warnings, MaxLUNs-1)
	}
	b := NewBackend()
	for _, ev := range []Event{{Kind: EvStart}, {Kind: EvPeerState, State: xenbus.Initialised}, {Kind: EvConnectDone}} {
		b.Step(ev)
	}
	opened := 0
	for _, a := range b.Step(Event{Kind: EvLUNs, Devs: devs}) {
		if a.Kind == ActAttachLUN {
			opened++
		}
	}
	if opened > MaxLUNs {
		t.Fatalf("%d LUNs opened, want at most %d", opened, MaxLUNs)
	}
}
