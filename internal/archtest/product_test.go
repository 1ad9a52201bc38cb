package archtest

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// notInProduct are module paths the xenblk binary must not link: an etcd
// member is a database server, which the product only ever dials
// (go.etcd.io/etcd/client/v3). Tests and developer commands
// (cmd/xenblk-etcd) start members through internal/etcdtest.
var notInProduct = []string{"go.etcd.io/etcd/server/v3"}

// TestProductLinksNoEtcdServer: nothing cmd/xenblk depends on, however
// indirectly, is a package of notInProduct.
func TestProductLinksNoEtcdServer(t *testing.T) {
	cmd := exec.Command(goTool(), "list", "-deps", "./cmd/xenblk")
	cmd.Dir = filepath.Join("..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps named %d packages: not the binary's dependencies", len(deps))
	}
	for _, d := range deps {
		for _, bad := range notInProduct {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("cmd/xenblk depends on %s", d)
			}
		}
	}
}
