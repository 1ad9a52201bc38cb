package diskspec

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/scsi"
)

// xenblk's own keys. xenblk attach writes them into a vbd's backend
// directory as nodes of the same names; xenblk serve reads them back. Both
// check them with ParseOptions, so a bad value gets the same words at
// attach (before anything is written) as in serve's log (when a node was
// written by hand).
const (
	KeySCSI               = "scsi"                 // emulate (default) | passthrough | off
	KeySCSIPolicy         = "scsi-policy"          // policy text over the engine's default, or @/absolute/file
	KeyPR                 = "pr"                   // emulate (default) | passthrough, with scsi=passthrough
	KeySectorSize         = "sector-size"          // 512 (default) | 4096: the logical block size
	KeyPhysicalSectorSize = "physical-sector-size" // power of two, sector-size..65536
	KeyRotationRate       = "rotation-rate"        // SBC's medium rotation rate: 0 not reported, 1 non-rotating, else rpm
	KeyDirect             = "direct"               // 1: the image is opened O_DIRECT
	KeyShared             = "shared"               // 1: several vbds may open the disk together (also xl's access=w!)
	KeyInitiator          = "initiator"            // the guest's name for reservations, the same on every host it runs on
	KeyGrantCopy          = "grant-copy"           // 1: the backend copies the guest's pages with grant copy, never maps them
)

// Values of the scsi and pr keys.
const (
	SCSIEmulate     = "emulate"
	SCSIPassthrough = "passthrough"
	SCSIOff         = "off"
)

// OwnKeys lists xenblk's own keys, in the order ParseOptions checks them.
var OwnKeys = []string{KeySCSI, KeySCSIPolicy, KeyPR, KeySectorSize, KeyPhysicalSectorSize, KeyRotationRate, KeyDirect, KeyShared, KeyInitiator, KeyGrantCopy}

// Options are xenblk's own keys, checked.
type Options struct {
	SCSI               string // "" (not given: emulate), SCSIEmulate, SCSIPassthrough or SCSIOff
	SCSIPolicy         string // "" (the engine's default), inline policy text, or @/absolute/path
	PR                 string // "" (not given: emulate), SCSIEmulate or SCSIPassthrough
	SectorSize         uint32 // 0: not given (512)
	PhysicalSectorSize uint32 // 0: not given (the filesystem's block size)
	RotationRate       int    // -1: not given (the backing device's)
	Direct             bool
	// Shared: the disk is shared on purpose (a cluster disk whose guests
	// fence each other with persistent reservations): vbds in one backend
	// process or several may open it together, read-write too. Without it
	// a read-write vbd is the disk's only user, a read-only one shares it
	// with readers only.
	Shared bool
	// Initiator names the guest as a reservation initiator instead of
	// its domain id, which another host gives another guest and a
	// migrated guest loses: a guest whose disks keep one initiator
	// (say, its VM UUID) keeps its registrations on whatever host it
	// runs ("" : the domain id and the vbd name it).
	Initiator string
	// GrantCopy: the backend moves data with grant copy (GNTTABOP_copy)
	// instead of mapping the guest's pages, as QEMU's qdisk does. It then
	// offers no feature-persistent: it keeps no guest page mapped, so the
	// bugs of mapping guest memory (XSA-229's class) cannot reach it.
	GrantCopy bool
}

// PolicyFile returns the path of a scsi-policy=@/path file, if that is the
// form given.
func (o Options) PolicyFile() (string, bool) { return strings.CutPrefix(o.SCSIPolicy, "@") }

// ValueError is one of xenblk's keys given a value it cannot take.
type ValueError struct {
	Key, Value string
	Want       string // what the key takes, or why this value cannot be
}

func (e *ValueError) Error() string { return fmt.Sprintf("%s=%s: %s", e.Key, e.Value, e.Want) }

