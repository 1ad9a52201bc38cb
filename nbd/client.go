package nbd

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	"github.com/xenblk/xenblk/storage"
)

// Error is an errno a server returned for one request.
type Error struct {
	Op    string
	Errno uint32
}

func (e *Error) Error() string {
	return fmt.Sprintf("nbd: %s: %v", e.Op, syscall.Errno(e.Errno))
}

// Is lets errors.Is match the storage errors and the syscall errno.
func (e *Error) Is(target error) bool {
	switch target {
	case storage.ErrReadOnly:
		return e.Errno == EPERM
	case storage.ErrNotSupported:
		return e.Errno == ENOTSUP
	}
	errno, ok := target.(syscall.Errno)
	return ok && uint32(errno) == e.Errno
}

// ErrClosed is returned after Close or once the connection has failed
// (wrapped with the cause).
var ErrClosed = errors.New("nbd: connection closed")

const clientSlots = 64 // requests in flight per client

// call is one in-flight request, a slot in Client.calls.
type call struct {
	busy bool
	gen  uint32
	cmd  uint16
	off  uint64 // the request's range, which chunks must lie in
	n    uint32
	buf  []byte // READ destination
	// got counts the READ bytes chunks delivered, which never overlap
	// (cover refuses a chunk over bytes already delivered), so got == n
	// means every byte of buf was written; spans are those bytes' ranges.
	// errno is the first error a chunk reported; extents are
	// BLOCK_STATUS's descriptors.
	got     uint32
	spans   []span
	spanBuf [4]span // spans' first home: in-order chunks need one
	errno   uint32
	extents []storage.Extent
	err     error
	done    chan struct{}
}

// Client is a pipelined NBD client; its methods are safe for concurrent use
// and up to 64 requests are in flight at once.
type Client struct {
	conn      net.Conn
	size      int64
	flags     uint16
	minBlock  uint32
	prefBlock uint32
	maxBlock  uint32
	// structured: the server agreed to structured replies; allocation
	// is base:allocation's id, when the server chose it (hasAllocation).
	structured    bool
	hasAllocation bool
	allocation    uint32
	// fields is the reply reader's scratch for a chunk's fixed fields;
	// here, not on its stack, so that reading into it does not allocate.
	fields [12]byte

	free chan int // indices of idle slots

	mu    sync.Mutex // guards calls and err
	calls [clientSlots]call
	err   error
	dead  chan struct{} // closed when the connection fails or is closed

	wmu sync.Mutex // guards bw and hdr
	bw  *bufio.Writer
	hdr [requestSize]byte // lives here so that encoding does not allocate
}

// Dial connects to target (see ParseTarget) and opens export; an empty
// export uses the name in the URI.
func Dial(target, export string) (*Client, error) {
	return DialTLS(target, export, nil)
}

