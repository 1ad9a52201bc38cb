// Package nbd speaks the Network Block Device protocol (fixed newstyle
// handshake, simple and structured replies, block status): a server exporting storage.Device values and a
// pipelined client. The wire format follows NetworkBlockDevice/nbd
// doc/proto.md; every integer is big-endian.
package nbd

import (
	"encoding/binary"
	"errors"
)

// Handshake magics.
const (
	magicNBD       = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt       = 0x49484156454f5054 // "IHAVEOPT"
	magicOldstyle  = 0x00420281861253
	magicOptReply  = 0x3e889045565a9
	magicRequest   = 0x25609513
	magicReply     = 0x67446698
	magicStructRep = 0x668e33ef
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1
)

// Options.
const (
	optExportName       = 1
	optAbort            = 2
	optList             = 3
	optStartTLS         = 5
	optInfo             = 6
	optGo               = 7
	optStructuredReply  = 8
	optListMetaContext  = 9
	optSetMetaContext   = 10
	repAck              = 1
	repServer           = 2
	repInfo             = 3
	repMetaContext      = 4
	repErrBit           = 1 << 31
	repErrUnsup         = repErrBit | 1
	repErrPolicy        = repErrBit | 2
	repErrInvalid       = repErrBit | 3
	repErrTLSReqd       = repErrBit | 5
	repErrUnknown       = repErrBit | 6
	repErrTooBig        = repErrBit | 9
	infoExport          = 0
	infoName            = 1
	infoDescription     = 2
	infoBlockSize       = 3
	maxOptionLength     = 64 << 10 // far above any legitimate option (names are <= 4096 bytes)
	maxNameLength       = 4096
	exportNameZeroBytes = 124
)

// Transmission flags.
const (
	FlagHasFlags        = 1 << 0
	FlagReadOnly        = 1 << 1
	FlagSendFlush       = 1 << 2
	FlagSendFUA         = 1 << 3
	FlagRotational      = 1 << 4
	FlagSendTrim        = 1 << 5
	FlagSendWriteZeroes = 1 << 6
	FlagCanMultiConn    = 1 << 8
	FlagSendCache       = 1 << 10
	FlagSendFastZero    = 1 << 11
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagFUA      = 1 << 0
	cmdFlagNoHole   = 1 << 1
	cmdFlagDF       = 1 << 2 // a READ's data in one chunk: no holes
	cmdFlagReqOne   = 1 << 3
	cmdFlagFastZero = 1 << 4
)

// Structured reply chunks: types, the flag ending a reply, and the
// block status descriptor flags of base:allocation.
const (
	chunkFlagDone     = 1 << 0
	chunkNone         = 0
	chunkOffsetData   = 1
	chunkOffsetHole   = 2
	chunkBlockStatus  = 5
	chunkError        = 1<<15 | 1
	chunkErrorOffset  = 1<<15 | 2
	chunkHeaderSize   = 20
	stateHole         = 1 << 0
	stateZero         = 1 << 1
	contextAllocation = "base:allocation"
	// allocationID is the id our server gives base:allocation.
	allocationID = 1
)

// Errno values on the wire (Linux numbering, as the protocol mandates).
const (
	EPERM     = 1
	EIO       = 5
	ENOMEM    = 12
	EINVAL    = 22
	ENOSPC    = 28
	EOVERFLOW = 75
	ENOTSUP   = 95
	ESHUTDOWN = 108
)

// MaxPayload caps the data of one READ or WRITE request. The server refuses
// longer requests (a hostile length never becomes an allocation) and the
// client splits longer calls.
const MaxPayload = 32 << 20

const (
	requestSize = 28
	replySize   = 16
)

// request is a decoded transmission-phase request header.
type request struct {
	flags  uint16
	cmd    uint16
	handle uint64
	offset uint64
	length uint32
}

var errBadMagic = errors.New("nbd: bad magic")

// decodeRequest decodes a request header; it fails only on a bad magic.
func decodeRequest(b *[requestSize]byte) (request, error) {
	if binary.BigEndian.Uint32(b[0:]) != magicRequest {
		return request{}, errBadMagic
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		cmd:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

func encodeRequest(b *[requestSize]byte, r request) {
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], r.flags)
	binary.BigEndian.PutUint16(b[6:], r.cmd)
	binary.BigEndian.PutUint64(b[8:], r.handle)
	binary.BigEndian.PutUint64(b[16:], r.offset)
	binary.BigEndian.PutUint32(b[24:], r.length)
}

