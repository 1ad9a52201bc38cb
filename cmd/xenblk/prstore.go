package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
)

// prStoreFile is --pr-store's value for the local file store.
const prStoreFile = "file"

// prStoreOptions choose where serve keeps reservation state: files under
// --pr-dir (one host), or an etcd cluster every host shares.
type prStoreOptions struct {
	store         string
	dir           string
	cert, key, ca string
	timeout       time.Duration
}

func (o *prStoreOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.store, "pr-store", prStoreFile, "where persistent-reservation state is kept: \"file\" (under --pr-dir, this host only) or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (shared by every host serving the disk)")
	f.StringVar(&o.dir, "pr-dir", "/var/lib/xenblk/pr", "where --pr-store file keeps persistent-reservation state")
	o.addEtcdFlags(f)
}

// addEtcdFlags adds the flags of a client of an etcd cluster: TLS and the
// bound on every call.
func (o *prStoreOptions) addEtcdFlags(f *pflag.FlagSet) {
	f.StringVar(&o.cert, "pr-store-cert", "", "PEM `FILE` with the client certificate to present to etcd (needs --pr-store-key)")
	f.StringVar(&o.key, "pr-store-key", "", "PEM `FILE` with the private key of --pr-store-cert")
	f.StringVar(&o.ca, "pr-store-ca", "", "PEM `FILE` of CA certificates that signed etcd's; speaks TLS to etcd")
	f.DurationVar(&o.timeout, "pr-store-timeout", etcdstore.DefaultTimeout, "bound on connecting to etcd at start and on every etcd call after; a PR command whose call runs out fails with LOGICAL UNIT COMMUNICATION FAILURE")
}

// tlsConfig is the client TLS configuration for etcd, nil when no TLS flag
// is given.
func (o *prStoreOptions) tlsConfig() (*tls.Config, error) {
	if o.cert == "" && o.key == "" && o.ca == "" {
		return nil, nil
	}
	if (o.cert == "") != (o.key == "") {
		return nil, usagef("--pr-store-cert and --pr-store-key go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.cert != "" {
		cert, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, usagef("--pr-store-cert %s --pr-store-key %s: %v", o.cert, o.key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, usagef("--pr-store-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--pr-store-ca %s holds no PEM certificate", o.ca)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// open opens the store the flags name. The etcd store is checked now (a
// quorum read within --pr-store-timeout), so that a wrong address fails
// the start rather than the guests' first PR command; close releases it.
func (o *prStoreOptions) open(log *slog.Logger) (store pr.Store, etcd *etcdstore.Store, err error) {
	if o.timeout <= 0 {
		return nil, nil, usagef("--pr-store-timeout %v: give a positive duration, e.g. 5s", o.timeout)
	}
	if o.store == prStoreFile {
		if o.cert != "" || o.key != "" || o.ca != "" {
			return nil, nil, usagef("--pr-store-cert, --pr-store-key and --pr-store-ca are for --pr-store etcd://...")
		}
		return &pr.FileStore{Dir: o.dir}, nil, nil
	}
	if !strings.HasPrefix(o.store, etcdstore.URLScheme) {
		return nil, nil, usagef("--pr-store %q: give %q or etcd://HOST:PORT[,HOST:PORT...][/PREFIX]", o.store, prStoreFile)
	}
	s, err := o.openEtcd("--pr-store", o.store, "", log)
	if err != nil {
		return nil, nil, err
	}
	return s, s, nil
}

// openEtcd opens the etcd store of url, the value of flag, with keys under
// defaultPrefix when url names none ("": etcdstore's). It checks the
// cluster now: a quorum read within --pr-store-timeout. A malformed url
// is a usage error; a cluster that does not answer, a failure whose hint
// names the flags.
func (o *prStoreOptions) openEtcd(flag, url, defaultPrefix string, log *slog.Logger) (*etcdstore.Store, error) {
	if o.timeout <= 0 {
		return nil, usagef("--pr-store-timeout %v: give a positive duration, e.g. 5s", o.timeout)
	}
	endpoints, prefix, err := etcdstore.ParseURL(url)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	if prefix == "" {
		prefix = defaultPrefix
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints, Prefix: prefix, TLS: tlsCfg,
		DialTimeout: o.timeout, Timeout: o.timeout, Log: log})
	if err != nil {
		hint := "check that the members run and are reachable from here"
		if tlsCfg == nil {
			hint += "; for a cluster that speaks TLS give --pr-store-ca, and --pr-store-cert and --pr-store-key if it asks for a client certificate"
		} else {
			hint += ", and that --pr-store-ca signed their certificates"
		}
		return nil, fmt.Errorf("%s %s: %w (%s)", flag, url, err, hint)
	}
	return s, nil
}
