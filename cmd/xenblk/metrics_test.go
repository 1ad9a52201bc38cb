package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/internal/simstack"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsiengine"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsifront"
)

// TestMetricsShowVhosts: a disk served over blkif and over a vhost; after
// I/O through both, a scrape lists the vbd's counters and the vhost's
// beside them, the vhost's reads and writes and their bytes counted and
// nothing left in flight.
func TestMetricsShowVhosts(t *testing.T) {
	ctx := context.Background()
	s := simstack.ForTest(t, nil, simstack.Options{})
	reg := scsiengine.New(scsiengine.Config{Reservations: pr.NewMemoryStore(), Log: metricsQuiet})
	d, err := s.ServeDual(ctx, "guest", "/metrics/disk", storage.NewMemory(4<<20), blkback.Config{Log: metricsQuiet},
		&vscsiback.Server{Engines: reg, Log: metricsQuiet}, blkfront.Config{Log: metricsQuiet}, vscsifront.Config{Log: metricsQuiet})
	if err != nil {
		t.Fatal(err)
	}
	lun := d.LUN
	buf := make([]byte, 8192)
	if _, err := lun.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := lun.ReadAt(buf, 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Guest.Disk.ReadAt(ctx, buf, 0); err != nil {
		t.Fatal(err)
	}

	rec := httptest.NewRecorder()
	metricsHandler(d.Blkback.Server, d.Vscsi, reg, nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	values := map[string]string{} // metric name → the value of its one device
	for _, line := range strings.Split(string(body), "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		_, value, _ := strings.Cut(rest, "} ")
		values[name] = value
	}
	vhost := `xenblk_vhost_read_requests_total{vhost="` + d.Vhost.Vhost.BackendPath() + `"`
	if !strings.Contains(string(body), vhost) {
		t.Errorf("no line for the vhost (want one starting %s):\n%s", vhost, body)
	}
	for name, want := range map[string]string{
		"xenblk_vhost_read_requests_total":  "1",
		"xenblk_vhost_write_requests_total": "1",
		"xenblk_vhost_write_bytes_total":    "8192",
		"xenblk_vhost_read_bytes_total":     "", // the frontend's own commands read too: more than 8192
		"xenblk_vhost_in_flight":            "0",
		"xenblk_vbd_read_requests_total":    "",
	} {
		got, ok := values[name]
		switch {
		case !ok:
			t.Errorf("%s missing:\n%s", name, body)
		case want != "" && got != want:
			t.Errorf("%s = %s, want %s", name, got, want)
		case want == "" && (got == "0" || got == ""):
			t.Errorf("%s = %q after I/O", name, got)
		}
	}
	for _, typ := range []string{"# TYPE xenblk_vhost_in_flight gauge", "# TYPE xenblk_vhost_error_responses_total counter"} {
		if !strings.Contains(string(body), typ) {
			t.Errorf("no %q line:\n%s", typ, body)
		}
	}
}

var metricsQuiet = slog.New(slog.DiscardHandler)
