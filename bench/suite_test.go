package bench

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSelectWorkloads(t *testing.T) {
	for _, c := range []struct {
		names []string
		qds   []int
		want  []string // name/qd
	}{
		{nil, nil, []string{"randread/1", "randread/32", "randread/128", "randwrite/1", "randwrite/32", "randwrite/128", "seqread/1", "seqread-view/1"}},
		{[]string{"randwrite"}, nil, []string{"randwrite/1", "randwrite/32", "randwrite/128"}},
		{nil, []int{32}, []string{"randread/32", "randwrite/32"}},
		{[]string{"seqread", "randread"}, []int{1}, []string{"randread/1", "seqread/1"}},
		{[]string{"seqread"}, []int{32}, nil},
	} {
		var got []string
		for _, w := range SelectWorkloads(c.names, c.qds) {
			got = append(got, w.Name+"/"+strconv.Itoa(w.QD))
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("SelectWorkloads(%v, %v) = %v, want %v", c.names, c.qds, got, c.want)
		}
	}
}

// A suite of cases alone runs them in this process and nothing else:
// the null+poll and null+events cases come only with the baselines.
func TestRunSuiteCasesOnly(t *testing.T) {
	var progress strings.Builder
	s := Suite{Options: Options{Duration: 100 * time.Millisecond, Backends: []string{"null"}, Queues: []int{1}, FileSize: 8 << 20,
		Workloads: []Workload{{Name: "randread", Random: true, BlockSize: 4096, QD: 1}}, Progress: &progress}, Cases: true}
	rep, err := RunSuite(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Backend != "null" || rep.CrossProcess || rep.Devices != nil || rep.Baselines != nil {
		t.Fatalf("report %+v: want the one null case", rep)
	}
	if !strings.Contains(progress.String(), "null") {
		t.Errorf("progress %q: no line for the case", progress.String())
	}
}

// A backend process without a way to start one is refused before
// anything runs.
func TestRunSuiteNeedsABackendCommand(t *testing.T) {
	for _, s := range []Suite{{Cases: true, CrossProcess: true}, {Devices: 1}} {
		if _, err := RunSuite(context.Background(), s); err == nil {
			t.Errorf("%+v: ran without BackendCommand", s)
		}
	}
	var started []string
	s := Suite{Devices: 1, BackendCommand: func(sock, backend string, poll time.Duration, profile string) *exec.Cmd {
		started = append(started, backend)
		return exec.Command("true") // exits at once: never ready
	}}
	if _, err := RunSuite(context.Background(), s); err == nil || len(started) != 1 || started[0] != "null" {
		t.Errorf("devices with a backend that never serves: err %v, started %v", err, started)
	}
}

func TestWriteTargets(t *testing.T) {
	rep := &Report{Baselines: []Baseline{{Name: "ring-only pair, Go", Value: 500}, {Name: "ring-only pair, C ring.h", Value: 1000}}}
	var b strings.Builder
	WriteTargets(&b, rep)
	want := "target Go ring-only pair / C ring.h pair  500 / 1.00k round trips/s = 0.50x  goal 0.8x           MISSED (62% of goal)\n"
	if b.String() != want {
		t.Errorf("got  %q\nwant %q", b.String(), want)
	}
}
