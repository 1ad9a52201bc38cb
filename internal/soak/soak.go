package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xenblk/xenblk/nbd"
)

// Config is one soak run.
type Config struct {
	Xenblk    string        // the xenblk binary
	Dir       string        // work directory (image, sockets, logs); must exist
	Duration  time.Duration // how long to write and kill
	Seed      uint64        // chooses the kill schedule, victims and blocks
	ImageSize int64         // bytes; a multiple of BlockSize
	BlockSize int           // bytes per write; a multiple of SectorSize
	Writers   int           // concurrent writers (each owns every Writers-th block)
	Progress  io.Writer     // one line per kill; nil for none
}

// Report counts what a run did.
type Report struct {
	Seed                       uint64
	Elapsed                    time.Duration
	KillsServe, KillsFront     int
	KillsHost                  int
	FrontExits                 int   // fronts that exited on their own after a backend restart
	Writes, WriteErrors        int64 // acknowledged and failed writes
	Flushes, FlushErrors       int64 // completed and failed flushes
	BytesChecked, Verification int64 // bytes read back against the model, and whole-disk checks
}

func (r Report) String() string {
	return fmt.Sprintf("soak: ok seed=%d elapsed=%v kills=%d (serve %d, front %d, host %d) front-exits=%d writes=%d (failed %d) flushes=%d (failed %d) checks=%d bytes-checked=%d",
		r.Seed, r.Elapsed.Round(time.Second), r.KillsServe+r.KillsFront+r.KillsHost, r.KillsServe, r.KillsFront, r.KillsHost,
		r.FrontExits, r.Writes, r.WriteErrors, r.Flushes, r.FlushErrors, r.Verification, r.BytesChecked)
}

// Bounds on every wait of the run (the CI machine is slow and shared).
const (
	stallLimit = 90 * time.Second  // no write or flush completing while the stack is up
	drainLimit = 60 * time.Second  // writers to return after their client is closed
	readLimit  = 120 * time.Second // one whole-disk read through NBD
)

// Run soaks until cfg.Duration has passed, then flushes, crashes the
// machine one last time and checks the image. An error names the seed
// and what was found.
func Run(ctx context.Context, cfg Config) (Report, error) {
	r := &run{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x50a6)), rep: Report{Seed: cfg.Seed}}
	r.model = NewModel(int(cfg.ImageSize / int64(cfg.BlockSize)))
	r.m = newMachine(cfg.Xenblk, cfg.Dir, filepath.Join(cfg.Dir, "disk.img"))
	start := time.Now()
	err := r.soak(ctx)
	tree := ""
	if err != nil {
		tree = r.m.storeTree()
	}
	if cerr := r.m.crash(); err == nil {
		err = cerr
	}
	if r.load != nil {
		r.load.cl.Close()
	}
	r.rep.Elapsed = time.Since(start)
	if err == nil {
		err = r.verifyImage("after the last crash")
	}
	if err != nil {
		return r.rep, fmt.Errorf("soak seed=%d failed after %v (%d kills: serve %d, front %d, host %d; %d writes, %d flushes): %w\nwork directory: %s\n--- xenstore /local/domain at the failure\n%s\n%s",
			cfg.Seed, time.Since(start).Round(time.Second), r.rep.KillsServe+r.rep.KillsFront+r.rep.KillsHost,
			r.rep.KillsServe, r.rep.KillsFront, r.rep.KillsHost, r.rep.Writes, r.rep.Flushes, err, cfg.Dir, tree, r.m.logTails())
	}
	return r.rep, nil
}

type run struct {
	cfg   Config
	rng   *rand.Rand
	model *Model
	m     *machine
	rep   Report
	load  *load
	began time.Time // when the load first started
}

func (r *run) progress(format string, args ...any) {
	r.m.note(format, args...)
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "soak: %6.1fs "+format+"\n", append([]any{time.Since(r.began).Seconds()}, args...)...)
	}
}

