// Package diskspec parses xl's disk-configuration syntax
// (xl-disk-configuration(5)) into a Spec, and turns a virtual device name
// (xvda, hdc, sdb3, d0p1) into the virtual-device number blkif.h's
// frontends publish.
//
// A DISKSPEC is a comma-separated list of key=value pairs, flags and
// positional parameters. Positional parameters fill, in order, target,
// format, vdev and access, skipping those already given by name; an empty
// positional leaves its default. Each parameter may be given once. A named
// `target=` swallows the rest of the string, commas included, so it must be
// last. The deprecated forms are accepted too: a `prefix:` on the target
// (phy:, file:, tap:aio:, raw:, qcow2:, ...) and a `:cdrom` suffix on the
// vdev.
package diskspec

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Format is the disk image format.
type Format string

// Formats xl knows. xenblk serves raw and qcow2; the others parse so that a
// spec written for xl gives a clear error instead of a syntax error.
const (
	FormatRaw   Format = "raw"
	FormatQcow  Format = "qcow"
	FormatQcow2 Format = "qcow2"
	FormatVHD   Format = "vhd"
	FormatQED   Format = "qed"
	FormatEmpty Format = "empty"
)

// Spec is one parsed DISKSPEC. Zero fields take xl's defaults, which Parse
// fills in.
type Spec struct {
	Target       string
	Format       Format
	Vdev         string
	ReadOnly     bool
	CDROM        bool   // devtype=cdrom
	BackendType  string // phy, qdisk, tap, standalone; "" when not given
	Backend      string // backend=<domain name or id>; "" means dom0
	Script       string
	DirectIOSafe bool
	// Discard is nil when neither discard nor no-discard was given.
	Discard *bool
	// Trusted is nil when neither trusted nor untrusted was given.
	Trusted *bool
	// Extra holds xenblk's own keys (OwnKeys: scsi-policy=...,
	// sector-size=4096, rotation-rate=1, ...), verbatim; Parse has checked
	// their values (ParseOptions).
	Extra map[string]string
}

// isOwnKey says whether key is one of xenblk's own keys (OwnKeys),
// accepted in a spec next to xl's.
func isOwnKey(key string) bool {
	for _, k := range OwnKeys {
		if k == key {
			return true
		}
	}
	return false
}

// positional order of xl-disk-configuration(5).
var positional = []string{"target", "format", "vdev", "access"}

// Parse parses one DISKSPEC.
func Parse(s string) (Spec, error) {
	var spec Spec
	seen := map[string]bool{}
	set := func(key, val string) error {
		if seen[key] {
			return fmt.Errorf("diskspec: %q given more than once in %q", key, s)
		}
		seen[key] = true
		return spec.assign(key, val)
	}

	rest := s
	for rest != "" {
		var item string
		// A named target swallows everything after it.
		trimmed := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(trimmed, "target=") {
			if err := set("target", trimmed[len("target="):]); err != nil {
				return Spec{}, err
			}
			rest = ""
			break
		}
		if i := strings.IndexByte(rest, ','); i >= 0 {
			item, rest = rest[:i], rest[i+1:]
		} else {
			item, rest = rest, ""
		}
		item = strings.TrimSpace(item)
		if key, val, ok := strings.Cut(item, "="); ok {
			key = strings.TrimSpace(key)
			if err := set(key, strings.TrimSpace(val)); err != nil {
				return Spec{}, err
			}
			continue
		}
		if isFlag(item) {
			if err := set(flagKey(item), item); err != nil {
				return Spec{}, err
			}
			continue
		}
		// A positional parameter: the next one not yet given. An empty
		// one still takes its place, leaving the default.
		placed := false
		for _, p := range positional {
			if !seen[p] {
				seen[p] = true
				placed = true
				if item != "" {
					if err := spec.assign(p, item); err != nil {
						return Spec{}, err
					}
				}
				// The deprecated "raw:/path,hda,w" form has no format
				// positional: the prefix gave it.
				if p == "target" && spec.Target != item {
					seen["format"] = true
				}
				break
			}
		}
		if !placed && item != "" {
			return Spec{}, fmt.Errorf("diskspec: unexpected positional parameter %q in %q (target, format, vdev and access are all given)", item, s)
		}
	}
	if spec.Vdev == "" {
		return Spec{}, fmt.Errorf("diskspec: no vdev in %q; give one, e.g. vdev=xvda", s)
	}
	if spec.Format == "" {
		spec.Format = FormatRaw
	}
	if spec.Target == "" && !spec.CDROM {
		return Spec{}, fmt.Errorf("diskspec: no target in %q; only an empty CD-ROM may omit it", s)
	}
	if spec.CDROM {
		spec.ReadOnly = true
	}
	if _, err := VirtualDevice(spec.Vdev); err != nil {
		return Spec{}, err
	}
	if _, err := ParseOptions(spec.Extra); err != nil {
		return Spec{}, fmt.Errorf("diskspec: %w", err)
	}
	return spec, nil
}

