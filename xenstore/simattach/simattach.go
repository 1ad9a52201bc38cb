// Package simattach gives domain processes attached to a simulated host
// (sim.Connect) a working xen.Store: importing it, for its side effect
// only, sets sim.StoreClient to package xenstore's client. Programs and
// tests that attach to a host in another process import it:
//
//	import _ "github.com/xenblk/xenblk/xenstore/simattach"
package simattach

import (
	"io"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenstore"
)

func init() {
	sim.StoreClient = func(c io.ReadWriteCloser) (xen.Store, error) { return xenstore.New(c) }
}
