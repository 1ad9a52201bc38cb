package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xenblk/xenblk/storage"
)

// Export is one named device a Server offers.
type Export struct {
	Name        string
	Description string
	Device      storage.Device
	// ReadOnly exports a writable device read-only.
	ReadOnly bool
}

// Server serves exports over NBD's fixed newstyle handshake.
type Server struct {
	// Exports are looked up by name; the empty name selects the first
	// export unless one is named "". Set it before Serve; while serving,
	// change it only with AddExport and RemoveExport.
	Exports []Export
	// Workers bounds the requests served concurrently per connection
	// (default 16). The reader stops reading when all are busy.
	Workers int
	// HandshakeTimeout bounds the option haggling phase (default 30s).
	HandshakeTimeout time.Duration
	// Logf, when set, receives one line per failed connection.
	Logf func(format string, args ...any)
	// TLSConfig, when set, is offered with NBD_OPT_STARTTLS (it holds the
	// server's certificate, and client CAs when clients must present
	// one); with TLSRequired, a client that does not start TLS is told
	// NBD_REP_ERR_TLS_REQD for every option but STARTTLS and ABORT.
	TLSConfig   *tls.Config
	TLSRequired bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool // no new connection is served
	// draining: Shutdown began; a connection's deadline, once set by
	// Shutdown, must not be cleared (ServeConn checks under mu).
	draining bool
	wg       sync.WaitGroup // connection goroutines
}

// Serve serves exports on l until l fails or is closed.
func Serve(l net.Listener, exports ...Export) error {
	s := &Server{Exports: exports}
	return s.Serve(l)
}

// Serve accepts connections on l and serves each on its own goroutine. It
// returns when Accept fails (net.ErrClosed after l.Close or s.Close).
func (s *Server) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		if !s.track(c, true) {
			c.Close()
			return net.ErrClosed
		}
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			if err := s.ServeConn(c); err != nil && s.Logf != nil {
				s.Logf("nbd: %v: %v", c.RemoteAddr(), err)
			}
		}()
	}
}

func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	if add {
		if s.done {
			return false
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
	} else {
		delete(s.conns, c)
	}
	return true
}

// Close disconnects every connection Serve accepted and waits for their
// goroutines (in-flight device calls finish first). Close the listener too.
func (s *Server) Close() error {
	s.mu.Lock()
	s.done = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown stops the server gracefully: no new connection is served, each
// connection stops reading requests, the requests already read finish and
// are answered, and then its socket is closed, so that a client sees every
// answer it was owed followed by the end of the connection. A request whose
// bytes were arriving just then gets no answer (the client sees the
// connection end before it). When ctx ends first, the remaining
// connections are closed at once (as Close does) and ctx's error is
// returned. Close the listener too.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.done = true
	s.draining = true
	for c := range s.conns {
		// Wakes the reader, blocked between requests, with a timeout
		// that ServeConn takes for the end of the connection.
		c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		s.Close()
		<-finished
		return ctx.Err()
	}
}

// stopping reports whether Shutdown has begun; under s.mu.
func (s *Server) stopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// AddExport adds e, or replaces the export of its name, for the
// connections that come from now on.
func (s *Server) AddExport(e Export) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.Exports {
		if s.Exports[i].Name == e.Name {
			s.Exports[i] = e
			return
		}
	}
	s.Exports = append(s.Exports, e)
}

// RemoveExport removes the export named name, if there is one: no new
// connection opens it; those open on it go on with its device.
func (s *Server) RemoveExport(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.Exports {
		if s.Exports[i].Name == name {
			// A fresh slice: a snapshot taken earlier stays as it was.
			s.Exports = append(s.Exports[:i:i], s.Exports[i+1:]...)
			return true
		}
	}
	return false
}

// exports is the current export list; callers only read it (AddExport
// replaces in place, so it copies).
func (s *Server) exports() []Export {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Export(nil), s.Exports...)
}

func (s *Server) lookup(name string) (Export, bool) {
	exports := s.exports()
	for _, e := range exports {
		if e.Name == name {
			return e, true
		}
	}
	if name == "" && len(exports) > 0 {
		return exports[0], true
	}
	return Export{}, false
}

