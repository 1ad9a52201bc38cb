package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// nbdTLSOptions are the TLS flags of a command that serves NBD (nbd
// serve, sim): one set of flags, one meaning, whichever command.
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

// config is the server's TLS configuration, nil without --tls-cert;
// command names the command in usage errors.
func (o *nbdTLSOptions) config(command string) (*tls.Config, error) {
	switch {
	case o.cert == "" && o.key == "" && o.ca == "" && !o.required:
		return nil, nil
	case o.cert == "" || o.key == "":
		return nil, usagef("%s: TLS needs both --tls-cert and --tls-key", command)
	}
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		return nil, usagef("%s: --tls-cert %s --tls-key %s: %v", command, o.cert, o.key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, usagef("%s: --tls-ca: %v", command, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("%s: --tls-ca %s holds no PEM certificate", command, o.ca)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// url is the URL clients are told for an export at url: with TLS
// required, nbds://, the scheme that tells them to start it.
func (o *nbdTLSOptions) url(url string) string {
	if rest, ok := strings.CutPrefix(url, "nbd"); ok && o.required {
		return "nbds" + rest
	}
	return url
}
