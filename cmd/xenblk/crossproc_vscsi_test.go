package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xenblk/xenblk/control"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/internal/vscsitest"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
	"github.com/xenblk/xenblk/toolstack"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsibus"
	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/vscsispec"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/sim"
)

// TestVscsiConformanceAcrossProcesses runs the block-device conformance
// suite through PVSCSI with every party in its own process: `xenblk
// host`, one `xenblk serve` (our vscsi backend, serving every case's
// vhost), and for each device a `xenblk front --vhost 0` guest whose LUN
// (an image file, attached with attach --vscsi) is exported over NBD,
// which the suite drives with our NBD client. Every operation is SCSI
// on the vscsiif ring between the two processes.
func TestVscsiConformanceAcrossProcesses(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := crossProcHost(t, bin, dir)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T, size int64) storage.Device {
		i := n.Add(1)
		img := filepath.Join(dir, fmt.Sprintf("lun%d.img", i))
		newImage(t, img, size)
		_, _, _, url := startFrontVhost(t, bin, sock, xs, dir, fmt.Sprintf("guest%d", i), img, "")
		return dialExport(t, url)
	})
}

// TestVscsiSCSIConformanceAcrossProcesses runs the SCSI conformance suite
// through `xenblk front --vhost 0` guests, each its own process, on a
// `xenblk host`, every command sent on the guest's control socket (as
// `xenblk scsi` does) and carried by our vscsi frontend in that process
// to our vscsi backend in the test's, over the simulated host's grants
// and event channels. The backend is the test's so that each case's
// LUN is the suite's device and engine; each guest's vhost keeps a
// placeholder LUN at 0:0:1:0, and a case's LUN is hot-added at 0:0:0:0
// (toolstack.AddLUN) on the guest of each nexus it speaks as, and
// removed after. front probes a LUN it is given (its first commands
// take the unit attentions a new nexus meets); the probe is answered by
// a stand-in engine over the same device, so the suite's engine sees
// only the suite's commands on each nexus. What the transport refuses
// must be refused: an empty CDB by the control socket, a CDB under 6
// bytes and data against the CDB's direction by the backend (host
// ERROR, which the guest's frontend reports).
func TestVscsiSCSIConformanceAcrossProcesses(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	// The socket's file is there before the host listens on it.
	var dom0 xen.Domain
	eventually.True(t, 30*time.Second, "the host accepts a backend", func() bool {
		var err error
		dom0, err = sim.Connect(sock, sim.AsDom0())
		return err == nil
	})
	guests := []*scsiGuest{startSCSIGuest(t, bin, sock, dir, dom0, "node1"), startSCSIGuest(t, bin, sock, dir, dom0, "node2")}
	var cases atomic.Int32
	errorContaining := func(s string) func(error) error {
		return func(err error) error {
			if !strings.Contains(err.Error(), s) {
				return fmt.Errorf("want an error with %q", s)
			}
			return nil
		}
	}
	scsitest.RunTransport(t, func(t *testing.T, dev storage.Device) scsitest.Target {
		cfg := emulate.Config{Identity: "suite", Log: quietLog()}
		return &crossTarget{t: t, guests: guests, pdev: fmt.Sprintf("/suite/%d", cases.Add(1)),
			engine: emulate.New(dev, cfg), probe: emulate.New(dev, cfg), nexus: map[scsi.Nexus]*scsiGuest{}}
	}, scsitest.Refusals{
		scsitest.NoCDB:            errorContaining("CDB of 0 bytes"),
		scsitest.ShortCDB:         errorContaining(fmt.Sprintf("rslt %#x", vscsiif.Result(vscsiif.HostError, 0))),
		scsitest.AgainstDirection: errorContaining(fmt.Sprintf("rslt %#x", vscsiif.Result(vscsiif.HostError, 0))),
	})
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scsiGuest is a `xenblk front --vhost 0` process and its vhost, served
// by a vscsitest.Backend in the test.
type scsiGuest struct {
	front *proc
	store xen.Store
	vhost toolstack.Vhost
	ctl   *control.Client
	mu    sync.Mutex
	luns  map[string]scsiengine.Engine // by p-dev
}

func startSCSIGuest(t *testing.T, bin, sock, dir string, dom0 xen.Domain, name string) *scsiGuest {
	t.Helper()
	ctl := filepath.Join(dir, name+".sock")
	g := &scsiGuest{store: dom0.Store(), luns: map[string]scsiengine.Engine{"/placeholder": emulate.New(storage.NewMemory(1<<20), emulate.Config{Log: quietLog()})}}
	g.front = startProc(t, bin, "front", "--host", sock, "--name", name, "--vhost", "0", "--nbd", freePort(t), "--control", ctl)
	var domid int
	fmt.Sscanf(g.front.expect(t, "domain "), "domain %d", &domid)
	g.vhost = toolstack.Vhost{BackendDom: 0, FrontendDom: xen.DomID(domid), DevID: 0}
	if err := toolstack.CreateVhost(g.store, g.vhost, vscsiSpec(t, "/placeholder, 0:0:1:0")); err != nil {
		t.Fatal(err)
	}
	back := &vscsitest.Backend{Domain: dom0, Front: g.vhost.FrontendDom, Dir: g.vhost.BackendPath(), SGGrant: vscsiback.MaxSGGrant,
		Engine: g.engine, Log: quietLog()}
	r := &vscsibus.Runner{Store: g.store, Self: g.vhost.BackendPath(), Peer: g.vhost.FrontendPath(),
		Machine: vscsibus.NewBackend(), Driver: back, SGGrant: vscsiback.MaxSGGrant, Log: quietLog()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s's backend runner did not end", name)
		}
	})
	g.front.expect(t, "LUN 0:0:1:0: ")
	c, err := control.Dial(ctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g.ctl = c
	return g
}

