package blkback

import "github.com/xenblk/xenblk/xenbus"

// driver is a VBD as its xenbus.Runner drives it. The handshake's
// steps are the Runner's alone to take, so they are not methods of
// VBD: a caller holding a VBD cannot connect, disconnect or remove
// it behind the state machine's back.
type driver struct{ d *VBD }

var _ xenbus.Driver = driver{}

func (x driver) Publish() error { return x.d.publish() }
func (x driver) Connect() error { return x.d.connect() }

// Attach and Refresh are frontend steps.
func (x driver) Attach() error  { return nil }
func (x driver) Refresh() error { return nil }
func (x driver) Disconnect()    { x.d.disconnect() }
func (x driver) Remove()        { x.d.remove() }
