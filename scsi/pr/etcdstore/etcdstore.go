// Package etcdstore keeps persistent-reservation state in etcd, so that
// every host serving a logical unit shares one state: a pr.SharedStore.
//
// Layout: one key per logical unit, Prefix + "naa." + the 32 hex digits
// of the NAA 6 designator scsi.Designators derives from the unit's
// identity (the same on every host that serves the disk). Its value is a
// JSON record {LU, Written, State}: the identity (a record naming another
// identity is refused, as the file store refuses one), the writer's wall
// clock in Unix nanoseconds (watch lag), and the state as pr.Encode wrote
// it (versioned). Nothing else lives under Prefix.
//
// Versions are the key's mod revision: Load returns it (0 when no key),
// CompareAndSwap is one transaction "if mod_revision(key) == old then put"
// and returns the put's revision. Revisions are etcd's, global to the
// cluster: a unit's versions grow but are not consecutive.
//
// Watch (pr.SharedStore) is the feed for a watch-fed cache: it calls
// fn(pr.Change{LU, State, Version}) from one goroutine for every put (and
// delete, as Version 0) under Prefix by any client, in revision order.
// It resumes after a broken stream from the revision it had reached;
// after a compaction it delivers every unit's latest state, then goes on.
// Synced says up to which revision, and when, the watch last heard from
// etcd (an event or a progress notification), for whoever bounds how
// stale the cache may be.
//
// Every request to etcd (Load, CompareAndSwap, a watch's
// resynchronisation) has a deadline (Config.Timeout); one that passes is
// an error wrapping pr.ErrUnavailable, which pr.Unit reports to the guest
// as LOGICAL UNIT COMMUNICATION FAILURE. A watch stream lives until its
// context ends, but not on a member cut off from its leader (it is ended
// and resumed through another). Open checks that the cluster answers (a
// linearizable read, so a quorum) within Config.DialTimeout.
package etcdstore

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
)

// DefaultPrefix is where units' keys live unless Config.Prefix says.
const DefaultPrefix = "/xenblk/pr/"

// Defaults for Config's durations.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultTimeout     = 5 * time.Second
)

// Config is how to reach the cluster.
type Config struct {
	Endpoints []string // host:port of one or more members
	// TLS, when set, is used for every endpoint (server verified, client
	// certificate presented if it has one).
	TLS *tls.Config
	// Prefix of every key; DefaultPrefix when "". Hosts sharing units
	// must use the same prefix.
	Prefix string
	// DialTimeout bounds Open's check that the cluster answers.
	DialTimeout time.Duration
	// Timeout bounds every Load, CompareAndSwap and watch resynchronisation.
	Timeout time.Duration
	Log     *slog.Logger
}

// Store is a pr.SharedStore on one etcd client. Safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	stats   counters
	now     func() time.Time

	syncMu    sync.Mutex
	syncedRev uint64
	syncedAt  time.Time
}

var _ pr.SharedStore = (*Store)(nil)

// counters back Stats; atomics, read by metrics without a lock.
type counters struct {
	loads, loadErrors                  atomic.Uint64
	casOK, casConflicts, casErrors     atomic.Uint64
	watchEvents, watchResyncs          atomic.Uint64
	watchLagSumNanos, watchLagLastNano atomic.Int64
}

// Stats are the store's counters, for metrics.
type Stats struct {
	Loads, LoadErrors uint64
	// CompareAndSwaps that stored, that found another version (the
	// caller reloads and retries), that failed (deadline, etcd error).
	CASStored, CASConflicts, CASErrors uint64
	// WatchEvents delivered; WatchResyncs: broken or compacted watches
	// resumed.
	WatchEvents, WatchResyncs uint64
	// WatchLagSum is the sum over delivered events of (delivery time -
	// the writer's clock at the write); WatchLagLast the latest one.
	WatchLagSum, WatchLagLast time.Duration
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Loads: c.loads.Load(), LoadErrors: c.loadErrors.Load(),
		CASStored: c.casOK.Load(), CASConflicts: c.casConflicts.Load(), CASErrors: c.casErrors.Load(),
		WatchEvents: c.watchEvents.Load(), WatchResyncs: c.watchResyncs.Load(),
		WatchLagSum: time.Duration(c.watchLagSumNanos.Load()), WatchLagLast: time.Duration(c.watchLagLastNano.Load()),
	}
}

