package blkfront_test

import (
	"reflect"
	"testing"

	"github.com/xenblk/xenblk/blkfront"
)

// The xenbus handshake's steps are not API: only the Runner drives a Disk
// (through an unexported adapter).
func TestLifecycleIsNotAPI(t *testing.T) {
	typ := reflect.TypeOf(&blkfront.Disk{})
	for _, m := range []string{"Publish", "Connect", "Attach", "Refresh", "Disconnect", "Remove", "Crash"} {
		if _, ok := typ.MethodByName(m); ok {
			t.Errorf("%v exports %s", typ, m)
		}
	}
}
