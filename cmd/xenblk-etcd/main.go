// Command xenblk-etcd runs a throwaway etcd cluster for developers and
// for `make bench`'s reservation-store comparison, so that the xenblk
// binary itself never carries an etcd server: --members members on
// 127.0.0.1 (internal/etcdtest), each syncing its log to its own data
// directory in a new temporary directory under --dir.
//
// When every member serves clients it prints the cluster's URL on one
// line of stdout, as `xenblk serve --pr-store` and `xenblk bench
// --pr-stores` take it, then runs until SIGINT, SIGTERM or the end of
// stdin (so a script that started it stops it by closing the pipe, and
// its death stops it too). Stopping removes the data directories.
// Exit status: 0 stopped cleanly, 1 failed, 2 bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/xenblk/xenblk/internal/etcdtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run starts the cluster, prints its URL and waits for ctx or the end of
// stdin.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xenblk-etcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	members := fs.Int("members", 3, "cluster members")
	dir := fs.String("dir", os.TempDir(), "directory for the cluster's temporary data directory")
	fsync := fs.Bool("fsync", true, "members sync their log as production etcd does (false: faster, loses data on a machine crash)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case fs.NArg() != 0:
		fmt.Fprintf(stderr, "xenblk-etcd: unexpected argument %q; it takes flags only (--members, --dir, --fsync)\n", fs.Arg(0))
		return 2
	case *members < 1 || *members > 9:
		fmt.Fprintf(stderr, "xenblk-etcd: --members %d: give 1 to 9\n", *members)
		return 2
	}
	data, err := os.MkdirTemp(*dir, "xenblk-etcd-")
	if err != nil {
		fmt.Fprintf(stderr, "xenblk-etcd: %v (give --dir a writable directory)\n", err)
		return 1
	}
	defer os.RemoveAll(data)
	cluster, err := etcdtest.New(*members, etcdtest.Options{Dir: data, Fsync: *fsync})
	if err != nil {
		fmt.Fprintf(stderr, "xenblk-etcd: %v\n", err)
		return 1
	}
	defer cluster.Close()
	if _, err := fmt.Fprintln(stdout, cluster.URL()); err != nil {
		return 1 // nobody reads the URL: nobody will use the cluster
	}
	// Reading stdin ends at its end or its error; the goroutine outlives
	// run only in a process that is about to exit.
	eof := make(chan struct{})
	go func() {
		io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return 0
}
