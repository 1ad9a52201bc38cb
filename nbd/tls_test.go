package nbd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a CA and a server and a client certificate it signed, also
// written to dir under the names GnuTLS users (libnbd, QEMU) look for:
// ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
// client-key.pem.
type testPKI struct {
	dir            string
	server, client tls.Certificate
	pool           *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), pool: x509.NewCertPool()}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(p.dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xenblk test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.pool.AddCert(ca)
	write("ca-cert.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), DNSNames: []string{"localhost"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		write(name+"-cert.pem", "CERTIFICATE", der)
		write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	p.server = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.client = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// serverConfig requires client certificates signed by the CA.
func (p *testPKI) serverConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

func (p *testPKI) clientConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.client}, RootCAs: p.pool, ServerName: "localhost"}
}

func tlsServer(t *testing.T, p *testPKI, required bool, exports ...Export) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Exports: exports, Logf: t.Logf, TLSConfig: p.serverConfig(), TLSRequired: required}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); s.Close(); <-done })
	return l
}

func TestClientServerTLS(t *testing.T) {
	p := newTestPKI(t)
	dev := newMemDev(1 << 20)
	l := tlsServer(t, p, true, Export{Name: "d", Device: dev})
	cl, err := DialTLS(ListenerURL(l, "d"), "", p.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.WriteAt([]byte("secret"), 4096); err != nil {
		t.Fatal(err)
	}
	if string(devBytes(t, dev, 4096, 6)) != "secret" {
		t.Fatal("write over TLS did not reach the device")
	}
	if !cl.hasAllocation {
		t.Fatal("no base:allocation over TLS")
	}
	// Without TLS the required-TLS server refuses the export.
	if _, err := Dial(ListenerURL(l, "d"), ""); err == nil || !strings.Contains(err.Error(), "TLS required") {
		t.Fatalf("plaintext client on a TLS-required server: %v", err)
	}
	// A client certificate the CA did not sign is refused.
	bad := p.clientConfig()
	bad.Certificates = nil
	if _, err := DialTLS(ListenerURL(l, "d"), "", bad); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	// A server without TLS refuses STARTTLS, and the client says so.
	plain := startServer(t, Export{Name: "d", Device: dev})
	if _, err := DialTLS(ListenerURL(plain, "d"), "", p.clientConfig()); err == nil || !strings.Contains(err.Error(), "refused TLS") {
		t.Fatalf("TLS client on a plaintext server: %v", err)
	}
}

// With TLS offered but not required, plaintext clients still get in.
func TestTLSOptional(t *testing.T) {
	p := newTestPKI(t)
	l := tlsServer(t, p, false, Export{Name: "d", Device: newMemDev(1 << 20)})
	for _, cfg := range []*tls.Config{nil, p.clientConfig()} {
		cl, err := DialTLS(ListenerURL(l, "d"), "", cfg)
		if err != nil {
			t.Fatalf("TLS %v: %v", cfg != nil, err)
		}
		cl.Close()
	}
}

func TestNbdinfoOverTLS(t *testing.T) {
	p := newTestPKI(t)
	l := tlsServer(t, p, true, Export{Name: "d", Device: sparseFile(t, 16<<20, sparseLayout...)})
	port := l.Addr().(*net.TCPAddr).Port
	uri := fmt.Sprintf("nbds://localhost:%d/d?tls-certificates=%s", port, p.dir)
	out := run(t, "nbdinfo", "--json", uri)
	if !strings.Contains(out, `"export-size": 16777216`) {
		t.Fatalf("nbdinfo over TLS:\n%s", out)
	}
	out = run(t, "nbdinfo", "--map", uri)
	if !strings.Contains(out, "8388608") {
		t.Fatalf("nbdinfo --map over TLS:\n%s", out)
	}
	// Plaintext nbdinfo is refused.
	if out, err := exec.Command(tool(t, "nbdinfo"), fmt.Sprintf("nbd://localhost:%d/d", port)).CombinedOutput(); err == nil {
		t.Fatalf("plaintext nbdinfo got in:\n%s", out)
	}
}

func TestQemuImgOverTLS(t *testing.T) {
	p := newTestPKI(t)
	dev := newMemDev(4 << 20)
	l := tlsServer(t, p, true, Export{Name: "d", Device: dev})
	port := l.Addr().(*net.TCPAddr).Port
	creds := "tls-creds-x509,id=tls0,endpoint=client,dir=" + p.dir
	img := fmt.Sprintf("driver=nbd,server.type=inet,server.host=localhost,server.port=%d,export=d,tls-creds=tls0", port)
	run(t, "qemu-io", "--object", creds, "--image-opts", img, "-c", "write -P 0x5a 0 64k")
	if b := devBytes(t, dev, 0, 1); b[0] != 0x5a {
		t.Fatal("qemu-io's write over TLS did not reach the device")
	}
	out := run(t, "qemu-img", "info", "--object", creds, "--image-opts", img)
	if !strings.Contains(out, "4 MiB") {
		t.Fatalf("qemu-img info over TLS:\n%s", out)
	}
}