// transmissionFlags derives the flags advertised for e from its device.
func transmissionFlags(e Export) uint16 {
	info := e.Device.Info()
	f := uint16(FlagHasFlags | FlagSendWriteZeroes | FlagCanMultiConn | FlagSendCache)
	if e.ReadOnly || info.ReadOnly {
		f |= FlagReadOnly
	}
	if info.CanFlush {
		f |= FlagSendFlush | FlagSendFUA
	}
	if info.CanDiscard {
		f |= FlagSendTrim
	}
	if info.CanDiscard && info.DiscardZeroes {
		f |= FlagSendFastZero // a punched hole is the fast zero
	}
	if info.RotationRate > 1 {
		f |= FlagRotational
	}
	return f
}

var errAbort = errors.New("nbd: client aborted")

// ServeConn runs the handshake and then the transmission phase on c, and
// closes c. A nil error means the client disconnected cleanly.
func (s *Server) ServeConn(c net.Conn) (err error) {
	defer c.Close()
	defer func() {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && s.stopping() {
			err = nil // Shutdown's deadline: the end it asked for
		}
	}()
	timeout := s.HandshakeTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	// Deadlines change under s.mu, so that none undoes Shutdown's.
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil
	}
	c.SetDeadline(time.Now().Add(timeout))
	s.mu.Unlock()
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	exp, neg, err := s.handshake(c, br, bw)
	if err == errAbort {
		return nil
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return nil
	}
	c.SetDeadline(time.Time{})
	s.mu.Unlock()
	return s.transmit(neg.br, neg.bw, exp, neg)
}

// negotiated is what the option haggling settled besides the export.
type negotiated struct {
	structured bool // NBD_OPT_STRUCTURED_REPLY was acknowledged
	// allocation: base:allocation was selected for the export in use, so
	// NBD_CMD_BLOCK_STATUS is allowed.
	allocation bool
	// metaExport is the export name SET_META_CONTEXT selected contexts
	// for; metaSet whether any were selected.
	metaExport string
	metaSet    bool
	// tls: STARTTLS succeeded; br and bw are then over the TLS session.
	tls bool
	br  *bufio.Reader
	bw  *bufio.Writer
}

func (s *Server) handshake(c net.Conn, br *bufio.Reader, bw *bufio.Writer) (Export, negotiated, error) {
	neg := negotiated{br: br, bw: bw}
	exp, err := s.haggle(c, &neg)
	return exp, neg, err
}

