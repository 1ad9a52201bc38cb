package nbd

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/internal/testpki"
)

func tlsServer(t *testing.T, p *testpki.PKI, required bool, exports ...Export) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Exports: exports, Logf: t.Logf, TLSConfig: p.ServerConfig(), TLSRequired: required}
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() { l.Close(); s.Close(); <-done })
	return l
}

func TestClientServerTLS(t *testing.T) {
	p := testpki.New(t)
	dev := newMemDev(1 << 20)
	l := tlsServer(t, p, true, Export{Name: "d", Device: dev})
	cl, err := DialTLS(ListenerURL(l, "d"), "", p.ClientConfig())
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
	bad := p.ClientConfig()
	bad.Certificates = nil
	if _, err := DialTLS(ListenerURL(l, "d"), "", bad); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	// A server without TLS refuses STARTTLS, and the client says so.
	plain := startServer(t, Export{Name: "d", Device: dev})
	if _, err := DialTLS(ListenerURL(plain, "d"), "", p.ClientConfig()); err == nil || !strings.Contains(err.Error(), "refused TLS") {
		t.Fatalf("TLS client on a plaintext server: %v", err)
	}
}

// With TLS offered but not required, plaintext clients still get in.
func TestTLSOptional(t *testing.T) {
	p := testpki.New(t)
	l := tlsServer(t, p, false, Export{Name: "d", Device: newMemDev(1 << 20)})
	for _, cfg := range []*tls.Config{nil, p.ClientConfig()} {
		cl, err := DialTLS(ListenerURL(l, "d"), "", cfg)
		if err != nil {
			t.Fatalf("TLS %v: %v", cfg != nil, err)
		}
		cl.Close()
	}
}

func TestNbdinfoOverTLS(t *testing.T) {
	p := testpki.New(t)
	l := tlsServer(t, p, true, Export{Name: "d", Device: sparseFile(t, 16<<20, sparseLayout...)})
	port := l.Addr().(*net.TCPAddr).Port
	uri := fmt.Sprintf("nbds://localhost:%d/d?tls-certificates=%s", port, p.Dir)
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
	p := testpki.New(t)
	dev := newMemDev(4 << 20)
	l := tlsServer(t, p, true, Export{Name: "d", Device: dev})
	port := l.Addr().(*net.TCPAddr).Port
	creds := "tls-creds-x509,id=tls0,endpoint=client,dir=" + p.Dir
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

// qemu-img convert copies out of and into our TLS export with QEMU's
// x509 credentials.
func TestQemuImgConvertOverTLS(t *testing.T) {
	p := testpki.New(t)
	const size = 4 << 20
	src, dst := newMemDev(size), newMemDev(size)
	data := make([]byte, size)
	randomFill(data, 11)
	if _, err := src.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	l := tlsServer(t, p, true, Export{Name: "src", Device: src}, Export{Name: "dst", Device: dst})
	port := l.Addr().(*net.TCPAddr).Port
	creds := "tls-creds-x509,id=tls0,endpoint=client,dir=" + p.Dir
	export := func(name string) string {
		return fmt.Sprintf("driver=nbd,server.type=inet,server.host=localhost,server.port=%d,export=%s,tls-creds=tls0", port, name)
	}
	file := filepath.Join(t.TempDir(), "copy.raw")
	run(t, "qemu-img", "convert", "--object", creds, "--image-opts", export("src"), "-O", "raw", file)
	if fileSum(t, file) != sha256.Sum256(data) {
		t.Fatal("qemu-img convert out of the TLS export differs")
	}
	run(t, "qemu-img", "convert", "-n", "--object", creds, "-f", "raw", file, "--target-image-opts", export("dst"))
	if !bytes.Equal(devBytes(t, dst, 0, size), data) {
		t.Fatal("qemu-img convert into the TLS export differs")
	}
}

// Our client reads and writes nbdkit's export with --tls=require,
// presenting the client certificate nbdkit verifies.
func TestClientAgainstNbdkitTLS(t *testing.T) {
	p := testpki.New(t)
	sock := socketActivated(t, "nbdkit", "--tls=require", "--tls-certificates="+p.Dir, "--tls-verify-peer", "memory", "1M")
	if _, err := Dial("unix:"+sock, ""); err == nil {
		t.Fatal("nbdkit --tls=require let a plaintext client in")
	}
	cl, err := DialTLS("unix:"+sock, "", p.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.WriteAt([]byte("over tls"), 8192); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	if _, err := cl.ReadAt(got, 8192); err != nil || string(got) != "over tls" {
		t.Fatalf("read back %q, %v", got, err)
	}
	bad := p.ClientConfig()
	bad.Certificates = nil
	if _, err := DialTLS("unix:"+sock, "", bad); err == nil {
		t.Fatal("nbdkit --tls-verify-peer let a client without a certificate in")
	}
}
