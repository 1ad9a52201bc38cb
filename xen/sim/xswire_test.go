package sim

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func xsMessage(typ uint32, payload string) []byte {
	b := make([]byte, xsHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint32(b[4:], 7)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(payload)))
	copy(b[xsHeaderSize:], payload)
	return b
}

// TestXenstoreLsSeesTheHost runs Xen's own xenstore-ls against the host's
// xenstored socket, as `xenblk host` exposes it.
func TestXenstoreLsSeesTheHost(t *testing.T) {
	tool, err := exec.LookPath("xenstore-ls")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: xenstore-ls is not installed (package xenstore-utils, listed in scripts/deps.txt)")
	}
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.NewDomain("guest-one"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "xenstored.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go h.ServeXenstore(l)
	cmd := exec.Command(tool, "-p", "/local/domain")
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xenstore-ls: %v\n%s", err, out)
	}
	for _, want := range []string{`0 = ""`, `name = "Domain-0"`, `1 = ""`, `name = "guest-one"`, `(n1)`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("xenstore-ls output lacks %q:\n%s", want, out)
		}
	}
	w := exec.Command("xenstore-write", "/tool/wrote", "yes")
	w.Env = cmd.Env
	if out, err := w.CombinedOutput(); err != nil {
		t.Logf("xenstore-write (uses a transaction, refused here): %v %s", err, out)
	}
}

func TestXenstoreWireErrorsAndWatches(t *testing.T) {
	h, err := NewHost()
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	go h.serveXenstoreConn(b, 0)
	a.SetDeadline(time.Now().Add(5 * time.Second))
	roundTrip := func(typ uint32, payload string) (uint32, string) {
		t.Helper()
		if _, err := a.Write(xsMessage(typ, payload)); err != nil {
			t.Fatal(err)
		}
		var hdr [xsHeaderSize]byte
		if _, err := io.ReadFull(a, hdr[:]); err != nil {
			t.Fatal(err)
		}
		m, err := parseXSHeader(hdr[:])
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, m.length)
		io.ReadFull(a, p)
		return m.typ, string(p)
	}
	if typ, p := roundTrip(xsRead, "/nope\x00"); typ != xsError || p != "ENOENT\x00" {
		t.Fatalf("read of a missing node: %d %q", typ, p)
	}
	if typ, p := roundTrip(xsWrite, "/a/b\x00hello"); typ != xsWrite || p != "OK\x00" {
		t.Fatalf("write: %d %q", typ, p)
	}
	if typ, p := roundTrip(xsRead, "/a/b\x00"); typ != xsRead || p != "hello" {
		t.Fatalf("read: %d %q", typ, p)
	}
	if typ, p := roundTrip(xsWatch, "/a\x00tok\x00"); typ != xsWatch || p != "OK\x00" {
		t.Fatalf("watch: %d %q", typ, p)
	}
	// The registration event arrives on its own.
	var hdr [xsHeaderSize]byte
	io.ReadFull(a, hdr[:])
	m, _ := parseXSHeader(hdr[:])
	p := make([]byte, m.length)
	io.ReadFull(a, p)
	if m.typ != xsWatchEvent || string(p) != "/a\x00tok\x00" {
		t.Fatalf("watch event: %d %q", m.typ, p)
	}
	if typ, p := roundTrip(6, ""); typ != xsError || p != "ENOSYS\x00" {
		t.Fatalf("transaction start: %d %q", typ, p)
	}
	if _, err := parseXSHeader(xsMessage(xsRead, "")[:8]); err == nil {
		t.Fatal("short header accepted")
	}
	big := xsMessage(xsRead, "")
	binary.LittleEndian.PutUint32(big[12:], xsPayloadMax+1)
	if _, err := parseXSHeader(big); err == nil {
		t.Fatal("oversized payload accepted")
	}
}

// FuzzXenstoreWire feeds arbitrary bytes to a connection: the server must
// answer or hang up, never panic.
func FuzzXenstoreWire(f *testing.F) {
	f.Add(xsMessage(xsRead, "/local\x00"))
	f.Add(xsMessage(xsWrite, "/x\x00v"))
	f.Add(xsMessage(xsSetPerms, "/x\x00b0\x00r7\x00"))
	f.Add(xsMessage(xsWatch, "/x\x00t\x00"))
	f.Add(xsMessage(xsGetDomainPath, "3\x00"))
	f.Add(append(xsMessage(xsDirectory, "/\x00"), xsMessage(xsUnwatch, "/x\x00t\x00")...))
	h, err := NewHost()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() { h.serveXenstoreConn(b, 0); close(done) }()
		go io.Copy(io.Discard, a)
		a.Write(in)
		a.Close()
		<-done
	})
}