func (s *Server) haggle(c net.Conn, neg *negotiated) (Export, error) {
	br, bw := neg.br, neg.bw
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], magicNBD)
	binary.BigEndian.PutUint64(hello[8:], magicOpt)
	binary.BigEndian.PutUint16(hello[16:], flagFixedNewstyle|flagNoZeroes)
	bw.Write(hello[:])
	if err := bw.Flush(); err != nil {
		return Export{}, err
	}
	var cf [4]byte
	if _, err := io.ReadFull(br, cf[:]); err != nil {
		return Export{}, err
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&flagFixedNewstyle == 0 {
		return Export{}, errors.New("nbd: client does not speak fixed newstyle")
	}
	if clientFlags&^uint32(flagFixedNewstyle|flagNoZeroes) != 0 {
		return Export{}, fmt.Errorf("nbd: unknown client flags %#x", clientFlags)
	}
	noZeroes := clientFlags&flagNoZeroes != 0
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return Export{}, err
		}
		if binary.BigEndian.Uint64(hdr[0:]) != magicOpt {
			return Export{}, errors.New("nbd: bad option magic")
		}
		opt := binary.BigEndian.Uint32(hdr[8:])
		length := binary.BigEndian.Uint32(hdr[12:])
		if length > maxOptionLength {
			if opt == optExportName {
				return Export{}, errors.New("nbd: export name too long")
			}
			if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
				return Export{}, err
			}
			if err := optReply(bw, opt, repErrTooBig, nil); err != nil {
				return Export{}, err
			}
			continue
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(br, data); err != nil {
			return Export{}, err
		}
		if s.TLSRequired && !neg.tls && opt != optStartTLS && opt != optAbort {
			if opt == optExportName { // no way to refuse it but hanging up
				return Export{}, errors.New("nbd: client chose an export without TLS, which is required")
			}
			if err := optReply(bw, opt, repErrTLSReqd, nil); err != nil {
				return Export{}, err
			}
			continue
		}
		switch opt {
		case optExportName:
			e, ok := s.lookup(string(data))
			if !ok {
				return Export{}, fmt.Errorf("nbd: unknown export %q", data)
			}
			var r [10 + exportNameZeroBytes]byte
			binary.BigEndian.PutUint64(r[0:], uint64(e.Device.Info().Size))
			binary.BigEndian.PutUint16(r[8:], transmissionFlags(e))
			n := len(r)
			if noZeroes {
				n = 10
			}
			bw.Write(r[:n])
			neg.allocation = neg.metaSet && neg.metaExport == string(data)
			return e, bw.Flush()
		case optAbort:
			optReply(bw, opt, repAck, nil)
			return Export{}, errAbort
		case optList:
			if length != 0 {
				if err := optReply(bw, opt, repErrInvalid, nil); err != nil {
					return Export{}, err
				}
				continue
			}
			for _, e := range s.exports() {
				d := binary.BigEndian.AppendUint32(nil, uint32(len(e.Name)))
				d = append(d, e.Name...)
				if err := optReply(bw, opt, repServer, d); err != nil {
					return Export{}, err
				}
			}
			if err := optReply(bw, opt, repAck, nil); err != nil {
				return Export{}, err
			}
		case optInfo, optGo:
			e, ok, err := s.info(bw, opt, data)
			if err != nil {
				return Export{}, err
			}
			if ok && opt == optGo {
				name, _ := decodeInfoRequest(data) // info decoded it already
				neg.allocation = neg.metaSet && neg.metaExport == name.name
				return e, nil
			}
		case optStructuredReply:
			typ := uint32(repAck)
			if length != 0 {
				typ = repErrInvalid
			} else {
				neg.structured = true
			}
			if err := optReply(bw, opt, typ, nil); err != nil {
				return Export{}, err
			}
		case optListMetaContext, optSetMetaContext:
			if err := s.metaContext(bw, opt, data, neg); err != nil {
				return Export{}, err
			}
		case optStartTLS:
			if err := s.startTLS(c, neg, length); err != nil {
				return Export{}, err
			}
			br, bw = neg.br, neg.bw
		default: // anything newer
			if err := optReply(bw, opt, repErrUnsup, nil); err != nil {
				return Export{}, err
			}
		}
	}
}

// info answers OPT_INFO or OPT_GO; ok reports that the export exists and the
// final ACK was sent.
func (s *Server) info(bw *bufio.Writer, opt uint32, data []byte) (Export, bool, error) {
	req, err := decodeInfoRequest(data)
	if err != nil {
		return Export{}, false, optReply(bw, opt, repErrInvalid, nil)
	}
	e, ok := s.lookup(req.name)
	if !ok {
		return Export{}, false, optReply(bw, opt, repErrUnknown, nil)
	}
	info := e.Device.Info()
	var d [18]byte
	binary.BigEndian.PutUint16(d[0:], infoExport)
	binary.BigEndian.PutUint64(d[2:], uint64(info.Size))
	binary.BigEndian.PutUint16(d[10:], transmissionFlags(e))
	if err := optReply(bw, opt, repInfo, d[:12]); err != nil {
		return Export{}, false, err
	}
	// Block sizes are always sent: devices accept any alignment, so the
	// minimum is 1; the preferred size avoids read-modify-write below.
	pref := info.PhysicalBlockSize
	if pref < 512 || pref > MaxPayload {
		pref = 4096
	}
	binary.BigEndian.PutUint16(d[0:], infoBlockSize)
	binary.BigEndian.PutUint32(d[2:], 1)
	binary.BigEndian.PutUint32(d[6:], pref)
	binary.BigEndian.PutUint32(d[10:], MaxPayload)
	if err := optReply(bw, opt, repInfo, d[:14]); err != nil {
		return Export{}, false, err
	}
	for _, t := range req.infos {
		var text string
		switch t {
		case infoName:
			text = e.Name
		case infoDescription:
			text = e.Description
		default:
			continue
		}
		p := binary.BigEndian.AppendUint16(nil, t)
		if err := optReply(bw, opt, repInfo, append(p, text...)); err != nil {
			return Export{}, false, err
		}
	}
	return e, true, optReply(bw, opt, repAck, nil)
}

