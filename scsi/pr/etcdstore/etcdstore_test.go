package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/xenblk/xenblk/internal/etcdtest"
	"github.com/xenblk/xenblk/internal/testpki"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
	"github.com/xenblk/xenblk/scsi/pr/storetest"
)

// prefixes gives every store of a test a key prefix of its own, so that
// one cluster serves every test.
var prefixes atomic.Uint64

func open(t *testing.T, c *etcdtest.Cluster, prefix string) *etcdstore.Store {
	t.Helper()
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: c.Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newPrefix() string { return fmt.Sprintf("/test/%d/", prefixes.Add(1)) }

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	t.Run("Store", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) pr.Store { return open(t, c, newPrefix()) })
	})
	t.Run("Shared", func(t *testing.T) {
		storetest.RunShared(t, func(t *testing.T) (pr.SharedStore, pr.SharedStore) {
			p := newPrefix()
			return open(t, c, p), open(t, c, p)
		})
	})
	t.Run("MemberKilled", func(t *testing.T) {
		// One of three members gone: quorum holds, and every store
		// operation still answers, through whichever member is left.
		s := open(t, c, newPrefix())
		v, err := s.CompareAndSwap("lu", 0, []byte(`{"V":1,"State":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		c.Stop(0)
		t.Cleanup(func() {
			if err := c.Restart(0); err != nil {
				t.Error(err)
			}
		})
		for i := range 5 {
			if v, err = s.CompareAndSwap("lu", v, []byte(`{"V":1,"State":{}}`)); err != nil {
				t.Fatalf("swap %d with member 0 stopped: %v", i, err)
			}
		}
		if _, got, err := s.Load("lu"); err != nil || got != v {
			t.Fatalf("Load with member 0 stopped = %d, %v; want %d", got, err, v)
		}
	})
}

func TestKeyIsTheNAADesignator(t *testing.T) {
	s := etcdstore.New(nil, etcdstore.Config{})
	_, naa := scsi.Designators("/images/shared.img")
	want := "/xenblk/pr/naa.6" + strings.TrimPrefix(hexOf(naa[:]), "6")
	if got := s.Key("/images/shared.img"); got != want {
		t.Fatalf("Key = %s; want %s", got, want)
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, x := range b {
		sb.WriteByte(digits[x>>4])
		sb.WriteByte(digits[x&15])
	}
	return sb.String()
}

// An endpoint nobody answers on: Open fails within its dial timeout,
// saying which endpoints it tried.
func TestOpenUnreachable(t *testing.T) {
	addr := etcdtest.UnusedAddr(t)
	start := time.Now()
	_, err := etcdstore.Open(etcdstore.Config{Endpoints: []string{addr}, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name %s", err, addr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %v with a 500ms dial timeout", d)
	}
}

// A cluster that lost its quorum: every operation ends within the
// store's timeout with pr.ErrUnavailable, and a unit on it answers PR
// commands with LOGICAL UNIT COMMUNICATION FAILURE instead of hanging.
func TestQuorumLostFailsWithinTimeout(t *testing.T) {
	c := etcdtest.Start(t, 3)
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: c.Endpoints(), Prefix: newPrefix(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := pr.Open(s, "lu", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := scsi.Nexus{Dom: 1, Device: "xvda"}
	if st := storetest.Register(u, a, 1); st != scsi.StatusGood {
		t.Fatalf("REGISTER with quorum: status %#x", st)
	}
	c.Stop(1)
	c.Stop(2)
	if _, _, err := s.Load("lu"); !errors.Is(err, pr.ErrUnavailable) {
		t.Fatalf("Load without quorum: %v; want ErrUnavailable", err)
	}
	if _, err := s.CompareAndSwap("lu", 0, []byte("{}")); !errors.Is(err, pr.ErrUnavailable) {
		t.Fatalf("CompareAndSwap without quorum: %v; want ErrUnavailable", err)
	}
	var res scsi.Result
	cdb := pr.InCommand{Action: pr.InReadKeys, AllocLen: 64}.CDB()
	u.Execute(a, &scsi.Command{CDB: cdb[:], Dir: scsi.DirFromDevice, Data: make([]byte, 64)}, &res, false)
	sense, _, _ := scsi.ParseSense(res.SenseBytes())
	if res.Status != scsi.StatusCheckCondition || sense.Code != scsi.LogicalUnitCommunicationFailure {
		t.Fatalf("READ KEYS without quorum: status %#x sense %+v; want LOGICAL UNIT COMMUNICATION FAILURE", res.Status, sense)
	}
	b := scsi.Nexus{Dom: 2, Device: "xvda"}
	if st := storetest.Register(u, b, 2); st != scsi.StatusCheckCondition {
		t.Fatalf("REGISTER without quorum: status %#x; want CHECK CONDITION", st)
	}
	if got := u.Stats().Failures; got != 2 {
		t.Errorf("unit counted %d failures; want 2", got)
	}
	// Quorum back: the unit works again.
	if err := c.Restart(1, 2); err != nil {
		t.Fatal(err)
	}
	if st := storetest.Register(u, b, 2); st != scsi.StatusGood {
		t.Fatalf("REGISTER after quorum returned: status %#x", st)
	}
}

func TestTLS(t *testing.T) {
	pki := testpki.New(t)
	c := etcdtest.StartTLS(t, 1, &transport.TLSInfo{
		CertFile: pki.Path("server-cert.pem"), KeyFile: pki.Path("server-key.pem"),
		TrustedCAFile: pki.Path("ca-cert.pem"), ClientCertAuth: true,
	})
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: c.Endpoints(), TLS: pki.ClientConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CompareAndSwap("lu", 0, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// Without a certificate the cluster refuses, and Open says so in time.
	if s, err := etcdstore.Open(etcdstore.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second}); err == nil {
		s.Close()
		t.Fatal("Open without TLS against a TLS cluster succeeded")
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url       string
		endpoints []string
		prefix    string
		err       bool
	}{
		{url: "etcd://h1:2379", endpoints: []string{"h1:2379"}},
		{url: "etcd://h1:2379,h2:2379,10.0.0.3:2379", endpoints: []string{"h1:2379", "h2:2379", "10.0.0.3:2379"}},
		{url: "etcd://[::1]:2379/", endpoints: []string{"[::1]:2379"}},
		{url: "etcd://h1:2379,h2:2379/cluster-a", endpoints: []string{"h1:2379", "h2:2379"}, prefix: "/cluster-a/"},
		{url: "etcd://h1:2379/a/b/", endpoints: []string{"h1:2379"}, prefix: "/a/b/"},
		{url: "http://h1:2379", err: true},
		{url: "etcd://", err: true},
		{url: "etcd://h1", err: true},
		{url: "etcd://h1:2379,", err: true},
		{url: "etcd://:2379", err: true},
		{url: "etcd://h1:99999", err: true},
		{url: "etcd://h1:port", err: true},
	} {
		eps, prefix, err := etcdstore.ParseURL(tc.url)
		if tc.err {
			if err == nil {
				t.Errorf("ParseURL(%q) = %q, %q; want an error", tc.url, eps, prefix)
			}
			continue
		}
		if err != nil || strings.Join(eps, " ") != strings.Join(tc.endpoints, " ") || prefix != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.url, eps, prefix, err, tc.endpoints, tc.prefix)
		}
	}
}

// A watch from a revision etcd has compacted away delivers each unit's
// latest state, then every change after it.
func TestWatchAfterCompaction(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, newPrefix())
	state := func(gen uint32) []byte {
		b, err := pr.Encode(pr.State{Generation: gen})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	v1, err := s.CompareAndSwap("a", 0, state(1))
	if err != nil {
		t.Fatal(err)
	}
	va, err := s.CompareAndSwap("a", v1, state(2))
	if err != nil {
		t.Fatal(err)
	}
	vb, err := s.CompareAndSwap("b", 0, state(3))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().Compact(ctx, int64(vb)); err != nil {
		t.Fatal(err)
	}
	changes := make(chan pr.Change, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, v1-1, func(c pr.Change) {
			select {
			case changes <- c:
			case <-ctx.Done():
			}
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	want := []struct {
		lu  string
		v   uint64
		gen uint32
	}{{"a", va, 2}, {"b", vb, 3}}
	for _, w := range want {
		select {
		case got := <-changes:
			if got.LU != w.lu || got.Version != w.v || got.State.Generation != w.gen {
				t.Fatalf("after compaction: %s at %d (generation %d); want %s at %d (generation %d)",
					got.LU, got.Version, got.State.Generation, w.lu, w.v, w.gen)
			}
		case <-ctx.Done():
			t.Fatal("no change delivered after the compaction")
		}
	}
	vb2, err := s.CompareAndSwap("b", vb, state(4))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changes:
		if got.LU != "b" || got.Version != vb2 {
			t.Fatalf("after the resync: %s at %d; want b at %d", got.LU, got.Version, vb2)
		}
	case <-ctx.Done():
		t.Fatal("no change delivered after the resync")
	}
	if st := s.Stats(); st.WatchResyncs != 1 {
		t.Errorf("%d resyncs; want 1", st.WatchResyncs)
	}
}

// Closing the store ends its watch with an error, not a retry loop.
func TestWatchEndsWhenTheStoreCloses(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: c.Endpoints(), Prefix: newPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, 0, func(pr.Change) {}) }()
	// Closing before the watch has started is the same case: the watch
	// must end either way.
	s.Close()
	select {
	case err := <-done:
		if err == nil || ctx.Err() != nil {
			t.Fatalf("Watch returned %v (context %v); want an error of its own", err, ctx.Err())
		}
	case <-ctx.Done():
		t.Fatal("Watch did not end within 30s of Close")
	}
}
