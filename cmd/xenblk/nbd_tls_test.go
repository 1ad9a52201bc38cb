package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/internal/testpki"
	"github.com/xenblk/xenblk/storage"
)

// TestNBDServeTLS: `xenblk nbd serve --tls-*` serves only TLS clients
// with a certificate the CA signed; nbdinfo with them sees the export,
// plaintext nbdinfo is refused.
func TestNBDServeTLS(t *testing.T) {
	bin := buildXenblk(t)
	p := testpki.New(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	d, err := storage.OpenFile(img, storage.FileOptions{Create: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	srv := startProc(t, bin, "nbd", "serve", "--listen", "127.0.0.1:0", "--name", "d",
		"--tls-cert", p.Path("server-cert.pem"), "--tls-key", p.Path("server-key.pem"),
		"--tls-ca", p.Path("ca-cert.pem"), "--tls-required", img)
	line := srv.expect(t, "serving ")
	checkTLSOnly(t, line, p, 8<<20)
	stopProc(t, srv)
}

// TestSimTLS: xenblk sim takes nbd serve's --tls-* flags: its export of
// the guest's disk answers nbdinfo with the certificates and refuses
// plaintext.
func TestSimTLS(t *testing.T) {
	bin := buildXenblk(t)
	p := testpki.New(t)
	dir := t.TempDir()
	sim := startProc(t, bin, "sim", "--disk", filepath.Join(dir, "disk.img"), "--size", "16M",
		"--nbd", freePort(t), "--control", filepath.Join(dir, "control.sock"),
		"--tls-cert", p.Path("server-cert.pem"), "--tls-key", p.Path("server-key.pem"),
		"--tls-ca", p.Path("ca-cert.pem"), "--tls-required")
	line := sim.expect(t, "  NBD ")
	checkTLSOnly(t, line, p, 16<<20)
	stopProc(t, sim)
}

// checkTLSOnly: the URL ending the banner line is nbds://, nbdinfo with
// p's certificates sees an export of size bytes there, and nbdinfo
// without TLS is refused.
func checkTLSOnly(t *testing.T, line string, p *testpki.PKI, size int64) {
	t.Helper()
	url := line[strings.LastIndex(line, " ")+1:]
	if !strings.HasPrefix(url, "nbds://") {
		t.Fatalf("banner %q does not give an nbds:// URL", line)
	}
	out := runTool(t, "nbdinfo", "--size", url+"?tls-certificates="+p.Dir)
	if strings.TrimSpace(out) != fmt.Sprint(size) {
		t.Fatalf("nbdinfo over TLS: %q, want %d", out, size)
	}
	plain := "nbd" + strings.TrimPrefix(url, "nbds")
	if out, err := exec.Command("nbdinfo", "--size", plain).CombinedOutput(); err == nil {
		t.Fatalf("plaintext nbdinfo got in: %s", out)
	}
}

// TestFrontTLS: xenblk front's export of the guest's disk takes the same
// --tls-* flags.
func TestFrontTLS(t *testing.T) {
	bin := buildXenblk(t)
	p := testpki.New(t)
	dir := t.TempDir()
	sock, xs := filepath.Join(dir, "host.sock"), filepath.Join(dir, "xenstored")
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	startProc(t, bin, "host", "--socket", sock, "--xenstored", xs)
	waitFile(t, sock)
	startProc(t, bin, "serve", "--host", sock, "--pr-dir", filepath.Join(dir, "pr"), "--journal-dir", filepath.Join(dir, "journal")).
		expect(t, "xenblk serve:")
	front := startProc(t, bin, "front", "--host", sock, "--name", "guest1", "--nbd", freePort(t),
		"--tls-cert", p.Path("server-cert.pem"), "--tls-key", p.Path("server-key.pem"),
		"--tls-ca", p.Path("ca-cert.pem"), "--tls-required")
	var domid int
	fmt.Sscanf(front.expect(t, "domain "), "domain %d", &domid)
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
		"format=raw, vdev=xvda, access=rw, target="+img).CombinedOutput(); err != nil {
		t.Fatalf("attach: %v %s", err, out)
	}
	checkTLSOnly(t, front.expect(t, "NBD "), p, 16<<20)
	stopProc(t, front)
}

func TestNBDServeTLSFlags(t *testing.T) {
	bin := buildXenblk(t)
	p := testpki.New(t)
	img := filepath.Join(t.TempDir(), "disk.img")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-required"}, "--tls-cert and --tls-key"},
		{[]string{"--tls-cert", p.Path("server-cert.pem")}, "--tls-cert and --tls-key"},
		{[]string{"--tls-cert", p.Path("server-cert.pem"), "--tls-key", p.Path("client-key.pem")}, "--tls-cert"},
		{[]string{"--tls-cert", p.Path("server-cert.pem"), "--tls-key", p.Path("server-key.pem"), "--tls-ca", p.Path("server-key.pem")}, "no PEM certificate"},
	} {
		// The commands that serve NBD check their flags alike, before
		// anything is opened or created (or a host dialled).
		for _, cmd := range [][]string{{"nbd", "serve", "--listen", "127.0.0.1:0"}, {"sim", "--disk", img, "--nbd", "127.0.0.1:0"},
			{"front", "--host", filepath.Join(t.TempDir(), "none.sock"), "--nbd", "127.0.0.1:0"}} {
			args := append(cmd, c.args...)
			if cmd[0] == "nbd" {
				args = append(args, img)
			}
			_, errs, code := runXenblkCode(t, bin, args...)
			if code != exitUsage || !strings.Contains(errs, c.want) {
				t.Errorf("xenblk %v: exit %d, stderr %q; want %d and %q", args, code, errs, exitUsage, c.want)
			}
		}
	}
	if _, err := os.Stat(img); err == nil {
		t.Errorf("sim created %s before refusing its TLS flags", img)
	}
}
