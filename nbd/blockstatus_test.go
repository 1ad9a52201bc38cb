package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/qcow2"
)

// sparseFile makes a raw image of size bytes holding 0xaa in each of
// data's [offset, offset+length) ranges and holes elsewhere.
func sparseFile(t *testing.T, size int64, data ...[2]int64) *storage.File {
	t.Helper()
	f, err := storage.OpenFile(filepath.Join(t.TempDir(), "sparse.raw"), storage.FileOptions{Create: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for _, d := range data {
		fillAA(t, f, d[0], d[1])
	}
	return f
}

// fillAA writes 0xaa to [off, off+n) of w.
func fillAA(t *testing.T, w io.WriterAt, off, n int64) {
	t.Helper()
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = 0xaa
	}
	for end := off + n; off < end; off += int64(len(b)) {
		if _, err := w.WriteAt(b[:min(int64(len(b)), end-off)], off); err != nil {
			t.Fatal(err)
		}
	}
}

// dataRanges merges the data extents of a map into [offset, length) pairs.
func dataRanges(es []mapEntry) [][2]int64 {
	var out [][2]int64
	for _, e := range es {
		if e.data {
			if k := len(out) - 1; k >= 0 && out[k][0]+out[k][1] == e.off {
				out[k][1] += e.len
			} else {
				out = append(out, [2]int64{e.off, e.len})
			}
		}
	}
	return out
}

type mapEntry struct {
	off, len int64
	data     bool
}

func sameRanges(a, b [][2]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var sparseLayout = [][2]int64{{1 << 20, 64 << 10}, {8 << 20, 3 << 20}}

func TestNbdinfoMapShowsHoles(t *testing.T) {
	l := tcpServer(t, Export{Name: "s", Device: sparseFile(t, 16<<20, sparseLayout...)})
	out := run(t, "nbdinfo", "--map", "--json", ListenerURL(l, "s"))
	var m []struct {
		Offset, Length int64
		Type           int
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("nbdinfo --map: %v\n%s", err, out)
	}
	var es []mapEntry
	var end int64
	for _, e := range m {
		es = append(es, mapEntry{e.Offset, e.Length, e.Type&stateHole == 0})
		end = e.Offset + e.Length
	}
	if got := dataRanges(es); !sameRanges(got, sparseLayout) || end != 16<<20 {
		t.Fatalf("nbdinfo mapped data %v up to %d, want %v up to %d\n%s", got, end, sparseLayout, 16<<20, out)
	}
}

func TestQemuImgMapShowsHoles(t *testing.T) {
	l := tcpServer(t, Export{Name: "s", Device: sparseFile(t, 16<<20, sparseLayout...)})
	out := run(t, "qemu-img", "map", "--output=json", "-f", "raw", ListenerURL(l, "s"))
	var m []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	var es []mapEntry
	for _, e := range m {
		if !e.Data && !e.Zero {
			t.Fatalf("extent %+v neither data nor zero\n%s", e, out)
		}
		es = append(es, mapEntry{e.Start, e.Length, e.Data})
	}
	if got := dataRanges(es); !sameRanges(got, sparseLayout) {
		t.Fatalf("qemu-img mapped data %v, want %v\n%s", got, sparseLayout, out)
	}
}

// byteCounter counts the bytes read from a device, keeping its map.
type byteCounter struct {
	storage.Device
	read atomic.Int64
}

func (c *byteCounter) ReadAt(p []byte, off int64) (int, error) {
	c.read.Add(int64(len(p)))
	return c.Device.ReadAt(p, off)
}

func (c *byteCounter) Map(off, n int64) ([]storage.Extent, error) {
	return storage.Map(c.Device, off, n)
}

// nbdcopy of a sparse 10 GiB image holding 100 MiB reads its data, not
// its holes: raw (holes from SEEK_DATA/SEEK_HOLE) and qcow2 (unallocated
// clusters) alike, as block status describes them.
func TestNbdcopySkipsHoles(t *testing.T) {
	const size, at, data = 10 << 30, 3 << 30, 100 << 20
	for _, c := range []struct {
		name string
		open func(t *testing.T) storage.Device
	}{
		{"raw", func(t *testing.T) storage.Device { return sparseFile(t, size, [2]int64{at, data}) }},
		{"qcow2", func(t *testing.T) storage.Device {
			path := filepath.Join(t.TempDir(), "sparse.qcow2")
			if err := qcow2.Create(path, size); err != nil {
				t.Fatal(err)
			}
			img, err := qcow2.Open(path, qcow2.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { img.Close() })
			fillAA(t, img, at, data)
			return img
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dev := &byteCounter{Device: c.open(t)}
			l := tcpServer(t, Export{Name: "s", Device: dev})
			run(t, "nbdcopy", ListenerURL(l, "s"), "null:")
			read := dev.read.Load()
			t.Logf("nbdcopy read %d MiB of a %d MiB image holding %d MiB", read>>20, size>>20, data>>20)
			if read < data || read > data+data/10 {
				t.Fatalf("nbdcopy read %d bytes, want about %d", read, data)
			}
		})
	}
}

// qemu-io's write -z sends WRITE_ZEROES with NO_HOLE (the range stays
// allocated); with -u, without it (the range becomes a hole).
func TestQemuIOWriteZeroes(t *testing.T) {
	f := sparseFile(t, 8<<20, [2]int64{0, 8 << 20})
	l := tcpServer(t, Export{Name: "s", Device: f})
	out := run(t, "qemu-io", "-f", "raw", "-c", "write -z 1M 1M", "-c", "write -z -u 4M 1M",
		"-c", "read -P 0 1M 1M", "-c", "read -P 0 4M 1M", "-c", "read -P 0xaa 0 1M", ListenerURL(l, "s"))
	if strings.Contains(out, "failed") || strings.Contains(out, "error") {
		t.Fatalf("qemu-io:\n%s", out)
	}
	es, err := f.Map(0, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	var got []mapEntry
	var off int64
	for _, e := range es {
		got = append(got, mapEntry{off, e.Length, !e.Hole})
		off += e.Length
	}
	want := [][2]int64{{0, 4 << 20}, {5 << 20, 3 << 20}}
	if r := dataRanges(got); !sameRanges(r, want) {
		t.Fatalf("after write -z and write -z -u the file holds data at %v, want %v", r, want)
	}
}

// structuredConn negotiates structured replies and, when meta is set,
// base:allocation, then enters transmission on export "d".
func structuredConn(t *testing.T, l net.Listener, meta bool) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br := rawConn(t, l)
	c.Write([]byte{0, 0, 0, flagFixedNewstyle | flagNoZeroes})
	expect := func(opt, typ uint32) []byte {
		t.Helper()
		got, p, err := readOptReply(br, opt)
		if err != nil || got != typ {
			t.Fatalf("option %d: reply %#x %v, want %#x", opt, got, err, typ)
		}
		return p
	}
	sendOpt(t, c, optStructuredReply, nil)
	expect(optStructuredReply, repAck)
	// LIST answers base:allocation for an empty query list and for "base:".
	for _, qs := range [][]string{nil, {"base:"}, {"other:x", contextAllocation}} {
		sendOpt(t, c, optListMetaContext, encodeMetaRequest(metaRequest{name: "d", queries: qs}))
		if p := expect(optListMetaContext, repMetaContext); string(p[4:]) != contextAllocation {
			t.Fatalf("listed context %q", p)
		}
		expect(optListMetaContext, repAck)
	}
	sendOpt(t, c, optListMetaContext, encodeMetaRequest(metaRequest{name: "d", queries: []string{"other:x"}}))
	expect(optListMetaContext, repAck)
	sendOpt(t, c, optSetMetaContext, encodeMetaRequest(metaRequest{name: "nope", queries: []string{contextAllocation}}))
	expect(optSetMetaContext, repErrUnknown)
	sendOpt(t, c, optSetMetaContext, []byte{0, 0, 0, 1, 'd', 0, 0, 0, 9})
	expect(optSetMetaContext, repErrInvalid)
	if meta {
		sendOpt(t, c, optSetMetaContext, encodeMetaRequest(metaRequest{name: "d", queries: []string{contextAllocation}}))
		if p := expect(optSetMetaContext, repMetaContext); binary.BigEndian.Uint32(p) != allocationID {
			t.Fatalf("context id %x", p)
		}
		expect(optSetMetaContext, repAck)
	}
	sendOpt(t, c, optGo, []byte{0, 0, 0, 1, 'd', 0, 0})
	for {
		typ, _, err := readOptReply(br, optGo)
		if err != nil {
			t.Fatal(err)
		}
		if typ == repAck {
			break
		}
	}
	return c, br
}

func readChunk(t *testing.T, br *bufio.Reader) (chunkHeader, []byte) {
	t.Helper()
	var h [chunkHeaderSize]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatal(err)
	}
	ch, err := decodeChunkHeader(&h)
	if err != nil {
		t.Fatalf("chunk header %x: %v", h, err)
	}
	p := make([]byte, ch.length)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return ch, p
}

func TestStructuredRepliesAndBlockStatus(t *testing.T) {
	dev := newMemDev(1 << 20)
	dev.WriteAt([]byte("hello"), 128<<10+3)
	l := startServer(t, Export{Name: "d", Device: dev})
	c, br := structuredConn(t, l, true)
	send := func(r request) {
		var h [requestSize]byte
		encodeRequest(&h, r)
		c.Write(h[:])
	}
	// A read: one OFFSET_DATA chunk that ends the reply.
	send(request{cmd: cmdRead, handle: 1, offset: 128<<10 + 3, length: 5})
	if h, p := readChunk(t, br); h.typ != chunkOffsetData || h.flags != chunkFlagDone || h.handle != 1 ||
		binary.BigEndian.Uint64(p) != 128<<10+3 || string(p[8:]) != "hello" {
		t.Fatalf("read chunk %+v %q", h, p)
	}
	// An error: an ERROR chunk.
	send(request{cmd: cmdRead, handle: 2, offset: 1 << 20, length: 5})
	if h, p := readChunk(t, br); h.typ != chunkError || h.flags != chunkFlagDone || binary.BigEndian.Uint32(p) != EINVAL {
		t.Fatalf("error chunk %+v %x", h, p)
	}
	// Block status: hole, the written chunk, hole; REQ_ONE: the first only.
	want := []uint32{allocationID, 128 << 10, stateHole | stateZero, 64 << 10, 0, 1<<20 - 192<<10, stateHole | stateZero}
	for _, one := range []bool{false, true} {
		var flags uint16
		if one {
			flags = cmdFlagReqOne
		}
		send(request{cmd: cmdBlockStatus, flags: flags, handle: 3, length: 1 << 20})
		h, p := readChunk(t, br)
		var got []uint32
		for i := 0; i+4 <= len(p); i += 4 {
			got = append(got, binary.BigEndian.Uint32(p[i:]))
		}
		w := want
		if one {
			w = want[:3]
		}
		if h.typ != chunkBlockStatus || h.flags != chunkFlagDone || len(got) != len(w) {
			t.Fatalf("block status (REQ_ONE %v) %+v %v, want %v", one, h, got, w)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("block status (REQ_ONE %v) %v, want %v", one, got, w)
			}
		}
	}
	// CACHE is served; other successes stay simple replies.
	send(request{cmd: cmdCache, handle: 4, length: 4096})
	var r [replySize]byte
	if _, err := io.ReadFull(br, r[:]); err != nil {
		t.Fatal(err)
	}
	if errno, handle, err := decodeReply(&r); err != nil || errno != 0 || handle != 4 {
		t.Fatalf("cache reply %d %d %v", errno, handle, err)
	}
}