// startTLS answers NBD_OPT_STARTTLS and, when it agrees, runs the TLS
// handshake on c and moves neg's reader and writer onto the session.
// Nothing negotiated before TLS survives it, as the protocol asks.
func (s *Server) startTLS(c net.Conn, neg *negotiated, length uint32) error {
	switch {
	case s.TLSConfig == nil:
		return optReply(neg.bw, optStartTLS, repErrUnsup, nil)
	case neg.tls || length != 0:
		return optReply(neg.bw, optStartTLS, repErrInvalid, nil)
	}
	if err := optReply(neg.bw, optStartTLS, repAck, nil); err != nil {
		return err
	}
	if neg.br.Buffered() != 0 {
		// Bytes sent after STARTTLS before the TLS session.
		return errors.New("nbd: client sent plaintext after STARTTLS")
	}
	tc := tls.Server(c, s.TLSConfig)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("nbd: TLS handshake: %w", err)
	}
	*neg = negotiated{tls: true, br: bufio.NewReaderSize(tc, 64<<10), bw: bufio.NewWriterSize(tc, 64<<10)}
	return nil
}

// metaContext answers LIST_META_CONTEXT and SET_META_CONTEXT. The only
// context served is base:allocation; queries for others are answered with
// nothing, as the protocol asks. A SET replaces what an earlier SET chose,
// even when it fails.
func (s *Server) metaContext(bw *bufio.Writer, opt uint32, data []byte, neg *negotiated) error {
	set := opt == optSetMetaContext
	if set {
		neg.metaSet, neg.metaExport = false, ""
	}
	if !neg.structured {
		return optReply(bw, opt, repErrInvalid, nil)
	}
	req, err := decodeMetaRequest(data)
	if err != nil {
		return optReply(bw, opt, repErrInvalid, nil)
	}
	if _, ok := s.lookup(req.name); !ok {
		return optReply(bw, opt, repErrUnknown, nil)
	}
	match := !set && len(req.queries) == 0 // an empty LIST lists all
	for _, q := range req.queries {
		if q == contextAllocation || (!set && q == "base:") {
			match = true
		}
	}
	if match {
		d := binary.BigEndian.AppendUint32(nil, allocationID)
		if err := optReply(bw, opt, repMetaContext, append(d, contextAllocation...)); err != nil {
			return err
		}
		if set {
			neg.metaSet, neg.metaExport = true, req.name
		}
	}
	return optReply(bw, opt, repAck, nil)
}

func optReply(bw *bufio.Writer, opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	bw.Write(h[:])
	bw.Write(data)
	return bw.Flush()
}

// job is one request handed from the connection's reader to a worker.
type job struct {
	req request
	buf *[]byte // pooled payload buffer for READ and WRITE
}

// conn is the transmission phase of one connection. Its workers take
// turns reading (leader/follower): the one holding rmu reads the next
// request, hands the turn on and serves what it read itself, so a request
// goes from the socket to the device without a hand-off between
// goroutines. Replies are written under wmu; a reply leaves the buffer
// for the socket when no other reply is waiting to be written (writers),
// so replies that finish together share one write.
type conn struct {
	exp      Export
	readOnly bool
	neg      negotiated

	rmu   sync.Mutex // the reading turn; guards br, rhdr, rdone, rerr
	br    *bufio.Reader
	rhdr  [requestSize]byte
	rdone bool  // DISC, end of stream or a protocol error: nobody reads on
	rerr  error // why reading ended (nil: a clean disconnect)

	writers atomic.Int32 // replies waiting for wmu or writing under it
	wmu     sync.Mutex   // serialises replies; guards bw, hdr, chunk, werr
	bw      *bufio.Writer
	hdr     [replySize]byte
	chunk   [chunkHeaderSize + 12]byte // a chunk header and its fixed fields
	werr    error                      // first reply write failure, under wmu
}

