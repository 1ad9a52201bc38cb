// Package wire is the codec of Xen's xenstore protocol (xen/io/xs_wire.h):
// the 16-byte little-endian header, the message types, the payload
// helpers and Xen's error names. The client (package xenstore) and the
// simulated host's server (xen/sim) both speak through it.
package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/xenblk/xenblk/xen"
)

// Type is enum xsd_sockmsg_type.
type Type uint32

// Message types, numbered as in xs_wire.h.
const (
	Control            Type = 0
	Directory          Type = 1
	Read               Type = 2
	GetPerms           Type = 3
	Watch              Type = 4
	Unwatch            Type = 5
	TransactionStart   Type = 6
	TransactionEnd     Type = 7
	Introduce          Type = 8
	Release            Type = 9
	GetDomainPath      Type = 10
	Write              Type = 11
	Mkdir              Type = 12
	Rm                 Type = 13
	SetPerms           Type = 14
	WatchEvent         Type = 15
	Error              Type = 16
	IsDomainIntroduced Type = 17
	Resume             Type = 18
	SetTarget          Type = 19
	ResetWatches       Type = 21
	DirectoryPart      Type = 22
	typeCount               = 23
)

var typeNames = [...]string{
	"CONTROL", "DIRECTORY", "READ", "GET_PERMS", "WATCH", "UNWATCH",
	"TRANSACTION_START", "TRANSACTION_END", "INTRODUCE", "RELEASE",
	"GET_DOMAIN_PATH", "WRITE", "MKDIR", "RM", "SET_PERMS", "WATCH_EVENT",
	"ERROR", "IS_DOMAIN_INTRODUCED", "RESUME", "SET_TARGET", "", "RESET_WATCHES",
	"DIRECTORY_PART",
}

func (t Type) String() string {
	if t < typeCount && typeNames[t] != "" {
		return typeNames[t]
	}
	return "XS_" + strconv.FormatUint(uint64(t), 10)
}

// Sizes fixed by the protocol.
const (
	HeaderSize = 16   // sizeof(struct xsd_sockmsg)
	PayloadMax = 4096 // XENSTORE_PAYLOAD_MAX: violating it drops the connection
	AbsPathMax = 3072 // XENSTORE_ABS_PATH_MAX
	RelPathMax = 2048 // XENSTORE_REL_PATH_MAX
)

// Header is struct xsd_sockmsg.
type Header struct {
	Type  Type
	ReqID uint32
	TxID  uint32
	Len   uint32
}

// ErrBadHeader: the header cannot be honoured (short, or a payload larger
// than PayloadMax). The peer is broken or hostile; hang up.
var ErrBadHeader = errors.New("xenstore wire: bad header")

// ParseHeader decodes a header from the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes", ErrBadHeader, len(b))
	}
	h := Header{
		Type:  Type(binary.LittleEndian.Uint32(b[0:])),
		ReqID: binary.LittleEndian.Uint32(b[4:]),
		TxID:  binary.LittleEndian.Uint32(b[8:]),
		Len:   binary.LittleEndian.Uint32(b[12:]),
	}
	if h.Len > PayloadMax {
		return Header{}, fmt.Errorf("%w: payload of %d bytes", ErrBadHeader, h.Len)
	}
	return h, nil
}

// AppendMessage appends the header h (with Len set from payload) and the
// payload to dst.
func AppendMessage(dst []byte, h Header, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.Type))
	dst = binary.LittleEndian.AppendUint32(dst, h.ReqID)
	dst = binary.LittleEndian.AppendUint32(dst, h.TxID)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// Strings builds a payload of nul-terminated strings.
func Strings(s ...string) []byte {
	n := 0
	for _, x := range s {
		n += len(x) + 1
	}
	b := make([]byte, 0, n)
	for _, x := range s {
		b = append(append(b, x...), 0)
	}
	return b
}

// SplitStrings splits a payload of nul-terminated strings; a last string
// without its terminator still counts.
func SplitStrings(p []byte) []string {
	if len(p) == 0 {
		return nil
	}
	p = bytes.TrimSuffix(p, []byte{0})
	var out []string
	for {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			return append(out, string(p))
		}
		out = append(out, string(p[:i]))
		p = p[i+1:]
	}
}

// The error names of xsd_errors that callers test for.
const (
	EINVAL    = "EINVAL"
	EACCES    = "EACCES"
	EEXIST    = "EEXIST"
	EISDIR    = "EISDIR"
	ENOENT    = "ENOENT"
	ENOMEM    = "ENOMEM"
	ENOSPC    = "ENOSPC"
	EIO       = "EIO"
	ENOTEMPTY = "ENOTEMPTY"
	ENOSYS    = "ENOSYS"
	EROFS     = "EROFS"
	EBUSY     = "EBUSY"
	EAGAIN    = "EAGAIN"
	EISCONN   = "EISCONN"
	E2BIG     = "E2BIG"
	EPERM     = "EPERM"
	// EQUOTA is what xenstored answers when a domain's quota is exhausted.
	EQUOTA = "EQUOTA"
)

// Err is an error carrying one of Xen's error names. It unwraps to the
// xen sentinel of that name (ENOENT: xen.ErrNotFound, EACCES and EPERM:
// xen.ErrPermission, EAGAIN: xen.ErrAgain) so callers use errors.Is.
type Err struct {
	Name string // "ENOENT", ...
	Op   string // what was asked, e.g. "read /local/domain/1/name"
}

func (e *Err) Error() string {
	if e.Op == "" {
		return "xenstore: " + e.Name
	}
	return "xenstore: " + e.Op + ": " + e.Name
}

func (e *Err) Unwrap() error { return Sentinel(e.Name) }

// Sentinel maps an error name to the xen error it means, or nil.
func Sentinel(name string) error {
	switch name {
	case ENOENT:
		return xen.ErrNotFound
	case EACCES, EPERM:
		return xen.ErrPermission
	case EAGAIN:
		return xen.ErrAgain
	}
	return nil
}

// Name gives the error name to answer for err: the Name of an *Err in its
// chain, else the name of the xen sentinel it wraps, else EINVAL.
func Name(err error) string {
	var e *Err
	switch {
	case errors.As(err, &e):
		return e.Name
	case errors.Is(err, xen.ErrNotFound):
		return ENOENT
	case errors.Is(err, xen.ErrPermission):
		return EACCES
	case errors.Is(err, xen.ErrAgain):
		return EAGAIN
	}
	return EINVAL
}

// PermString renders a permission entry as on the wire: n|r|w|b and the
// domain id.
func PermString(p xen.Perm) string {
	c := byte('n')
	switch {
	case p.Read && p.Write:
		c = 'b'
	case p.Read:
		c = 'r'
	case p.Write:
		c = 'w'
	}
	return string(c) + strconv.Itoa(int(p.Dom))
}

// ParsePerm parses a wire permission entry.
func ParsePerm(s string) (xen.Perm, bool) {
	if len(s) < 2 || s[1] == '+' || s[1] == '-' {
		return xen.Perm{}, false
	}
	id, err := strconv.ParseUint(s[1:], 10, 16)
	if err != nil {
		return xen.Perm{}, false
	}
	p := xen.Perm{Dom: xen.DomID(id)}
	switch s[0] {
	case 'n':
	case 'r':
		p.Read = true
	case 'w':
		p.Write = true
	case 'b':
		p.Read, p.Write = true, true
	default:
		return xen.Perm{}, false
	}
	return p, true
}
