package blkback_test

import (
	"context"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/internal/faultinject"
	"github.com/xenblk/xenblk/xen/sim"
)

// Crashing a server twice (a test's cleanup after the test crashed it
// already, or two failure paths racing) is the same as crashing it once:
// no panic, and Serve returns.
func TestServerCrashTwice(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	srv := &blkback.Server{Config: blkback.Config{Domain: h.Dom0()}, BackendType: "vbd"}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	faultinject.CrashBackend(srv)
	faultinject.CrashBackend(srv)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Crash: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after Crash")
	}
	faultinject.CrashBackend(srv) // after Serve returned, too
}
