package stacktest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/xen"
)

// TestGuestDeathReleasesItsVBD: a guest domain destroyed while its
// frontend writes (xl destroy). Its frontend's directory goes with the
// domain, so the backend closes the vbd: every grant of the guest's that
// it mapped is unmapped (a dead domain whose pages stay mapped is a
// zombie on Xen) and every event channel to it unbound; @releaseDomain
// then has the vbd's backend directory removed. Another guest's vbd is
// served throughout.
func TestGuestDeathReleasesItsVBD(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	var mu sync.Mutex
	disks := map[string]*storage.Memory{}
	b := s.Serve(blkback.Config{}, func(_ xen.Store, dir string) (storage.Device, error) {
		mu.Lock()
		defer mu.Unlock()
		d := newMemDisk(8 << 20)
		disks[dir] = d
		return d, nil
	})
	ctx := context.Background()
	doomed, err := s.AttachGuest(ctx, "doomed", "vdev=xvda, access=rw, target=memory", blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	survivor, err := s.AttachGuest(ctx, "survivor", "vdev=xvda, access=rw, target=memory", blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := doomed.Domain.ID()

	// Writes in flight when the domain dies. They end, with an error or
	// not, once the frontend sees its domain's store connection go.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := bytes.Repeat([]byte{byte(i + 1)}, 64<<10)
			for off := int64(0); wctx.Err() == nil; off = (off + int64(len(buf))) % (8 << 20) {
				if _, err := doomed.Disk.WriteAt(wctx, buf, off); err != nil {
					return
				}
			}
		}()
	}
	eventually.True(t, 10*time.Second, "the backend maps the doomed guest's grants", func() bool {
		return doomed.Domain.MappedGrants() > 0
	})
	if n := s.Host.Channels(0, id); n == 0 {
		t.Fatalf("dom0 has no event channel to the guest before its death")
	}

	s.Host.Destroy(id)

	eventually.True(t, 10*time.Second, "no grant of the dead guest's mapped", func() bool {
		return doomed.Domain.MappedGrants() == 0
	})
	eventually.True(t, 10*time.Second, "no event channel of dom0's to the dead guest", func() bool {
		return s.Host.Channels(0, id) == 0
	})
	be := doomed.VBD.BackendPath()
	eventually.True(t, 10*time.Second, "the dead guest's vbd removed and no longer served", func() bool {
		_, err := s.Host.Store().Read(be)
		return errors.Is(err, xen.ErrNotFound) && b.Server.VBD(be) == nil
	})
	cancel()
	wg.Wait()

	data := bytes.Repeat([]byte{0xa5}, 1<<20)
	if _, err := survivor.Disk.WriteAt(ctx, data, 4096); err != nil {
		t.Fatalf("the survivor's write after the death: %v", err)
	}
	if err := survivor.Disk.Flush(ctx); err != nil {
		t.Fatalf("the survivor's flush: %v", err)
	}
	got := make([]byte, len(data))
	if _, err := survivor.Disk.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the survivor's read back: err %v, equal %v", err, bytes.Equal(got, data))
	}
	mu.Lock()
	onDisk := diskBytes(t, disks[survivor.VBD.BackendPath()], 4096, int64(len(data)))
	mu.Unlock()
	if !bytes.Equal(onDisk, data) {
		t.Fatal("the survivor's write is not on its disk")
	}
	if _, err := s.Host.Store().Read(survivor.VBD.BackendPath()); err != nil {
		t.Fatalf("the survivor's vbd: %v", err)
	}
}