// FAST_ZERO is served by punching a hole, and refused at once with
// NO_HOLE, which only writing could honour.
func TestFastZero(t *testing.T) {
	dev := newMemDev(1 << 20)
	dev.WriteAt(bytes.Repeat([]byte{1}, 1<<20), 0)
	l := startServer(t, Export{Name: "d", Device: dev})
	c, br := structuredConn(t, l, false)
	var h [requestSize]byte
	encodeRequest(&h, request{cmd: cmdWriteZeroes, flags: cmdFlagFastZero | cmdFlagNoHole, handle: 1, length: 64 << 10})
	c.Write(h[:])
	if ch, p := readChunk(t, br); ch.typ != chunkError || binary.BigEndian.Uint32(p) != ENOTSUP {
		t.Fatalf("FAST_ZERO with NO_HOLE: %+v %x", ch, p)
	}
	if dev.Writes.Load() != 1 || dev.Zeroings.Load() != 0 {
		t.Fatal("a refused FAST_ZERO touched the device")
	}
	encodeRequest(&h, request{cmd: cmdWriteZeroes, flags: cmdFlagFastZero, handle: 2, length: 64 << 10})
	c.Write(h[:])
	var r [replySize]byte
	if _, err := io.ReadFull(br, r[:]); err != nil {
		t.Fatal(err)
	}
	if errno, _, err := decodeReply(&r); err != nil || errno != 0 {
		t.Fatalf("FAST_ZERO: errno %d %v", errno, err)
	}
	es, _ := storage.Map(dev, 0, 1<<20)
	if len(es) != 2 || !es[0].Hole || es[0].Length != 64<<10 {
		t.Fatalf("after FAST_ZERO the device maps as %+v", es)
	}
}

