package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/scsi"
)

// A guest's disk is a Target: ExecSCSI speaks scsi's result type, which
// any other executor (an engine, a fake) can return as well.
var _ Target = (*blkfront.Disk)(nil)

// fakeTarget answers INQUIRY with a fixed pattern, TEST UNIT READY with
// GOOD, WRITE BUFFER by recording the data, and anything else with CHECK
// CONDITION.
type fakeTarget struct{ got []byte }

func (f *fakeTarget) ExecSCSI(_ context.Context, cdb []byte, dir scsi.Direction, buf []byte) (scsi.Result, error) {
	switch cdb[0] {
	case 0x12:
		n := copy(buf, "0123456789")
		return scsi.Result{Resid: len(buf) - n}, nil
	case 0x00:
		return scsi.Result{}, nil
	case 0x3b:
		f.got = append([]byte(nil), buf...)
		return scsi.Result{}, nil
	case 0xff:
		return scsi.Result{}, errors.New("ring gone")
	}
	r := scsi.Result{Status: scsi.StatusCheckCondition}
	r.SenseLen = copy(r.Sense[:], []byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0})
	return r, nil
}

func start(t *testing.T, devs map[string]Target) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(l, devs) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})
	return path
}

func TestRoundTrip(t *testing.T) {
	ft := &fakeTarget{}
	path := start(t, map[string]Target{"xvda": ft, "xvdb": &fakeTarget{}})
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	devs, err := c.Devices()
	if err != nil || strings.Join(devs, ",") != "xvda,xvdb" {
		t.Fatalf("Devices = %v, %v", devs, err)
	}
	r, err := c.Exec("xvda", []byte{0x12, 0, 0, 0, 36, 0}, scsi.DirFromDevice, nil, 36)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 0 || r.Resid != 26 || string(r.DataIn) != "0123456789" {
		t.Fatalf("inquiry: %+v", r)
	}
	if r, err = c.Exec("xvda", []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil, 0); err != nil || r.Status != 0 || r.DataIn != nil {
		t.Fatalf("tur: %+v %v", r, err)
	}
	out := bytes.Repeat([]byte{0xa5, 0}, 300)
	if _, err = c.Exec("xvda", []byte{0x3b, 0, 0, 0, 0, 0, 0, 0, 0, 0}, scsi.DirToDevice, out, 0); err != nil || !bytes.Equal(ft.got, out) {
		t.Fatalf("write buffer: %v, got %d bytes", err, len(ft.got))
	}
	r, err = c.Exec("xvdb", []byte{0x5e, 0, 0, 0, 0, 0, 0, 0, 0, 0}, scsi.DirNone, nil, 0)
	if err != nil || r.Status != scsi.StatusCheckCondition || len(r.Sense) != 14 || r.Sense[12] != 0x20 {
		t.Fatalf("check condition: %+v %v", r, err)
	}
}

func TestErrors(t *testing.T) {
	path := start(t, map[string]Target{"xvda": &fakeTarget{}})
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cases := []struct {
		name    string
		dev     string
		cdb     []byte
		dir     scsi.Direction
		out     []byte
		inLen   int
		wantErr string
	}{
		{"unknown device", "xvdz", []byte{0}, scsi.DirNone, nil, 0, "no device"},
		{"empty cdb", "xvda", nil, scsi.DirNone, nil, 0, "CDB of 0"},
		{"long cdb", "xvda", make([]byte, 33), scsi.DirNone, nil, 0, "CDB of 33"},
		{"huge data-in", "xvda", []byte{0x12}, scsi.DirFromDevice, nil, MaxData + 1, "data-in length"},
		{"negative data-in", "xvda", []byte{0x12}, scsi.DirFromDevice, nil, -1, "data-in length"},
		{"none with data", "xvda", []byte{0}, scsi.DirNone, []byte{1}, 0, "direction none"},
		{"bad dir", "xvda", []byte{0}, 7, nil, 0, "bad direction"},
		{"transport error", "xvda", []byte{0xff}, scsi.DirNone, nil, 0, "ring gone"},
	}
	for _, tc := range cases {
		_, err := c.Exec(tc.dev, tc.cdb, tc.dir, tc.out, tc.inLen)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	// The connection still works after errors.
	if _, err := c.Exec("xvda", []byte{0, 0, 0, 0, 0, 0}, scsi.DirNone, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func TestHostileClient(t *testing.T) {
	path := start(t, map[string]Target{"xvda": &fakeTarget{}})
	for _, input := range []string{
		"garbage\n",
		"{\"op\":\"exec\",\"device\":\"xvda\",\"cdb\":\"!!!\"}\n",
		"{\"op\":\"exec\",\"device\":\"xvda\",\"cdb\":\"EgAAACQA\",\"dir\":2,\"data_in_len\":99999999999999999999}\n",
		strings.Repeat("x", MaxLine+10) + "\n",
		"\x00\xff\xfe{[",
	} {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { conn.Write([]byte(input)); conn.(*net.UnixConn).CloseWrite() }()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if !strings.Contains(line, `"error"`) {
			t.Errorf("input %.30q: response %q, want an error", input, line)
		}
	}
	// The server is still alive.
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Devices(); err != nil {
		t.Fatal(err)
	}
}

func TestListenRefusesLiveReplacesStale(t *testing.T) {
	path := start(t, map[string]Target{})
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("stale socket not left: %v", err)
	}
	l2, err := Listen(stale)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
	plain := filepath.Join(t.TempDir(), "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := Listen(plain); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XENBLK_CONTROL", "/x/y.sock")
	if p := DefaultPath(); p != "/x/y.sock" {
		t.Fatalf("DefaultPath = %q", p)
	}
	t.Setenv("XENBLK_CONTROL", "")
	if p := DefaultPath(); !strings.HasSuffix(p, "sim.sock") {
		t.Fatalf("DefaultPath = %q", p)
	}
}

// TestDevicesChangeWhileServing: a device added while the server runs is
// listed and answers on a connection opened before; one removed is
// neither listed nor reachable.
func TestDevicesChangeWhileServing(t *testing.T) {
	devs := NewDevices(map[string]Target{"xvda": &fakeTarget{}})
	path := filepath.Join(t.TempDir(), "c.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeDevices(l, devs) }()
	defer func() { l.Close(); <-done }()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tur := []byte{0, 0, 0, 0, 0, 0}
	devs.Add("0:0:0:0", &fakeTarget{})
	if names, err := c.Devices(); err != nil || strings.Join(names, ",") != "0:0:0:0,xvda" {
		t.Fatalf("after Add: Devices = %v, %v", names, err)
	}
	if _, err := c.Exec("0:0:0:0", tur, scsi.DirNone, nil, 0); err != nil {
		t.Fatalf("the added device: %v", err)
	}
	devs.Remove("0:0:0:0")
	if names, err := c.Devices(); err != nil || strings.Join(names, ",") != "xvda" {
		t.Fatalf("after Remove: Devices = %v, %v", names, err)
	}
	if _, err := c.Exec("0:0:0:0", tur, scsi.DirNone, nil, 0); err == nil || !strings.Contains(err.Error(), `no device "0:0:0:0"`) {
		t.Fatalf("the removed device answered: %v", err)
	}
}
