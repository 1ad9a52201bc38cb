package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestReport feeds a recorded `go test -json` stream (a failing package
// with a skip, a passing package with a skip, a package without tests):
// the report reads like plain go test, ends with the skips and their
// reasons, and counts the failure.
func TestReport(t *testing.T) {
	in, err := os.Open("testdata/sample.json")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out bytes.Buffer
	r := &report{out: &out, output: map[string][]string{}}
	if err := r.read(in); err != nil {
		t.Fatal(err)
	}
	r.summary()
	want := `=== RUN   TestFail
    a_test.go:5: some log
    a_test.go:5: broken
--- FAIL: TestFail (0.00s)
FAIL
FAIL	tr	0.003s
ok  	tr/ok	0.012s
?   	tr/none	[no test files]

2 tests skipped:
  SKIP tr TestSkip: a_test.go:4: runs in make xenlab
  SKIP tr/ok TestB: b_test.go:9: needs /dev/xen: runs in make xenlab
`
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}
	if !r.failed {
		t.Error("a failed package did not count as a failure")
	}
}

// TestReportPassesTextThrough: lines that are not test2json's (a build
// error printed as text) are printed as they are, and a clean run is no
// failure.
func TestReportPassesTextThrough(t *testing.T) {
	var out bytes.Buffer
	r := &report{out: &out, output: map[string][]string{}}
	in := "# example.com/x\nx.go:3:1: syntax error\n" +
		`{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}` + "\n" + `{"Action":"pass","Package":"p","Elapsed":0.1}` + "\n"
	if err := r.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if out.String() != "# example.com/x\nx.go:3:1: syntax error\nok  \tp\t0.1s\n" || r.failed {
		t.Errorf("got %q, failed %v", out.String(), r.failed)
	}
}