func encodeReply(b *[replySize]byte, errno uint32, handle uint64) {
	binary.BigEndian.PutUint32(b[0:], magicReply)
	binary.BigEndian.PutUint32(b[4:], errno)
	binary.BigEndian.PutUint64(b[8:], handle)
}

var errStructuredReply = errors.New("nbd: structured reply received but never negotiated")

// decodeReply decodes a simple reply header.
func decodeReply(b *[replySize]byte) (errno uint32, handle uint64, err error) {
	switch binary.BigEndian.Uint32(b[0:]) {
	case magicReply:
	case magicStructRep:
		return 0, 0, errStructuredReply
	default:
		return 0, 0, errBadMagic
	}
	return binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint64(b[8:]), nil
}

// chunkHeader is a decoded structured reply chunk header.
type chunkHeader struct {
	flags  uint16
	typ    uint16
	handle uint64
	length uint32
}

func encodeChunkHeader(b *[chunkHeaderSize]byte, h chunkHeader) {
	binary.BigEndian.PutUint32(b[0:], magicStructRep)
	binary.BigEndian.PutUint16(b[4:], h.flags)
	binary.BigEndian.PutUint16(b[6:], h.typ)
	binary.BigEndian.PutUint64(b[8:], h.handle)
	binary.BigEndian.PutUint32(b[16:], h.length)
}

// decodeChunkHeader decodes a structured reply chunk header; it fails only
// on a bad magic.
func decodeChunkHeader(b *[chunkHeaderSize]byte) (chunkHeader, error) {
	if binary.BigEndian.Uint32(b[0:]) != magicStructRep {
		return chunkHeader{}, errBadMagic
	}
	return chunkHeader{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		handle: binary.BigEndian.Uint64(b[8:]),
		length: binary.BigEndian.Uint32(b[16:]),
	}, nil
}

// metaRequest is the decoded data of NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT.
type metaRequest struct {
	name    string
	queries []string
}

// maxMetaQueries bounds the queries of one option; each names a context
// of at most maxNameLength bytes, and the whole option is bounded anyway.
const maxMetaQueries = 1024

// decodeMetaRequest decodes meta context option data: a 32-bit export name
// length and the name, a 32-bit query count and that many queries, each a
// 32-bit length and the string. The lengths must account for every byte.
func decodeMetaRequest(data []byte) (metaRequest, error) {
	str := func() (string, bool) {
		if len(data) < 4 {
			return "", false
		}
		n := binary.BigEndian.Uint32(data)
		if n > maxNameLength || uint64(n) > uint64(len(data)-4) {
			return "", false
		}
		s := string(data[4 : 4+n])
		data = data[4+n:]
		return s, true
	}
	var r metaRequest
	var ok bool
	if r.name, ok = str(); !ok || len(data) < 4 {
		return metaRequest{}, errBadOption
	}
	count := binary.BigEndian.Uint32(data)
	data = data[4:]
	// Each query takes at least 4 bytes, so a count the data cannot hold
	// is refused before anything is allocated.
	if count > maxMetaQueries || uint64(count)*4 > uint64(len(data)) {
		return metaRequest{}, errBadOption
	}
	r.queries = make([]string, count)
	for i := range r.queries {
		if r.queries[i], ok = str(); !ok {
			return metaRequest{}, errBadOption
		}
	}
	if len(data) != 0 {
		return metaRequest{}, errBadOption
	}
	return r, nil
}

func encodeMetaRequest(r metaRequest) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(r.name)))
	b = append(b, r.name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.queries)))
	for _, q := range r.queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// infoRequest is the decoded data of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

var errBadOption = errors.New("nbd: malformed option data")

// decodeInfoRequest decodes OPT_INFO/OPT_GO data: a 32-bit name length, the
// name, a 16-bit count and that many 16-bit information types. The lengths
// must account for every byte.
func decodeInfoRequest(data []byte) (infoRequest, error) {
	if len(data) < 6 {
		return infoRequest{}, errBadOption
	}
	n := binary.BigEndian.Uint32(data)
	if n > maxNameLength || uint64(n) > uint64(len(data)-6) {
		return infoRequest{}, errBadOption
	}
	rest := data[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+2*count {
		return infoRequest{}, errBadOption
	}
	r := infoRequest{name: string(data[4 : 4+n]), infos: make([]uint16, count)}
	for i := range r.infos {
		r.infos[i] = binary.BigEndian.Uint16(rest[2+2*i:])
	}
	return r, nil
}
