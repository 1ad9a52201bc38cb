package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// Flag types that check their value when the flag is parsed, so that a bad
// value is a usage mistake (exit 2, through the flag error function) before
// the command opens, creates or listens on anything. Each keeps the plain
// string the command reads, so commands use the value as before.

// tcpAddrValue is a TCP address to listen on: host:port, port 0..65535,
// host empty (every interface), an IP address or a host name.
type tcpAddrValue struct{ p *string }

func tcpAddrVar(f *pflag.FlagSet, p *string, name, def, usage string) {
	*p = def
	f.Var(tcpAddrValue{p}, name, usage)
}

func (v tcpAddrValue) String() string { return derefString(v.p) }
func (v tcpAddrValue) Type() string   { return "host:port" }
func (v tcpAddrValue) Set(s string) error {
	if err := checkTCPAddr(s); err != nil {
		return err
	}
	*v.p = s
	return nil
}

func checkTCPAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. 127.0.0.1:10809")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostName(host) {
		return fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return nil
}

// validHostName checks RFC 1123's syntax: dot-separated labels of letters,
// digits and inner hyphens, 63 bytes at most each.
func validHostName(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// listenAddrValue is a TCP host:port or unix:PATH.
type listenAddrValue struct{ p *string }

func listenAddrVar(f *pflag.FlagSet, p *string, name, def, usage string) {
	*p = def
	f.Var(listenAddrValue{p}, name, usage)
}

func (v listenAddrValue) String() string { return derefString(v.p) }
func (v listenAddrValue) Type() string   { return "host:port|unix:path" }
func (v listenAddrValue) Set(s string) error {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if err := checkSocketPath(path); err != nil {
			return err
		}
	} else if err := checkTCPAddr(s); err != nil {
		return fmt.Errorf("%v, or unix:PATH", err)
	}
	*v.p = s
	return nil
}

// listenNetwork splits a listenAddrVar value into net.Listen's
// arguments: unix:PATH is a unix socket, anything else TCP.
func listenNetwork(addr string) (network, address string) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", p
	}
	return "tcp", addr
}

// socketPathValue is the path of a unix socket; empty means the command's
// default.
type socketPathValue struct{ p *string }

func socketPathVar(f *pflag.FlagSet, p *string, name, def, usage string) {
	*p = def
	f.Var(socketPathValue{p}, name, usage)
}

func (v socketPathValue) String() string { return derefString(v.p) }
func (v socketPathValue) Type() string   { return "path" }
func (v socketPathValue) Set(s string) error {
	if s != "" {
		if err := checkSocketPath(s); err != nil {
			return err
		}
	}
	*v.p = s
	return nil
}

// maxSocketPath is the longest path a unix socket address holds: Linux's
// sun_path is 108 bytes, the last one the terminating NUL.
const maxSocketPath = 107

func checkSocketPath(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("want the path of a unix socket")
	case len(s) > maxSocketPath:
		return fmt.Errorf("%d bytes: a unix socket path holds at most %d (choose a shorter directory)", len(s), maxSocketPath)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("a path cannot contain a NUL byte")
	}
	return nil
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// pageCodeValue is an optional one-byte code (a VPD page): decimal, or
// hex with 0x; the string stays empty when the flag is not given.
type pageCodeValue struct{ p *string }

func pageCodeVar(f *pflag.FlagSet, p *string, name, usage string) {
	f.Var(pageCodeValue{p}, name, usage)
}

func (v pageCodeValue) String() string { return derefString(v.p) }
func (v pageCodeValue) Type() string   { return "page" }
func (v pageCodeValue) Set(s string) error {
	if _, ok := parsePageCode(s); !ok {
		return fmt.Errorf("want a page code from 0 to 255, decimal or hex (0x00 to 0xff)")
	}
	*v.p = s
	return nil
}

func parsePageCode(s string) (byte, bool) {
	n, err := strconv.ParseUint(s, 0, 8)
	return byte(n), err == nil
}