func (r *run) soak(ctx context.Context) error {
	r.began = time.Now()
	if err := os.MkdirAll(filepath.Join(r.cfg.Dir, "logs"), 0o755); err != nil {
		return err
	}
	img, err := os.Create(r.m.image)
	if err != nil {
		return err
	}
	err = img.Truncate(r.cfg.ImageSize)
	img.Close()
	if err != nil {
		return err
	}
	if err := r.m.boot(); err != nil {
		return err
	}
	if err := r.upAndVerify(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(r.cfg.Duration)
	for {
		// A random moment: from a blink to a few seconds of load.
		wait := time.Duration(50+r.rng.IntN(2500)) * time.Millisecond
		if left := time.Until(deadline); left < wait {
			wait = left
		}
		if err := r.watch(ctx, wait); err != nil {
			return err
		}
		if !time.Now().Before(deadline) {
			break
		}
		switch v := r.rng.IntN(10); {
		case v < 4:
			if err := r.killServe(ctx); err != nil {
				return err
			}
		case v < 7:
			if err := r.killFront(ctx); err != nil {
				return err
			}
		default:
			if err := r.killHost(ctx); err != nil {
				return err
			}
		}
	}
	// The end: writers stop, a last flush covers every acknowledged
	// write, and the caller crashes the machine and checks the image.
	if err := r.load.stop(false); err != nil {
		return err
	}
	r.count()
	snap := r.model.FlushStart()
	if err := r.op(func(cl *nbd.Client) error { return cl.Flush() }); err != nil {
		return fmt.Errorf("the final flush: %w", err)
	}
	r.model.FlushDone(snap)
	r.rep.Flushes++
	return nil
}

// op runs one NBD call on the current client, bounded by stallLimit.
func (r *run) op(fn func(*nbd.Client) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(r.load.cl) }()
	select {
	case err := <-done:
		return err
	case <-time.After(stallLimit):
		r.load.cl.Close()
		<-done
		return fmt.Errorf("no answer in %v", stallLimit)
	}
}

// watch lets the load run for d, failing if it stalls or is cancelled.
func (r *run) watch(ctx context.Context, d time.Duration) error {
	end := time.After(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-end:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := r.m.gone(); err != nil {
				return err
			}
			if err := r.load.stalled(); err != nil {
				return err
			}
		}
	}
}

// killed counts a kill and says so.
func (r *run) killed(counter *int, what string) {
	*counter++
	r.progress("kill -9 %s (%d writes, %d flushes so far)", what, r.rep.Writes+r.load.writes.Load(), r.rep.Flushes+r.load.flushes.Load())
}

// dropLoad ends the load of a front that is gone and counts it.
func (r *run) dropLoad() error {
	if err := r.load.stop(true); err != nil {
		return err
	}
	r.count()
	return nil
}

