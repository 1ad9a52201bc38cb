// Package vscsispec parses a PVSCSI LUN's spec in the syntax of xl's
// vscsi= and vscsi-attach (libxl's unmerged vscsi series):
// "PDEV, VDEV[, OPTION...]".
//
// PDEV is what serves the LUN, as the backend reads it from p-dev
// (docs/PROTOCOL.md, Part 4, "Creating a vhost"): an image file or a
// block device by absolute path, an NBD export by URL (xenblk's
// designation), or a whole host SCSI device for pass-through, by its
// address h:c:t:l or its SCSI generic node /dev/sgN. VDEV is the guest's
// address h:c:t:l (vscsibus.ParseVDev); its host number picks the vhost,
// as in xl. OPTION is xl's feature-host, or one of xenblk's own keys
// (diskspec.OwnKeys: shared=1, sector-size=4096, ...) written as nodes
// of the LUN's directory, as a vbd's are of its.
//
// Parse is stricter than xl's strtok: an empty field, a field past the
// options, an option given twice, a relative path and a path that is
// not clean are refused, each with its reason.
package vscsispec

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/vscsibus"
)

// OptFeatureHost is xl's one option: the whole host adapter passed
// through, SCSI emulation bypassed (the vhost's feature-host node).
const OptFeatureHost = "feature-host"

// PDevKind says what a p-dev names.
type PDevKind int

const (
	// PDevPath: an image file or a block device, by absolute path; the
	// LUN runs the SCSI engine's emulation over it (or pass-through to a
	// whole disk if its keys ask).
	PDevPath PDevKind = iota + 1
	// PDevSG: a host SCSI device by its SCSI generic node /dev/sgN,
	// passed through (whole disks only).
	PDevSG
	// PDevHost: a host SCSI device by address h:c:t:l, passed through.
	PDevHost
	// PDevNBD: an NBD export, nbd://host[:port]/name or
	// nbd+unix:///name?socket=/path.
	PDevNBD
)

func (k PDevKind) String() string {
	switch k {
	case PDevPath:
		return "path"
	case PDevSG:
		return "sg"
	case PDevHost:
		return "host"
	case PDevNBD:
		return "nbd"
	}
	return fmt.Sprintf("PDevKind(%d)", int(k))
}

// PDev is a parsed p-dev.
type PDev struct {
	Kind PDevKind
	// Name is the p-dev as written, and as the toolstack writes it.
	Name string
	// Host is the address of a PDevHost.
	Host vscsibus.VDev
}

// ParsePDev reads a p-dev (the toolstack's, or a node a backend reads
// back). Only the syntax is checked here: whether the path exists, the
// export answers or the device is a disk is the opener's business.
func ParsePDev(s string) (PDev, error) {
	bad := func(why string) (PDev, error) { return PDev{}, fmt.Errorf("p-dev %q: %s", clip(s), why) }
	switch {
	case s == "":
		return bad("is empty")
	case strings.TrimSpace(s) != s:
		return bad("has spaces around it")
	case strings.HasPrefix(s, "nbd://"), strings.HasPrefix(s, "nbd+unix://"):
		if err := checkNBD(s); err != nil {
			return bad(err.Error())
		}
		return PDev{Kind: PDevNBD, Name: s}, nil
	case strings.HasPrefix(s, "/"):
		if c := filepath.Clean(s); c != s {
			return bad(fmt.Sprintf("write the path clean, as %s", c))
		}
		if isSG(s) {
			return PDev{Kind: PDevSG, Name: s}, nil
		}
		return PDev{Kind: PDevPath, Name: s}, nil
	case strings.HasPrefix(s, "naa."):
		return bad("a WWN names a LIO target of Linux's scsiback; xenblk serves an image, a block device, an NBD export or a host SCSI device (h:c:t:l, /dev/sgN)")
	case strings.Contains(s, ":") && !strings.Contains(s, "/"):
		a, err := vscsibus.ParseHostAddr(s)
		if err != nil {
			return PDev{}, err
		}
		return PDev{Kind: PDevHost, Name: s, Host: a}, nil
	}
	return bad("want an absolute path, an nbd:// URL, or a host SCSI device h:c:t:l or /dev/sgN")
}

// isSG says whether path is a SCSI generic node, /dev/sgN.
func isSG(path string) bool {
	n, ok := strings.CutPrefix(path, "/dev/sg")
	return ok && n != "" && strings.Trim(n, "0123456789") == ""
}

