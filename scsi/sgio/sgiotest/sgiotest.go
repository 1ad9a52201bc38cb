// Package sgiotest provides a fake SCSI disk behind SG_IO for tests of
// code that builds sgio pass-throughs (there is no SCSI disk on the test
// machines): scsi/emulate over a storage.Device, seen by one initiator (the
// host), recording every opcode that reaches it.
package sgiotest

import (
	"sync"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/sgio"
	"github.com/xenblk/xenblk/storage"
)

// Disk is a fake whole SCSI disk; it implements sgio.Target. Safe for
// concurrent use.
type Disk struct {
	mu     sync.Mutex
	e      *emulate.Engine
	cmd    scsi.Command
	res    scsi.Result
	ops    []byte // opcodes seen, at most cap(ops): recording allocates nothing
	host   uint16 // host_status to report instead of running commands
	err    error  // ioctl failure to report instead of running commands
	closed bool
}

// NewDisk returns a fake disk holding dev's bytes. It keeps persistent
// reservations of its own (in memory), as a real disk would when they are
// passed through to it.
func NewDisk(dev storage.Device) *Disk {
	u, err := pr.Open(pr.NewMemoryStore(), "sgiotest-disk", nil)
	if err != nil {
		panic(err) // a memory store cannot fail to load
	}
	return newDisk(dev, u)
}

// NewDiskWithoutPR returns a fake disk that does not implement persistent
// reservations, as some disks do not; the commands it runs allocate
// nothing of their own, so a pass-through's allocations can be counted.
func NewDiskWithoutPR(dev storage.Device) *Disk { return newDisk(dev, nil) }

func newDisk(dev storage.Device, res scsi.Reservations) *Disk {
	return &Disk{e: emulate.New(dev, emulate.Config{Identity: "sgiotest-disk", Reservations: res}), ops: make([]byte, 0, 1<<16)}
}

// Fail makes every later command fail in transport: the ioctl returns err
// when it is not nil, else the host adapter reports hostStatus (a DID_*
// code; 0 runs commands again).
func (d *Disk) Fail(hostStatus uint16, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host, d.err = hostStatus, err
}

// SGIO implements sgio.Target: the command runs on the emulation, whose
// sense comes back as the kernel would report it (DRIVER_SENSE).
func (d *Disk) SGIO(r *sgio.Request) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(r.CDB) > 0 && len(d.ops) < cap(d.ops) {
		d.ops = append(d.ops, r.CDB[0])
	}
	if d.err != nil {
		return d.err
	}
	if d.host != 0 {
		r.HostStatus = d.host
		return nil
	}
	d.cmd = scsi.Command{CDB: r.CDB, Dir: r.Dir, Data: r.Data}
	d.e.Execute(scsi.Nexus{Device: "host"}, &d.cmd, &d.res)
	r.Status, r.Resid = d.res.Status, d.res.Resid
	r.SenseLen = copy(r.Sense, d.res.SenseBytes())
	if r.SenseLen > 0 {
		r.DriverStatus = 0x08 // DRIVER_SENSE
	}
	return nil
}

// Saw reports whether a command with opcode op reached the disk.
func (d *Disk) Saw(op byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.ops {
		if o == op {
			return true
		}
	}
	return false
}

// Forget clears the record of opcodes seen.
func (d *Disk) Forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ops = d.ops[:0]
}

// Close marks the disk closed (Closed reports it).
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

// Closed reports whether Close was called.
func (d *Disk) Closed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}
