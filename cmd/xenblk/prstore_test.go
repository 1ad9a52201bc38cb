package main

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
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

// TestServeRefusesAnUnreachableEtcd: serve with an etcd nobody answers
// for fails at once (exit 1, within its timeout), saying which members it
// tried and naming the TLS flags, before it looks for a host.
func TestServeRefusesAnUnreachableEtcd(t *testing.T) {
	h := newCLIHarness(t)
	addr := etcdtest.UnusedAddr(t)
	start := time.Now()
	r := h.run("serve", "--pr-store", "etcd://"+addr, "--pr-store-timeout", "500ms")
	if r.code != exitFailure {
		t.Fatalf("exit %d, stderr %q; want %d", r.code, r.stderr, exitFailure)
	}
	for _, want := range []string{addr, "--pr-store-ca", "did not answer"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not say %q", r.stderr, want)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("serve took %v to give up with a 500ms timeout", d)
	}
}

// TestBenchRefusesAnUnreachableEtcd: bench --pr-stores with an etcd
// nobody answers for fails before it measures anything (exit 1), saying
// which members it tried and naming its flag and the TLS flags.
func TestBenchRefusesAnUnreachableEtcd(t *testing.T) {
	h := newCLIHarness(t)
	addr := etcdtest.UnusedAddr(t)
	r := h.run("bench", "--pr-stores", "etcd://"+addr, "--pr-store-timeout", "500ms", "--baselines=false", "--duration", "100ms",
		"--backend", "null", "--queues", "1", "--workload", "randread", "--qd", "1")
	if r.code != exitFailure {
		t.Fatalf("exit %d, stderr %q; want %d", r.code, r.stderr, exitFailure)
	}
	for _, want := range []string{"--pr-stores etcd://" + addr, "--pr-store-ca", "did not answer"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q does not say %q", r.stderr, want)
		}
	}
	if strings.Contains(r.stderr, "IOPS") || r.stdout != "" {
		t.Errorf("bench measured before it checked the cluster: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

// TestServeWithEtcdStore: serve started on an etcd cluster says where its
// reservations are shared and exports the etcd store's metrics.
func TestServeWithEtcdStore(t *testing.T) {
	c := etcdtest.Start(t, 3)
	bin := buildXenblk(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "host.sock")
	startProc(t, bin, "host", "--socket", sock, "--xenstored", filepath.Join(dir, "xenstored"))
	waitFile(t, sock)
	serve := startProc(t, bin, "serve", "--host", sock, "--pr-store", c.URL()+"/serve-test", "--journal-dir", filepath.Join(dir, "journal"),
		"--metrics", "127.0.0.1:0")
	serve.expect(t, "xenblk serve: reservations shared in "+c.URL()+"/serve-test")
	metricsURL := strings.TrimPrefix(serve.expect(t, "xenblk serve: metrics at "), "xenblk serve: metrics at ")
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"# TYPE xenblk_pr_etcd_cas_total counter", `xenblk_pr_etcd_cas_total{result="conflict"} 0`, "xenblk_pr_etcd_watch_lag_seconds "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
