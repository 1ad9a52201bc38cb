package adaptpoll

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestWindowTranscripts runs testdata/window.txt: the window each poll
// gets, and where the outcome leaves it. Commands:
//
//	init max=D       a fresh window of maximum D (a Go duration)
//	poll             one poll per line: "found" or "empty" is what the
//	                 poll would see if it ran; a line may end in *N to
//	                 repeat it N times. Each line prints the window Next
//	                 gave (0: the caller sleeps, the outcome unused) and
//	                 the window after Hit or Miss.
func TestWindowTranscripts(t *testing.T) {
	var w Window
	datadriven.RunTest(t, "testdata/window.txt", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "init":
			var s string
			d.ScanArgs(t, "max", &s)
			m, err := time.ParseDuration(s)
			if err != nil {
				d.Fatalf(t, "max: %v", err)
			}
			w.Init(m)
			return fmt.Sprintf("max=%v cur=%v", w.Max(), time.Duration(w.cur.Load()))
		case "poll":
			var out strings.Builder
			for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
				outcome, rep, _ := strings.Cut(strings.TrimSpace(line), "*")
				n := 1
				if rep != "" {
					var err error
					if n, err = strconv.Atoi(rep); err != nil {
						d.Fatalf(t, "repeat %q: %v", rep, err)
					}
				}
				if outcome != "found" && outcome != "empty" {
					d.Fatalf(t, "outcome %q: want found or empty", outcome)
				}
				sleeps := 0
				for i := 0; i < n; i++ {
					next := w.Next()
					if next == 0 {
						sleeps++
						continue
					}
					if sleeps > 0 {
						fmt.Fprintf(&out, "sleep*%d\n", sleeps)
						sleeps = 0
					}
					if outcome == "found" {
						w.Hit()
					} else {
						w.Miss()
					}
					fmt.Fprintf(&out, "poll %v %s -> %v\n", next, outcome, time.Duration(w.cur.Load()))
				}
				if sleeps > 0 {
					fmt.Fprintf(&out, "sleep*%d\n", sleeps)
				}
			}
			return out.String()
		default:
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		}
	})
}

// TestZeroWindowNeverPolls: a Window not initialised, or initialised with
// no maximum (blkback's negative Config.Poll), never asks for a poll, not
// even a probe.
func TestZeroWindowNeverPolls(t *testing.T) {
	for _, m := range []time.Duration{0, -time.Microsecond} {
		var w Window
		if m != 0 {
			w.Init(m)
		}
		for i := 0; i < 4*ProbeEvery; i++ {
			if d := w.Next(); d != 0 {
				t.Fatalf("max %v: poll %d got a window of %v, want none", m, i, d)
			}
		}
	}
}

// TestWindowConcurrent: under concurrent hits and misses (blkfront's
// submitters share a window) the window stays none or within
// [max/8, max]. Run with -race.
func TestWindowConcurrent(t *testing.T) {
	const limit = 64 * time.Microsecond
	var w Window
	w.Init(limit)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				d := w.Next()
				if d != 0 && (d < limit/8 || d > limit) {
					t.Errorf("window %v outside [%v, %v]", d, limit/8, limit)
					return
				}
				if d == 0 {
					continue
				}
				if (i+g)%3 == 0 {
					w.Hit()
				} else {
					w.Miss()
				}
			}
		}()
	}
	wg.Wait()
}
