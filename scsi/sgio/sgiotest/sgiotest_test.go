package sgiotest

import (
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/storage"
)

// The fake behaves as a disk behind SG_IO: a pass-through over it reads
// its capacity, and its commands and sense come back.
func TestFakeDiskUnderPassthrough(t *testing.T) {
	d := NewDisk(storage.NewMemory(1 << 20))
	p, err := sgio.New(d, sgio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if blocks, bs := p.Capacity(); blocks != 2048 || bs != 512 {
		t.Fatalf("capacity %d x %d", blocks, bs)
	}
	if !d.Saw(scsi.OpServiceActionIn16) {
		t.Fatal("READ CAPACITY(16) did not reach the disk")
	}
	d.Forget()
	var r sgio.Request
	r = sgio.Request{CDB: []byte{0xff, 0, 0, 0, 0, 0}, Sense: make([]byte, 32)}
	if err := d.SGIO(&r); err != nil || r.Status != scsi.StatusCheckCondition || r.SenseLen == 0 || r.DriverStatus != 0x08 {
		t.Fatalf("unknown opcode: %+v %v", r, err)
	}
	if !d.Saw(0xff) || d.Saw(scsi.OpServiceActionIn16) {
		t.Fatal("Saw/Forget")
	}
	d.Close()
	if !d.Closed() {
		t.Fatal("Closed")
	}
}
