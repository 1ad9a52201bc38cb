package nbd

import (
	"errors"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// The client, as a storage.Device, passes the block-device conformance
// suite against our server and against nbdkit.
func TestClientConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		l := startServer(t, Export{Name: "m", Device: storage.NewMemory(size)})
		cl, err := Dial(ListenerURL(l, "m"), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	})
}

func TestClientConformanceOverNbdkit(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device { return startNbdkit(t, size) })
}

// NBD can trim but cannot promise that trimmed data is gone.
func TestClientRefusesSecureDiscard(t *testing.T) {
	l := startServer(t, Export{Name: "m", Device: storage.NewMemory(1 << 20)})
	cl, err := Dial(ListenerURL(l, "m"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if !cl.Info().CanDiscard {
		t.Fatalf("info %+v: the export trims", cl.Info())
	}
	if err := cl.Discard(0, 4096, true); !errors.Is(err, storage.ErrNotSupported) {
		t.Fatalf("secure discard: %v, want ErrNotSupported", err)
	}
	if err := cl.Discard(0, 4096, false); err != nil {
		t.Fatalf("discard: %v", err)
	}
}