// DialTLS is Dial over TLS when cfg is not nil (NBD_OPT_STARTTLS; a
// server refusing it fails the dial).
func DialTLS(target, export string, cfg *tls.Config) (*Client, error) {
	t, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	if export == "" {
		export = t.Export
	}
	c, err := net.Dial(t.Network, t.Address)
	if err != nil {
		return nil, err
	}
	cl, err := NewClientTLS(c, export, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

// NewClient runs the handshake on c (OPT_GO, falling back to
// OPT_EXPORT_NAME) and starts the reply reader. The client owns c.
func NewClient(c net.Conn, export string) (*Client, error) {
	return NewClientTLS(c, export, nil)
}

// NewClientTLS is NewClient, first starting TLS with cfg when it is not
// nil.
func NewClientTLS(c net.Conn, export string, cfg *tls.Config) (*Client, error) {
	if len(export) > maxNameLength {
		return nil, errors.New("nbd: export name too long")
	}
	cl := &Client{
		conn: c, free: make(chan int, clientSlots), dead: make(chan struct{}),
		bw: bufio.NewWriterSize(c, 64<<10), minBlock: 1, prefBlock: 4096, maxBlock: MaxPayload,
	}
	br, err := cl.handshake(bufio.NewReaderSize(c, 64<<10), export, cfg)
	if err != nil {
		return nil, err
	}
	for i := range cl.calls {
		cl.calls[i].done = make(chan struct{}, 1)
		cl.free <- i
	}
	go cl.readLoop(br)
	return cl, nil
}

var errOldstyle = errors.New("nbd: server speaks oldstyle negotiation, which is not supported")

// handshake negotiates the export; it returns the reader of the session
// (TLS's, when cfg started it).
func (cl *Client) handshake(br *bufio.Reader, export string, cfg *tls.Config) (*bufio.Reader, error) {
	err := cl.haggle(&br, export, cfg)
	return br, err
}

func (cl *Client) haggle(brp **bufio.Reader, export string, cfg *tls.Config) error {
	br := *brp
	var hello [18]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(hello[0:]) != magicNBD {
		return errBadMagic
	}
	switch binary.BigEndian.Uint64(hello[8:]) {
	case magicOpt:
	case magicOldstyle:
		return errOldstyle
	default:
		return errBadMagic
	}
	sflags := binary.BigEndian.Uint16(hello[16:])
	if sflags&flagFixedNewstyle == 0 {
		return errors.New("nbd: server does not speak fixed newstyle")
	}
	cflags := uint32(flagFixedNewstyle)
	if sflags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
	}
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	var cf [4]byte
	binary.BigEndian.PutUint32(cf[:], cflags)
	cl.bw.Write(cf[:])
	if cfg != nil {
		if err := cl.startTLS(br, cfg); err != nil {
			return err
		}
		br = bufio.NewReaderSize(cl.conn, 64<<10)
		*brp = br
	}
	if err := cl.negotiateStructured(br, export); err != nil {
		return err
	}
	cl.writeOption(optGo, data)
	if err := cl.bw.Flush(); err != nil {
		return err
	}
	haveExport := false
	for {
		typ, payload, err := readOptReply(br, optGo)
		if err != nil {
			return err
		}
		switch {
		case typ == repAck:
			if !haveExport {
				return errors.New("nbd: server acknowledged OPT_GO without NBD_INFO_EXPORT")
			}
			return nil
		case typ == repInfo:
			if err := cl.applyInfo(payload, &haveExport); err != nil {
				return err
			}
		case typ == repErrUnsup:
			return cl.exportName(br, export, cflags&flagNoZeroes != 0)
		case typ&repErrBit != 0:
			return fmt.Errorf("nbd: server refused export %q: %s (%#x) %s", export, repErrName(typ), typ, payload)
		default:
			return fmt.Errorf("nbd: unexpected option reply %#x", typ)
		}
	}
}

// startTLS asks for NBD_OPT_STARTTLS and runs the TLS handshake; the
// client's connection and writer then go through the session.
func (cl *Client) startTLS(br *bufio.Reader, cfg *tls.Config) error {
	cl.writeOption(optStartTLS, nil)
	if err := cl.bw.Flush(); err != nil {
		return err
	}
	typ, _, err := readOptReply(br, optStartTLS)
	if err != nil {
		return err
	}
	if typ != repAck {
		return fmt.Errorf("nbd: server refused TLS: %s (%#x)", repErrName(typ), typ)
	}
	if br.Buffered() != 0 {
		return errors.New("nbd: server sent plaintext after agreeing to STARTTLS")
	}
	tc := tls.Client(cl.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	cl.conn, cl.bw = tc, bufio.NewWriterSize(tc, 64<<10)
	return nil
}

// negotiateStructured asks for structured replies and then for
// base:allocation on export. A server refusing either is served without
// them: reads still work, and Map reports all data.
func (cl *Client) negotiateStructured(br *bufio.Reader, export string) error {
	cl.writeOption(optStructuredReply, nil)
	if err := cl.bw.Flush(); err != nil {
		return err
	}
	typ, _, err := readOptReply(br, optStructuredReply)
	if err != nil {
		return err
	}
	if typ != repAck {
		return nil
	}
	cl.structured = true
	cl.writeOption(optSetMetaContext, encodeMetaRequest(metaRequest{name: export, queries: []string{contextAllocation}}))
	if err := cl.bw.Flush(); err != nil {
		return err
	}
	for {
		typ, p, err := readOptReply(br, optSetMetaContext)
		if err != nil {
			return err
		}
		switch {
		case typ == repAck:
			return nil
		case typ == repMetaContext:
			if len(p) < 4 {
				return errBadOption
			}
			if string(p[4:]) == contextAllocation {
				cl.hasAllocation, cl.allocation = true, binary.BigEndian.Uint32(p)
			}
		case typ&repErrBit != 0:
			cl.hasAllocation = false
			return nil
		default:
			return fmt.Errorf("nbd: unexpected option reply %#x to SET_META_CONTEXT", typ)
		}
	}
}

func repErrName(typ uint32) string {
	switch typ {
	case repErrUnknown:
		return "unknown export"
	case repErrPolicy:
		return "policy"
	case repErrInvalid:
		return "invalid"
	case repErrUnsup:
		return "unsupported"
	case repErrTLSReqd:
		return "TLS required"
	}
	return "error"
}

// applyInfo takes one NBD_REP_INFO payload.
func (cl *Client) applyInfo(p []byte, haveExport *bool) error {
	if len(p) < 2 {
		return errBadOption
	}
	switch binary.BigEndian.Uint16(p) {
	case infoExport:
		if len(p) != 12 {
			return errBadOption
		}
		size := binary.BigEndian.Uint64(p[2:])
		if size > 1<<62 {
			return fmt.Errorf("nbd: export size %d is implausible", size)
		}
		cl.size, cl.flags = int64(size), binary.BigEndian.Uint16(p[10:])
		*haveExport = true
	case infoBlockSize:
		if len(p) != 14 {
			return errBadOption
		}
		mn, pref, mx := binary.BigEndian.Uint32(p[2:]), binary.BigEndian.Uint32(p[6:]), binary.BigEndian.Uint32(p[10:])
		if mn == 0 || pref < mn || mx < pref {
			return fmt.Errorf("nbd: bad block sizes %d/%d/%d", mn, pref, mx)
		}
		cl.minBlock, cl.prefBlock, cl.maxBlock = mn, pref, min(mx, MaxPayload)
	}
	return nil
}

func (cl *Client) exportName(br *bufio.Reader, export string, noZeroes bool) error {
	cl.writeOption(optExportName, []byte(export))
	if err := cl.bw.Flush(); err != nil {
		return err
	}
	var r [10 + exportNameZeroBytes]byte
	n := len(r)
	if noZeroes {
		n = 10
	}
	if _, err := io.ReadFull(br, r[:n]); err != nil {
		return fmt.Errorf("nbd: export %q refused: %w", export, err)
	}
	size := binary.BigEndian.Uint64(r[0:])
	if size > 1<<62 {
		return fmt.Errorf("nbd: export size %d is implausible", size)
	}
	cl.size, cl.flags = int64(size), binary.BigEndian.Uint16(r[8:])
	return nil
}

func (cl *Client) writeOption(opt uint32, data []byte) {
	var h [16]byte
	binary.BigEndian.PutUint64(h[0:], magicOpt)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], uint32(len(data)))
	cl.bw.Write(h[:])
	cl.bw.Write(data)
}