// ParseOptions checks xenblk's own keys in kv (a Spec's Extra, or the nodes
// of a vbd's backend directory by name); other keys are not its business.
// The first bad value is the error, a *ValueError.
func ParseOptions(kv map[string]string) (Options, error) {
	o := Options{RotationRate: -1}
	bad := func(key, want string) error { return &ValueError{Key: key, Value: kv[key], Want: want} }
	number := func(key string, lo, hi int) (int, bool, error) {
		v, ok := kv[key]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, false, bad(key, fmt.Sprintf("want a number from %d to %d", lo, hi))
		}
		return n, true, nil
	}
	if v, ok := kv[KeySCSI]; ok {
		switch v {
		case SCSIEmulate, SCSIPassthrough, SCSIOff:
			o.SCSI = v
		default:
			return o, bad(KeySCSI, "want emulate, passthrough or off")
		}
	}
	if v, ok := kv[KeySCSIPolicy]; ok {
		if err := checkPolicy(v); err != nil {
			return o, bad(KeySCSIPolicy, err.Error())
		}
		o.SCSIPolicy = v
	}
	if v, ok := kv[KeyPR]; ok {
		switch v {
		case SCSIEmulate, SCSIPassthrough:
			o.PR = v
		default:
			return o, bad(KeyPR, "want emulate or passthrough")
		}
		// Under the emulation, reservations are always the backend's own:
		// pr=passthrough there would be silently ignored.
		if v == SCSIPassthrough && o.SCSI != SCSIPassthrough {
			return o, bad(KeyPR, "only with scsi=passthrough (an emulated unit answers reservations itself)")
		}
	}
	if n, ok, err := number(KeySectorSize, 512, 4096); err != nil {
		return o, err
	} else if ok {
		if n != 512 && n != 4096 {
			return o, bad(KeySectorSize, "want 512 or 4096")
		}
		o.SectorSize = uint32(n)
	}
	if n, ok, err := number(KeyPhysicalSectorSize, 512, 65536); err != nil {
		return o, err
	} else if ok {
		logical := max(o.SectorSize, 512)
		if n&(n-1) != 0 || uint32(n) < logical {
			return o, bad(KeyPhysicalSectorSize, fmt.Sprintf("want a power of two from sector-size (%d) to 65536", logical))
		}
		o.PhysicalSectorSize = uint32(n)
	}
	if n, ok, err := number(KeyRotationRate, 0, 0xfffe); err != nil {
		return o, err
	} else if ok {
		o.RotationRate = n
	}
	flag := func(key string, dst *bool, want string) error {
		v, ok := kv[key]
		switch {
		case !ok:
		case isTrue(v):
			*dst = true
		case v == "0" || v == "false":
		default:
			return bad(key, want)
		}
		return nil
	}
	if err := flag(KeyDirect, &o.Direct, "want 1 or 0"); err != nil {
		return o, err
	}
	if err := flag(KeyShared, &o.Shared, "want 1 (several vbds may open the disk together) or 0"); err != nil {
		return o, err
	}
	if err := flag(KeyGrantCopy, &o.GrantCopy, "want 1 (copy the guest's pages, never map them) or 0"); err != nil {
		return o, err
	}
	if v, ok := kv[KeyInitiator]; ok {
		if err := checkInitiator(v); err != nil {
			return o, bad(KeyInitiator, err.Error())
		}
		o.Initiator = v
	}
	return o, nil
}

// MaxInitiator bounds an initiator name so that a TransportID naming it
// with any virtual device stays within SPC-4's 223-byte iSCSI name.
const MaxInitiator = 160

// checkInitiator: printable ASCII without spaces or commas (a disk spec
// separates its items with them), at most MaxInitiator bytes.
func checkInitiator(v string) error {
	if v == "" || len(v) > MaxInitiator {
		return fmt.Errorf("want a name of 1 to %d characters, the same on every host (the guest's VM UUID, say)", MaxInitiator)
	}
	for _, c := range []byte(v) {
		if c <= ' ' || c > '~' || c == ',' {
			return fmt.Errorf("want printable ASCII without spaces or commas")
		}
	}
	return nil
}

func isTrue(v string) bool { return v == "1" || v == "true" }

// checkPolicy checks scsi-policy's value as far as it can without the
// backend's files: inline text parses, a policy file is named by an
// absolute path (it is read on the backend's host, whose working
// directory is not the toolstack's). Whether a policy is valid does not
// depend on the engine whose default "default" names.
func checkPolicy(v string) error {
	if path, ok := strings.CutPrefix(v, "@"); ok {
		if !filepath.IsAbs(path) {
			return fmt.Errorf("policy file %q: want an absolute path (the backend reads it on its own host)", path)
		}
		return nil
	}
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("empty; omit the key for the engine's default")
	}
	_, err := scsi.ParsePolicy(v, scsi.EmulatedPolicy())
	return err
}

// Options returns the spec's own keys, checked (Parse has checked them).
func (spec Spec) Options() (Options, error) { return ParseOptions(spec.Extra) }

// Servable says whether xenblk can serve what the spec describes: it
// serves raw and qcow2 images. The error says what the spec says, not
// what the file is (the file may be raw whatever the spec claims).
func (spec Spec) Servable() error {
	switch spec.Format {
	case FormatRaw, FormatQcow2, "":
		return nil
	case FormatEmpty:
		return fmt.Errorf("the spec says format=empty; xenblk serves raw and qcow2 images only (an empty CD-ROM drive is not served: give an image as the target)")
	default:
		return fmt.Errorf("the spec says format=%s; xenblk serves raw and qcow2 images only (for a raw file, say format=raw; for a %s image, convert it with qemu-img convert -O qcow2)", spec.Format, spec.Format)
	}
}
