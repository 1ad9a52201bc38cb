package lease

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestTranscripts runs testdata/*.txt: one lease per file, driven by
//
//	new term=D margin=D       a stale lease with nothing cached
//	observe v=N               a watched change at version N
//	confirmed sent=D v=N      a linearizable read sent at D found version N
//	committed sent=D v=N      this host's compare-and-swap sent at D made version N
//	fresh t=D                 may the cache judge an admission at D?
//	check t=D                 the fail-closed transition at D, if any
//	hold answered=D           until when a revoking change answered at D is held
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var l *Lease
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			dur := func(key string) time.Duration {
				var s string
				d.ScanArgs(t, key, &s)
				v, err := time.ParseDuration(s)
				if err != nil {
					d.Fatalf(t, "%s=%s: %v", key, s, err)
				}
				return v
			}
			ver := func() uint64 {
				var s string
				d.ScanArgs(t, "v", &s)
				v, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					d.Fatalf(t, "v=%s: %v", s, err)
				}
				return v
			}
			if d.Cmd != "new" && l == nil {
				d.Fatalf(t, "no lease yet: start with new")
			}
			switch d.Cmd {
			case "new":
				l = New(Config{Term: dur("term"), Margin: dur("margin")})
				return describe(l)
			case "observe":
				if l.Observe(ver()) {
					return "install; " + describe(l)
				}
				return "ignore (not newer); " + describe(l)
			case "confirmed":
				if l.Confirmed(dur("sent"), ver()) {
					return "install; " + describe(l)
				}
				return "keep; " + describe(l)
			case "committed":
				l.Committed(dur("sent"), ver())
				return describe(l)
			case "fresh":
				if l.Fresh(dur("t")) {
					return "fresh: admissions judged by the cache"
				}
				return "stale: reservation-dependent admissions refused"
			case "check":
				return l.Check(dur("t")).String()
			case "hold":
				return "complete at " + l.HoldUntil(dur("answered")).String()
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

func describe(l *Lease) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version %d, ", l.Version())
	if l.Until() == 0 {
		b.WriteString("never confirmed")
	} else {
		fmt.Fprintf(&b, "fresh before %s", l.Until())
	}
	return b.String()
}
