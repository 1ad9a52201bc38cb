package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAttachVscsi runs the PVSCSI forms of attach and detach against a
// simulated host: every bad spec or flag is refused before anything is
// written (exit 2 for what the command line says, 1 for what the host
// lacks), then LUNs are attached (grouped into vhosts by the v-dev's
// host number), a LUN detached, a vhost's last LUN detached with its
// vhost, and a vhost detached whole.
func TestAttachVscsi(t *testing.T) {
	bin := buildXenblk(t)
	h, g, xs := simGuest(t)
	st := h.Store()
	dir := t.TempDir()
	img, img2 := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	for _, p := range []string{img, img2} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	domain := fmt.Sprint(g.ID())
	run := func(args ...string) (string, string, int) {
		return runXenblkCode(t, bin, append([]string{"--xenstore", xs, "--domain", domain}, args...)...)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"attach", "--vscsi", img}, 2, `--vscsi: vscsi spec "` + img + `": want "PDEV, VDEV[, OPTION...]"`},
		{[]string{"attach", "--vscsi", "a.img, 0:0:0:0"}, 2, `--vscsi: p-dev "a.img": want an absolute path`},
		{[]string{"attach", "--vscsi", img + ", 0:0:0"}, 2, `--vscsi: v-dev "0:0:0": want host:channel:target:lun, four numbers`},
		{[]string{"attach", "--vscsi", img + ", 0:0:0:0, sector-size=1000"}, 2, "--vscsi: sector-size=1000: want 512 or 4096"},
		{[]string{"attach", "--vscsi", img + ", 0:0:0:0, feature-host"}, 2, "--vscsi: feature-host asks for a whole host adapter passed through, which xenblk serve refuses"},
		{[]string{"attach", "--vscsi", "nbd+unix:///x?socket=/s%zz, 0:0:0:0"}, 2, "--vscsi: p-dev"},
		{[]string{"attach", "--vscsi", img + ", 0:0:0:0", "vdev=xvda, target=" + img}, 2, "--vscsi names the device; give no argument beside it (a DISKSPEC is for vbds)"},
		{[]string{"attach", "--vscsi", img + ", 0:0:0:0", "--backend-type", "vbd"}, 2, "--backend-type is for vbds"},
		{[]string{"attach"}, 2, "attach needs a DISKSPEC (a vbd) or --vscsi 'PDEV, VDEV' (a PVSCSI LUN)"},
		{[]string{"attach", "--vscsi", filepath.Join(dir, "none.img") + ", 0:0:0:0"}, 1, "does not exist"},
		{[]string{"attach", "--vscsi", "/dev/sg999999, 0:0:0:0"}, 1, "p-dev: stat /dev/sg999999"},
		{[]string{"attach", "--vscsi", "999:0:0:0, 0:0:0:0"}, 1, "p-dev 999:0:0:0: this host has no such SCSI device"},
		{[]string{"attach", "--vscsi", img + ", 0:0:0:0", "--backend-domain", "42"}, 1, "--backend-domain 42: no such domain"},
		{[]string{"detach", "--vscsi", "xvda"}, 2, `--vscsi: v-dev "xvda": want host:channel:target:lun, four numbers`},
		{[]string{"detach", "--vscsi", "0:0:0:0", "--vhost", "0"}, 2, "give --vscsi VDEV (a LUN) or --vhost N (a whole vhost), not both"},
		{[]string{"detach", "--vhost", "-2"}, 2, "--vhost -2: a vhost's device id is 0 or more"},
		{[]string{"detach", "--vhost", "4294967296"}, 2, "--vhost 4294967296: a vhost's device id is at most 4294967295"},
		{[]string{"detach", "--vhost", "0", "xvda"}, 2, "--vhost names the device; give no argument beside it (a VDEV is for vbds)"},
		{[]string{"detach"}, 2, "detach needs a VDEV (a vbd), --vscsi VDEV (a PVSCSI LUN) or --vhost N (a vhost)"},
		{[]string{"detach", "--vscsi", "0:0:0:0"}, 1, "has no LUN at v-dev 0:0:0:0 served from domain 0"},
		{[]string{"detach", "--vhost", "3"}, 1, "no device /local/domain/0/backend/vscsi/" + domain + "/3"},
	} {
		before := storeDump(t, st, "/")
		out, errs, code := run(c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d saying %q", c.args, code, errs, c.code, c.want)
		}
		if out != "" {
			t.Errorf("%q printed %q", c.args, out)
		}
		if after := storeDump(t, st, "/"); after != before {
			t.Errorf("%q changed xenstore:\nbefore:\n%s\nafter:\n%s", c.args, before, after)
		}
	}

	be := "/local/domain/0/backend/vscsi/" + domain
	for _, c := range []struct{ spec, want string }{
		{img + ", 0:0:0:0, shared=1", "dev-0 of a new vhost 0, " + be + "/0"},
		{img2 + ", 0:0:1:0", "dev-1 of vhost 0, " + be + "/0"},
		{"nbd://storage/x, 2:0:0:0", "dev-0 of a new vhost 1, " + be + "/1"},
	} {
		out, errs, code := run("attach", "--vscsi", c.spec)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("attach --vscsi %q: exit %d, %q %q; want %q", c.spec, code, out, errs, c.want)
		}
	}
	for path, want := range map[string]string{
		be + "/0/vscsi-devs/dev-0/p-dev":  img,
		be + "/0/vscsi-devs/dev-0/shared": "1",
		be + "/0/vscsi-devs/dev-1/v-dev":  "0:0:1:0",
		be + "/1/libxl_ctrl_index":        "2",
		be + "/1/vscsi-devs/dev-0/p-dev":  "nbd://storage/x",
	} {
		if got, err := st.Read(path); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, errs, code := run("attach", "--vscsi", img2+", 0:0:1:0"); code != 1 || !strings.Contains(errs, "vhost 0 already has a LUN at 0:0:1:0") {
		t.Errorf("a second LUN at 0:0:1:0: exit %d, %q", code, errs)
	}

	// No backend serves these vhosts (state 1): the LUN and the vhost go
	// at once.
	for _, c := range []struct {
		args []string
		want string
		gone string
	}{
		{[]string{"detach", "--vscsi", "0:0:1:0"}, "detached 0:0:1:0 (dev-1 of vhost 0) from domain " + domain + "\n", be + "/0/vscsi-devs/dev-1"},
		{[]string{"detach", "--vscsi", "0:0:0:0"}, "detached 0:0:0:0 (dev-0 of vhost 0) from domain " + domain + ", its last LUN: the vhost is removed\n", be + "/0"},
		{[]string{"detach", "--vhost", "1"}, "detached vhost 1 from domain " + domain + "\n", be + "/1"},
	} {
		out, errs, code := run(c.args...)
		if code != 0 || out != c.want {
			t.Errorf("%q: exit %d, %q %q; want %q", c.args, code, out, errs, c.want)
		}
		if _, err := st.Read(c.gone); err == nil {
			t.Errorf("%q left %s", c.args, c.gone)
		}
	}
	if _, err := st.Read("/local/domain/" + domain + "/device/vscsi/0"); err == nil {
		t.Error("vhost 0's frontend directory left")
	}
}
