package xenbus

import (
	"errors"
	"slices"
	"testing"

	"github.com/xenblk/xenblk/xen/sim"
)

// TestDeviceTableConsider: a device is started only once its state is
// written and it is online; one that fails to start writes its error
// node and is not tried again until its directory goes; one started
// after stop is closed is handed back to be undone, not kept.
func TestDeviceTableConsider(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	st := h.Store()
	dir := "/local/domain/0/backend/test/1/0"
	var tab DeviceTable[int]
	starts := 0
	fail := errors.New("no disk")
	start := func() (*int, error) {
		starts++
		if starts == 1 {
			return nil, fail
		}
		n := starts
		return &n, nil
	}
	mustWrite := func(path, v string) {
		t.Helper()
		if err := st.Write(path, v); err != nil {
			t.Fatal(err)
		}
	}
	consider := func(stop <-chan struct{}) (*int, bool) { return tab.Consider(st, dir, stop, start) }

	mustWrite(dir+"/online", "1")
	if d, _ := consider(nil); d != nil || starts != 0 {
		t.Fatalf("started with no state node: %v, %d starts", d, starts)
	}
	mustWrite(dir+"/state", "1")
	mustWrite(dir+"/online", "0")
	if d, _ := consider(nil); d != nil || starts != 0 {
		t.Fatalf("started offline: %v, %d starts", d, starts)
	}
	mustWrite(dir+"/online", "1")
	if d, _ := consider(nil); d != nil || starts != 1 {
		t.Fatalf("a failed start: %v, %d starts", d, starts)
	}
	if v, err := st.Read(dir + "/error"); err != nil || v != fail.Error() {
		t.Fatalf("error node %q, %v", v, err)
	}
	if got := tab.Failed("/local/domain/0/backend/test/1/"); !slices.Equal(got, []string{dir}) {
		t.Fatalf("Failed = %v", got)
	}
	if d, _ := consider(nil); d != nil || starts != 1 {
		t.Fatalf("a failed device retried before its directory went: %d starts", starts)
	}
	if err := st.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if d, _ := consider(nil); d != nil || len(tab.Failed("")) != 0 {
		t.Fatalf("a failed device whose directory went is still remembered: %v", tab.Failed(""))
	}
	mustWrite(dir+"/state", "1")
	mustWrite(dir+"/online", "1")
	stop := make(chan struct{})
	close(stop)
	if d, stopped := consider(stop); d == nil || !stopped || tab.Get(dir) != nil {
		t.Fatalf("started after stop: %v, stopped %v, kept %v", d, stopped, tab.Get(dir))
	}
	d, stopped := consider(nil)
	if d == nil || stopped || tab.Get(dir) != d || !slices.Equal(tab.Dirs(), []string{dir}) || len(tab.Running()) != 1 {
		t.Fatalf("started: %v, stopped %v, Dirs %v", d, stopped, tab.Dirs())
	}
	if again, _ := consider(nil); again != nil {
		t.Fatal("a running device started again")
	}
	tab.Remove(dir)
	if tab.Get(dir) != nil || len(tab.Dirs()) != 0 {
		t.Fatal("Remove kept the device")
	}
}