// checkNBD checks an NBD URL's shape: a host for nbd://, an absolute
// socket path and no host for nbd+unix://. nbd.ParseTarget, which the
// opener dials with, accepts every URL that passes.
func checkNBD(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.Scheme == "nbd+unix" {
		if sock := u.Query().Get("socket"); u.Host != "" || !strings.HasPrefix(sock, "/") {
			return errors.New("nbd+unix:// wants no host and ?socket=/absolute/path")
		}
		return nil
	}
	if u.Hostname() == "" {
		return errors.New("nbd:// wants a host: nbd://host[:port]/export")
	}
	return nil
}

// Spec is one parsed LUN spec.
type Spec struct {
	PDev PDev
	VDev vscsibus.VDev
	// FeatureHost is xl's feature-host option, a property of the vhost.
	FeatureHost bool
	// Extra holds xenblk's own keys given as options, checked
	// (diskspec.ParseOptions); nil when none.
	Extra map[string]string
}

// Parse reads "PDEV, VDEV[, OPTION...]". Fields are separated by commas
// and may have spaces around them.
func Parse(s string) (Spec, error) {
	fields := strings.Split(s, ",")
	if len(fields) < 2 {
		return Spec{}, fmt.Errorf("vscsi spec %q: want \"PDEV, VDEV[, OPTION...]\"", clip(s))
	}
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
		if fields[i] == "" {
			return Spec{}, fmt.Errorf("vscsi spec %q: field %d is empty", clip(s), i+1)
		}
	}
	var spec Spec
	var err error
	if spec.PDev, err = ParsePDev(fields[0]); err != nil {
		return Spec{}, err
	}
	if spec.VDev, err = vscsibus.ParseVDev(fields[1]); err != nil {
		return Spec{}, err
	}
	for _, opt := range fields[2:] {
		if err := spec.option(opt); err != nil {
			return Spec{}, err
		}
	}
	if spec.Extra != nil {
		if _, err := diskspec.ParseOptions(spec.Extra); err != nil {
			return Spec{}, err
		}
	}
	return spec, nil
}

// lunKeys are xenblk's keys a LUN takes: all of diskspec.OwnKeys but
// grant-copy (vscsiback maps no data page whatever the spec says).
var lunKeys = slices.DeleteFunc(slices.Clone(diskspec.OwnKeys), func(k string) bool { return k == diskspec.KeyGrantCopy })

// option takes one OPTION field.
func (spec *Spec) option(opt string) error {
	if opt == OptFeatureHost {
		if spec.FeatureHost {
			return fmt.Errorf("option %s given twice", opt)
		}
		spec.FeatureHost = true
		return nil
	}
	key, val, ok := strings.Cut(opt, "=")
	if ok && key == diskspec.KeyGrantCopy {
		return fmt.Errorf("option %s: a vscsi LUN's data always moves by grant copy; the key is for vbds", clip(opt))
	}
	if !ok || !slices.Contains(lunKeys, key) {
		return fmt.Errorf("option %q: want %s or one of xenblk's keys %s=VALUE", clip(opt), OptFeatureHost, strings.Join(lunKeys, "|"))
	}
	if _, dup := spec.Extra[key]; dup {
		return fmt.Errorf("option %s given twice", key)
	}
	if key == diskspec.KeySCSI && val == diskspec.SCSIOff {
		return fmt.Errorf("option %s: a vscsi LUN is served SCSI; off is for vbds", opt)
	}
	if spec.Extra == nil {
		spec.Extra = map[string]string{}
	}
	spec.Extra[key] = val
	return nil
}

// Options are the spec's own keys, checked (Parse checked them).
func (spec Spec) Options() diskspec.Options {
	o, _ := diskspec.ParseOptions(spec.Extra)
	return o
}

// String renders the spec so that Parse reads it back the same: PDEV,
// VDEV, then feature-host, then xenblk's keys in diskspec.OwnKeys order.
func (spec Spec) String() string {
	var b strings.Builder
	b.WriteString(spec.PDev.Name)
	b.WriteString(", ")
	b.WriteString(spec.VDev.String())
	if spec.FeatureHost {
		b.WriteString(", " + OptFeatureHost)
	}
	for _, k := range diskspec.OwnKeys {
		if v, ok := spec.Extra[k]; ok {
			b.WriteString(", " + k + "=" + v)
		}
	}
	return b.String()
}

// clip keeps an echoed value short in a reason.
func clip(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
