package diskspec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Every value of xenblk's own keys that ParseOptions takes, and what it
// makes of it.
func TestParseOptionsGoodValues(t *testing.T) {
	unset := Options{RotationRate: -1}
	with := func(f func(*Options)) Options { o := unset; f(&o); return o }
	for _, c := range []struct {
		kv   map[string]string
		want Options
	}{
		{nil, unset},
		{map[string]string{"format": "qcow2", "vdev": "anything"}, unset}, // not its keys
		{map[string]string{"scsi": "emulate"}, with(func(o *Options) { o.SCSI = SCSIEmulate })},
		{map[string]string{"scsi": "passthrough"}, with(func(o *Options) { o.SCSI = SCSIPassthrough })},
		{map[string]string{"scsi": "off"}, with(func(o *Options) { o.SCSI = SCSIOff })},
		{map[string]string{"pr": "emulate"}, with(func(o *Options) { o.PR = SCSIEmulate })},
		{map[string]string{"scsi": "passthrough", "pr": "passthrough"}, with(func(o *Options) { o.SCSI, o.PR = SCSIPassthrough, SCSIPassthrough })},
		{map[string]string{"scsi-policy": "default +0x35 -0x12"}, with(func(o *Options) { o.SCSIPolicy = "default +0x35 -0x12" })},
		{map[string]string{"scsi-policy": "none,+0x9e/0x10"}, with(func(o *Options) { o.SCSIPolicy = "none,+0x9e/0x10" })},
		{map[string]string{"scsi-policy": "@/etc/xenblk/cluster.policy"}, with(func(o *Options) { o.SCSIPolicy = "@/etc/xenblk/cluster.policy" })},
		{map[string]string{"sector-size": "512"}, with(func(o *Options) { o.SectorSize = 512 })},
		{map[string]string{"sector-size": "4096"}, with(func(o *Options) { o.SectorSize = 4096 })},
		{map[string]string{"physical-sector-size": "512"}, with(func(o *Options) { o.PhysicalSectorSize = 512 })},
		{map[string]string{"physical-sector-size": "65536"}, with(func(o *Options) { o.PhysicalSectorSize = 65536 })},
		{map[string]string{"sector-size": "4096", "physical-sector-size": "4096"}, with(func(o *Options) { o.SectorSize, o.PhysicalSectorSize = 4096, 4096 })},
		{map[string]string{"rotation-rate": "0"}, with(func(o *Options) { o.RotationRate = 0 })},
		{map[string]string{"rotation-rate": "1"}, with(func(o *Options) { o.RotationRate = 1 })},
		{map[string]string{"rotation-rate": "7200"}, with(func(o *Options) { o.RotationRate = 7200 })},
		{map[string]string{"rotation-rate": "65534"}, with(func(o *Options) { o.RotationRate = 65534 })},
		{map[string]string{"direct": "1"}, with(func(o *Options) { o.Direct = true })},
		{map[string]string{"direct": "true"}, with(func(o *Options) { o.Direct = true })},
		{map[string]string{"direct": "0"}, unset},
		{map[string]string{"direct": "false"}, unset},
		{map[string]string{"grant-copy": "1"}, with(func(o *Options) { o.GrantCopy = true })},
		{map[string]string{"grant-copy": "0"}, unset},
	} {
		got, err := ParseOptions(c.kv)
		if err != nil {
			t.Errorf("%v: %v", c.kv, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: %+v, want %+v", c.kv, got, c.want)
		}
	}
}

// Every bad value is refused with a *ValueError naming the key, echoing
// the value, and saying what the key takes.
func TestParseOptionsBadValues(t *testing.T) {
	for _, c := range []struct {
		kv       map[string]string
		key, val string
		want     string
	}{
		{map[string]string{"scsi": "maybe"}, "scsi", "maybe", "want emulate, passthrough or off"},
		{map[string]string{"grant-copy": "yes"}, "grant-copy", "yes", "want 1 (copy the guest's pages, never map them) or 0"},
		{map[string]string{"scsi": ""}, "scsi", "", "want emulate, passthrough or off"},
		{map[string]string{"scsi": "Emulate"}, "scsi", "Emulate", "want emulate, passthrough or off"},
		{map[string]string{"pr": "yes"}, "pr", "yes", "want emulate or passthrough"},
		{map[string]string{"pr": "passthrough"}, "pr", "passthrough", "only with scsi=passthrough"},
		{map[string]string{"scsi": "emulate", "pr": "passthrough"}, "pr", "passthrough", "only with scsi=passthrough"},
		{map[string]string{"scsi-policy": "+0xZZ"}, "scsi-policy", "+0xZZ", `bad opcode in "+0xZZ"`},
		{map[string]string{"scsi-policy": "+0x100"}, "scsi-policy", "+0x100", "want 0x00..0xff"},
		{map[string]string{"scsi-policy": "bogus"}, "scsi-policy", "bogus", `bad item "bogus"`},
		{map[string]string{"scsi-policy": ""}, "scsi-policy", "", "omit the key"},
		{map[string]string{"scsi-policy": "@relative.txt"}, "scsi-policy", "@relative.txt", "want an absolute path"},
		{map[string]string{"scsi-policy": "@"}, "scsi-policy", "@", "want an absolute path"},
		{map[string]string{"sector-size": "1000"}, "sector-size", "1000", "want 512 or 4096"},
		{map[string]string{"sector-size": "1024"}, "sector-size", "1024", "want 512 or 4096"},
		{map[string]string{"sector-size": "8192"}, "sector-size", "8192", "want a number from 512 to 4096"},
		{map[string]string{"sector-size": "many"}, "sector-size", "many", "want a number"},
		{map[string]string{"physical-sector-size": "1000"}, "physical-sector-size", "1000", "power of two"},
		{map[string]string{"physical-sector-size": "256"}, "physical-sector-size", "256", "want a number from 512 to 65536"},
		{map[string]string{"physical-sector-size": "131072"}, "physical-sector-size", "131072", "want a number from 512 to 65536"},
		{map[string]string{"sector-size": "4096", "physical-sector-size": "2048"}, "physical-sector-size", "2048", "from sector-size (4096)"},
		{map[string]string{"rotation-rate": "-7"}, "rotation-rate", "-7", "want a number from 0 to 65534"},
		{map[string]string{"rotation-rate": "65535"}, "rotation-rate", "65535", "want a number from 0 to 65534"},
		{map[string]string{"rotation-rate": "fast"}, "rotation-rate", "fast", "want a number"},
		{map[string]string{"direct": "2"}, "direct", "2", "want 1 or 0"},
		{map[string]string{"direct": "yes"}, "direct", "yes", "want 1 or 0"},
	} {
		_, err := ParseOptions(c.kv)
		var ve *ValueError
		if !errors.As(err, &ve) {
			t.Errorf("%v: error %v, want a *ValueError", c.kv, err)
			continue
		}
		if ve.Key != c.key || ve.Value != c.val || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %q (key %q value %q), want key %q value %q saying %q", c.kv, err, ve.Key, ve.Value, c.key, c.val, c.want)
		}
		if !strings.HasPrefix(err.Error(), c.key+"="+c.val+": ") {
			t.Errorf("%v: %q does not begin with %s=%s", c.kv, err, c.key, c.val)
		}
	}
}

