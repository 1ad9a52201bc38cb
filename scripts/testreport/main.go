// Command testreport reads `go test -json` on stdin and prints what plain
// `go test` prints (a line per package; the output of every test that
// failed), then lists every skipped test with its reason, so a skip is
// seen rather than buried in -v output. It exits 1 when a test or package
// failed; `make test` runs it with pipefail so that go test's own status
// counts too.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of test2json's output.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// skip is a skipped test and why.
type skip struct{ pkg, test, reason string }

type report struct {
	out    io.Writer
	output map[string][]string // package+"\x00"+test -> lines, until the test ends
	skips  []skip
	failed bool
}

func main() {
	r := &report{out: os.Stdout, output: map[string][]string{}}
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	r.summary()
	if r.failed {
		os.Exit(1)
	}
}

func (r *report) read(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not test2json's (a build error printed as text): pass it on.
			fmt.Fprintf(r.out, "%s\n", line)
			continue
		}
		r.event(e)
	}
	return sc.Err()
}

func (r *report) event(e event) {
	key := e.Package + "\x00" + e.Test
	switch e.Action {
	case "output", "build-output":
		r.output[key] = append(r.output[key], e.Output)
	case "pass":
		if e.Test == "" {
			r.packageLine(key, "ok  \t", fmt.Sprintf("ok  \t%s\t%.3fs\n", e.Package, e.Elapsed))
		}
		delete(r.output, key)
	case "skip":
		if e.Test == "" {
			r.packageLine(key, "?   \t", fmt.Sprintf("?   \t%s\t[no test files]\n", e.Package))
		} else {
			r.skips = append(r.skips, skip{e.Package, e.Test, skipReason(r.output[key])})
		}
		delete(r.output, key)
	case "fail", "build-fail":
		r.failed = true
		if e.Test == "" {
			// The package's own lines: panics, TestMain's output, its
			// FAIL line (go test prints one unless the build failed).
			said := false
			for _, l := range r.output[key] {
				if !strings.HasPrefix(l, "=== ") {
					fmt.Fprint(r.out, l)
					said = said || strings.HasPrefix(l, "FAIL\t")
				}
			}
			if !said {
				fmt.Fprintf(r.out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
		} else {
			fmt.Fprint(r.out, strings.Join(r.output[key], ""))
		}
		delete(r.output, key)
	}
}

// packageLine prints the package's own summary line (the one starting with
// prefix that go test printed), or fallback when there is none.
func (r *report) packageLine(key, prefix, fallback string) {
	for _, l := range r.output[key] {
		if strings.HasPrefix(l, prefix) {
			fmt.Fprint(r.out, l)
			return
		}
	}
	fmt.Fprint(r.out, fallback)
}

// skipReason is what the test logged before it skipped: the t.Skip message
// (with its file:line), without the framework's === and --- lines.
func skipReason(lines []string) string {
	var reason []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		reason = append(reason, t)
	}
	if len(reason) == 0 {
		return "(no reason given)"
	}
	return strings.Join(reason, " / ")
}

func (r *report) summary() {
	if len(r.skips) == 0 {
		return
	}
	sort.Slice(r.skips, func(i, j int) bool {
		if r.skips[i].pkg != r.skips[j].pkg {
			return r.skips[i].pkg < r.skips[j].pkg
		}
		return r.skips[i].test < r.skips[j].test
	})
	fmt.Fprintf(r.out, "\n%d tests skipped:\n", len(r.skips))
	for _, s := range r.skips {
		fmt.Fprintf(r.out, "  SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
	}
}