// readOptReply reads one option reply for opt, refusing oversized payloads.
func readOptReply(r io.Reader, opt uint32) (typ uint32, payload []byte, err error) {
	var h [20]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	typ, n, err := decodeOptReplyHeader(&h, opt)
	if err != nil {
		return 0, nil, err
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return typ, payload, err
}

// decodeOptReplyHeader checks an option reply header's magic, option and length.
func decodeOptReplyHeader(h *[20]byte, opt uint32) (typ, length uint32, err error) {
	if binary.BigEndian.Uint64(h[0:]) != magicOptReply {
		return 0, 0, errBadMagic
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != opt {
		return 0, 0, fmt.Errorf("nbd: reply for option %d while waiting for %d", got, opt)
	}
	length = binary.BigEndian.Uint32(h[16:])
	if length > maxOptionLength {
		return 0, 0, fmt.Errorf("nbd: option reply of %d bytes", length)
	}
	return binary.BigEndian.Uint32(h[12:]), length, nil
}

// Size is the export's size in bytes.
func (cl *Client) Size() int64 { return cl.size }

// Flags are the export's transmission flags (Flag*).
func (cl *Client) Flags() uint16 { return cl.flags }

// BlockSizes are the server's minimum, preferred and maximum block sizes.
func (cl *Client) BlockSizes() (minimum, preferred, maximum uint32) {
	return cl.minBlock, cl.prefBlock, cl.maxBlock
}

// readLoop matches replies to calls by handle until the connection fails.
func (cl *Client) readLoop(br *bufio.Reader) {
	var h [chunkHeaderSize]byte
	var err error
	for {
		if _, err = io.ReadFull(br, h[:4]); err != nil {
			break
		}
		if cl.structured && binary.BigEndian.Uint32(h[:]) == magicStructRep {
			if _, err = io.ReadFull(br, h[4:]); err != nil {
				break
			}
			if err = cl.readChunk(br, &h); err != nil {
				break
			}
			continue
		}
		if _, err = io.ReadFull(br, h[4:replySize]); err != nil {
			break
		}
		var errno uint32
		var handle uint64
		if errno, handle, err = decodeReply((*[replySize]byte)(h[:replySize])); err != nil {
			break
		}
		var c *call
		if c, err = cl.callFor(handle); err != nil {
			break
		}
		if errno == 0 && c.cmd == cmdRead {
			if _, err = io.ReadFull(br, c.buf); err != nil {
				break
			}
			c.got = c.n
		}
		cl.complete(c, errno)
	}
	cl.fail(err)
}

// callFor finds the call a reply's handle names.
func (cl *Client) callFor(handle uint64) (*call, error) {
	slot, gen := int(handle&0xffffffff), uint32(handle>>32)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if slot >= clientSlots || !cl.calls[slot].busy || cl.calls[slot].gen != gen {
		return nil, fmt.Errorf("nbd: reply for unknown handle %#x", handle)
	}
	return &cl.calls[slot], nil
}

// complete ends a call with errno, its first error, or, for a READ
// whose chunks did not cover the request, EIO.
func (cl *Client) complete(c *call, errno uint32) {
	if c.errno != 0 {
		errno = c.errno
	}
	if errno == 0 && c.cmd == cmdRead && c.got != c.n {
		errno = EIO
	}
	var cerr error
	if errno != 0 {
		cerr = &Error{Op: cmdName(c.cmd), Errno: errno}
	}
	cl.mu.Lock()
	c.busy = false
	c.err = cerr
	cl.mu.Unlock()
	c.done <- struct{}{}
}

// span is a range [from, to) of a READ's bytes, relative to its offset.
type span struct{ from, to uint32 }

// cover records that a chunk delivers the n bytes at at (relative to the
// request's offset), or reports false if any of them were delivered
// before: the protocol forbids overlapping chunks, and counting one
// twice would let a server leave a hole of stale bytes in a read that
// reports success. Adjacent spans merge, so chunks in order keep one
// span and the list grows (and allocates) only for a server that sends
// them out of order.
func (c *call) cover(at, n uint32) bool {
	end := at + n
	i := 0
	for i < len(c.spans) && c.spans[i].to <= at {
		i++
	}
	if i < len(c.spans) && c.spans[i].from < end {
		return false
	}
	joinsPrev := i > 0 && c.spans[i-1].to == at
	joinsNext := i < len(c.spans) && c.spans[i].from == end
	switch {
	case joinsPrev && joinsNext:
		c.spans[i-1].to = c.spans[i].to
		c.spans = append(c.spans[:i], c.spans[i+1:]...)
	case joinsPrev:
		c.spans[i-1].to = end
	case joinsNext:
		c.spans[i].from = at
	default:
		c.spans = append(c.spans, span{})
		copy(c.spans[i+1:], c.spans[i:])
		c.spans[i] = span{at, end}
	}
	return true
}

// maxChunkMeta bounds a chunk that is not READ data (errors, block
// status); a longer one ends the connection before it is allocated.
const maxChunkMeta = 1 << 20

var errBadChunk = errors.New("nbd: malformed structured reply chunk")

// readChunk reads one structured reply chunk, delivering it to its call;
// a chunk with DONE completes the call. A chunk that does not fit its
// call's request is a protocol error, which ends the connection.
func (cl *Client) readChunk(br *bufio.Reader, h *[chunkHeaderSize]byte) error {
	ch, err := decodeChunkHeader(h)
	if err != nil {
		return err
	}
	c, err := cl.callFor(ch.handle)
	if err != nil {
		return err
	}
	be := &cl.fields
	switch {
	case ch.typ == chunkNone:
		if ch.length != 0 || ch.flags&chunkFlagDone == 0 {
			return errBadChunk
		}
	case ch.typ == chunkOffsetData:
		if c.cmd != cmdRead || ch.length <= 8 {
			return errBadChunk
		}
		if _, err := io.ReadFull(br, be[:8]); err != nil {
			return err
		}
		at, n := binary.BigEndian.Uint64(be[:]), ch.length-8
		if at < c.off || at-c.off > uint64(c.n) || uint64(n) > uint64(c.n)-(at-c.off) {
			return errBadChunk
		}
		if !c.cover(uint32(at-c.off), n) {
			return errBadChunk
		}
		if _, err := io.ReadFull(br, c.buf[at-c.off:][:n]); err != nil {
			return err
		}
		c.got += n
	case ch.typ == chunkOffsetHole:
		if c.cmd != cmdRead || ch.length != 12 {
			return errBadChunk
		}
		if _, err := io.ReadFull(br, be[:12]); err != nil {
			return err
		}
		at, n := binary.BigEndian.Uint64(be[:]), binary.BigEndian.Uint32(be[8:])
		if n == 0 || at < c.off || at-c.off > uint64(c.n) || uint64(n) > uint64(c.n)-(at-c.off) {
			return errBadChunk
		}
		if !c.cover(uint32(at-c.off), n) {
			return errBadChunk
		}
		clear(c.buf[at-c.off:][:n])
		c.got += n
	case ch.typ == chunkBlockStatus:
		if c.cmd != cmdBlockStatus || ch.length < 12 || (ch.length-4)%8 != 0 || ch.length > maxChunkMeta {
			return errBadChunk
		}
		p := make([]byte, ch.length)
		if _, err := io.ReadFull(br, p); err != nil {
			return err
		}
		if !cl.hasAllocation || binary.BigEndian.Uint32(p) != cl.allocation || len(c.extents) != 0 {
			return errBadChunk
		}
		if err := c.takeStatus(p[4:]); err != nil {
			return err
		}
	case ch.typ&(1<<15) != 0: // an error chunk, known type or not
		if ch.length < 6 || ch.length > maxChunkMeta {
			return errBadChunk
		}
		if _, err := io.ReadFull(br, be[:6]); err != nil {
			return err
		}
		msg := binary.BigEndian.Uint16(be[4:])
		if uint32(msg) > ch.length-6 {
			return errBadChunk
		}
		// The message, and ERROR_OFFSET's offset, say nothing the
		// caller acts on.
		if _, err := io.CopyN(io.Discard, br, int64(ch.length-6)); err != nil {
			return err
		}
		errno := binary.BigEndian.Uint32(be[:])
		if errno == 0 {
			errno = EIO // an error chunk must carry an error
		}
		if c.errno == 0 {
			c.errno = errno
		}
	default:
		return fmt.Errorf("nbd: unknown structured reply chunk type %d", ch.typ)
	}
	if ch.flags&chunkFlagDone != 0 {
		cl.complete(c, 0)
	}
	return nil
}

// takeStatus turns base:allocation descriptors into extents, clipped to
// the request; a zero-length descriptor is a protocol error.
func (c *call) takeStatus(p []byte) error {
	var covered uint64
	for ; len(p) >= 8 && covered < uint64(c.n); p = p[8:] {
		n, flags := uint64(binary.BigEndian.Uint32(p)), binary.BigEndian.Uint32(p[4:])
		if n == 0 {
			return errBadChunk
		}
		n = min(n, uint64(c.n)-covered)
		c.extents = append(c.extents, storage.Extent{Length: int64(n), Hole: flags&stateHole != 0, Zero: flags&stateZero != 0})
		covered += n
	}
	return nil
}

func (cl *Client) fail(err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.err == nil {
		cl.err = fmt.Errorf("%w: %v", ErrClosed, err)
		close(cl.dead)
		cl.conn.Close()
	}
}

func cmdName(cmd uint16) string {
	switch cmd {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdWriteZeroes:
		return "write zeroes"
	case cmdBlockStatus:
		return "block status"
	}
	return "command"
}

// do sends one request and waits for its reply. For READ, buf receives the
// data; for WRITE, buf is the payload.
func (cl *Client) do(cmd, flags uint16, off uint64, length uint32, buf []byte) error {
	_, err := cl.send(cmd, flags, off, length, buf)
	return err
}

// send is do, returning BLOCK_STATUS's extents too.
func (cl *Client) send(cmd, flags uint16, off uint64, length uint32, buf []byte) ([]storage.Extent, error) {
	var slot int
	select {
	case slot = <-cl.free:
	case <-cl.dead:
		return nil, cl.deadErr()
	}
	cl.mu.Lock()
	c := &cl.calls[slot]
	c.busy, c.cmd, c.err = true, cmd, nil
	c.off, c.n, c.got, c.errno, c.extents = off, length, 0, 0, nil
	c.spans = c.spanBuf[:0]
	c.gen++
	c.buf = nil
	if cmd == cmdRead {
		c.buf = buf
	}
	handle := uint64(c.gen)<<32 | uint64(slot)
	cl.mu.Unlock()

	cl.wmu.Lock()
	encodeRequest(&cl.hdr, request{flags: flags, cmd: cmd, handle: handle, offset: off, length: length})
	cl.bw.Write(cl.hdr[:])
	if cmd == cmdWrite {
		cl.bw.Write(buf)
	}
	err := cl.bw.Flush()
	cl.wmu.Unlock()
	if err != nil {
		cl.fail(err)
		return nil, cl.deadErr()
	}
	select {
	case <-c.done:
	case <-cl.dead:
		// The slot may still be referenced by a late reply; never reuse it.
		return nil, cl.deadErr()
	}
	cl.mu.Lock()
	err = c.err
	extents := c.extents
	c.buf, c.extents = nil, nil
	cl.mu.Unlock()
	cl.free <- slot
	return extents, err
}

func (cl *Client) deadErr() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.err
}

func (cl *Client) checkRange(off, n int64) error {
	if err := storage.CheckRange(off, n, cl.size); err != nil {
		return fmt.Errorf("nbd: [%d, +%d) on a %d-byte export: %w", off, n, cl.size, err)
	}
	return nil
}

// ReadAt reads len(p) bytes at off, split into requests of at most the
// server's maximum block size.
func (cl *Client) ReadAt(p []byte, off int64) (int, error) {
	if err := cl.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		k := min(len(p)-done, int(cl.maxBlock))
		if err := cl.do(cmdRead, 0, uint64(off)+uint64(done), uint32(k), p[done:done+k]); err != nil {
			return done, err
		}
		done += k
	}
	return done, nil
}

