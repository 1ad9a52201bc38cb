// Package etcdtest runs etcd clusters inside the test (or benchmark)
// process (go.etcd.io/etcd/server/v3/embed): n members on 127.0.0.1, each
// with its own data directory, which a test can stop and restart one by
// one. Nothing outside the process is needed.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// readyTimeout bounds a member's start: an election on a loaded machine
// takes seconds, not minutes.
const readyTimeout = 60 * time.Second

// Options shape a cluster.
type Options struct {
	// Dir holds one data directory per member.
	Dir string
	// TLS, when set, makes clients speak TLS: the members present
	// CertFile/KeyFile and require a client certificate TrustedCAFile
	// signed (testpki's server-cert.pem, server-key.pem, ca-cert.pem).
	TLS *transport.TLSInfo
	// Fsync makes members sync their log as a production etcd does
	// (benchmarks); tests leave it off, which loses nothing short of a
	// machine crash.
	Fsync bool
}

// Cluster is a running cluster. Its methods are safe for concurrent use.
type Cluster struct {
	mu      sync.Mutex
	members []*member
}

type member struct {
	cfg *embed.Config
	e   *embed.Etcd // nil while stopped
}

// Start starts an n-member cluster for t, stopped at t's cleanup; data
// directories are under t.TempDir().
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartTLS(t, n, nil)
}

// StartTLS is Start with clients speaking TLS (Options.TLS).
func StartTLS(t testing.TB, n int, tlsInfo *transport.TLSInfo) *Cluster {
	t.Helper()
	c, err := New(n, Options{Dir: t.TempDir(), TLS: tlsInfo})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// New starts an n-member cluster and waits until every member is ready.
// Ports are chosen free just before; a start that loses one to another
// process is tried again with new ports.
func New(n int, o Options) (*Cluster, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *Cluster
		if c, err = start(n, o, attempt); err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
	return nil, err
}

var errPortTaken = errors.New("etcdtest: a port was taken")

func start(n int, o Options, attempt int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	c := &Cluster{}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = filepath.Join(o.Dir, fmt.Sprintf("try%d-%s", attempt, name))
		peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i])}
		client := url.URL{Scheme: scheme, Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		if o.TLS != nil {
			cfg.ClientTLSInfo = *o.TLS
		}
		cfg.UnsafeNoFsync = !o.Fsync
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.InitialClusterToken = "xenblk-etcdtest"
		initial = append(initial, name+"="+peer.String())
		c.members = append(c.members, &member{cfg: cfg})
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	// Members start together: each waits for the others to elect.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Go(func() { errs[i] = c.start(m) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		if strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, err
	}
	return c, nil
}

// start starts m (new or stopped) and waits until it serves clients.
func (c *Cluster) start(m *member) error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: member %s: %w", m.cfg.Name, err)
	}
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	select {
	case <-e.Server.ReadyNotify():
		c.mu.Lock()
		m.e = e
		c.mu.Unlock()
		return nil
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcdtest: member %s: %w", m.cfg.Name, err)
	case <-timeout.C:
		e.Close()
		return fmt.Errorf("etcdtest: member %s not ready after %v", m.cfg.Name, readyTimeout)
	}
}

// freePorts returns n TCP ports of 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Endpoints are the members' client addresses (host:port), stopped
// members included.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.cfg.AdvertiseClientUrls[0].Host)
	}
	return eps
}

// URL is the cluster as xenblk serve --pr-store takes it.
func (c *Cluster) URL() string { return "etcd://" + strings.Join(c.Endpoints(), ",") }

// Stop stops member i as an operator would: a leader hands leadership
// over first. Its data stays for Restart.
func (c *Cluster) Stop(i int) { c.stop(i, false) }

// Kill stops member i as a kill would: raft stops at once, a leader
// hands nothing over, and the others elect a new one after their
// election timeout. Its data stays for Restart.
func (c *Cluster) Kill(i int) { c.stop(i, true) }

func (c *Cluster) stop(i int, hard bool) {
	c.mu.Lock()
	m := c.members[i]
	e := m.e
	m.e = nil
	c.mu.Unlock()
	if e == nil {
		return
	}
	if hard {
		e.Server.HardStop()
	}
	e.Close()
}

// Restart starts the stopped members is again, together, on their data
// directories and ports, and waits until they serve clients (restarting
// a majority at once is how a stopped cluster comes back).
func (c *Cluster) Restart(is ...int) error {
	errs := make([]error, len(is))
	var wg sync.WaitGroup
	for k, i := range is {
		c.mu.Lock()
		m := c.members[i]
		running := m.e != nil
		c.mu.Unlock()
		if running {
			errs[k] = fmt.Errorf("etcdtest: member %d is running", i)
			continue
		}
		m.cfg.ClusterState = embed.ClusterStateFlagExisting
		wg.Go(func() { errs[k] = c.start(m) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every member.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// RemoveData removes the data directories of a closed cluster (New's
// callers that are not tests; Start's t.TempDir() goes by itself).
func (c *Cluster) RemoveData() error {
	var errs []error
	for _, m := range c.members {
		errs = append(errs, os.RemoveAll(m.cfg.Dir))
	}
	return errors.Join(errs...)
}

// UnusedAddr is an address of 127.0.0.1 that nothing listened on a moment
// ago: an etcd member that does not answer.
func UnusedAddr(t testing.TB) string {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0])
}

// Leader is the index of the member that leads, as the running members
// see it; -1 while none does.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.e == nil {
			continue
		}
		lead := m.e.Server.Leader()
		for i, o := range c.members {
			if o.e != nil && o.e.Server.MemberID() == lead {
				return i
			}
		}
	}
	return -1
}
