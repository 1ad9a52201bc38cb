// Command xenblk-soak is the kill -9 soak (`make soak`): for --duration,
// verified writes and flushes through `xenblk front`'s NBD export while
// `xenblk host`, `xenblk serve` and `xenblk front` are killed with SIGKILL
// and restarted at seeded random moments; then every write acknowledged
// before a completed flush must read back intact (internal/soak).
//
// Its last line on success counts the kills, writes, flushes and bytes
// checked; on failure it prints the seed (rerun with --seed), what was
// found, the work directory it keeps, and the processes' last log lines.
// Exit status: 0 passed, 1 failed, 2 bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xenblk/xenblk/internal/soak"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("xenblk-soak", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Minute, "how long to write and kill")
	seed := fs.Uint64("seed", 0, "the schedule's seed (0: from the clock; printed either way)")
	bin := fs.String("xenblk", "", "the xenblk binary to soak (default: go build ./cmd/xenblk into the work directory)")
	size := fs.Int64("size", 32<<20, "disk image size in bytes")
	writers := fs.Int("writers", 4, "concurrent writers")
	quiet := fs.Bool("quiet", false, "print only the last line (or the failure)")
	keep := fs.Bool("keep", false, "keep the work directory (image, logs) after a pass too")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	const blockSize = 4096
	switch {
	case fs.NArg() != 0:
		fmt.Fprintf(os.Stderr, "xenblk-soak: unexpected argument %q; it takes flags only (--duration, --seed)\n", fs.Arg(0))
		return 2
	case *duration <= 0:
		fmt.Fprintf(os.Stderr, "xenblk-soak: --duration %v: give a positive duration, e.g. --duration 2m\n", *duration)
		return 2
	case *size < blockSize*int64(max(*writers, 1)) || *size%blockSize != 0:
		fmt.Fprintf(os.Stderr, "xenblk-soak: --size %d: give a multiple of %d of at least one block per writer\n", *size, blockSize)
		return 2
	case *writers < 1 || *writers > 64:
		fmt.Fprintf(os.Stderr, "xenblk-soak: --writers %d: give 1 to 64\n", *writers)
		return 2
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	fmt.Printf("soak: seed=%d duration=%v (rerun with --seed %d)\n", *seed, *duration, *seed)
	dir, err := os.MkdirTemp("", "xenblk-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "xenblk-soak:", err)
		return 1
	}
	if *bin == "" {
		*bin = filepath.Join(dir, "xenblk")
		out, err := exec.Command("go", "build", "-o", *bin, "github.com/xenblk/xenblk/cmd/xenblk").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "xenblk-soak: building xenblk: %v\n%s", err, out)
			return 1
		}
	} else if abs, err := filepath.Abs(*bin); err == nil {
		*bin = abs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := soak.Config{Xenblk: *bin, Dir: dir, Duration: *duration, Seed: *seed,
		ImageSize: *size, BlockSize: blockSize, Writers: *writers}
	if !*quiet {
		cfg.Progress = os.Stdout
	}
	rep, err := soak.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "xenblk-soak: interrupted")
		}
		fmt.Fprintln(os.Stderr, "xenblk-soak: FAILED:", err)
		return 1
	}
	if *keep {
		fmt.Println("soak: work directory kept:", dir)
	} else {
		os.RemoveAll(dir)
	}
	fmt.Println(rep)
	return 0
}