// WriteAt writes p at off.
func (cl *Client) WriteAt(p []byte, off int64) (int, error) {
	return cl.write(p, off, 0)
}

// WriteAtFUA writes p at off and makes it durable before returning.
func (cl *Client) WriteAtFUA(p []byte, off int64) (int, error) {
	return cl.write(p, off, cmdFlagFUA)
}

func (cl *Client) write(p []byte, off int64, flags uint16) (int, error) {
	if err := cl.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if cl.flags&FlagReadOnly != 0 {
		return 0, &Error{Op: "write", Errno: EPERM}
	}
	done := 0
	for done < len(p) {
		k := min(len(p)-done, int(cl.maxBlock))
		if err := cl.do(cmdWrite, flags, uint64(off)+uint64(done), uint32(k), p[done:done+k]); err != nil {
			return done, err
		}
		done += k
	}
	return done, nil
}

// Flush asks the server to make every completed write durable.
func (cl *Client) Flush() error {
	if cl.flags&FlagSendFlush == 0 {
		return nil // no volatile cache to flush
	}
	return cl.do(cmdFlush, 0, 0, 0, nil)
}

// maxRangeChunk bounds TRIM and WRITE_ZEROES requests (32-bit lengths),
// keeping them aligned to any block size up to 1 MiB.
const maxRangeChunk = 1<<32 - 1<<20

