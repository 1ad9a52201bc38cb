package nbd

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Target is where an export lives: a network and address for net.Dial and
// the export's name.
type Target struct {
	Network string // "tcp" or "unix"
	Address string
	Export  string
}

// DefaultPort is NBD's IANA port.
const DefaultPort = "10809"

// ParseTarget accepts the NBD URI forms nbd://host[:port]/name and
// nbd+unix:///name?socket=PATH, and the bare forms unix:PATH, an absolute
// socket path, and host:port.
func ParseTarget(s string) (Target, error) {
	switch {
	case strings.HasPrefix(s, "nbd://"), strings.HasPrefix(s, "nbd+unix://"):
		u, err := url.Parse(s)
		if err != nil {
			return Target{}, err
		}
		name := strings.TrimPrefix(u.Path, "/")
		if u.Scheme == "nbd+unix" {
			sock := u.Query().Get("socket")
			if sock == "" || u.Host != "" {
				return Target{}, fmt.Errorf("nbd: %q: nbd+unix needs an empty host and ?socket=PATH", s)
			}
			return Target{Network: "unix", Address: sock, Export: name}, nil
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return Target{}, fmt.Errorf("nbd: %q has no host", s)
		}
		if port == "" {
			port = DefaultPort
		}
		return Target{Network: "tcp", Address: net.JoinHostPort(host, port), Export: name}, nil
	case strings.HasPrefix(s, "unix:"):
		return Target{Network: "unix", Address: strings.TrimPrefix(s, "unix:")}, nil
	case strings.HasPrefix(s, "/"):
		return Target{Network: "unix", Address: s}, nil
	case strings.Contains(s, ":"):
		return Target{Network: "tcp", Address: s}, nil
	}
	return Target{}, fmt.Errorf("nbd: cannot parse target %q", s)
}

// URL renders t as an NBD URI that qemu, nbdinfo and nbdcopy accept.
func (t Target) URL() string {
	name := (&url.URL{Path: t.Export}).EscapedPath()
	if t.Network == "unix" {
		return "nbd+unix:///" + name + "?socket=" + url.QueryEscape(t.Address)
	}
	return "nbd://" + t.Address + "/" + name
}

// ListenerURL is the URI a client uses to reach export name on l.
func ListenerURL(l net.Listener, name string) string {
	a := l.Addr()
	return Target{Network: a.Network(), Address: a.String(), Export: name}.URL()
}
