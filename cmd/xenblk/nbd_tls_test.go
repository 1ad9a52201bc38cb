package main

import (
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
	url := line[strings.LastIndex(line, " ")+1:]
	if !strings.HasPrefix(url, "nbds://") {
		t.Fatalf("banner %q does not give an nbds:// URL", line)
	}
	out := runTool(t, "nbdinfo", "--size", url+"?tls-certificates="+p.Dir)
	if strings.TrimSpace(out) != "8388608" {
		t.Fatalf("nbdinfo over TLS: %q", out)
	}
	plain := "nbd" + strings.TrimPrefix(url, "nbds")
	if out, err := exec.Command("nbdinfo", "--size", plain).CombinedOutput(); err == nil {
		t.Fatalf("plaintext nbdinfo got in: %s", out)
	}
	stopProc(t, srv)
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
		args := append([]string{"nbd", "serve", "--listen", "127.0.0.1:0"}, c.args...)
		_, errs, code := runXenblkCode(t, bin, append(args, img)...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("xenblk %v: exit %d, stderr %q; want %d and %q", args, code, errs, exitUsage, c.want)
		}
	}
}
