package scsiengine_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/etcdtest"
	"github.com/xenblk/xenblk/internal/eventually"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
	"github.com/xenblk/xenblk/scsi/pr/lease"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
)

// clusterHost is one host's registry on the shared etcd store, and the
// engine of the one shared disk it serves.
type clusterHost struct {
	t      *testing.T
	reg    *scsiengine.Registry
	engine scsiengine.Engine
}

func newClusterHost(t *testing.T, etcd *etcdtest.Cluster, l lease.Config) *clusterHost {
	t.Helper()
	store, err := etcdstore.Open(etcdstore.Config{Endpoints: etcd.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	reg := scsiengine.New(scsiengine.Config{Reservations: store, Lease: l})
	t.Cleanup(func() {
		reg.Close()
		store.Close()
	})
	e, _, err := reg.Open(scsiengine.Unit{Name: "vbd", ID: "/cluster/disk", Path: "/cluster/disk"}, storage.NewMemory(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return &clusterHost{t: t, reg: reg, engine: e}
}

func (h *clusterHost) exec(n scsi.Nexus, cdb []byte, dir scsi.Direction, data []byte) scsi.Result {
	var r scsi.Result
	r.Reset(len(data))
	h.engine.Execute(n, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &r)
	return r
}

// prOut runs a PERSISTENT RESERVE OUT past n's unit attentions.
func (h *clusterHost) prOut(n scsi.Nexus, a pr.OutAction, typ pr.Type, key, saKey uint64) byte {
	h.t.Helper()
	p := pr.OutParams{Key: key, SAKey: saKey}
	param := p.Append(nil, a)
	cdb := pr.OutCommand{Action: a, Type: typ, ParamLen: uint32(len(param))}.CDB()
	for range 4 {
		r := h.exec(n, cdb[:], scsi.DirToDevice, param)
		if s, _, ok := scsi.ParseSense(r.SenseBytes()); !ok || s.Key != scsi.KeyUnitAttention {
			return r.Status
		}
	}
	h.t.Fatal("unit attentions without end")
	return 0
}

func (h *clusterHost) fenced(n scsi.Nexus) bool {
	return h.engine.(scsi.Fencer).Fenced(n, true)
}

var (
	nodeA = scsi.Nexus{Initiator: "node-a", Device: "51712"}
	nodeB = scsi.Nexus{Initiator: "node-b", Device: "51712"}
)

// The watch keeps each host's copy current: a registration made on host
// 2 shows on host 1 without a PR command there and long before a lease
// renewal would have read it.
func TestSharedUnitsFollowTheWatch(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	slow := lease.Config{Term: time.Minute, Margin: time.Second}
	h1, h2 := newClusterHost(t, etcd, slow), newClusterHost(t, etcd, slow)
	if s := h2.prOut(nodeB, pr.OutRegisterAndIgnore, 0, 0, 0xb); s != scsi.StatusGood {
		t.Fatalf("register on host 2: %#x", s)
	}
	unit := h1.reg.Units()["/cluster/disk"]
	eventually.True(t, 10*time.Second, "host 1's copy holds node-b's registration", func() bool {
		return len(unit.State().Registrations) == 1
	})
}

// The fencing bound through the registries: once node-b's PREEMPT AND
// ABORT on host 2 completes, host 1 fences node-a's writes, and node-a's
// next command on host 1 reports REGISTRATIONS PREEMPTED (raised on
// host 2, delivered through the stored state); Close ends the following.
func TestPreemptAcrossRegistries(t *testing.T) {
	etcd := etcdtest.Start(t, 1)
	l := lease.Config{Term: 500 * time.Millisecond, Margin: 50 * time.Millisecond}
	h1, h2 := newClusterHost(t, etcd, l), newClusterHost(t, etcd, l)
	for _, c := range []struct {
		h       *clusterHost
		n       scsi.Nexus
		a       pr.OutAction
		typ     pr.Type
		key, sa uint64
	}{
		{h1, nodeA, pr.OutRegisterAndIgnore, 0, 0, 0xa},
		{h2, nodeB, pr.OutRegisterAndIgnore, 0, 0, 0xb},
		{h1, nodeA, pr.OutReserve, pr.TypeWriteExclusiveRegOnly, 0xa, 0},
	} {
		if s := c.h.prOut(c.n, c.a, c.typ, c.key, c.sa); s != scsi.StatusGood {
			t.Fatalf("%v from %s: %#x", c.a, c.n.Initiator, s)
		}
	}
	if h1.fenced(nodeA) {
		t.Fatal("the holder is fenced before any preempt")
	}
	if s := h2.prOut(nodeB, pr.OutPreemptAndAbort, pr.TypeWriteExclusiveRegOnly, 0xb, 0xa); s != scsi.StatusGood {
		t.Fatalf("PREEMPT AND ABORT from node-b: %#x", s)
	}
	if !h1.fenced(nodeA) {
		t.Fatal("host 1 admits node-a's write after node-b's PREEMPT AND ABORT completed on host 2")
	}
	tur := []byte{scsi.OpTestUnitReady, 0, 0, 0, 0, 0}
	var got []scsi.Code
	for range 4 {
		r := h1.exec(nodeA, tur, scsi.DirNone, nil)
		s, _, ok := scsi.ParseSense(r.SenseBytes())
		if !ok {
			break
		}
		got = append(got, s.Code)
	}
	if len(got) == 0 || got[len(got)-1] != scsi.RegistrationsPreempted {
		t.Fatalf("node-a's unit attentions on host 1: %v; want REGISTRATIONS PREEMPTED last", got)
	}
	keys := make([]byte, 16)
	cdb := pr.InCommand{Action: pr.InReadKeys, AllocLen: 16}.CDB()
	if r := h1.exec(nodeA, cdb[:], scsi.DirFromDevice, keys); r.Status != scsi.StatusGood ||
		binary.BigEndian.Uint32(keys[4:]) != 8 || binary.BigEndian.Uint64(keys[8:]) != 0xb {
		t.Fatalf("READ KEYS on host 1: status %#x, %x; want node-b's key alone", r.Status, keys)
	}
}
