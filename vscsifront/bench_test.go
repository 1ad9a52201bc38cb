package vscsifront_test

import (
	"testing"

	"github.com/xenblk/xenblk/storage"
)

// BenchmarkReadAt4K is one 4 KiB read at a time through a LUN's Device,
// to vscsiback over the null backend, both ends in this process: the
// vscsi counterpart of bench's BenchmarkReadAt4K over blkif.
func BenchmarkReadAt4K(b *testing.B) {
	r := newRig(b, rigConfig{disks: map[string]storage.Device{"/null": storage.Null{Size: 8 << 20}}}, "/null, 0:0:0:0")
	dev := r.device(r.lun(addr("0:0:0:0")))
	buf := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := dev.ReadAt(buf, int64(i%2048)*4096); err != nil {
			b.Fatal(err)
		}
	}
}
