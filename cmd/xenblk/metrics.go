package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/vscsiback"
)

// vbdMetrics are the per-vbd counters `xenblk serve --metrics` exports, in
// Prometheus's text format: Linux blkback's sysfs statistics (the figures
// xentop prints for a kernel-served vbd) and the extension's.
var vbdMetrics = []metric[blkback.Stats]{
	{"xenblk_vbd_read_requests_total", "Read requests (rd_req).", "counter", func(s blkback.Stats) uint64 { return s.ReadRequests }},
	{"xenblk_vbd_write_requests_total", "Write requests (wr_req).", "counter", func(s blkback.Stats) uint64 { return s.WriteRequests }},
	{"xenblk_vbd_flush_requests_total", "Flush and barrier requests (f_req).", "counter", func(s blkback.Stats) uint64 { return s.FlushRequests }},
	{"xenblk_vbd_discard_requests_total", "Discard requests (ds_req).", "counter", func(s blkback.Stats) uint64 { return s.DiscardRequests }},
	{"xenblk_vbd_read_sectors_total", "512-byte sectors read (rd_sect).", "counter", func(s blkback.Stats) uint64 { return s.ReadSectors }},
	{"xenblk_vbd_write_sectors_total", "512-byte sectors written (wr_sect).", "counter", func(s blkback.Stats) uint64 { return s.WriteSectors }},
	{"xenblk_vbd_scsi_requests_total", "SCSI commands through the extension.", "counter", func(s blkback.Stats) uint64 { return s.SCSIRequests }},
	{"xenblk_vbd_reservation_requests_total", "Dedicated reservation operations.", "counter", func(s blkback.Stats) uint64 { return s.PRRequests }},
	{"xenblk_vbd_error_responses_total", "Requests answered with an error status.", "counter", func(s blkback.Stats) uint64 { return s.ErrorResponses }},
}

// vhostMetrics are the per-vhost counters `xenblk serve --metrics`
// exports beside the vbds', named as theirs are.
var vhostMetrics = []metric[vscsiback.Stats]{
	{"xenblk_vhost_read_requests_total", "READ commands.", "counter", func(s vscsiback.Stats) uint64 { return s.ReadRequests }},
	{"xenblk_vhost_write_requests_total", "WRITE commands.", "counter", func(s vscsiback.Stats) uint64 { return s.WriteRequests }},
	{"xenblk_vhost_other_requests_total", "Other SCSI commands.", "counter", func(s vscsiback.Stats) uint64 { return s.OtherRequests }},
	{"xenblk_vhost_read_bytes_total", "Data-in bytes sent to the guest.", "counter", func(s vscsiback.Stats) uint64 { return s.ReadBytes }},
	{"xenblk_vhost_write_bytes_total", "Data-out bytes taken from the guest.", "counter", func(s vscsiback.Stats) uint64 { return s.WriteBytes }},
	{"xenblk_vhost_task_aborts_total", "TASK_ABORT requests.", "counter", func(s vscsiback.Stats) uint64 { return s.TaskAborts }},
	{"xenblk_vhost_resets_total", "RESET (logical unit reset) requests.", "counter", func(s vscsiback.Stats) uint64 { return s.Resets }},
	{"xenblk_vhost_error_responses_total", "Requests refused or answered other than GOOD.", "counter", func(s vscsiback.Stats) uint64 { return s.ErrorResponses }},
	{"xenblk_vhost_in_flight", "Commands taken from the ring and not yet answered.", "gauge", func(s vscsiback.Stats) uint64 { return s.InFlight }},
}

// metric is one exported figure of a device's Stats S.
type metric[S any] struct {
	name, help, kind string // kind: Prometheus's counter or gauge
	value            func(S) uint64
}

// device is one device's Stats, with its backend directory.
type device[S any] struct {
	dir   string
	stats S
}

// writeMetrics writes each of ms for every device, labelled with its
// directory (as label) and, as xentop names it, the frontend domain and
// device id (the directory's last two elements).
func writeMetrics[S any](w io.Writer, label string, ms []metric[S], devs []device[S]) {
	sort.Slice(devs, func(i, j int) bool { return devs[i].dir < devs[j].dir })
	for _, m := range ms {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, d := range devs {
			domain, devid := path.Base(path.Dir(d.dir)), path.Base(d.dir)
			fmt.Fprintf(w, "%s{%s=%q,domain=%q,devid=%q} %d\n", m.name, label, d.dir, domain, devid, m.value(d.stats))
		}
	}
}

// metricsHandler serves the counters of every vbd srv serves and of every
// vhost vsrv serves (no vhost family when vsrv is nil).
func metricsHandler(srv *blkback.Server, vsrv *vscsiback.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var vbds []device[blkback.Stats]
		for _, dir := range srv.VBDs() {
			if d := srv.VBD(dir); d != nil {
				vbds = append(vbds, device[blkback.Stats]{dir, d.Stats()})
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		bw := bufio.NewWriter(w)
		writeMetrics(bw, "vbd", vbdMetrics, vbds)
		if vsrv != nil {
			var vhosts []device[vscsiback.Stats]
			for _, dir := range vsrv.Vhosts() {
				if s, ok := vsrv.Stats(dir); ok {
					vhosts = append(vhosts, device[vscsiback.Stats]{dir, s})
				}
			}
			writeMetrics(bw, "vhost", vhostMetrics, vhosts)
		}
		bw.Flush()
	})
}
