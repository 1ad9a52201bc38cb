package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xenblk/xenblk/xenstore"
)

// TestServeTakesVhosts: xenblk serve serves backend/vscsi beside its
// vbds. A vhost made by attach --vscsi is taken at once: its backend
// offers feature-sg-grant and InitWait, and waits there for a frontend.
func TestServeTakesVhosts(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	img, lun := filepath.Join(dir, "disk.img"), filepath.Join(dir, "lun.img")
	newImage(t, img, 16<<20)
	newImage(t, lun, 16<<20)
	sock, xs := crossProcHost(t, bin, dir)
	front, domid := startFront(t, bin, sock, xs, img, "guest")
	front.expect(t, "NBD ")
	if out, err := exec.Command(bin, "attach", "--xenstore", xs, "--domain", fmt.Sprint(domid),
		"--vscsi", lun+", 0:0:0:0").CombinedOutput(); err != nil {
		t.Fatalf("attach --vscsi: %v %s", err, out)
	}
	st, err := xenstore.Dial(xs)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	be := fmt.Sprintf("/local/domain/0/backend/vscsi/%d/0", domid)
	waitNode(t, st, be+"/state", "2")
	waitNode(t, st, be+"/feature-sg-grant", "1024")
}