func (g *scsiGuest) engine(pdev string) (scsiengine.Engine, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.luns[pdev]
	if !ok {
		return nil, fmt.Errorf("no LUN %q in the test", pdev)
	}
	return e, nil
}

// add hot-adds pdev (served by e) at 0:0:0:0 and waits until front
// exports it; the LUN is removed when the case ends.
func (g *scsiGuest) add(t *testing.T, pdev string, e scsiengine.Engine) {
	g.mu.Lock()
	g.luns[pdev] = e
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := toolstack.AddLUN(ctx, g.store, g.vhost, vscsiSpec(t, pdev+", 0:0:0:0"))
	if err != nil {
		t.Fatalf("adding %s: %v", pdev, err)
	}
	g.front.expect(t, "LUN 0:0:0:0: ")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := toolstack.RemoveLUN(ctx, g.store, g.vhost, n, false); err != nil {
			t.Fatalf("removing %s: %v", pdev, err)
		}
		g.front.expect(t, "LUN 0:0:0:0 removed")
		g.mu.Lock()
		delete(g.luns, pdev)
		g.mu.Unlock()
	})
}

func vscsiSpec(t *testing.T, s string) vscsispec.Spec {
	t.Helper()
	sp, err := vscsispec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// probed is a LUN's engine as a case sees it: until the case takes the
// LUN (live), commands (front's probe) go to a stand-in over the same
// device.
type probed struct {
	live          atomic.Bool
	probe, engine scsiengine.Engine
}

func (p *probed) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	if p.live.Load() {
		p.engine.Execute(n, cmd, res)
	} else {
		p.probe.Execute(n, cmd, res)
	}
}

// crossTarget is scsitest's Transport through the guests' control
// sockets: the suite's nexuses are given guests in the order they speak.
type crossTarget struct {
	t             *testing.T
	guests        []*scsiGuest
	pdev          string
	engine, probe scsiengine.Engine
	nexus         map[scsi.Nexus]*scsiGuest
}

func (ct *crossTarget) Deliver(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) error {
	g, ok := ct.nexus[n]
	if !ok {
		if len(ct.nexus) == len(ct.guests) {
			ct.t.Fatalf("a case speaks as more than %d nexuses", len(ct.guests))
		}
		g = ct.guests[len(ct.nexus)]
		ct.nexus[n] = g
		e := &probed{probe: ct.probe, engine: ct.engine}
		g.add(ct.t, ct.pdev, e)
		e.live.Store(true)
	}
	var out []byte
	in := 0
	switch cmd.Dir {
	case scsi.DirToDevice:
		out = cmd.Data
	case scsi.DirFromDevice:
		in = len(cmd.Data)
	}
	r, err := g.ctl.Exec("0:0:0:0", cmd.CDB, cmd.Dir, out, in)
	if err != nil {
		return err
	}
	res.Reset(r.Resid)
	res.Status = r.Status
	res.SenseLen = copy(res.Sense[:], r.Sense)
	copy(cmd.Data, r.DataIn)
	return nil
}

func (ct *crossTarget) Execute(n scsi.Nexus, cmd *scsi.Command, res *scsi.Result) {
	if err := ct.Deliver(n, cmd, res); err != nil {
		ct.t.Fatalf("% x: %v", cmd.CDB, err)
	}
}
