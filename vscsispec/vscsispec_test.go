package vscsispec

import (
	"maps"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // the spec rendered (String), or the refusal's words
		kind PDevKind
	}{
		// Every kind of p-dev.
		{in: "/var/lib/xen/disk.img, 0:0:0:0", want: "/var/lib/xen/disk.img, 0:0:0:0", kind: PDevPath},
		{in: "/dev/vg/cluster,1:0:2:3", want: "/dev/vg/cluster, 1:0:2:3", kind: PDevPath},
		{in: "/dev/sg3, 0:0:1:0", want: "/dev/sg3, 0:0:1:0", kind: PDevSG},
		{in: "/dev/sgx, 0:0:1:0", want: "/dev/sgx, 0:0:1:0", kind: PDevPath},
		{in: "/dev/sg, 0:0:1:0", want: "/dev/sg, 0:0:1:0", kind: PDevPath},
		{in: "2:0:0:1, 0:0:0:0", want: "2:0:0:1, 0:0:0:0", kind: PDevHost},
		{in: "nbd://10.0.0.1:10809/disk, 0:0:0:0", want: "nbd://10.0.0.1:10809/disk, 0:0:0:0", kind: PDevNBD},
		{in: "nbd://storage/disk, 0:0:0:0", want: "nbd://storage/disk, 0:0:0:0", kind: PDevNBD},
		{in: "nbd+unix:///disk?socket=/run/nbd.sock, 0:0:0:0", want: "nbd+unix:///disk?socket=/run/nbd.sock, 0:0:0:0", kind: PDevNBD},
		// Options, spaces, leading zeros in v-dev (read as numbers).
		{in: "  /img , 00:0:007:0 ,feature-host", want: "/img, 0:0:7:0, feature-host", kind: PDevPath},
		{in: "/img, 0:0:0:0, shared=1, sector-size=4096", want: "/img, 0:0:0:0, sector-size=4096, shared=1", kind: PDevPath},
		{in: "/img, 0:0:0:0, rotation-rate=1, feature-host", want: "/img, 0:0:0:0, feature-host, rotation-rate=1", kind: PDevPath},
		{in: "/img, 0:0:0:0, scsi=passthrough, pr=passthrough", want: "/img, 0:0:0:0, scsi=passthrough, pr=passthrough", kind: PDevPath},

		// Refusals, each with its words.
		{in: "", want: `vscsi spec "": want "PDEV, VDEV[, OPTION...]"`},
		{in: "/img", want: `vscsi spec "/img": want "PDEV, VDEV[, OPTION...]"`},
		{in: "/img,", want: `vscsi spec "/img,": field 2 is empty`},
		{in: ",0:0:0:0", want: `vscsi spec ",0:0:0:0": field 1 is empty`},
		{in: "/img,0:0:0:0,,feature-host", want: `vscsi spec "/img,0:0:0:0,,feature-host": field 3 is empty`},
		{in: "disk.img, 0:0:0:0", want: `p-dev "disk.img": want an absolute path, an nbd:// URL, or a host SCSI device h:c:t:l or /dev/sgN`},
		{in: "sdb, 0:0:0:0", want: `p-dev "sdb": want an absolute path, an nbd:// URL, or a host SCSI device h:c:t:l or /dev/sgN`},
		{in: "/dev/../img, 0:0:0:0", want: `p-dev "/dev/../img": write the path clean, as /img`},
		{in: "/img/, 0:0:0:0", want: `p-dev "/img/": write the path clean, as /img`},
		{in: "naa.60014054ac780582:0, 0:0:0:0", want: `p-dev "naa.60014054ac780582:0": a WWN names a LIO target of Linux's scsiback; xenblk serves an image, a block device, an NBD export or a host SCSI device (h:c:t:l, /dev/sgN)`},
		{in: "0:0:0, 0:0:0:0", want: `p-dev "0:0:0": want host:channel:target:lun, four numbers`},
		{in: "0:0:x:0, 0:0:0:0", want: `p-dev "0:0:x:0": target "x" is not a decimal number`},
		{in: "0:70000:0:0, 0:0:0:0", want: `p-dev "0:70000:0:0": channel 70000 is over 16 bits`},
		{in: "nbd:///disk, 0:0:0:0", want: `p-dev "nbd:///disk": nbd:// wants a host: nbd://host[:port]/export`},
		{in: "nbd://host:port/x, 0:0:0:0", want: `p-dev "nbd://host:port/x": is not a URL`},
		{in: "nbd+unix:///disk, 0:0:0:0", want: `p-dev "nbd+unix:///disk": nbd+unix:// wants no host and ?socket=/absolute/path`},
		{in: "nbd+unix://h/disk?socket=/s, 0:0:0:0", want: `p-dev "nbd+unix://h/disk?socket=/s": nbd+unix:// wants no host and ?socket=/absolute/path`},
		{in: "nbd+unix:///disk?socket=s, 0:0:0:0", want: `p-dev "nbd+unix:///disk?socket=s": nbd+unix:// wants no host and ?socket=/absolute/path`},
		{in: "/img, 0:0:0", want: `v-dev "0:0:0": want host:channel:target:lun, four numbers`},
		{in: "/img, 0:0:0:-1", want: `v-dev "0:0:0:-1": lun "-1" is not a decimal number`},
		{in: "/img, 0:0:0:65536", want: `v-dev "0:0:0:65536": lun 65536 is over 16 bits`},
		{in: "/img, xvda", want: `v-dev "xvda": want host:channel:target:lun, four numbers`},
		{in: "/img, 0:0:0:0, ro", want: `option "ro": want feature-host or one of xenblk's keys scsi|scsi-policy|pr|sector-size|physical-sector-size|rotation-rate|direct|shared|initiator=VALUE`},
		{in: "/img, 0:0:0:0, grant-copy=1", want: `option grant-copy=1: a vscsi LUN's data always moves by grant copy; the key is for vbds`},
		{in: "/img, 0:0:0:0, access=rw", want: `option "access=rw": want feature-host or one of xenblk's keys scsi|scsi-policy|pr|sector-size|physical-sector-size|rotation-rate|direct|shared|initiator=VALUE`},
		{in: "/img, 0:0:0:0, feature-host, feature-host", want: `option feature-host given twice`},
		{in: "/img, 0:0:0:0, shared=1, shared=1", want: `option shared given twice`},
		{in: "/img, 0:0:0:0, scsi=off", want: `option scsi=off: a vscsi LUN is served SCSI; off is for vbds`},
		{in: "/img, 0:0:0:0, sector-size=1000", want: `sector-size=1000: want 512 or 4096`},
	} {
		spec, err := Parse(c.in)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = spec.String()
			if spec.PDev.Kind != c.kind {
				t.Errorf("%q: p-dev kind %v, want %v", c.in, spec.PDev.Kind, c.kind)
			}
		}
		if got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}