// Trim tells the server [off, off+n) is unused.
func (cl *Client) Trim(off, n int64) error {
	if cl.flags&FlagSendTrim == 0 {
		return &Error{Op: "trim", Errno: ENOTSUP}
	}
	return cl.rangeCmd(cmdTrim, 0, off, n)
}

// WriteZeroes makes [off, off+n) read as zeros; the server may punch a
// hole. Without NBD_CMD_WRITE_ZEROES it writes zeroes.
func (cl *Client) WriteZeroes(off, n int64) error { return cl.writeZeroes(off, n, 0) }

// WriteZeroesNoHole makes [off, off+n) read as zeros, the server keeping
// the range allocated (NBD_CMD_FLAG_NO_HOLE).
func (cl *Client) WriteZeroesNoHole(off, n int64) error {
	return cl.writeZeroes(off, n, cmdFlagNoHole)
}

func (cl *Client) writeZeroes(off, n int64, flags uint16) error {
	if cl.flags&FlagSendWriteZeroes == 0 {
		return cl.zeroByWriting(off, n)
	}
	return cl.rangeCmd(cmdWriteZeroes, flags, off, n)
}

func (cl *Client) zeroByWriting(off, n int64) error {
	if err := cl.checkRange(off, n); err != nil {
		return err
	}
	for n > 0 {
		k := min(n, int64(len(zeroes)), int64(cl.maxBlock))
		if _, err := cl.WriteAt(zeroes[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (cl *Client) rangeCmd(cmd, flags uint16, off, n int64) error {
	if err := cl.checkRange(off, n); err != nil {
		return err
	}
	if cl.flags&FlagReadOnly != 0 {
		return &Error{Op: cmdName(cmd), Errno: EPERM}
	}
	for n > 0 {
		k := min(n, maxRangeChunk)
		if err := cl.do(cmd, flags, uint64(off), uint32(k), nil); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// Close sends NBD_CMD_DISC and closes the connection. In-flight calls fail.
func (cl *Client) Close() error {
	cl.wmu.Lock()
	encodeRequest(&cl.hdr, request{cmd: cmdDisc})
	cl.bw.Write(cl.hdr[:])
	cl.bw.Flush()
	cl.wmu.Unlock()
	cl.fail(errors.New("closed by the client"))
	return nil
}
