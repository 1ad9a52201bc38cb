package slotlife

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestTranscripts runs testdata/table.txt. Commands:
//
//	table   a Table drawn from the input, a line a state:
//	        "state: event->next ...". Prints it back (String), the moves
//	        it draws, and what Check finds.
//	core    Core, printed as table prints a table; on then follows it.
//	on      one line "state event" (names, or numbers for values out of
//	        range) a line: where the last table moves it, or "refused".
func TestTranscripts(t *testing.T) {
	var tab Table
	datadriven.RunTest(t, "testdata/table.txt", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "table":
			tab = Table{}
			for _, line := range lines(d.Input) {
				name, moves, _ := strings.Cut(line, ":")
				s := parseState(t, d, name)
				for _, m := range strings.Fields(moves) {
					ev, next, _ := strings.Cut(m, "->")
					tab[s][parseEvent(t, d, ev)] = parseState(t, d, next)
				}
			}
			return fmt.Sprintf("%smoves: %d\ncheck: %v\n", tab.String(), tab.Moves(), tab.Check())
		case "core":
			tab = Core()
			return fmt.Sprintf("%smoves: %d\ncheck: %v\n", tab.String(), tab.Moves(), tab.Check())
		case "on":
			var out strings.Builder
			for _, line := range lines(d.Input) {
				f := strings.Fields(line)
				if len(f) != 2 {
					d.Fatalf(t, "%q: want a state and an event", line)
				}
				s, ev := parseState(t, d, f[0]), parseEvent(t, d, f[1])
				if next, ok := tab.On(s, ev); ok {
					fmt.Fprintf(&out, "%v %v: -> %v\n", s, ev, next)
				} else {
					fmt.Fprintf(&out, "%v %v: refused\n", s, ev)
				}
			}
			return out.String()
		default:
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		}
	})
}

func lines(input string) []string {
	if input = strings.TrimSpace(input); input == "" {
		return nil
	}
	return strings.Split(input, "\n")
}

func parseState(t *testing.T, d *datadriven.TestData, name string) State {
	name = strings.TrimSpace(name)
	if s, ok := ParseState(name); ok {
		return s
	}
	var n uint8
	if _, err := fmt.Sscan(name, &n); err != nil {
		d.Fatalf(t, "no state %q", name)
	}
	return State(n)
}

func parseEvent(t *testing.T, d *datadriven.TestData, name string) Event {
	if ev, ok := ParseEvent(name); ok {
		return ev
	}
	var n uint8
	if _, err := fmt.Sscan(name, &n); err != nil {
		d.Fatalf(t, "no event %q", name)
	}
	return Event(n)
}
