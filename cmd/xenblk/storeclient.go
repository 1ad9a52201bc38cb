package main

import (
	"io"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenstore"
)

// A domain process attached to a host in another process (sim.Connect)
// reaches the host's xenstore over the wire; this client serves it.
func init() {
	sim.StoreClient = func(c io.ReadWriteCloser) (xen.Store, error) { return xenstore.New(c) }
}
