package vscsiback_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/faultinject"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vbd"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
	"github.com/xenblk/xenblk/xenbus"
)

// The server's tests: vhosts created by the toolstack as libxl's vscsi
// series would, a vscsiback.Server serving them in dom0, and in each
// guest vscsibus's Frontend machine (as Linux's scsifront behaves) on a
// Runner whose driver hands it the guest end of testFront, whose ring
// then carries the commands.

// server is a vscsiback.Server running in dom0 of host until stop.
type server struct {
	srv    *vscsiback.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when Serve has returned err
	err    error
	once   sync.Once
}

func startServer(t *testing.T, host *sim.Host, reg *scsiengine.Registry) *server {
	t.Helper()
	return newServer(t, host, reg, func(*vscsiback.Server) {})
}

// newServer is startServer with the server configured by config first.
func newServer(t *testing.T, host *sim.Host, reg *scsiengine.Registry, config func(*vscsiback.Server)) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{srv: &vscsiback.Server{Domain: host.Dom0(), Engines: reg, Log: quiet, Grace: 5 * time.Second, Sysfs: t.TempDir()},
		cancel: cancel, done: make(chan struct{})}
	config(s.srv)
	go func() {
		s.err = s.srv.Serve(ctx)
		close(s.done)
	}()
	t.Cleanup(s.stop)
	return s
}

// stop ends Serve (each vhost closing with its frontend) and waits for it.
func (s *server) stop() {
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
}

// newRegistry is an engine registry whose reservations are kept in store.
func newRegistry(store pr.Store) *scsiengine.Registry {
	return scsiengine.New(scsiengine.Config{Reservations: store, Log: quiet})
}

// image is a 4 MiB image file holding a pattern seeded with seed.
func imageFile(t *testing.T, seed byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, 4<<20)
	pattern(img, seed)
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// guestVhost is one vhost of a guest: the toolstack's names for it, and
// the guest's frontend.
type guestVhost struct {
	*testFront
	vh    toolstack.Vhost
	front *frontDriver
	stop  func()
}

// frontDriver is the test frontend's vscsibus.Driver: its ring is the
// testFront's, and it records the LUNs the machine adds and removes.
type frontDriver struct {
	f  *testFront
	mu sync.Mutex
	// luns: the LUNs added, by index.
	luns map[int]vscsibus.VDev
	// attached counts ActAttach: the frontend went Connected.
	attached int
	// lost tells the runner the backend vanished (Runner.Lost).
	lost chan struct{}
}

func (d *frontDriver) Connect(vscsibus.Ring) (vscsibus.Ring, error) {
	return vscsibus.Ring{Ref: d.f.ringRef, Port: d.f.ch.Port(), ABI: d.f.abi}, nil
}
func (d *frontDriver) Attach(int) error {
	d.mu.Lock()
	d.attached++
	d.mu.Unlock()
	return nil
}
func (d *frontDriver) Refresh(int) error { return nil }

func (d *frontDriver) attaches() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attached
}

// backendLost starts the frontend over, as one whose event channel the
// simulated host closed with the backend's end: a new channel and a
// fresh ring (nothing is in flight), then the runner hears the loss and
// connects again when a backend offers InitWait.
func (d *frontDriver) backendLost(t *testing.T) {
	t.Helper()
	f := d.f
	_ = f.ch.Close()
	var err error
	if f.ch, err = f.dom.Events().AllocUnbound(0); err != nil {
		t.Fatal(err)
	}
	if f.ring, err = ring.InitFront(f.ringMem, vscsiif.SlotSize(f.abi)); err != nil {
		t.Fatal(err)
	}
	d.lost <- struct{}{}
}
func (d *frontDriver) Disconnect() {}
func (d *frontDriver) AttachLUN(l vscsibus.LUN, done func(error)) {
	d.mu.Lock()
	d.luns[l.Index] = l.VDev
	d.mu.Unlock()
	done(nil)
}
func (d *frontDriver) DetachLUN(n int) {
	d.mu.Lock()
	delete(d.luns, n)
	d.mu.Unlock()
}
func (d *frontDriver) Remove() {}

