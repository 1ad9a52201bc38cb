package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
)

// The printed line is a cluster URL serve and bench accept and a client
// can use; closing stdin stops the cluster and removes its data.
func TestPrintsURLAndStopsAtEndOfStdin(t *testing.T) {
	dir := t.TempDir()
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"--members", "1", "--fsync=false", "--dir", dir}, stdinR, stdoutW, &stderr)
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the URL: %v (exit %d, stderr %q)", err, <-done, stderr.String())
	}
	endpoints, _, err := etcdstore.ParseURL(strings.TrimSuffix(line, "\n"))
	if err != nil || len(endpoints) != 1 {
		t.Fatalf("printed %q: endpoints %v, %v", line, endpoints, err)
	}
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatalf("the printed cluster does not answer: %v", err)
	}
	s.Close()
	stdinW.Close()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after stdin closed, stderr %q", code, stderr.String())
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("data left in --dir: %v", left)
	}
}

// Bad flags exit 2 naming the flag, before any member starts.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--members", "0"}, {"extra"}, {"--nope"}} {
		var stderr strings.Builder
		if code := run(context.Background(), args, strings.NewReader(""), io.Discard, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}
