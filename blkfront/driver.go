package blkfront

import "github.com/xenblk/xenblk/xenbus"

// driver is a Disk as its xenbus.Runner drives it. The handshake's steps
// are the Runner's alone to take, so they are not methods of Disk: a
// caller holding a Disk cannot connect, disconnect or remove it behind the
// state machine's back.
type driver struct{ d *Disk }

var _ xenbus.Driver = driver{}

// Publish: a frontend has no static nodes to publish.
func (x driver) Publish() error { return nil }

// Connect builds (once) the queues and grants fresh rings, then publishes
// them in one transaction; a failure before the first connection is
// Open's error.
func (x driver) Connect() error {
	err := x.d.connect()
	x.d.failSetup(err)
	return err
}

func (x driver) Attach() error  { return x.d.attach() }
func (x driver) Refresh() error { return x.d.refresh() }
func (x driver) Disconnect()    { x.d.disconnect() }
func (x driver) Remove()        { x.d.remove() }
