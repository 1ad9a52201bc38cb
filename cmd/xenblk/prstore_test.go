package main

import (
	"bufio"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/internal/etcdtest"
	"github.com/xenblk/xenblk/internal/testpki"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr/storetest"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
)

// TestPRStoreEtcdTLSAndMetrics: serve's --pr-store flags open a TLS etcd
// store, and the metrics serve exports count a unit's PR commands and the
// store's compare-and-swaps.
func TestPRStoreEtcdTLSAndMetrics(t *testing.T) {
	pki := testpki.New(t)
	c := etcdtest.StartTLS(t, 1, &transport.TLSInfo{
		CertFile: pki.Path("server-cert.pem"), KeyFile: pki.Path("server-key.pem"),
		TrustedCAFile: pki.Path("ca-cert.pem"), ClientCertAuth: true,
	})
	o := prStoreOptions{store: c.URL() + "/metrics-test", cert: pki.Path("client-cert.pem"), key: pki.Path("client-key.pem"),
		ca: pki.Path("ca-cert.pem"), timeout: 10 * time.Second}
	log := slog.New(slog.DiscardHandler)
	store, etcd, err := o.open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	engines := scsiengine.New(scsiengine.Config{Reservations: store, Log: log})
	if _, _, err := engines.Open(scsiengine.Unit{Name: "vbd", ID: "/images/shared.img", Options: diskspec.Options{SCSI: diskspec.SCSIEmulate}}, storage.NewMemory(1<<20)); err != nil {
		t.Fatal(err)
	}
	u := engines.Units()["/images/shared.img"]
	if st := storetest.Register(u, scsi.Nexus{Dom: 1, Device: "xvda"}, 7); st != scsi.StatusGood {
		t.Fatalf("REGISTER: status %#x", st)
	}
	var sb strings.Builder
	bw := bufio.NewWriter(&sb)
	writePRMetrics(bw, engines, etcd)
	bw.Flush()
	for _, want := range []string{
		`xenblk_pr_out_commands_total{lu="/images/shared.img"} 1`,
		`xenblk_pr_fail_closed{lu="/images/shared.img"} 0`,
		`xenblk_pr_etcd_cas_total{result="stored"} 1`,
		`xenblk_pr_etcd_cas_total{result="conflict"} 0`,
	} {
		if !strings.Contains(sb.String(), want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, sb.String())
		}
	}
}
