package main

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/bench"
)

func TestBenchJSON(t *testing.T) {
	var out strings.Builder
	root := newCLI()
	root.SetArgs([]string{"bench", "--backend", "null", "--queues", "1", "--workload", "seqread",
		"--duration", "100ms", "--baselines=false", "--size", "16777216", "--dir", t.TempDir(), "--json"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("%v in %q", err, out.String())
	}
	if len(rep.Results) != 1 || rep.Results[0].Workload != "seqread" || rep.Results[0].Ops == 0 || rep.Results[0].BlockSize != 1<<20 ||
		rep.Results[0].Submit != bench.SubmitBatch {
		t.Fatalf("results %+v", rep.Results)
	}
}

// TestBenchCompare: --compare alone (no cases, no baselines) reports
// one comparison per selected workload, in the JSON and in the table
// (with no header for the cases that did not run).
func TestBenchCompare(t *testing.T) {
	for _, jsonOut := range []bool{true, false} {
		var out strings.Builder
		root := newCLI()
		root.SetArgs([]string{"bench", "--cases=false", "--baselines=false", "--workload", "randread", "--qd", "1,32",
			"--compare", "blkif/null:vscsi/null", "--pairs", "1", "--duration", "100ms", "--size", "4194304", "--dir", t.TempDir(),
			"--json=" + strconv.FormatBool(jsonOut)})
		root.SetOut(&out)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if !jsonOut {
			if n := strings.Count(out.String(), "compare randread"); n != 2 || !strings.Contains(out.String(), "vscsi/null") ||
				strings.Contains(out.String(), "workload") {
				t.Errorf("table: %d comparison lines, want 2:\n%s", n, out.String())
			}
			continue
		}
		var rep bench.Report
		if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
			t.Fatalf("%v in %q", err, out.String())
		}
		if len(rep.Results) != 0 || len(rep.Comparisons) != 2 || rep.Comparisons[1].QD != 32 || rep.Comparisons[1].B.Transport != "vscsi" ||
			rep.Comparisons[0].Ratio <= 0 {
			t.Fatalf("comparisons %+v", rep.Comparisons)
		}
	}
}

func TestBenchUsageErrors(t *testing.T) {
	// Each case runs in a tree of its own (flags start from their
	// defaults) and is checked for its own message.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--submit", "threads"}, "--submit"},
		{[]string{"bench", "--workload", "scan"}, "--workload"},
		{[]string{"bench", "--duration", "1ms"}, "--duration"},
		{[]string{"bench", "--queues", "9"}, "--queues"},
		{[]string{"bench", "--backend", "tape"}, "--backend"},
		{[]string{"bench", "--compare", "blkif/null"}, "--compare"},
		{[]string{"bench", "--compare", "nvme/null:vscsi/null"}, "--compare"},
		{[]string{"bench", "--compare", "blkif/null:vscsi/null", "--pairs", "0"}, "--pairs"},
	} {
		root := newCLI()
		root.SetArgs(c.args)
		err := root.Execute()
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error about %s", c.args, err, c.want)
		}
	}
}

// TestBenchAcrossProcesses runs the backend in its own process
// (bench-backend, re-executed from the built binary).
func TestBenchAcrossProcesses(t *testing.T) {
	bin := buildXenblk(t)
	out, err := exec.Command(bin, "bench", "--cross-process", "--backend", "null,memory", "--queues", "1",
		"--workload", "randread", "--qd", "1", "--duration", "200ms", "--size", "16777216",
		"--submit", "batch,goroutines", "--baselines=false", "--dir", t.TempDir(), "--json").Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var rep bench.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v in %q", err, out)
	}
	if !rep.CrossProcess || len(rep.Results) != 4 {
		t.Fatalf("report %+v", rep)
	}
	modes := map[bench.SubmitMode]int{}
	for _, r := range rep.Results {
		modes[r.Submit]++
		if r.Ops == 0 {
			t.Errorf("%s %s: no requests completed", r.Backend, r.Submit)
		}
	}
	if modes[bench.SubmitBatch] != 2 || modes[bench.SubmitGoroutines] != 2 {
		t.Errorf("results by submit mode %v, want 2 of each", modes)
	}
}
