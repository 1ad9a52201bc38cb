package stacktest

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/xen"
)

// A disk spec's grant-copy=1 reaches the backend through the vbd's nodes:
// the backend offers no persistent grants (it keeps nothing mapped) and
// serves reads and writes, indirect ones too; a vbd beside it without the
// key keeps them.
func TestGrantCopyFromTheDiskSpec(t *testing.T) {
	disk := newMemDisk(8 << 20)
	s := simstack.ForTest(t, disk, simstack.Options{})
	ctx := context.Background()
	g, err := s.AttachGuest(ctx, "copier", "vdev=xvda, access=rw, grant-copy=1, target=memory", blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Host.Store().Read(g.VBD.BackendPath() + "/" + diskspec.KeyGrantCopy); err != nil || v != "1" {
		t.Fatalf("backend node %s: %q, %v", diskspec.KeyGrantCopy, v, err)
	}
	in := g.Disk.Info()
	if in.Persistent {
		t.Error("a grant-copy backend offered feature-persistent")
	}
	if in.IndirectSegments == 0 {
		t.Error("a grant-copy backend offered no indirect segments")
	}
	data := bytes.Repeat([]byte("copied, not mapped"), (1<<20)/18+1)[:1<<20]
	if _, err := g.Disk.WriteAt(ctx, data, 4096); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(diskBytes(t, disk, 4096, 1<<20), data) {
		t.Fatal("the write did not reach the disk")
	}
	got := make([]byte, len(data))
	if _, err := g.Disk.ReadAt(ctx, got, 4096); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}

	other, err := s.AttachGuest(ctx, "mapper", "vdev=xvda, access=ro, target=memory", blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !other.Disk.Info().Persistent {
		t.Error("a vbd without grant-copy lost feature-persistent")
	}
}

// A guest revokes the grant of a read while the backend reads the disk
// for it. In grant-copy mode nothing holds the page, so the revocation
// succeeds, the read is answered with an error when its data cannot be
// copied out, and the next request is served. A backend that maps holds
// the page: the hypervisor refuses the revocation (what grant-copy mode
// removes) and the read succeeds.
func TestGrantCopyRevokedMidFlight(t *testing.T) {
	for _, c := range []struct {
		name       string
		bcfg       blkback.Config
		wantStatus int16
		wantRevoke error
	}{
		{"grant-copy", blkback.Config{GrantCopy: true}, blkif.RspError, nil},
		{"map", blkback.Config{PersistentGrants: -1}, blkif.RspOkay, xen.ErrGrantInUse},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := simstack.ForTest(t, nil, simstack.Options{})
			guest, _ := s.Host.NewDomain("revoker")
			// The grant to revoke, handed to the disk's hook through
			// an atomic: the request itself reaches the backend
			// through shared memory the race detector cannot see.
			var victim atomic.Pointer[xen.Granted]
			revoked := make(chan error, 1)
			disk := &storagetest.Hooks{Device: newMemDisk(1 << 20), OnRead: func(off, n int64) error {
				if g := victim.Swap(nil); g != nil {
					revoked <- guest.Granter().Revoke(g)
				}
				return nil
			}}
			s.Serve(c.bcfg, func(xen.Store, string) (storage.Device, error) { return disk, nil })
			raw := newRawFront(t, s.Host, guest, "xvda")
			g, err := guest.Granter().Grant(0, 1, false)
			if err != nil {
				t.Fatal(err)
			}
			victim.Store(g)
			read := blkif.Request{ID: 7, Operation: blkif.OpRead, Sector: 16, NrSegments: 1, Seg: one(uint32(g.Refs[0]), 0, 7)}
			if st := raw.do(read); st != c.wantStatus {
				t.Errorf("a read whose grant was revoked mid-flight: status %d, want %d", st, c.wantStatus)
			}
			if err := <-revoked; !errors.Is(err, c.wantRevoke) {
				t.Fatalf("revoke while the backend read the disk: %v, want %v", err, c.wantRevoke)
			}
			ok := blkif.Request{ID: 8, Operation: blkif.OpRead, NrSegments: 1, Seg: one(uint32(raw.data.Refs[0]), 0, 7)}
			if st := raw.do(ok); st != blkif.RspOkay {
				t.Fatalf("the next read: status %d", st)
			}
			// Closed, as a guest shutting down says it, so that the
			// backend need not wait out its grace at cleanup.
			guest.Store().Write(raw.vbd.FrontendPath()+"/state", "6")
		})
	}
}