// added lists the LUNs the frontend holds, as "index v-dev", by index.
func (d *frontDriver) added() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for n := range 16 {
		if v, ok := d.luns[n]; ok {
			out = append(out, fmt.Sprintf("%d %s", n, v))
		}
	}
	return strings.Join(out, ", ")
}

// createVhost creates vhost devID of guest g with a LUN per spec, as
// libxl would, and starts its frontend; stopFirst (the server's stop)
// runs at cleanup before the guest revokes its grants.
func createVhost(t *testing.T, host *sim.Host, g *sim.Domain, devID uint32, stopFirst func(), specs ...string) *guestVhost {
	t.Helper()
	var luns []vscsispec.Spec
	for _, s := range specs {
		sp, err := vscsispec.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		luns = append(luns, sp)
	}
	vh := toolstack.Vhost{BackendDom: 0, FrontendDom: g.ID(), DevID: devID}
	if err := toolstack.CreateVhost(host.Store(), vh, luns...); err != nil {
		t.Fatal(err)
	}
	f := newGuestFront(t, g)
	d := &frontDriver{f: f, luns: map[int]vscsibus.VDev{}, lost: make(chan struct{}, 1)}
	abandon, ran := make(chan struct{}), make(chan struct{})
	r := &vscsibus.Runner{Store: g.Store(), Self: vh.FrontendPath(), Peer: vh.BackendPath(),
		Machine: vscsibus.NewFrontend(vscsiif.SGTableSize), Driver: d, Lost: d.lost, Abandon: abandon, Log: quiet}
	go func() {
		defer close(ran)
		_ = r.Run(context.Background())
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stopFirst()
			close(abandon)
			<-ran
		})
	}
	t.Cleanup(stop)
	return &guestVhost{testFront: f, vh: vh, front: d, stop: stop}
}

// waitNode waits (10s at most) until the node at path reads want.
func waitNode(t *testing.T, st xen.Store, path, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := xenbus.WaitNode(ctx, st, path, func(v string, err error) bool { return err == nil && strings.TrimSpace(v) == want })
	if err != nil {
		t.Fatalf("%s: %q, want %q: %v", path, got, want, err)
	}
}

// connected waits until the vhost and the LUNs given by index are
// Connected (4) in the backend's directory.
func (v *guestVhost) connected(t *testing.T, st xen.Store, luns ...int) {
	t.Helper()
	be := v.vh.BackendPath()
	for _, n := range luns {
		waitNode(t, st, be+"/"+vscsiif.DevPath(n)+"/state", "4")
	}
	waitNode(t, st, be+"/state", "4")
	waitNode(t, st, v.vh.FrontendPath()+"/state", "4")
}

// TestServerServesAVhost: a vhost of two image-file LUNs reaches
// Connected through the server; the frontend adds both, and INQUIRY,
// READ and WRITE through the ring reach the right image.
func TestServerServesAVhost(t *testing.T) {
	h := newRig(t)
	srv := startServer(t, h.host, h.reg)
	a, b := imageFile(t, 1), imageFile(t, 2)
	v := createVhost(t, h.host, h.guest, 0, srv.stop, a+", 0:0:0:0", b+", 0:0:1:0")
	st := h.host.Store()
	v.connected(t, st, 0, 1)
	if got := v.front.added(); got != "0 0:0:0:0, 1 0:0:1:0" {
		t.Fatalf("frontend added %q", got)
	}
	for i, lun := range []at{{0, 0, 0}, {0, 1, 0}} {
		v.spoken(lun)
		rsp := v.do(v.cdb(lun, []byte{scsi.OpInquiry, 0, 0, 0, 96, 0}, vscsiif.DirFromDevice, 96))
		good(t, rsp)
		if inq := v.page(0); strings.TrimSpace(string(inq[8:16])) != "XENBLK" {
			t.Fatalf("LUN %v: INQUIRY % x", lun, inq[:36])
		}
		path := []string{a, b}[i]
		clear(v.data.Mem[:8192])
		good(t, v.do(v.cdb(lun, scsitest.Read10(8, 16), vscsiif.DirFromDevice, 8192)))
		if img := fileBytes(t, path, 8*512, 8192); !bytes.Equal(v.data.Mem[:8192], img) {
			t.Fatalf("LUN %v: READ(10) differs from %s", lun, path)
		}
		pattern(v.data.Mem[:4096], byte(90+i))
		good(t, v.do(v.cdb(lun, scsitest.Write10(100, 8), vscsiif.DirToDevice, 4096)))
		if img := fileBytes(t, path, 100*512, 4096); !bytes.Equal(v.data.Mem[:4096], img) {
			t.Fatalf("LUN %v: WRITE(10) did not reach %s", lun, path)
		}
	}
	if got := srv.srv.Vhosts(); len(got) != 1 || got[0] != v.vh.BackendPath() {
		t.Fatalf("Vhosts() = %q", got)
	}
}