func (s *Server) transmit(br *bufio.Reader, bw *bufio.Writer, exp Export, neg negotiated) error {
	workers := s.Workers
	if workers <= 0 {
		workers = 16
	}
	cn := &conn{exp: exp, br: br, bw: bw, neg: neg, readOnly: transmissionFlags(exp)&FlagReadOnly != 0}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, ok := cn.next()
				if !ok {
					return
				}
				cn.serve(j)
			}
		}()
	}
	wg.Wait()
	return cn.rerr
}

// next takes the reading turn and reads the next request to serve. false:
// reading has ended (DISC, end of stream, a protocol error, Shutdown's
// deadline), for this worker and every other. Payload lengths are checked
// before anything is allocated.
func (cn *conn) next() (job, bool) {
	cn.rmu.Lock()
	defer cn.rmu.Unlock()
	for !cn.rdone {
		j, ok, err := cn.read()
		if err != nil || (!ok && j.req.cmd == cmdDisc) {
			cn.rdone, cn.rerr = true, err
			break
		}
		if ok {
			return j, true
		}
	}
	return job{}, false
}

// read decodes one request, under rmu. ok false with a nil error: DISC
// (j.req.cmd), or a request answered here (a READ too large to serve).
func (cn *conn) read() (j job, ok bool, err error) {
	br := cn.br
	if _, err := io.ReadFull(br, cn.rhdr[:]); err != nil {
		if err == io.EOF {
			return job{req: request{cmd: cmdDisc}}, false, nil
		}
		return job{}, false, err
	}
	req, err := decodeRequest(&cn.rhdr)
	if err != nil {
		return job{}, false, err
	}
	switch req.cmd {
	case cmdDisc:
		return job{req: req}, false, nil
	case cmdWrite:
		if req.length > MaxPayload {
			// The payload cannot be skipped safely; drop the client.
			return job{}, false, fmt.Errorf("nbd: write of %d bytes exceeds %d", req.length, MaxPayload)
		}
		buf := getBuf(int(req.length))
		if _, err := io.ReadFull(br, *buf); err != nil {
			putBuf(buf)
			return job{}, false, err
		}
		return job{req: req, buf: buf}, true, nil
	case cmdRead:
		if req.length > MaxPayload {
			cn.reply(req.handle, EOVERFLOW, nil)
			return job{req: req}, false, nil
		}
		return job{req: req, buf: getBuf(int(req.length))}, true, nil
	}
	return job{req: req}, true, nil
}

// lockReply takes wmu to write a reply, counted among the writers.
func (cn *conn) lockReply() {
	cn.writers.Add(1)
	cn.wmu.Lock()
}

// unlockReply sends what the buffer holds unless another reply is
// waiting to be written (it sends this one with its own), and releases
// wmu.
func (cn *conn) unlockReply() {
	if cn.writers.Add(-1) == 0 && cn.werr == nil {
		cn.werr = cn.bw.Flush()
	}
	cn.wmu.Unlock()
}

// reply answers a request. With structured replies, an error becomes an
// ERROR chunk, a READ's data one OFFSET_DATA chunk (offset is the
// request's), and other successes stay simple replies, which the protocol
// allows for every command but READ and BLOCK_STATUS.
func (cn *conn) reply(handle uint64, errno uint32, data []byte) {
	cn.replyAt(handle, 0, false, errno, data)
}