// Open connects to the cluster and checks, within cfg.DialTimeout, that a
// quorum answers.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		Logger:      zap.NewNop(),
		// Keepalives notice a dead member (and move to another) within
		// seconds rather than TCP's minutes.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := New(cli, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %s did not answer a quorum read within %v: %w", strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err)
	}
	return s, nil
}

// New is a Store on a client the caller made; Close closes it. cfg's
// Endpoints, TLS and DialTimeout are not used.
func New(cli *clientv3.Client, cfg Config) *Store {
	s := &Store{cli: cli, prefix: cfg.Prefix, timeout: cfg.Timeout, log: cfg.Log, now: time.Now}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Close closes the store's client.
func (s *Store) Close() error { return s.cli.Close() }

// Client is the store's etcd client, for leases and the like that share
// its connection.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Key is the key unit lu's state lives under.
func (s *Store) Key(lu string) string {
	_, naa := scsi.Designators(lu)
	return s.prefix + "naa." + hex.EncodeToString(naa[:])
}

// record is a key's value.
type record struct {
	LU      string
	Written int64 // writer's wall clock, Unix nanoseconds
	State   json.RawMessage
}

func (s *Store) decode(key string, b []byte) (record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("pr: etcd key %s: %w", key, err)
	}
	return r, nil
}

func unavailable(op, lu string, err error) error {
	return fmt.Errorf("%w: %s %q: %v", pr.ErrUnavailable, op, lu, err)
}

// Load implements pr.Store with a linearizable read.
func (s *Store) Load(lu string) ([]byte, uint64, error) {
	s.stats.loads.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	key := s.Key(lu)
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		s.stats.loadErrors.Add(1)
		return nil, 0, unavailable("load", lu, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	kv := resp.Kvs[0]
	r, err := s.decode(key, kv.Value)
	if err == nil && r.LU != lu {
		err = fmt.Errorf("pr: etcd key %s holds %q, not %q", key, r.LU, lu)
	}
	if err != nil {
		s.stats.loadErrors.Add(1)
		return nil, 0, err
	}
	return r.State, uint64(kv.ModRevision), nil
}

// CompareAndSwap implements pr.Store: one transaction on the key's mod
// revision. A deadline that passes leaves the outcome unknown (the error
// wraps pr.ErrUnavailable); the caller's next swap from old then
// conflicts if this one was stored.
func (s *Store) CompareAndSwap(lu string, old uint64, data []byte) (uint64, error) {
	b, err := json.Marshal(record{LU: lu, Written: s.now().UnixNano(), State: data})
	if err != nil {
		s.stats.casErrors.Add(1)
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	key := s.Key(lu)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(old))).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		s.stats.casErrors.Add(1)
		return 0, unavailable("store", lu, err)
	}
	if !resp.Succeeded {
		s.stats.casConflicts.Add(1)
		return 0, pr.ErrVersionConflict
	}
	s.stats.casOK.Add(1)
	return uint64(resp.Header.Revision), nil
}

// Synced is the revision up to which the watch has heard every change,
// and when it last heard from etcd; zero before the first Watch answer.
func (s *Store) Synced() (revision uint64, at time.Time) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.syncedRev, s.syncedAt
}

func (s *Store) synced(rev int64) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if uint64(rev) > s.syncedRev {
		s.syncedRev = uint64(rev)
	}
	s.syncedAt = s.now()
}

