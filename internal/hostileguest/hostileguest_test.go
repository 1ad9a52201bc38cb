package hostileguest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/hostileguest"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/xenbus"
)

// goodIO writes numbered chunks to a good guest's disk and reads each
// back, until stopped; every chunk written is read again at the end.
type goodIO struct {
	disk    *blkfront.Disk
	chunks  int64 // how many chunk places the disk has
	written atomic.Int64
	stop    chan struct{}
	done    chan error
}

const chunkSize = 64 << 10

func chunk(k int64) []byte {
	b := bytes.Repeat([]byte(fmt.Sprintf("chunk %12d ", k)), chunkSize/19+1)[:chunkSize]
	binary.LittleEndian.PutUint64(b, uint64(k))
	return b
}

func startGoodIO(disk *blkfront.Disk, size int64) *goodIO {
	g := &goodIO{disk: disk, chunks: size / chunkSize, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { g.done <- g.loop() }()
	return g
}

func (g *goodIO) loop() error {
	ctx := context.Background()
	got := make([]byte, chunkSize)
	for k := int64(0); ; k++ {
		select {
		case <-g.stop:
			return nil
		default:
		}
		off := (k % g.chunks) * chunkSize
		want := chunk(k)
		if _, err := g.disk.WriteAt(ctx, want, off); err != nil {
			return fmt.Errorf("chunk %d: write: %w", k, err)
		}
		if _, err := g.disk.ReadAt(ctx, got, off); err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("chunk %d: read back wrong (%v)", k, err)
		}
		g.written.Store(k + 1)
	}
}

// finish stops the loop and reads every chunk still on the disk again.
func (g *goodIO) finish() error {
	close(g.stop)
	if err := <-g.done; err != nil {
		return err
	}
	n := g.written.Load()
	got := make([]byte, chunkSize)
	for k := max(0, n-g.chunks); k < n; k++ {
		if _, err := g.disk.ReadAt(context.Background(), got, (k%g.chunks)*chunkSize); err != nil || !bytes.Equal(got, chunk(k)) {
			return fmt.Errorf("chunk %d: read again wrong (%v)", k, err)
		}
	}
	return nil
}

// The lab's scenario g on the simulated host: the hostile guest's cases
// against a backend configured as `xenblk serve` (image files opened by
// the vbd schema), while a good guest writes and verifies without a
// break. Every case is answered, the good guest's I/O goes on through
// all of them, the backend keeps running, and each hostile vbd ends as
// End.Want says.
func TestHostileGuestBesideAGoodOne(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	backend := s.Serve(blkback.Config{}, vbd.Opener(slog.Default()))
	dir := t.TempDir()
	image := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	const goodSize = 4 << 20
	good, err := s.AttachGuest(ctx, "good", "vdev=xvdb, access=rw, target="+image("good.img", goodSize), blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hostile, err := s.Host.NewDomain("hostile")
	if err != nil {
		t.Fatal(err)
	}
	var vbds []toolstack.VBD
	for _, v := range hostileguest.VBDs {
		spec := "vdev=" + v.Vdev + ", access=rw, "
		if v.Vdev == "xvdc" {
			spec += "grant-copy=1, "
		}
		spec += "target=" + image(v.Vdev+".img", 16<<20)
		sp, err := diskspec.Parse(spec)
		if err != nil {
			t.Fatal(err)
		}
		g, err := s.AddVBD(hostile, sp)
		if err != nil {
			t.Fatal(err)
		}
		vbds = append(vbds, g.VBD)
	}

	io := startGoodIO(good.Disk, goodSize)
	eventually.True(t, 10*time.Second, "the good guest's first chunks", func() bool { return io.written.Load() >= 4 })
	before := io.written.Load()
	var mu sync.Mutex
	var seen []string
	failed := hostileguest.Run(ctx, hostileguest.Config{Domain: hostile, Stranger: good.Domain.ID(), Wait: 10 * time.Second,
		Report: func(ok bool, what string) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, what)
			if ok {
				t.Log("ok:", what)
			} else {
				t.Error("FAIL:", what)
			}
		}})
	if failed != 0 || len(seen) < 40 {
		t.Errorf("%d of %d checks failed", failed, len(seen))
	}
	eventually.True(t, 10*time.Second, "the good guest's I/O going on after the hostile one", func() bool { return io.written.Load() > before+4 })
	select {
	case <-backend.Done():
		t.Fatal("the backend stopped")
	default:
	}
	// What dom0 sees of each hostile vbd.
	st := s.Host.Store()
	for i, v := range hostileguest.VBDs {
		state, errorNode := v.End.Want()
		be := vbds[i].BackendPath()
		if got, _ := st.Read(be + "/state"); xenbus.ParseState(got) != state {
			t.Errorf("%s (%s): backend state %q, want %s", v.Vdev, v.End, got, state)
		}
		msg, _ := st.Read(be + "/error")
		if errorNode && msg == "" {
			t.Errorf("%s (%s): no error node says why", v.Vdev, v.End)
		}
		t.Logf("%s (%s): error node %q", v.Vdev, v.End, msg)
	}
	if err := io.finish(); err != nil {
		t.Fatalf("the good guest: %v", err)
	}
	if got, _ := st.Read(good.VBD.BackendPath() + "/state"); xenbus.ParseState(got) != xenbus.Connected {
		t.Errorf("the good guest's vbd: state %q", got)
	}
}