func (cn *conn) replyAt(handle, offset uint64, isRead bool, errno uint32, data []byte) {
	cn.lockReply()
	defer cn.unlockReply()
	if cn.werr != nil {
		return
	}
	if cn.neg.structured && (errno != 0 || isRead) {
		h := chunkHeader{flags: chunkFlagDone, handle: handle}
		var first []byte
		switch {
		case errno != 0:
			// errno and an empty message.
			h.typ, h.length = chunkError, 6
			binary.BigEndian.PutUint32(cn.chunk[chunkHeaderSize:], errno)
			binary.BigEndian.PutUint16(cn.chunk[chunkHeaderSize+4:], 0)
			first, data = cn.chunk[chunkHeaderSize:chunkHeaderSize+6], nil
		case len(data) == 0:
			h.typ = chunkNone
		default:
			h.typ, h.length = chunkOffsetData, uint32(8+len(data))
			binary.BigEndian.PutUint64(cn.chunk[chunkHeaderSize:], offset)
			first = cn.chunk[chunkHeaderSize : chunkHeaderSize+8]
		}
		encodeChunkHeader((*[chunkHeaderSize]byte)(cn.chunk[:chunkHeaderSize]), h)
		cn.bw.Write(cn.chunk[:chunkHeaderSize])
		cn.bw.Write(first)
		_, cn.werr = cn.bw.Write(data)
		return
	}
	encodeReply(&cn.hdr, errno, handle)
	_, cn.werr = cn.bw.Write(cn.hdr[:])
	if errno == 0 && cn.werr == nil {
		_, cn.werr = cn.bw.Write(data)
	}
}

// zeroes is written for WRITE_ZEROES with NO_HOLE; never modified.
var zeroes = make([]byte, 1<<20)

// replyStatus answers BLOCK_STATUS with one chunk of descriptors.
func (cn *conn) replyStatus(handle uint64, payload []byte) {
	cn.lockReply()
	defer cn.unlockReply()
	if cn.werr != nil {
		return
	}
	encodeChunkHeader((*[chunkHeaderSize]byte)(cn.chunk[:chunkHeaderSize]), chunkHeader{
		flags: chunkFlagDone, typ: chunkBlockStatus, handle: handle, length: uint32(len(payload))})
	cn.bw.Write(cn.chunk[:chunkHeaderSize])
	_, cn.werr = cn.bw.Write(payload)
}

// blockStatus describes [off, off+n) in base:allocation's terms: one Map
// answer, which may stop short of the range (the client asks again), and
// only its first extent with REQ_ONE.
func blockStatus(dev storage.Device, off, n int64, one bool) ([]byte, error) {
	es, err := storage.Map(dev, off, n)
	if err != nil {
		return nil, err
	}
	if one && len(es) > 1 {
		es = es[:1]
	}
	p := binary.BigEndian.AppendUint32(make([]byte, 0, 4+8*len(es)), allocationID)
	var covered int64
	for _, e := range es {
		// Clipped to the request: a device's answer must not make us
		// describe bytes nobody asked about or overflow a descriptor.
		k := min(e.Length, n-covered)
		if k <= 0 {
			break
		}
		var flags uint32
		if e.Hole {
			flags |= stateHole
		}
		if e.Zero {
			flags |= stateZero
		}
		p = binary.BigEndian.AppendUint32(p, uint32(k))
		p = binary.BigEndian.AppendUint32(p, flags)
		covered += k
	}
	if covered == 0 {
		return nil, fmt.Errorf("nbd: device mapped nothing at %d", off)
	}
	return p, nil
}

func (cn *conn) serve(j job) {
	r := j.req
	dev := cn.exp.Device
	size := dev.Info().Size
	var errno uint32
	var data []byte
	if r.offset > uint64(size) || uint64(r.length) > uint64(size)-r.offset {
		errno = EINVAL
	} else if r.cmd == cmdBlockStatus {
		if !cn.neg.allocation || r.length == 0 {
			cn.reply(r.handle, EINVAL, nil)
			return
		}
		p, err := blockStatus(dev, int64(r.offset), int64(r.length), r.flags&cmdFlagReqOne != 0)
		if err != nil {
			cn.reply(r.handle, errnoFor(err), nil)
			return
		}
		cn.replyStatus(r.handle, p)
		return
	} else {
		off, n := int64(r.offset), int64(r.length)
		var err error
		switch r.cmd {
		case cmdRead:
			data = *j.buf
			if cn.sparseRead(r) {
				if m, ok := dev.(storage.Mapper); ok {
					cn.serveSparseRead(m, r, data)
					putBuf(j.buf)
					return
				}
			}
			_, err = dev.ReadAt(data, off)
		case cmdWrite, cmdTrim, cmdWriteZeroes:
			if cn.readOnly {
				errno = EPERM
				break
			}
			switch r.cmd {
			case cmdWrite:
				_, err = dev.WriteAt(*j.buf, off)
			case cmdTrim:
				err = dev.Discard(off, n, false)
			case cmdWriteZeroes:
				err = writeZeroes(dev, off, n, r.flags)
			}
			if err == nil && r.flags&cmdFlagFUA != 0 {
				err = dev.Flush()
			}
		case cmdFlush:
			err = dev.Flush()
		case cmdCache:
			// Advisory: every device here reads as fast as it ever
			// will, so there is nothing to prefetch.
		default:
			errno = EINVAL
		}
		if err != nil {
			errno = errnoFor(err)
		}
	}
	cn.replyAt(r.handle, r.offset, r.cmd == cmdRead, errno, data)
	if j.buf != nil {
		putBuf(j.buf)
	}
}