// fileBytes reads n bytes of the file at path from off.
func fileBytes(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// lunIO writes and reads back LUN a over f in a loop until stop is
// closed, and returns how many round trips it made and the first
// failure (nil if none).
func lunIO(f *testFront, a at, stop chan struct{}) (rounds *int, failed *error, done chan struct{}) {
	rounds, failed, done = new(int), new(error), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w := f.cdb(a, scsitest.Write10(uint32(i%64)*8, 8), vscsiif.DirToDevice, 4096)
			pattern(f.data.Mem[:4096], byte(i))
			want := append([]byte(nil), f.data.Mem[:4096]...)
			f.push(w)
			var rsp vscsiif.Response
			if !f.await(&rsp) || rsp.Rslt != 0 {
				*failed = fmt.Errorf("WRITE %d: rslt %#x", i, rsp.Rslt)
				return
			}
			clear(f.data.Mem[:4096])
			f.push(f.cdb(a, scsitest.Read10(uint32(i%64)*8, 8), vscsiif.DirFromDevice, 4096))
			if !f.await(&rsp) || rsp.Rslt != 0 || !bytes.Equal(f.data.Mem[:4096], want) {
				*failed = fmt.Errorf("READ %d: rslt %#x or data differs", i, rsp.Rslt)
				return
			}
			*rounds = i + 1
		}
	}()
	return rounds, failed, done
}