// Parse refuses a spec whose own keys are bad, with ParseOptions' words,
// so that attach exits before writing anything.
func TestParseChecksOwnKeys(t *testing.T) {
	for _, kv := range []string{"sector-size=1000", "scsi=maybe", "pr=yes", "direct=2", "rotation-rate=-7", "scsi-policy=+0xZZ", "scsi-policy=@relative.txt"} {
		_, err := Parse("vdev=xvda, " + kv + ", target=/d.img")
		var ve *ValueError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), kv+": ") {
			t.Errorf("%s: error %v, want a *ValueError echoing it", kv, err)
		}
	}
	if _, err := Parse("vdev=xvda, sector-size=4096, direct=1, scsi=passthrough, pr=passthrough, target=/d.img"); err != nil {
		t.Errorf("good keys refused: %v", err)
	}
}

// Servable says what the spec says: xenblk serves raw and qcow2 only,
// and the message cannot be read as a claim about the file.
func TestServable(t *testing.T) {
	for _, f := range []Format{FormatRaw, FormatQcow2, ""} {
		if err := (Spec{Format: f}).Servable(); err != nil {
			t.Errorf("format %q: %v", f, err)
		}
	}
	for _, f := range []Format{FormatQcow, FormatVHD, FormatQED, FormatEmpty} {
		err := (Spec{Format: f}).Servable()
		if err == nil || !strings.Contains(err.Error(), "the spec says format="+string(f)+";") || !strings.Contains(err.Error(), "raw and qcow2 images only") {
			t.Errorf("format %s: %v", f, err)
		}
		if f != FormatEmpty && !strings.Contains(err.Error(), "for a raw file, say format=raw") {
			t.Errorf("format %s: %v does not say what to do with a raw file", f, err)
		}
	}
}