// sparseReadMin is the shortest READ whose zeros are sent as hole
// chunks: below it, asking the device for its map costs more than the
// zeros it could save.
const sparseReadMin = 64 << 10

// sparseRead reports whether READ r may be answered in pieces, its
// zeros as hole chunks: the client agreed to structured replies and did
// not ask for the data in one chunk (DF).
func (cn *conn) sparseRead(r request) bool {
	return cn.neg.structured && r.flags&cmdFlagDF == 0 && r.length >= sparseReadMin
}

// serveSparseRead answers READ r from buf (its length): the runs the
// device's map says read as zeros are sent as hole chunks without reading
// them, the rest read and sent as data chunks. Every device read happens
// before the first chunk is sent, so that a failure is one error chunk.
// A write concurrent with the read may land between the map and the
// reads, as it may between the reads of any two runs: NBD orders nothing
// between requests in flight together; a write answered before the READ
// was sent is in the map.
func (cn *conn) serveSparseRead(m storage.Mapper, r request, buf []byte) {
	var pieces []readPiece
	if es, err := m.Map(int64(r.offset), int64(len(buf))); err == nil {
		pieces = sparsePieces(es, int64(len(buf)))
	}
	if len(pieces) == 0 { // no map: all of it is data
		pieces = []readPiece{{n: int64(len(buf))}}
	}
	for _, p := range pieces {
		if p.zero {
			continue
		}
		if _, err := cn.exp.Device.ReadAt(buf[p.off:p.off+p.n], int64(r.offset)+p.off); err != nil {
			cn.reply(r.handle, errnoFor(err), nil)
			return
		}
	}
	cn.replyPieces(r.handle, r.offset, buf, pieces)
}

// readPiece is a run of a READ's range, from off bytes into it: data, or
// zeros the client is sent as a hole chunk.
type readPiece struct {
	off, n int64
	zero   bool
}

// sparsePieces lays out a READ of n bytes from the device's map of it
// (es, from the read's first byte): runs that read as zeros become holes,
// everything else data, and so does whatever the map stops short of or
// describes beyond n. Neighbours of one kind merge, so pieces alternate.
func sparsePieces(es []storage.Extent, n int64) []readPiece {
	var pieces []readPiece
	add := func(k int64, zero bool) {
		if last := len(pieces) - 1; last >= 0 && pieces[last].zero == zero {
			pieces[last].n += k
			return
		}
		var off int64
		if last := len(pieces) - 1; last >= 0 {
			off = pieces[last].off + pieces[last].n
		}
		pieces = append(pieces, readPiece{off: off, n: k, zero: zero})
	}
	var covered int64
	for _, e := range es {
		k := min(e.Length, n-covered)
		if k <= 0 {
			break
		}
		add(k, e.Zero)
		covered += k
	}
	if covered < n {
		add(n-covered, false)
	}
	return pieces
}

