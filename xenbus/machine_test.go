package xenbus

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// The transcripts in testdata feed events to a machine and print, per
// event, the actions it returns and the resulting states. Commands:
//
//	backend | frontend        start a fresh machine of that role
//	hotplug-backend           a backend that waits for its hotplug script
//	step                      one event per line:
//	                            start | peer <State> | connect-done [fail]
//	                            offline | lost | hotplug-done
func TestMachineTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var m *Machine
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "backend":
				m = NewBackend()
				return "ok"
			case "frontend":
				m = NewFrontend()
				return "ok"
			case "hotplug-backend":
				m = NewHotplugBackend()
				return "ok"
			case "step":
				var b strings.Builder
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					ev, err := parseEvent(line)
					if err != nil {
						d.Fatalf(t, "%v", err)
					}
					acts := m.Step(ev)
					names := make([]string, len(acts))
					for i, a := range acts {
						names[i] = a.String()
					}
					if len(names) == 0 {
						names = []string{"-"}
					}
					fmt.Fprintf(&b, "%-20s -> %s  [self=%s peer=%s", line, strings.Join(names, "; "), m.Self(), m.Peer())
					if m.Removed() {
						b.WriteString(" removed")
					}
					b.WriteString("]\n")
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
	switch f[0] {
	case "start":
		return Event{Kind: EvStart}, nil
	case "offline":
		return Event{Kind: EvOffline}, nil
	case "lost":
		return Event{Kind: EvPeerLost}, nil
	case "hotplug-done":
		return Event{Kind: EvHotplugDone}, nil
	case "connect-done":
		ev := Event{Kind: EvConnectDone}
		if len(f) > 1 && f[1] == "fail" {
			ev.Err = errors.New("cannot map ring")
		}
		return ev, nil
	case "peer":
		if len(f) != 2 {
			return Event{}, fmt.Errorf("peer needs a state: %q", line)
		}
		for i, n := range stateNames {
			if n == f[1] {
				return Event{Kind: EvPeerState, State: State(i)}, nil
			}
		}
		return Event{}, fmt.Errorf("unknown state %q", f[1])
	}
	return Event{}, fmt.Errorf("unknown event %q", line)
}

func TestParseState(t *testing.T) {
	for v, want := range map[string]State{"1": Initialising, "4": Connected, "8": Reconfigured, "": Unknown, "9": Unknown, "-1": Unknown, "4x": Unknown} {
		if got := ParseState(v); got != want {
			t.Errorf("ParseState(%q) = %v, want %v", v, got, want)
		}
	}
	if Connected.Value() != "4" {
		t.Errorf("Connected.Value() = %q", Connected.Value())
	}
}

// Two machines wired back to back through a perfect store reach Connected
// from any order of starts, and both reach Closed on removal.
func TestBackToBack(t *testing.T) {
	for _, backendFirst := range []bool{true, false} {
		be, fe := NewBackend(), NewFrontend()
		var queue []func()
		var run func(m, other *Machine, ev Event)
		run = func(m, other *Machine, ev Event) {
			for _, a := range m.Step(ev) {
				switch a.Kind {
				case ActSetState:
					s := a.State
					queue = append(queue, func() { run(other, m, Event{Kind: EvPeerState, State: s}) })
				case ActConnect:
					queue = append(queue, func() { run(m, other, Event{Kind: EvConnectDone}) })
				}
			}
		}
		drain := func() {
			for len(queue) > 0 {
				f := queue[0]
				queue = queue[1:]
				f()
			}
		}
		if backendFirst {
			run(be, fe, Event{Kind: EvStart})
			drain()
			run(fe, be, Event{Kind: EvStart})
		} else {
			run(fe, be, Event{Kind: EvStart})
			drain()
			run(be, fe, Event{Kind: EvStart})
		}
		drain()
		if be.Self() != Connected || fe.Self() != Connected {
			t.Fatalf("backendFirst=%v: backend %v frontend %v, want both Connected", backendFirst, be.Self(), fe.Self())
		}
		run(be, fe, Event{Kind: EvOffline})
		drain()
		if be.Self() != Closed || fe.Self() != Closed || !be.Removed() {
			t.Fatalf("after offline: backend %v (removed %v) frontend %v", be.Self(), be.Removed(), fe.Self())
		}
	}
}