// BLOCK_STATUS without base:allocation negotiated is refused.
func TestBlockStatusNeedsMetaContext(t *testing.T) {
	l := startServer(t, Export{Name: "d", Device: newMemDev(1 << 20)})
	c, br := structuredConn(t, l, false)
	var h [requestSize]byte
	encodeRequest(&h, request{cmd: cmdBlockStatus, handle: 9, length: 4096})
	c.Write(h[:])
	if ch, p := readChunk(t, br); ch.typ != chunkError || ch.handle != 9 || binary.BigEndian.Uint32(p) != EINVAL {
		t.Fatalf("block status without a context: %+v %x", ch, p)
	}
}

// clientMap maps a whole device through Map calls, as a caller would.
func clientMap(t *testing.T, m storage.Mapper, size int64) []mapEntry {
	t.Helper()
	var out []mapEntry
	for off := int64(0); off < size; {
		es, err := m.Map(off, size-off)
		if err != nil || len(es) == 0 {
			t.Fatalf("Map(%d): %v %v", off, es, err)
		}
		for _, e := range es {
			out = append(out, mapEntry{off, e.Length, !e.Hole})
			off += e.Length
		}
	}
	return out
}

// Our client reads the holes of a file our server exports.
func TestClientMapsOurServer(t *testing.T) {
	l := startServer(t, Export{Name: "s", Device: sparseFile(t, 16<<20, sparseLayout...)})
	cl, err := Dial(ListenerURL(l, "s"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if !cl.structured || !cl.hasAllocation {
		t.Fatalf("structured %v, base:allocation %v", cl.structured, cl.hasAllocation)
	}
	if got := dataRanges(clientMap(t, cl, 16<<20)); !sameRanges(got, sparseLayout) {
		t.Fatalf("client mapped data %v, want %v", got, sparseLayout)
	}
	// Reads come back as structured chunks.
	b := make([]byte, 8)
	if _, err := cl.ReadAt(b, 8<<20-4); err != nil || string(b) != "\x00\x00\x00\x00\xaa\xaa\xaa\xaa" {
		t.Fatalf("read %x %v", b, err)
	}
}

// Our client reads the holes of nbdkit's memory plugin.
func TestClientMapsNbdkit(t *testing.T) {
	cl := startNbdkit(t, 64<<20)
	if !cl.structured || !cl.hasAllocation {
		t.Fatalf("structured %v, base:allocation %v", cl.structured, cl.hasAllocation)
	}
	if got := dataRanges(clientMap(t, cl, 64<<20)); len(got) != 0 {
		t.Fatalf("an empty nbdkit memory disk has data at %v", got)
	}
	buf := make([]byte, 1<<20)
	randomFill(buf, 3)
	if _, err := cl.WriteAt(buf, 32<<20); err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{32 << 20, 1 << 20}}
	if got := dataRanges(clientMap(t, cl, 64<<20)); !sameRanges(got, want) {
		t.Fatalf("nbdkit memory mapped data %v, want %v", got, want)
	}
	got := make([]byte, len(buf))
	if _, err := cl.ReadAt(got, 32<<20); err != nil || string(got) != string(buf) {
		t.Fatalf("read back over structured replies: %v", err)
	}
}

// The client assembles a read from hole and data chunks (in order or
// not), takes an error chunk as the call's error, and drops a server
// whose chunk strays outside its request or covers bytes another chunk
// delivered (counted twice, it would leave stale bytes in a read that
// reports success).
func TestClientReadsChunks(t *testing.T) {
	dataChunk := func(handle uint64, flags uint16, at byte, data string) []byte {
		var h [chunkHeaderSize]byte
		encodeChunkHeader(&h, chunkHeader{flags: flags, typ: chunkOffsetData, handle: handle, length: 8 + uint32(len(data))})
		return append(append(h[:], 0, 0, 0, 0, 0, 0, 0, at), data...)
	}
	outOfOrder := func(handle uint64) []byte { // "abcdefgh" at 8, then a hole at 0
		var h [chunkHeaderSize]byte
		encodeChunkHeader(&h, chunkHeader{flags: chunkFlagDone, typ: chunkOffsetHole, handle: handle, length: 12})
		return append(dataChunk(handle, 0, 8, "abcdefgh"), append(h[:], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8)...)
	}
	errorChunk := func(handle uint64) []byte {
		var h [chunkHeaderSize]byte
		encodeChunkHeader(&h, chunkHeader{flags: chunkFlagDone, typ: chunkErrorOffset, handle: handle, length: 6 + 3 + 8})
		return append(h[:], 0, 0, 0, ENOSPC, 0, 3, 'b', 'a', 'd', 0, 0, 0, 0, 0, 0, 0, 0)
	}
	stray := func(handle uint64) []byte { // bytes 8..24 of a 16-byte read
		return dataChunk(handle, chunkFlagDone, 8, "0123456789abcdef")
	}
	overlapping := func(handle uint64) []byte { // 0..8 twice: 16 bytes "delivered"
		return append(dataChunk(handle, 0, 0, "abcdefgh"), dataChunk(handle, chunkFlagDone, 0, "abcdefgh")...)
	}

	cl := scriptedServer(t, readChunks, errorChunk, outOfOrder, stray)
	if !cl.hasAllocation || cl.allocation != 7 {
		t.Fatalf("base:allocation %v id %d", cl.hasAllocation, cl.allocation)
	}
	b := []byte("xxxxxxxxxxxxxxxx")
	if _, err := cl.ReadAt(b, 0); err != nil || string(b) != "\x00\x00\x00\x00\x00\x00\x00\x00abcdefgh" {
		t.Fatalf("read %q %v", b, err)
	}
	var ne *Error
	if _, err := cl.ReadAt(b, 0); !errors.As(err, &ne) || ne.Errno != ENOSPC {
		t.Fatalf("error chunk gave %v", err)
	}
	b = []byte("xxxxxxxxxxxxxxxx")
	if _, err := cl.ReadAt(b, 0); err != nil || string(b) != "\x00\x00\x00\x00\x00\x00\x00\x00abcdefgh" {
		t.Fatalf("read of chunks out of order: %q %v", b, err)
	}
	if _, err := cl.ReadAt(b, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("a chunk outside the request gave %v", err)
	}

	cl = scriptedServer(t, overlapping)
	if _, err := cl.ReadAt(make([]byte, 16), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("overlapping chunks gave %v, want the connection dropped", err)
	}
}

// scriptedServer is our client on a server that completes clientSeed's
// handshake and answers the client's requests, in order, with replies.
func scriptedServer(t *testing.T, replies ...func(handle uint64) []byte) *Client {
	t.Helper()
	seed := clientSeed()
	handshake := seed[:len(seed)-len(readChunks(0))]
	client, server := net.Pipe()
	t.Cleanup(func() { server.Close() })
	go func() {
		server.Write(handshake)
		br := bufio.NewReader(server)
		io.ReadFull(br, make([]byte, 4)) // client flags
		for range 3 {                    // STRUCTURED_REPLY, SET_META_CONTEXT, GO
			var h [16]byte
			io.ReadFull(br, h[:])
			io.ReadFull(br, make([]byte, binary.BigEndian.Uint32(h[12:])))
		}
		for _, reply := range replies {
			var h [requestSize]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			r, _ := decodeRequest(&h)
			server.Write(reply(r.handle))
		}
		io.Copy(io.Discard, br)
	}()
	cl, err := NewClient(client, "d")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}
