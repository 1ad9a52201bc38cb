package nbd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// rawConn dials l and reads the server's greeting.
func rawConn(t *testing.T, l net.Listener) (net.Conn, *bufio.Reader) {
	c, err := net.Dial(l.Addr().Network(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var hello [18]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint64(hello[:]) != magicNBD || binary.BigEndian.Uint64(hello[8:]) != magicOpt ||
		binary.BigEndian.Uint16(hello[16:]) != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("greeting %x", hello)
	}
	return c, br
}

func sendOpt(t *testing.T, c net.Conn, opt uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := c.Write(append(b, data...)); err != nil {
		t.Fatal(err)
	}
}

func expectClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("server kept the connection open: %v", err)
	}
}

func TestHandshakeRejectsNonFixedClient(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(4096)})
	c, br := rawConn(t, l)
	c.Write([]byte{0, 0, 0, 0}) // plain newstyle
	expectClosed(t, br)
	c, br = rawConn(t, l)
	c.Write([]byte{0, 0, 0, 0x81}) // unknown flag
	expectClosed(t, br)
}

func TestHandshakeOptions(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(4096)})
	c, br := rawConn(t, l)
	c.Write([]byte{0, 0, 0, flagFixedNewstyle})
	expect := func(opt, typ uint32) []byte {
		t.Helper()
		p, got, err := func() ([]byte, uint32, error) {
			tp, p, err := readOptReply(br, opt)
			return p, tp, err
		}()
		if err != nil || got != typ {
			t.Fatalf("option %d: reply %#x %v, want %#x", opt, got, err, typ)
		}
		return p
	}
	sendOpt(t, c, optSetMetaContext, encodeMetaRequest(metaRequest{name: "d", queries: []string{contextAllocation}}))
	expect(optSetMetaContext, repErrInvalid) // structured replies first
	sendOpt(t, c, optStructuredReply, []byte{1})
	expect(optStructuredReply, repErrInvalid)
	sendOpt(t, c, optStructuredReply, nil)
	expect(optStructuredReply, repAck)
	sendOpt(t, c, optStartTLS, nil)
	expect(optStartTLS, repErrUnsup)
	sendOpt(t, c, 0x7777, []byte("xyz"))
	expect(0x7777, repErrUnsup)
	sendOpt(t, c, optInfo, []byte{0, 0, 0, 9, 'd'}) // name length lies
	expect(optInfo, repErrInvalid)
	sendOpt(t, c, optGo, []byte{0, 0, 0, 1, 'x', 0, 0})
	expect(optGo, repErrUnknown)
	sendOpt(t, c, optList, []byte{1})
	expect(optList, repErrInvalid)
	sendOpt(t, c, optList, nil)
	if p := expect(optList, repServer); string(p) != "\x00\x00\x00\x01d" {
		t.Fatalf("list entry %q", p)
	}
	expect(optList, repAck)
	// An oversized option is drained and refused, not allocated.
	sendOpt(t, c, optInfo, make([]byte, maxOptionLength+1))
	expect(optInfo, repErrTooBig)
	sendOpt(t, c, optAbort, nil)
	expect(optAbort, repAck)
	expectClosed(t, br)
}

func TestHandshakeExportName(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(4096)})
	for _, noZeroes := range []bool{false, true} {
		c, br := rawConn(t, l)
		flags := uint32(flagFixedNewstyle)
		if noZeroes {
			flags |= flagNoZeroes
		}
		c.Write(binary.BigEndian.AppendUint32(nil, flags))
		sendOpt(t, c, optExportName, []byte("d"))
		n := 10 + exportNameZeroBytes
		if noZeroes {
			n = 10
		}
		r := make([]byte, n)
		if _, err := io.ReadFull(br, r); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint64(r) != 4096 || binary.BigEndian.Uint16(r[8:])&FlagHasFlags == 0 {
			t.Fatalf("export-name reply %x", r[:10])
		}
		// The transmission phase follows directly.
		var h [requestSize]byte
		encodeRequest(&h, request{cmd: cmdRead, handle: 9, length: 4})
		c.Write(h[:])
		var rep [replySize + 4]byte
		if _, err := io.ReadFull(br, rep[:]); err != nil {
			t.Fatal(err)
		}
		if errno, handle, err := decodeReply((*[replySize]byte)(rep[:])); err != nil || errno != 0 || handle != 9 {
			t.Fatalf("reply %x", rep)
		}
	}
	// An unknown name under EXPORT_NAME closes the connection.
	c, br := rawConn(t, l)
	c.Write([]byte{0, 0, 0, flagFixedNewstyle | flagNoZeroes})
	sendOpt(t, c, optExportName, []byte("nope"))
	expectClosed(t, br)
}