// flags are the bare keywords of xl-disk-configuration(5).
var flags = map[string]string{
	"cdrom":          "devtype",
	"direct-io-safe": "direct-io-safe",
	"discard":        "discard",
	"no-discard":     "discard",
	"trusted":        "trusted",
	"untrusted":      "trusted",
}

func isFlag(item string) bool    { _, ok := flags[item]; return ok }
func flagKey(item string) string { return flags[item] }

func (spec *Spec) assign(key, val string) error {
	switch key {
	case "target":
		spec.Target = stripLegacyPrefix(spec, val)
	case "format":
		switch Format(val) {
		case FormatRaw, FormatQcow, FormatQcow2, FormatVHD, FormatQED, FormatEmpty:
			spec.Format = Format(val)
		default:
			return fmt.Errorf("diskspec: unknown format %q (want raw, qcow, qcow2, vhd, qed or empty)", val)
		}
	case "vdev":
		if v, ok := strings.CutSuffix(val, ":cdrom"); ok {
			val = v
			spec.CDROM = true
		}
		spec.Vdev = val
	case "access":
		switch val {
		case "r", "ro":
			spec.ReadOnly = true
		case "w", "rw":
			spec.ReadOnly = false
		case "w!", "rw!":
			// xl's shared writable mode is xenblk's shared=1.
			spec.ReadOnly = false
			return spec.share(val, "1")
		default:
			return fmt.Errorf("diskspec: unknown access %q (want ro, r, rw, w, or w! for a disk shared writable)", val)
		}
	case "devtype":
		switch val {
		case "cdrom":
			spec.CDROM = true
		case "disk":
		default:
			return fmt.Errorf("diskspec: unknown devtype %q (want disk or cdrom)", val)
		}
	case "backendtype":
		switch val {
		case "phy", "qdisk", "tap", "standalone":
			spec.BackendType = val
		default:
			return fmt.Errorf("diskspec: unknown backendtype %q (want phy, qdisk, tap or standalone)", val)
		}
	case "backend":
		spec.Backend = val
	case "script":
		spec.Script = val
	case "direct-io-safe":
		spec.DirectIOSafe = true
	case "discard":
		on := val != "no-discard"
		spec.Discard = &on
	case "trusted":
		on := val != "untrusted"
		spec.Trusted = &on
	case "specification", "transport", "colo-host", "colo-port", "colo-export", "active-disk", "hidden-disk":
		// Recognised xl keys with no meaning for a blkif backend.
	default:
		if !isOwnKey(key) {
			return fmt.Errorf("diskspec: unknown key %q", key)
		}
		if key == KeyShared {
			return spec.share("", val)
		}
		if spec.Extra == nil {
			spec.Extra = map[string]string{}
		}
		spec.Extra[key] = val
	}
	return nil
}

// share records shared=val, from the key itself (access "") or from an
// access=w! (val "1"). Either may come first; they must agree.
func (spec *Spec) share(access, val string) error {
	if prev, ok := spec.Extra[KeyShared]; ok && !(isTrue(prev) && isTrue(val)) {
		shared := val
		if access != "" {
			shared = prev
		} else {
			access = "w!"
		}
		return fmt.Errorf("diskspec: access=%s shares the disk, but shared=%s says otherwise; give one of them", access, shared)
	}
	if spec.Extra == nil {
		spec.Extra = map[string]string{}
	}
	spec.Extra[KeyShared] = val
	return nil
}

// stripLegacyPrefix handles the deprecated "<prefix>:" target forms.
func stripLegacyPrefix(spec *Spec, target string) string {
	for {
		prefix, rest, ok := strings.Cut(target, ":")
		if !ok {
			return target
		}
		switch prefix {
		case "phy":
			spec.BackendType = "phy"
		case "file", "aio", "tapdisk", "ioemu":
		case "tap", "tap2":
			spec.BackendType = "tap"
		case "raw", "qcow", "qcow2", "vhd":
			spec.Format = Format(prefix)
		default:
			return target
		}
		target = rest
	}
}

