package vscsibus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/vscsiif"
	"github.com/xenblk/xenblk/xenbus"
)

// VDev is a LUN's address as the guest sees it, v-dev "h:c:t:l". Requests
// name a LUN by channel, id (target) and lun, each 16 bits on the ring;
// the host number is the toolstack's and neither end routes on it
// (Linux's scsiback and scsifront both ignore it).
type VDev struct {
	Host                 uint32
	Channel, Target, LUN uint16
}

func (v VDev) String() string {
	return fmt.Sprintf("%d:%d:%d:%d", v.Host, v.Channel, v.Target, v.LUN)
}

// sameAddr reports whether two LUNs share the address a request
// carries: two LUNs of one vhost may not.
func (v VDev) sameAddr(o VDev) bool {
	return v.Channel == o.Channel && v.Target == o.Target && v.LUN == o.LUN
}

// ParseVDev reads a v-dev node: four unsigned decimal numbers separated
// by colons, the host at most 32 bits and the others 16 (what a request
// can address). Everything else is refused with the reason: Linux's
// sscanf("%u:%u:%u:%u") accepts a prefix ("0:0") and leaves the rest of
// its tuple unset, and wraps "-1".
func ParseVDev(s string) (VDev, error) { return parseHCTL(vscsiif.KeyVDev, s) }

// ParseHostAddr reads a host SCSI device's address "h:c:t:l" given as a
// p-dev, by ParseVDev's rules and with its words, naming p-dev.
func ParseHostAddr(s string) (VDev, error) { return parseHCTL(vscsiif.KeyPDev, s) }

// parseHCTL reads "h:c:t:l" from the node named node.
func parseHCTL(node, s string) (VDev, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return VDev{}, fmt.Errorf("%s %q: want host:channel:target:lun, four numbers", node, clip(s))
	}
	var n [4]uint64
	for i, part := range f {
		bits := 16
		if i == 0 {
			bits = 32
		}
		v, err := parseDecimal(part, bits)
		if err != nil {
			return VDev{}, fmt.Errorf("%s %q: %s %w", node, clip(s), [4]string{"host", "channel", "target", "lun"}[i], err)
		}
		n[i] = v
	}
	return VDev{Host: uint32(n[0]), Channel: uint16(n[1]), Target: uint16(n[2]), LUN: uint16(n[3])}, nil
}

// parseDecimal reads digits only (no sign, no space), at most bits wide.
func parseDecimal(s string, bits int) (uint64, error) {
	if s == "" {
		return 0, errors.New("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", clip(s))
		}
	}
	v, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%s is over %d bits", clip(s), bits)
	}
	return v, nil
}

// MaxDevIndex is the largest N of a vscsi-devs/dev-N directory served.
// The toolstack numbers LUNs from 0; a larger index is refused so that a
// garbled name cannot stand for a LUN.
const MaxDevIndex = 65535

// MaxLUNs is the most LUN directories one vhost serves; directories past
// it (in index order) are refused, so a flood of them costs nothing.
const MaxLUNs = 1024

// ParseDevName reads a directory name under vscsi-devs: "dev-N", N in
// canonical decimal (no leading zero, so that two names cannot stand
// for one LUN), 0 <= N <= MaxDevIndex.
func ParseDevName(name string) (int, error) {
	digits, ok := strings.CutPrefix(name, "dev-")
	switch {
	case !ok:
		return 0, fmt.Errorf("%q is not dev-N", clip(name))
	case digits == "" || strings.Trim(digits, "0123456789") != "":
		return 0, fmt.Errorf("%q: N is not a decimal number", clip(name))
	case len(digits) > 1 && digits[0] == '0':
		return 0, fmt.Errorf("%q: N has a leading zero", clip(name))
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > MaxDevIndex {
		return 0, fmt.Errorf("%q: N must be 0..%d", clip(name), MaxDevIndex)
	}
	return n, nil
}

// devName is the directory of LUN n under vscsi-devs.
func devName(n int) string { return "dev-" + strconv.Itoa(n) }

// lunState reads a dev-N/state node. Only the values vscsiif.h gives a
// LUN mean anything; any other (absent, garbled, another XenbusState)
// is Unknown, which no rule acts on.
func lunState(v string) xenbus.State {
	switch s := xenbus.ParseState(strings.TrimSpace(v)); s {
	case vscsiif.LUNStateNew, vscsiif.LUNStateAttached, vscsiif.LUNStateConnected,
		vscsiif.LUNStateRemove, vscsiif.LUNStateRemoved:
		return s
	}
	return xenbus.Unknown
}

// SGLimit is the most data segments a frontend puts in one request,
// given the backend's feature-sg-grant node (raw) and the frontend's own
// most. Absent, garbled, 0 or below vscsiif.SGTableSize: no SG_GRANT,
// the request's own seg[] only (scsifront reads garbage as 0 and raises
// a small value to the table size, which is the same). Over
// vscsiif.MaxSGGrant is out of the header's range: read as its maximum.
func SGLimit(featureSGGrant string, own int) int {
	n, err := strconv.ParseUint(strings.TrimSpace(featureSGGrant), 10, 64)
	if err != nil || n < vscsiif.SGTableSize || own <= vscsiif.SGTableSize {
		return vscsiif.SGTableSize
	}
	return int(min(n, vscsiif.MaxSGGrant, uint64(own)))
}

// clip keeps a hostile value's echo in a reason short.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
