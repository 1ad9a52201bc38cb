// Package nbd speaks the Network Block Device protocol (fixed newstyle
// handshake, simple replies): a server exporting storage.Device values and a
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
	repAck              = 1
	repServer           = 2
	repInfo             = 3
	repErrBit           = 1 << 31
	repErrUnsup         = repErrBit | 1
	repErrPolicy        = repErrBit | 2
	repErrInvalid       = repErrBit | 3
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
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6

	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
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
