package blkback_test

import (
	"reflect"
	"testing"

	"github.com/xenblk/xenblk/blkback"
)

// The xenbus handshake's steps and the crash hooks are not API: only the
// Runner drives a vbd (through an unexported adapter), and tests inject
// crashes through internal/faultinject.
func TestLifecycleIsNotAPI(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeOf(&blkback.VBD{}), reflect.TypeOf(&blkback.Server{})} {
		for _, m := range []string{"Publish", "Connect", "Attach", "Refresh", "Disconnect", "Remove", "Crash"} {
			if _, ok := typ.MethodByName(m); ok {
				t.Errorf("%v exports %s", typ, m)
			}
		}
	}
}