func TestParseFields(t *testing.T) {
	spec, err := Parse("2:0:0:1, 3:0:4:5, feature-host, shared=1")
	if err != nil {
		t.Fatal(err)
	}
	if spec.PDev.Host.Host != 2 || spec.PDev.Host.LUN != 1 {
		t.Errorf("host address %+v", spec.PDev.Host)
	}
	if v := spec.VDev; v.Host != 3 || v.Channel != 0 || v.Target != 4 || v.LUN != 5 {
		t.Errorf("v-dev %+v", v)
	}
	if !spec.FeatureHost || !spec.Options().Shared {
		t.Errorf("options: feature-host %v, %+v", spec.FeatureHost, spec.Options())
	}
}

// FuzzParse: whatever parses renders to a spec that parses to the same.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/img, 0:0:0:0", "/dev/sg1,1:2:3:4,feature-host", "2:0:0:1, 0:0:0:0, shared=1, sector-size=4096",
		"nbd://h:1/x, 0:0:0:0", "nbd+unix:///x?socket=/s, 0:0:0:0, scsi=passthrough",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(spec.String())
		if err != nil {
			t.Fatalf("%q renders %q, which does not parse: %v", s, spec.String(), err)
		}
		if again.PDev != spec.PDev || again.VDev != spec.VDev || again.FeatureHost != spec.FeatureHost || !maps.Equal(again.Extra, spec.Extra) {
			t.Fatalf("%q renders %q, which parses to %+v, not %+v", s, spec.String(), again, spec)
		}
	})
}
