// Package faultinject lets tests in other packages of this module inject
// the faults that packages keep unexported: what a killed process or a
// lost connection does, which no caller of the public API may trigger.
// Being internal, nothing outside the module can import it.
//
// Each hook is set by the package that owns the fault, in its init; a
// test reaches the hook through that package's import. The arguments are
// typed any because this package cannot import its owners (they import
// it); a hook panics on an argument of the wrong type.
package faultinject

var (
	// CrashBackend stops a *blkback.Server as a killed backend process
	// would: every device stops serving and writes nothing to the store,
	// and Serve returns. Crashing a server again does nothing more.
	CrashBackend func(server any)

	// CrashVscsiBackend stops a *vscsiback.Server as a killed backend
	// process would: every vhost stops serving and writes nothing to the
	// store, its disks are closed, and Serve returns.
	CrashVscsiBackend func(server any)

	// DisconnectVBD stops the queues of a *blkback.VBD and unmaps its
	// rings, as the xenbus handshake's Disconnect step does, without
	// telling the frontend.
	DisconnectVBD func(vbd any)
)