// killServe kills the backend in the middle of the load and starts a new
// one; the front must carry the load over to it.
func (r *run) killServe(ctx context.Context) error {
	if err := r.m.serve.kill(); err != nil {
		return err
	}
	r.killed(&r.rep.KillsServe, "serve")
	// The backend stays dead for a moment; the front may see it go.
	select {
	case <-time.After(time.Duration(r.rng.IntN(500)) * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := r.m.startServe(); err != nil {
		return err
	}
	// The load resumes on the new backend: a call succeeds. A front that
	// chose to exit when its backend went away is restarted like a killed
	// one (its unanswered writes are "issued" in the model either way).
	succeeded := func() int64 { return r.load.done.Load() - r.load.failedOps.Load() }
	before := succeeded()
	deadline := time.After(stallLimit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for succeeded() == before {
		select {
		case <-r.m.front.exited:
			r.rep.FrontExits++
			r.progress("front exited after the backend restart (%v)", r.m.front.err)
			if err := r.dropLoad(); err != nil {
				return err
			}
			return r.upAndVerify(ctx)
		case <-deadline:
			return fmt.Errorf("no write or flush completed within %v after the backend restarted", stallLimit)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C: // the counters have no channel; a tenth of a second is fine
		}
	}
	return nil
}

// killFront kills the guest; a new guest is started, the vbd attached to
// it, and the whole disk checked through its export.
func (r *run) killFront(ctx context.Context) error {
	if err := r.m.front.kill(); err != nil {
		return err
	}
	r.killed(&r.rep.KillsFront, "front")
	if err := r.dropLoad(); err != nil {
		return err
	}
	return r.upAndVerify(ctx)
}

// killHost kills the machine: host, backend and guest at once. The image
// is checked as it lies on disk before the machine boots again.
func (r *run) killHost(ctx context.Context) error {
	if err := r.m.crash(); err != nil {
		return err
	}
	r.killed(&r.rep.KillsHost, "host, serve and front")
	if err := r.dropLoad(); err != nil {
		return err
	}
	if err := r.verifyImage("after the machine crashed"); err != nil {
		return err
	}
	if err := r.m.boot(); err != nil {
		return err
	}
	return r.upAndVerify(ctx)
}

// upAndVerify starts a guest, connects to its export, checks the whole
// disk through it, and starts the load.
func (r *run) upAndVerify(ctx context.Context) error {
	t0 := time.Now()
	if err := r.m.startGuest(ctx); err != nil {
		return err
	}
	r.progress("guest domain %d up in %v", r.m.guest, time.Since(t0).Round(time.Millisecond))
	cl, err := nbd.Dial(r.m.nbdURL, "")
	if err != nil {
		return fmt.Errorf("NBD %s: %w", r.m.nbdURL, err)
	}
	if cl.Size() != r.cfg.ImageSize {
		cl.Close()
		return fmt.Errorf("the export is %d bytes, the image %d", cl.Size(), r.cfg.ImageSize)
	}
	r.load = &load{cl: cl}
	if err := r.verifyNBD(); err != nil {
		cl.Close()
		return err
	}
	r.load.start(r)
	return nil
}

func (r *run) verifyNBD() error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < r.cfg.ImageSize; off += int64(len(buf)) {
		p := buf[:min(int64(len(buf)), r.cfg.ImageSize-off)]
		if err := r.op(func(cl *nbd.Client) error { _, err := cl.ReadAt(p, off); return err }); err != nil {
			return fmt.Errorf("reading back through NBD at %d: %w", off, err)
		}
		if err := CheckBlocks(r.model, p, r.cfg.Seed, int(off/int64(r.cfg.BlockSize)), r.cfg.BlockSize); err != nil {
			return fmt.Errorf("read back through the new front's NBD export: %w", err)
		}
		r.rep.BytesChecked += int64(len(p))
	}
	r.rep.Verification++
	return nil
}

func (r *run) verifyImage(when string) error {
	data, err := os.ReadFile(r.m.image)
	if err != nil {
		return err
	}
	if int64(len(data)) != r.cfg.ImageSize {
		return fmt.Errorf("the image is %d bytes, want %d", len(data), r.cfg.ImageSize)
	}
	if err := CheckBlocks(r.model, data, r.cfg.Seed, 0, r.cfg.BlockSize); err != nil {
		return fmt.Errorf("the image %s: %w", when, err)
	}
	r.rep.BytesChecked += int64(len(data))
	r.rep.Verification++
	return nil
}

// count moves the stopped load's counters into the report.
func (r *run) count() {
	r.rep.Writes += r.load.writes.Load()
	r.rep.WriteErrors += r.load.writeErrors.Load()
	r.rep.Flushes += r.load.flushes.Load()
	r.rep.FlushErrors += r.load.flushErrors.Load()
	r.load.writes.Store(0)
	r.load.writeErrors.Store(0)
	r.load.flushes.Store(0)
	r.load.flushErrors.Store(0)
}

// load is the writers and the flusher on one NBD client.
type load struct {
	cl      *nbd.Client
	quit    chan struct{}
	wg      sync.WaitGroup
	running atomic.Int32

	done, failedOps      atomic.Int64 // operations answered, and of those failed
	lastDone             atomic.Int64 // unix nanoseconds of the last answer
	writes, writeErrors  atomic.Int64
	flushes, flushErrors atomic.Int64
}

func (l *load) start(r *run) {
	l.quit = make(chan struct{})
	l.lastDone.Store(time.Now().UnixNano())
	n := r.cfg.Writers
	for w := 0; w < n; w++ {
		rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(w)<<32|uint64(r.rep.KillsFront+r.rep.KillsHost)))
		l.goRun(func() { l.writer(r, rng, w, n) })
	}
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(0xf1)<<32|uint64(r.rep.KillsFront+r.rep.KillsHost)))
	l.goRun(func() { l.flusher(r, rng) })
}