// replyPieces answers a READ at offset with one chunk per piece of buf:
// OFFSET_HOLE for zeros, OFFSET_DATA for data; the last carries DONE.
func (cn *conn) replyPieces(handle, offset uint64, buf []byte, pieces []readPiece) {
	cn.lockReply()
	defer cn.unlockReply()
	if cn.werr != nil {
		return
	}
	for i, p := range pieces {
		h := chunkHeader{handle: handle}
		if i == len(pieces)-1 {
			h.flags = chunkFlagDone
		}
		fields := cn.chunk[chunkHeaderSize:]
		binary.BigEndian.PutUint64(fields, offset+uint64(p.off))
		var data []byte
		if p.zero {
			h.typ, h.length = chunkOffsetHole, 12
			binary.BigEndian.PutUint32(fields[8:], uint32(p.n))
			fields = fields[:12]
		} else {
			h.typ, h.length = chunkOffsetData, uint32(8+p.n)
			fields, data = fields[:8], buf[p.off:p.off+p.n]
		}
		encodeChunkHeader((*[chunkHeaderSize]byte)(cn.chunk[:chunkHeaderSize]), h)
		cn.bw.Write(cn.chunk[:chunkHeaderSize])
		cn.bw.Write(fields)
		if _, cn.werr = cn.bw.Write(data); cn.werr != nil {
			return
		}
	}
}

// errSlowZero refuses a FAST_ZERO request that only a slow zeroing could
// serve (ENOTSUP, as the protocol asks).
var errSlowZero = fmt.Errorf("nbd: no fast zero here: %w", storage.ErrNotSupported)

// writeZeroes serves WRITE_ZEROES. Without NO_HOLE the client allows
// the range to be deallocated: a device whose discard reads back as zeros
// punches a hole; others zero it as they can. With NO_HOLE, zeros are
// written, so the range stays allocated. With FAST_ZERO only the punched
// hole counts as fast: anything else fails at once, touching nothing.
func writeZeroes(dev storage.Device, off, n int64, flags uint16) error {
	fast := flags&cmdFlagFastZero != 0
	if flags&cmdFlagNoHole != 0 {
		if fast {
			return errSlowZero
		}
		return writeZeroesNoHole(dev, off, n)
	}
	if info := dev.Info(); info.CanDiscard && info.DiscardZeroes {
		err := dev.Discard(off, n, false)
		if err == nil || errors.Is(err, storage.ErrOutOfRange) {
			return err
		}
	}
	if fast {
		return errSlowZero
	}
	return dev.WriteZeroes(off, n)
}

func writeZeroesNoHole(dev storage.Device, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroes)))
		if _, err := dev.WriteAt(zeroes[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// errnoFor maps a device error to the protocol's errno.
func errnoFor(err error) uint32 {
	switch {
	case errors.Is(err, storage.ErrOutOfRange):
		return EINVAL
	case errors.Is(err, storage.ErrReadOnly), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EPERM):
		return EPERM
	case errors.Is(err, storage.ErrNotSupported), errors.Is(err, syscall.EOPNOTSUPP):
		return ENOTSUP
	case errors.Is(err, syscall.ENOSPC):
		return ENOSPC
	case errors.Is(err, syscall.EINVAL):
		return EINVAL
	case errors.Is(err, syscall.ENOMEM):
		return ENOMEM
	}
	return EIO
}

// Payload buffers come from power-of-two size classes so a steady stream of
// requests reuses them instead of allocating. Each class is a bounded free
// list (a buffered channel, unlike sync.Pool never emptied behind our back),
// holding at most about 64 MiB.
const (
	minBufShift   = 12
	maxBufShift   = 25 // 1<<maxBufShift == MaxPayload
	poolClassSize = 64 << 20
)

var bufPools = func() (p [maxBufShift - minBufShift + 1]chan *[]byte) {
	for c := range p {
		p[c] = make(chan *[]byte, min(64, max(2, poolClassSize>>(c+minBufShift))))
	}
	return p
}()

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

func getBuf(n int) *[]byte {
	c := bufClass(n)
	select {
	case p := <-bufPools[c]:
		*p = (*p)[:n]
		return p
	default:
	}
	b := make([]byte, n, 1<<(c+minBufShift))
	return &b
}

func putBuf(p *[]byte) {
	select {
	case bufPools[bufClass(cap(*p))] <- p:
	default: // the class is full; let the GC have it
	}
}