// Watch implements pr.SharedStore (see the package comment).
func (s *Store) Watch(ctx context.Context, from uint64, fn func(pr.Change)) error {
	next := int64(from) + 1
	if from == 0 {
		rev, err := s.resync(ctx, nil)
		if err != nil {
			return err
		}
		next = rev + 1
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	for {
		reached, err := s.watch(ctx, next, fn)
		next = reached
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.cli.Ctx().Err() != nil {
			return errors.New("etcd: the store was closed under its watch")
		}
		s.stats.watchResyncs.Add(1)
		if errors.Is(err, errCompacted) {
			rev, err := s.resync(ctx, fn)
			if err == nil {
				next = rev + 1
				continue
			}
			s.log.Warn("etcd: cannot read reservation state after a compaction; retrying", "err", err)
		} else {
			s.log.Warn("etcd: reservation watch broken; resuming", "revision", next, "err", err)
		}
		// A pause before the next attempt, so that an etcd that refuses
		// at once is not asked in a tight loop.
		retry.Reset(time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-retry.C:
		}
	}
}

var errCompacted = errors.New("etcd: watched revision compacted")

// watch runs one watch stream from revision next until it breaks or ctx
// ends, and returns the revision to resume from.
func (s *Store) watch(ctx context.Context, next int64, fn func(pr.Change)) (int64, error) {
	// WithRequireLeader ends the stream when its member loses its
	// leader, so a partitioned member's silence is not taken for quiet.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(next),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return next, errCompacted
		}
		if err := wr.Err(); err != nil {
			return next, err
		}
		for _, ev := range wr.Events {
			kv := ev.Kv
			c := pr.Change{Version: uint64(kv.ModRevision)}
			raw := kv.Value
			if ev.Type == clientv3.EventTypeDelete {
				c.Version = 0
				raw = nil
				if ev.PrevKv != nil {
					raw = ev.PrevKv.Value
				}
			}
			next = kv.ModRevision + 1
			r, err := s.decode(string(kv.Key), raw)
			if err != nil {
				s.log.Warn("etcd: skipping a value that is not reservation state", "key", string(kv.Key), "err", err)
				continue
			}
			c.LU = r.LU
			if c.Version != 0 {
				if c.State, err = pr.Decode(r.State); err != nil {
					s.log.Warn("etcd: skipping undecodable reservation state", "key", string(kv.Key), "err", err)
					continue
				}
				lag := s.now().Sub(time.Unix(0, r.Written))
				s.stats.watchLagSumNanos.Add(int64(lag))
				s.stats.watchLagLastNano.Store(int64(lag))
			}
			s.stats.watchEvents.Add(1)
			fn(c)
		}
		if rev := wr.Header.Revision; rev >= next {
			next = rev + 1
		}
		s.synced(next - 1)
	}
	return next, ctx.Err()
}

// resync reads every unit's state at one revision, hands them to fn (if
// any) in revision order, and returns the revision.
func (s *Store) resync(ctx context.Context, fn func(pr.Change)) (int64, error) {
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(gctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, unavailable("watch", s.prefix, err)
	}
	kvs := slices.Clone(resp.Kvs)
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(a.ModRevision, b.ModRevision) })
	for _, kv := range kvs {
		if fn == nil {
			break
		}
		r, err := s.decode(string(kv.Key), kv.Value)
		if err != nil {
			continue
		}
		st, err := pr.Decode(r.State)
		if err != nil {
			continue
		}
		s.stats.watchEvents.Add(1)
		fn(pr.Change{LU: r.LU, State: st, Version: uint64(kv.ModRevision)})
	}
	s.synced(resp.Header.Revision)
	return resp.Header.Revision, nil
}

// URLScheme starts a cluster's URL (ParseURL).
const URLScheme = "etcd://"

// ParseURL reads a cluster's URL, etcd://HOST:PORT[,HOST:PORT...][/PREFIX]:
// the members to dial and the key prefix ("" when the URL has none, which
// Config reads as DefaultPrefix). A prefix ends in "/" so that one
// prefix is never the start of another's keys.
func ParseURL(s string) (endpoints []string, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, URLScheme)
	if !ok {
		return nil, "", fmt.Errorf("%q is not an etcd URL (etcd://HOST:PORT[,HOST:PORT...][/PREFIX])", s)
	}
	hosts, path, hasPath := strings.Cut(rest, "/")
	for h := range strings.SplitSeq(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" || port == "" {
			return nil, "", fmt.Errorf("%q: member %q is not HOST:PORT", s, h)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, "", fmt.Errorf("%q: member %q: port %q is not a number below 65536", s, h, port)
		}
		endpoints = append(endpoints, h)
	}
	if hasPath && path != "" {
		prefix = "/" + strings.TrimSuffix(path, "/") + "/"
	}
	return endpoints, prefix, nil
}