// String renders the spec in xl's named form, target last.
func (spec Spec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "format=%s, vdev=%s, access=", spec.Format, spec.Vdev)
	if spec.ReadOnly {
		b.WriteString("ro")
	} else {
		b.WriteString("rw")
	}
	if spec.CDROM {
		b.WriteString(", devtype=cdrom")
	}
	if spec.BackendType != "" {
		fmt.Fprintf(&b, ", backendtype=%s", spec.BackendType)
	}
	if spec.Backend != "" {
		fmt.Fprintf(&b, ", backend=%s", spec.Backend)
	}
	if spec.Script != "" {
		fmt.Fprintf(&b, ", script=%s", spec.Script)
	}
	if spec.DirectIOSafe {
		b.WriteString(", direct-io-safe")
	}
	if spec.Discard != nil {
		if *spec.Discard {
			b.WriteString(", discard")
		} else {
			b.WriteString(", no-discard")
		}
	}
	if spec.Trusted != nil {
		if *spec.Trusted {
			b.WriteString(", trusted")
		} else {
			b.WriteString(", untrusted")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Extra)) {
		fmt.Fprintf(&b, ", %s=%s", k, spec.Extra[k])
	}
	if spec.Target != "" {
		fmt.Fprintf(&b, ", target=%s", spec.Target)
	}
	return b.String()
}

// Block major numbers Linux's blkfront and libxl use for vdev names.
const (
	majorXVD  = 202
	majorIDE0 = 3
	majorIDE1 = 22
	majorSCSI = 8
	// extendedFlag marks the extended numbering (1<<28 | disk<<8 | part),
	// used for xvd disks beyond the 16th or partitions beyond the 15th.
	extendedFlag = 1 << 28
)

// VirtualDevice returns the virtual-device number for a vdev name:
// xvdX[N] (major 202), hdX[N] (IDE majors 3 and 22), sdX[N] (major 8),
// dNpM (extended numbering), or a plain decimal number.
func VirtualDevice(vdev string) (uint32, error) {
	if n, err := strconv.ParseUint(vdev, 10, 32); err == nil {
		return uint32(n), nil
	}
	bad := func() (uint32, error) {
		return 0, fmt.Errorf("diskspec: cannot understand vdev %q (want xvda, hda, sda, d0p1 or a number)", vdev)
	}
	if rest, ok := strings.CutPrefix(vdev, "d"); ok && len(rest) > 0 && rest[0] >= '0' && rest[0] <= '9' {
		diskStr, partStr, hasPart := strings.Cut(rest, "p")
		disk, err := strconv.ParseUint(diskStr, 10, 32)
		if err != nil || disk >= 1<<20 {
			return bad()
		}
		part := uint64(0)
		if hasPart {
			if part, err = strconv.ParseUint(partStr, 10, 32); err != nil || part > 255 {
				return bad()
			}
		}
		if disk < 16 && part < 16 {
			return majorXVD<<8 | uint32(disk)<<4 | uint32(part), nil
		}
		return extendedFlag | uint32(disk)<<8 | uint32(part), nil
	}
	var prefix string
	for _, p := range []string{"xvd", "hd", "sd"} {
		if strings.HasPrefix(vdev, p) {
			prefix = p
			break
		}
	}
	if prefix == "" {
		return bad()
	}
	rest := vdev[len(prefix):]
	// Disk letters: a..z, aa..zz (bijective base 26), then a partition number.
	i := 0
	for i < len(rest) && rest[i] >= 'a' && rest[i] <= 'z' {
		i++
	}
	letters, partStr := rest[:i], rest[i:]
	if letters == "" || len(letters) > 2 {
		return bad()
	}
	disk := 0
	for _, c := range letters {
		disk = disk*26 + int(c-'a') + 1
	}
	disk--
	part := 0
	if partStr != "" {
		p, err := strconv.Atoi(partStr)
		if err != nil || p < 1 || p > 255 {
			return bad()
		}
		part = p
	}
	switch prefix {
	case "xvd":
		if disk < 16 && part < 16 {
			return majorXVD<<8 | uint32(disk)<<4 | uint32(part), nil
		}
		return extendedFlag | uint32(disk)<<8 | uint32(part), nil
	case "hd":
		if disk > 3 || part > 63 {
			return bad()
		}
		major := majorIDE0
		if disk >= 2 {
			major = majorIDE1
		}
		return uint32(major)<<8 | uint32(disk%2)<<6 | uint32(part), nil
	default: // sd
		if disk > 15 || part > 15 {
			return bad()
		}
		return majorSCSI<<8 | uint32(disk)<<4 | uint32(part), nil
	}
}
