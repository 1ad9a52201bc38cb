package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/xenblk/xenblk/xen"
)

// The host protocol: one SOCK_SEQPACKET unix connection per domain
// process. Every message is one JSON object in one packet; descriptors
// (memfds, eventfds, the store socket) ride along with SCM_RIGHTS. The
// domain sends a request and waits for its reply; the host never speaks
// unasked. The connection's life is the domain's: when it closes, for
// whatever reason (Close, crash, SIGKILL), the host releases the domain.

// Requests.
const (
	opHello  = "hello"  // Name, Dom0 -> Dom; fds: memory, grant table, event status[, store]
	opDomain = "domain" // Dom -> fds: that domain's memory, grant table
	opAlloc  = "alloc"  // Dom (remote) -> Port, Slot, Side; fds: own doorbell, peer doorbell
	opBind   = "bind"   // Dom (remote), Port (remote's) -> as opAlloc
	opClose  = "close"  // Port -> nothing
)

type request struct {
	Op   string    `json:"op"`
	Name string    `json:"name,omitempty"`
	Dom0 bool      `json:"dom0,omitempty"`
	Dom  xen.DomID `json:"dom,omitempty"`
	Port xen.Port  `json:"port,omitempty"`
}

type reply struct {
	Err  string    `json:"err,omitempty"`
	Kind string    `json:"kind,omitempty"` // which xen sentinel Err wraps
	Dom  xen.DomID `json:"dom,omitempty"`
	Port xen.Port  `json:"port,omitempty"`
	Slot uint32    `json:"slot,omitempty"`
	Side uint32    `json:"side,omitempty"`
}

var sentinels = map[string]error{
	"badgrant": xen.ErrBadGrant, "inuse": xen.ErrGrantInUse, "closed": xen.ErrClosed,
	"nodomain": xen.ErrNoDomain, "perm": xen.ErrPermission,
}

func errorReply(err error) reply {
	r := reply{Err: err.Error()}
	for k, s := range sentinels {
		if errors.Is(err, s) {
			r.Kind = k
		}
	}
	return r
}

func (r reply) err() error {
	if r.Err == "" {
		return nil
	}
	if s := sentinels[r.Kind]; s != nil {
		return fmt.Errorf("%w (host: %s)", s, r.Err)
	}
	return fmt.Errorf("sim host: %s", r.Err)
}

// maxPacket bounds a message; requests and replies are far smaller.
const maxPacket = 4096

// maxFDs bounds the descriptors one message may carry.
const maxFDs = 4

func send(c *net.UnixConn, v any, fds ...int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// recv reads one message into v and returns the descriptors it carried
// (close-on-exec; the caller owns them). A malformed message is an error,
// its descriptors closed.
func recv(c *net.UnixConn, v any) ([]int, error) {
	var buf [maxPacket]byte
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf[:], oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("sim: bad control message: %w", err)
		}
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	fail := func(err error) ([]int, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return fail(errors.New("sim: oversized message"))
	}
	if n == 0 {
		return fail(errors.New("sim: connection closed"))
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		return fail(fmt.Errorf("sim: bad message: %w", err))
	}
	return fds, nil
}
