package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// nbdTLSOptions are nbd serve's TLS flags.
type nbdTLSOptions struct {
	cert, key, ca string
	required      bool
}

func (o *nbdTLSOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.cert, "tls-cert", "", "PEM `FILE` with the certificate the server presents; offers TLS (needs --tls-key)")
	f.StringVar(&o.key, "tls-key", "", "PEM `FILE` with the private key of --tls-cert")
	f.StringVar(&o.ca, "tls-ca", "", "PEM `FILE` of CA certificates: clients must present a certificate one of them signed")
	f.BoolVar(&o.required, "tls-required", false, "refuse clients that do not start TLS (needs --tls-cert)")
}

// config is the server's TLS configuration, nil without --tls-cert.
func (o *nbdTLSOptions) config() (*tls.Config, error) {
	switch {
	case o.cert == "" && o.key == "" && o.ca == "" && !o.required:
		return nil, nil
	case o.cert == "" || o.key == "":
		return nil, usagef("nbd serve: TLS needs both --tls-cert and --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return nil, usagef("nbd serve: --tls-cert %s --tls-key %s: %v", o.cert, o.key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, usagef("nbd serve: --tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("nbd serve: --tls-ca %s holds no PEM certificate", o.ca)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// tlsURL is url with the scheme that tells NBD clients to start TLS.
func tlsURL(url string) string {
	if rest, ok := strings.CutPrefix(url, "nbd"); ok {
		return "nbds" + rest
	}
	return url
}