func TestHostileTransmission(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(4096)})
	open := func() (net.Conn, *bufio.Reader) {
		c, br := rawConn(t, l)
		c.Write([]byte{0, 0, 0, flagFixedNewstyle | flagNoZeroes})
		sendOpt(t, c, optExportName, []byte("d"))
		io.ReadFull(br, make([]byte, 10))
		return c, br
	}
	// A write claiming 4 GiB is refused by disconnecting, before any allocation.
	c, br := open()
	var h [requestSize]byte
	encodeRequest(&h, request{cmd: cmdWrite, handle: 1, length: 0xffffffff})
	c.Write(h[:])
	expectClosed(t, br)
	// A bad request magic disconnects.
	c, br = open()
	c.Write(make([]byte, requestSize))
	expectClosed(t, br)
	// An out-of-range write still consumes its payload and gets EINVAL.
	c, br = open()
	encodeRequest(&h, request{cmd: cmdWrite, handle: 2, offset: 4000, length: 100})
	c.Write(append(h[:], make([]byte, 100)...))
	encodeRequest(&h, request{cmd: cmdFlush, handle: 3})
	c.Write(h[:])
	// Requests are served concurrently, so replies may come in any order.
	want := map[uint64]uint32{2: EINVAL, 3: 0}
	for range 2 {
		var r [replySize]byte
		if _, err := io.ReadFull(br, r[:]); err != nil {
			t.Fatal(err)
		}
		errno, handle, err := decodeReply(&r)
		w, ok := want[handle]
		if err != nil || !ok || errno != w {
			t.Fatalf("reply %x: handle %d errno %d, want one of %v", r, handle, errno, want)
		}
		delete(want, handle)
	}
}

func TestClientRejectsOldstyle(t *testing.T) {
	client, server := net.Pipe()
	go func() {
		b := binary.BigEndian.AppendUint64(nil, magicNBD)
		b = binary.BigEndian.AppendUint64(b, magicOldstyle)
		server.Write(append(b, make([]byte, 128)...))
		server.Close()
	}()
	if _, err := NewClient(client, ""); err != errOldstyle {
		t.Fatalf("oldstyle server: %v", err)
	}
}

// The steady-state hot path, client and server together, allocates nothing.
func TestRead4KDoesNotAllocate(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(1 << 20)})
	cl, err := Dial(ListenerURL(l, "d"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	buf := make([]byte, 4096)
	for range 100 { // warm the buffer pools
		cl.ReadAt(buf, 0)
		cl.WriteAt(buf, 4096)
	}
	allocs := testing.AllocsPerRun(500, func() {
		if _, err := cl.ReadAt(buf, 8192); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.WriteAt(buf, 8192); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per 4 KiB read+write round trip, want 0", allocs)
	}
}

func BenchmarkRead4KUnix(b *testing.B) {
	l := startServer(b, Export{Name: "d", Device: newMemDev(4 << 20)})
	cl, err := Dial(ListenerURL(l, "d"), "")
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	b.ReportAllocs()
	b.SetBytes(4096)
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		i := int64(0)
		for pb.Next() {
			if _, err := cl.ReadAt(buf, (i%1000)*4096); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// A server without OPT_GO gets OPT_EXPORT_NAME instead (and one without
// structured replies simple requests).
func TestClientFallsBackToExportName(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			b := binary.BigEndian.AppendUint64(nil, magicNBD)
			b = binary.BigEndian.AppendUint64(b, magicOpt)
			b = binary.BigEndian.AppendUint16(b, flagFixedNewstyle) // no NO_ZEROES
			if _, err := server.Write(b); err != nil {
				return err
			}
			br := bufio.NewReader(server)
			io.ReadFull(br, make([]byte, 4))
			for _, wantOpt := range []uint32{optStructuredReply, optGo, optExportName} {
				var h [16]byte
				if _, err := io.ReadFull(br, h[:]); err != nil {
					return err
				}
				opt := binary.BigEndian.Uint32(h[8:])
				data := make([]byte, binary.BigEndian.Uint32(h[12:]))
				io.ReadFull(br, data)
				if opt != wantOpt {
					return fmt.Errorf("option %d, want %d", opt, wantOpt)
				}
				if opt == optGo || opt == optStructuredReply {
					r := binary.BigEndian.AppendUint64(nil, magicOptReply)
					r = binary.BigEndian.AppendUint32(r, opt)
					r = binary.BigEndian.AppendUint32(r, repErrUnsup)
					r = binary.BigEndian.AppendUint32(r, 0)
					server.Write(r)
					continue
				}
				if string(data) != "legacy" {
					return fmt.Errorf("export name %q", data)
				}
				r := binary.BigEndian.AppendUint64(nil, 1<<20)
				r = binary.BigEndian.AppendUint16(r, FlagHasFlags|FlagReadOnly)
				_, err := server.Write(append(r, make([]byte, exportNameZeroBytes)...))
				return err
			}
			return nil
		}()
	}()
	cl, err := NewClient(client, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if cl.Size() != 1<<20 || cl.Flags() != FlagHasFlags|FlagReadOnly {
		t.Fatalf("size %d flags %#x", cl.Size(), cl.Flags())
	}
	go io.Copy(io.Discard, server)
	cl.Close()
}
