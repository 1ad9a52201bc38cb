package sim

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// packetPair is a connected SOCK_SEQPACKET pair, as Connect and Serve use.
func packetPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// FuzzHostRequests sends a hostile domain's packets to the host: it must
// answer or hang up, never panic, and leave no guest behind once the
// connection is gone.
func FuzzHostRequests(f *testing.F) {
	f.Add([]byte(`{"op":"hello","name":"x"}`), []byte(`{"op":"alloc","dom":0}`), []byte(`{"op":"bind","dom":0,"port":1}`))
	f.Add([]byte(`{"op":"hello","dom0":true}`), []byte(`{"op":"domain","dom":9}`), []byte(`{"op":"close","port":4294967295}`))
	f.Add([]byte(`{"op":"alloc"}`), []byte(`not json`), []byte{})
	h, err := NewHost()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		client, server := packetPair(t)
		done := make(chan struct{})
		go func() { h.ServeConn(server); close(done) }()
		client.SetDeadline(time.Now().Add(2 * time.Second))
		var buf [maxPacket]byte
		oob := make([]byte, unix.CmsgSpace(maxFDs*4))
		for _, p := range [][]byte{a, b, c} {
			if len(p) == 0 || len(p) > maxPacket {
				continue
			}
			if _, _, err := client.WriteMsgUnix(p, nil, nil); err != nil {
				break
			}
			_, oobn, _, _, err := client.ReadMsgUnix(buf[:], oob)
			if err != nil {
				break
			}
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, m := range msgs {
					fds, _ := unix.ParseUnixRights(&m)
					closeFDs(fds)
				}
			}
		}
		client.Close()
		<-done
		h.mu.Lock()
		n, dom0 := len(h.domains), h.remoteDom0
		h.mu.Unlock()
		if n != 1 || dom0 {
			t.Fatalf("after the connection went: %d domains, remote dom0 %v", n, dom0)
		}
	})
}
