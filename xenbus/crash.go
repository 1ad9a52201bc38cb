package xenbus

import "sync"

// Crash is a backend server's crash signal, for the fault-injection hook
// that kills a server as a killed process would: a channel made on first
// use (so Serve and a crash racing it agree on one), closed once. The
// zero value is ready.
type Crash struct {
	made, fired sync.Once
	c           chan struct{}
}

// Chan is the channel Do closes.
func (c *Crash) Chan() chan struct{} {
	c.made.Do(func() { c.c = make(chan struct{}) })
	return c.c
}

// Do closes the channel and then runs then (if not nil), once: a caller
// racing the first returns only after it has.
func (c *Crash) Do(then func()) {
	c.fired.Do(func() {
		close(c.Chan())
		if then != nil {
			then()
		}
	})
}