func (l *load) goRun(fn func()) {
	l.wg.Add(1)
	l.running.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.running.Add(-1)
		fn()
	}()
}

func (l *load) exitedAll() bool { return l.running.Load() == 0 }

func (l *load) answered(err error) {
	l.done.Add(1)
	l.lastDone.Store(time.Now().UnixNano())
	if err != nil {
		l.failedOps.Add(1)
	}
}

func (l *load) stopping() bool {
	select {
	case <-l.quit:
		return true
	default:
		return false
	}
}

// writer writes values of its own blocks (every n-th from w), one at a
// time, until told to stop or its connection is gone.
func (l *load) writer(r *run, rng *rand.Rand, w, n int) {
	bs := r.cfg.BlockSize
	buf := make([]byte, bs)
	mine := (r.model.Blocks() - w + n - 1) / n
	for !l.stopping() {
		b := w + n*rng.IntN(mine)
		seq := r.model.Issue(b)
		Fill(buf, r.cfg.Seed, b, seq)
		_, err := l.cl.WriteAt(buf, int64(b)*int64(bs))
		l.answered(err)
		if err == nil {
			r.model.Acked(b, seq)
			l.writes.Add(1)
			continue
		}
		l.writeErrors.Add(1)
		if errors.Is(err, nbd.ErrClosed) {
			return
		}
		l.pause(10 * time.Millisecond) // an I/O error: do not spin
	}
}

// flusher flushes at random intervals; a completed flush makes durable
// every write acknowledged before it was sent.
func (l *load) flusher(r *run, rng *rand.Rand) {
	for l.pause(time.Duration(5+rng.IntN(200)) * time.Millisecond) {
		snap := r.model.FlushStart()
		err := l.cl.Flush()
		l.answered(err)
		if err == nil {
			r.model.FlushDone(snap)
			l.flushes.Add(1)
			continue
		}
		l.flushErrors.Add(1)
		if errors.Is(err, nbd.ErrClosed) {
			return
		}
	}
}

// pause waits d; false if the load is stopping.
func (l *load) pause(d time.Duration) bool {
	select {
	case <-l.quit:
		return false
	case <-time.After(d):
		return true
	}
}

// stalled reports a load that has had no answer for stallLimit.
func (l *load) stalled() error {
	if l.exitedAll() {
		return nil
	}
	if since := time.Since(time.Unix(0, l.lastDone.Load())); since > stallLimit {
		return fmt.Errorf("no write or flush answered for %v", since.Round(time.Second))
	}
	return nil
}

// stop ends the load. With closeNow the client is closed at once (its
// server is dead: pending calls fail); otherwise the writers finish their
// current call first. Bounded either way.
func (l *load) stop(closeNow bool) error {
	close(l.quit)
	if closeNow {
		l.cl.Close()
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainLimit):
		l.cl.Close()
		select {
		case <-done:
			if !closeNow {
				return fmt.Errorf("writers did not finish their calls within %v", drainLimit)
			}
		case <-time.After(drainLimit):
			return fmt.Errorf("writers still blocked %v after their NBD client was closed", drainLimit)
		}
	}
	return nil
}