// TestServerHotAddAndRemove: on a connected vhost, a LUN is added (the
// toolstack's Reconfiguring) and another removed while a third does
// I/O: the I/O never fails, the frontend holds exactly the new set, the
// new LUN serves its image and the removed one answers NO_CONNECT.
func TestServerHotAddAndRemove(t *testing.T) {
	h := newRig(t)
	srv := startServer(t, h.host, h.reg)
	st := h.host.Store()
	a, b, c, d := imageFile(t, 1), imageFile(t, 2), imageFile(t, 3), imageFile(t, 4)
	v := createVhost(t, h.host, h.guest, 0, srv.stop, a+", 0:0:0:0", b+", 0:0:1:0", c+", 0:0:2:0")
	v.connected(t, st, 0, 1, 2)
	busy := at{0, 2, 0}
	v.spoken(busy)

	stop := make(chan struct{})
	rounds, failed, done := lunIO(v.testFront, busy, stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec, err := vscsispec.Parse(d + ", 0:0:3:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := toolstack.AddLUN(ctx, st, v.vh, spec)
	if err != nil || n != 3 {
		t.Fatalf("AddLUN: dev-%d, %v", n, err)
	}
	if err := toolstack.RemoveLUN(ctx, st, v.vh, 1, false); err != nil {
		t.Fatalf("RemoveLUN: %v", err)
	}
	close(stop)
	<-done
	if *failed != nil {
		t.Fatalf("I/O on %v during the changes: %v", busy, *failed)
	}
	if *rounds == 0 {
		t.Fatal("no I/O completed on the busy LUN")
	}
	if got := v.front.added(); got != "0 0:0:0:0, 2 0:0:2:0, 3 0:0:3:0" {
		t.Fatalf("frontend holds %q", got)
	}
	added := at{0, 3, 0}
	v.spoken(added)
	good(t, v.do(v.cdb(added, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)))
	if !bytes.Equal(v.data.Mem[:4096], fileBytes(t, d, 0, 4096)) {
		t.Fatal("the added LUN does not read its image")
	}
	rslt(t, v.do(v.cdb(at{0, 1, 0}, tur, vscsiif.DirNone, 0)), vscsiif.Result(vscsiif.HostNoConnect, 0))
	if _, err := st.Read(v.vh.BackendPath() + "/" + vscsiif.DevPath(1)); err == nil {
		t.Fatal("dev-1 is still there")
	}
}

// TestServerRefusesBadPDevs: a LUN whose p-dev cannot be served (a
// missing image, a host SCSI device that is not there, an NBD export
// this server was given no way to open) is refused with state 6 and its
// reason in its error node; the vhost connects with the others, which
// serve; a bad LUN hot-added is refused the same way.
func TestServerRefusesBadPDevs(t *testing.T) {
	h := newRig(t)
	srv := startServer(t, h.host, h.reg)
	st := h.host.Store()
	good0 := imageFile(t, 1)
	v := createVhost(t, h.host, h.guest, 0, srv.stop,
		good0+", 0:0:0:0", "/nonexistent/disk.img, 0:0:1:0", "9:9:9:9, 0:0:2:0", "nbd://127.0.0.1:1/x, 0:0:3:0")
	be := v.vh.BackendPath()
	for n, why := range map[int]string{1: "does not exist", 2: "no such host SCSI device", 3: "serves no NBD export"} {
		dev := be + "/" + vscsiif.DevPath(n)
		waitNode(t, st, dev+"/state", "6")
		if e, _ := st.Read(dev + "/error"); !strings.Contains(e, why) {
			t.Errorf("dev-%d error node %q, want it to say %q", n, e, why)
		}
	}
	v.connected(t, st, 0)
	if got := v.front.added(); got != "0 0:0:0:0" {
		t.Fatalf("frontend holds %q", got)
	}
	lun := at{0, 0, 0}
	v.spoken(lun)
	good(t, v.do(v.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)))
	rslt(t, v.do(v.cdb(at{0, 1, 0}, tur, vscsiif.DirNone, 0)), vscsiif.Result(vscsiif.HostNoConnect, 0))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec, err := vscsispec.Parse("/nonexistent/other.img, 0:0:4:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := toolstack.AddLUN(ctx, st, v.vh, spec); err == nil || !strings.Contains(err.Error(), "could not attach") {
		t.Fatalf("AddLUN of a missing image: %v", err)
	}
	waitNode(t, st, be+"/state", "4")
	good(t, v.do(v.cdb(lun, tur, vscsiif.DirNone, 0)))
}

// TestServerRestart: the server is killed (faultinject: nothing written,
// rings let go of, disks closed) under a connected frontend, and a new
// server (a new registry on the same reservation store, as a new
// process) takes the vhost again: it reopens both LUNs (their images'
// locks were released), reconnects the ring, and the data written
// before is read back, a registration made before is still there.
func TestServerRestart(t *testing.T) {
	h := newRig(t)
	store := pr.NewMemoryStore()
	srv := startServer(t, h.host, newRegistry(store))
	st := h.host.Store()
	a, b := imageFile(t, 1), imageFile(t, 2)
	stopped := make(chan struct{})
	var srv2 *server
	v := createVhost(t, h.host, h.guest, 0, func() {
		<-stopped
		srv2.stop()
	}, a+", 0:0:0:0", b+", 0:0:1:0")
	v.connected(t, st, 0, 1)
	luns := []at{{0, 0, 0}, {0, 1, 0}}
	for i, lun := range luns {
		v.spoken(lun)
		pattern(v.data.Mem[:4096], byte(50+i))
		good(t, v.do(v.cdb(lun, scsitest.Write10(16, 8), vscsiif.DirToDevice, 4096)))
	}
	// REGISTER with APTPL: the registration outlives the process.
	const key = 0x5eed
	param := v.data.Mem[:24]
	clear(param)
	binary.BigEndian.PutUint64(param[8:], key)
	param[20] = 0x01
	good(t, v.do(v.cdb(luns[0], []byte{scsi.OpPersistentReserveOut, 0x00, 0, 0, 0, 0, 0, 0, 24, 0}, vscsiif.DirToDevice, 24)))

	faultinject.CrashVscsiBackend(srv.srv)
	if <-srv.done; srv.err != nil {
		t.Fatalf("Serve after the crash: %v", srv.err)
	}
	attached := v.front.attaches()
	v.front.backendLost(t)
	srv2 = startServer(t, h.host, newRegistry(store))
	close(stopped)
	eventually.True(t, 10*time.Second, "the frontend connected to the new backend", func() bool {
		return v.front.attaches() > attached
	})
	v.connected(t, st, 0, 1)
	for i, lun := range luns {
		v.spoken(lun) // the new process's units power on
		clear(v.data.Mem[:4096])
		good(t, v.do(v.cdb(lun, scsitest.Read10(16, 8), vscsiif.DirFromDevice, 4096)))
		want := make([]byte, 4096)
		pattern(want, byte(50+i))
		if !bytes.Equal(v.data.Mem[:4096], want) {
			t.Fatalf("LUN %v after the restart: the data written before is not there", lun)
		}
	}
	keys := v.prIn(luns[0], 0x00)
	if n := binary.BigEndian.Uint32(keys[4:]); n != 8 || binary.BigEndian.Uint64(keys[8:]) != key {
		t.Fatalf("READ KEYS after the restart: % x", keys)
	}
}

// TestServerRestartUnderQueuedWrites: the server is killed under a
// frontend that, as Linux's scsifront, neither notices nor reconnects:
// its ring stays published with writes queued on it, and a new server
// maps that ring again. No write for the attached LUN is answered
// NO_CONNECT (the new server serves the ring only once it has reopened
// the LUNs it found attached), every write answered GOOD is on the disk,
// and READ CAPACITY is what it was.
func TestServerRestartUnderQueuedWrites(t *testing.T) {
	h := newRig(t)
	store := pr.NewMemoryStore()
	srv := startServer(t, h.host, newRegistry(store))
	st := h.host.Store()
	img := imageFile(t, 1)
	stopped := make(chan struct{})
	var srv2 *server
	v := createVhost(t, h.host, h.guest, 0, func() {
		<-stopped
		srv2.stop()
	}, img+", 0:0:0:0")
	v.connected(t, st, 0)
	lun := at{0, 0, 0}
	v.spoken(lun)
	readCap := func() []byte {
		t.Helper()
		rc := []byte{scsi.OpServiceActionIn16, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0}
		clear(v.data.Mem[:32])
		good(t, v.do(v.cdb(lun, rc, vscsiif.DirFromDevice, 32)))
		return bytes.Clone(v.data.Mem[:12])
	}
	capBefore := readCap()

	faultinject.CrashVscsiBackend(srv.srv)
	if <-srv.done; srv.err != nil {
		t.Fatalf("Serve after the crash: %v", srv.err)
	}
	// The simulated host closed the channel with the backend's end; the
	// frontend offers a new one in place, its ring and state untouched.
	_ = v.ch.Close()
	var err error
	if v.ch, err = v.dom.Events().AllocUnbound(0); err != nil {
		t.Fatal(err)
	}
	if err := st.Write(v.vh.FrontendPath()+"/"+vscsiif.KeyEventChannel, fmt.Sprint(v.ch.Port())); err != nil {
		t.Fatal(err)
	}
	const writes = 8
	pattern(v.data.Mem[:4096], 77)
	reqs := make([]*vscsiif.Request, writes)
	for i := range reqs {
		reqs[i] = v.cdb(lun, scsitest.Write10(uint32(64+8*i), 8), vscsiif.DirToDevice, 4096)
	}
	v.push(reqs...)

	srv2 = startServer(t, h.host, newRegistry(store))
	close(stopped)
	rsps := v.collect(writes)
	acked := 0
	for _, rsp := range rsps {
		if vscsiif.HostOf(rsp.Rslt) == vscsiif.HostNoConnect {
			t.Fatalf("rqid %d: a write for the attached LUN answered NO_CONNECT", rsp.RqID)
		}
		if rsp.Rslt == 0 {
			acked++
		}
	}
	v.connected(t, st, 0)
	if acked == 0 {
		t.Fatal("no queued write answered GOOD after the restart")
	}
	disk, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	want := v.data.Mem[:4096]
	for _, rsp := range rsps {
		i := slices.IndexFunc(reqs, func(r *vscsiif.Request) bool { return r.RqID == rsp.RqID })
		if i < 0 {
			t.Fatalf("response for rqid %d, which was not queued", rsp.RqID)
		}
		if rsp.Rslt == 0 && !bytes.Equal(disk[(64+8*i)*512:][:4096], want) {
			t.Fatalf("write %d answered GOOD is not on the disk", i)
		}
	}
	if capAfter := readCap(); !bytes.Equal(capAfter, capBefore) {
		t.Fatalf("READ CAPACITY(16) after the restart: % x, before % x", capAfter, capBefore)
	}
}

// TestServerSharesReservationsWithBlkif: one image given to one guest
// over blkif (blkback with the same engine registry) and to another over
// vscsi, shared=1 in both specs, is one logical unit: a registration
// made over blkif is read over vscsi and the other way round. An image
// a blkif vbd holds without shared=1 is refused to a LUN (its lock),
// with the reason in the LUN's error node.
func TestServerSharesReservationsWithBlkif(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	st := s.Host.Store()
	reg := newRegistry(pr.NewMemoryStore())
	s.Serve(blkback.Config{SCSI: blkback.VBDEngines(st, reg, quiet), Log: quiet}, vbd.Opener(quiet))
	shared, held := imageFile(t, 7), imageFile(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	blk, err := s.AttachGuest(ctx, "blk", "vdev=xvda, shared=1, target="+shared, blkfront.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AttachGuest(ctx, "blk2", "vdev=xvda, target="+held, blkfront.Config{}); err != nil {
		t.Fatal(err)
	}
	g, err := s.Host.NewDomain("scsi")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, s.Host, reg)
	v := createVhost(t, s.Host, g, 0, srv.stop, shared+", 0:0:0:0, shared=1", held+", 0:0:1:0")
	v.connected(t, st, 0)
	dev1 := v.vh.BackendPath() + "/" + vscsiif.DevPath(1)
	waitNode(t, st, dev1+"/state", "6")
	if e, _ := st.Read(dev1 + "/error"); !strings.Contains(e, "shared=1") {
		t.Errorf("dev-1 (an image a vbd holds) error node %q, want it to name shared=1", e)
	}

	const blkKey, scsiKey = 0xb1c, 0x5c5
	if err := blk.Disk.PRRegister(ctx, 0, blkKey, false, false); err != nil {
		t.Fatal(err)
	}
	lun := at{0, 0, 0}
	v.spoken(lun)
	keys := v.prIn(lun, 0x00) // READ KEYS
	if n := binary.BigEndian.Uint32(keys[4:]); n != 8 || binary.BigEndian.Uint64(keys[8:]) != blkKey {
		t.Fatalf("READ KEYS over vscsi: % x; want blkif's key %#x", keys, blkKey)
	}
	good(t, v.prOut(lun, 0x00, 0, 0, scsiKey)) // REGISTER
	_, got, err := blk.Disk.PRReadKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{blkKey, scsiKey}) {
		t.Fatalf("READ KEYS over blkif: %#x; want both keys", got)
	}
}

// TestServerIsolatesVhosts: a vhost whose LUN's open never finishes (an
// NBD export that does not answer) holds up no other vhost: a second
// vhost of the same guest connects and serves meanwhile; the stuck one
// stays short of Connected, and the server still stops (its open's
// result, when it comes, is dropped and closed).
func TestServerIsolatesVhosts(t *testing.T) {
	h := newRig(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	srv := newServer(t, h.host, h.reg, func(s *vscsiback.Server) {
		s.OpenNBD = func(string) (storage.Device, error) {
			<-release
			return storage.NewMemory(1 << 20), nil
		}
	})
	stop := func() {
		releaseOnce.Do(func() { close(release) })
		srv.stop()
	}
	st := h.host.Store()
	stuck := createVhost(t, h.host, h.guest, 0, stop, "nbd://127.0.0.1:1/never, 0:0:0:0")
	v := createVhost(t, h.host, h.guest, 1, stop, imageFile(t, 1)+", 1:0:0:0")
	v.connected(t, st, 0)
	lun := at{0, 0, 0}
	v.spoken(lun)
	good(t, v.do(v.cdb(lun, scsitest.Read10(0, 8), vscsiif.DirFromDevice, 4096)))
	if s, _ := st.Read(stuck.vh.BackendPath() + "/state"); strings.TrimSpace(s) == "4" {
		t.Fatal("the vhost whose LUN is still opening went Connected")
	}
}

// TestServerServesAnNBDExport: a LUN whose p-dev is an NBD URL is the
// export, opened through the server's OpenNBD (here the NBD client):
// what the guest writes is in the export's device.
func TestServerServesAnNBDExport(t *testing.T) {
	h := newRig(t)
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	dev := newDisk(t)
	ns := &nbd.Server{Exports: []nbd.Export{{Name: "lun", Device: dev}}}
	go ns.Serve(l)
	t.Cleanup(func() { ns.Close() })
	srv := newServer(t, h.host, h.reg, func(s *vscsiback.Server) {
		s.OpenNBD = func(url string) (storage.Device, error) { return nbd.Dial(url, "") }
	})
	v := createVhost(t, h.host, h.guest, 0, srv.stop, "nbd+unix:///lun?socket="+sock+", 0:0:0:0")
	v.connected(t, h.host.Store(), 0)
	lun := at{0, 0, 0}
	v.spoken(lun)
	pattern(v.data.Mem[:4096], 77)
	good(t, v.do(v.cdb(lun, scsitest.Write10(40, 8), vscsiif.DirToDevice, 4096)))
	if !bytes.Equal(v.data.Mem[:4096], image(t, dev, 40*512, 4096)) {
		t.Fatal("the guest's write is not in the export")
	}
}

// A LUN whose spec names an initiator runs as that named nexus, not as
// (domain, vhost): READ FULL STATUS shows its registration under
// xen:vm:<initiator>:lun-H-C-T-L, which the guest keeps on any host.
func TestServerNamesALUNsNexusByItsInitiator(t *testing.T) {
	s := simstack.ForTest(t, nil, simstack.Options{})
	st := s.Host.Store()
	reg := newRegistry(pr.NewMemoryStore())
	g, err := s.Host.NewDomain("scsi")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, s.Host, reg)
	v := createVhost(t, s.Host, g, 0, srv.stop, imageFile(t, 9)+", 0:0:0:0, shared=1, initiator=vm-6f1c")
	v.connected(t, st, 0)
	lun := at{0, 0, 0}
	v.spoken(lun)
	good(t, v.prOut(lun, 0x06, 0, 0, 0xc1)) // REGISTER AND IGNORE EXISTING KEY
	full := v.prIn(lun, 0x03)               // READ FULL STATUS
	sd, _, ok := pr.ParseStatusDescriptor(full[8:])
	if !ok {
		t.Fatalf("READ FULL STATUS: % x", full)
	}
	n, ok := pr.ParseTransportID(sd.TransportID)
	if !ok || pr.TransportName(n) != "xen:vm:vm-6f1c:lun-0-0-0-0" || sd.Key != 0xc1 {
		t.Fatalf("the registration: key %#x, %q; want 0xc1 by xen:vm:vm-6f1c:lun-0-0-0-0", sd.Key, pr.TransportName(n))
	}
}
