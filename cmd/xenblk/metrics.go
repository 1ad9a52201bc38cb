package main

import (
	"bufio"
	"fmt"
	"net/http"
	"path"
	"sort"

	"github.com/xenblk/xenblk/blkback"
)

// vbdMetrics are the per-vbd counters `xenblk serve --metrics` exports, in
// Prometheus's text format: Linux blkback's sysfs statistics (the figures
// xentop prints for a kernel-served vbd) and the extension's.
var vbdMetrics = []struct {
	name, help string
	value      func(blkback.Stats) uint64
}{
	{"xenblk_vbd_read_requests_total", "Read requests (rd_req).", func(s blkback.Stats) uint64 { return s.ReadRequests }},
	{"xenblk_vbd_write_requests_total", "Write requests (wr_req).", func(s blkback.Stats) uint64 { return s.WriteRequests }},
	{"xenblk_vbd_flush_requests_total", "Flush and barrier requests (f_req).", func(s blkback.Stats) uint64 { return s.FlushRequests }},
	{"xenblk_vbd_discard_requests_total", "Discard requests (ds_req).", func(s blkback.Stats) uint64 { return s.DiscardRequests }},
	{"xenblk_vbd_read_sectors_total", "512-byte sectors read (rd_sect).", func(s blkback.Stats) uint64 { return s.ReadSectors }},
	{"xenblk_vbd_write_sectors_total", "512-byte sectors written (wr_sect).", func(s blkback.Stats) uint64 { return s.WriteSectors }},
	{"xenblk_vbd_scsi_requests_total", "SCSI commands through the extension.", func(s blkback.Stats) uint64 { return s.SCSIRequests }},
	{"xenblk_vbd_reservation_requests_total", "Dedicated reservation operations.", func(s blkback.Stats) uint64 { return s.PRRequests }},
	{"xenblk_vbd_error_responses_total", "Requests answered with an error status.", func(s blkback.Stats) uint64 { return s.ErrorResponses }},
}

// metricsHandler serves the counters of every vbd srv serves. A vbd is
// labelled with its backend directory and, as xentop names it, the
// frontend domain and device id (the directory's last two elements).
func metricsHandler(srv *blkback.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		type row struct {
			dir   string
			stats blkback.Stats
		}
		var rows []row
		for _, dir := range srv.VBDs() {
			if d := srv.VBD(dir); d != nil {
				rows = append(rows, row{dir, d.Stats()})
			}
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].dir < rows[j].dir })
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		bw := bufio.NewWriter(w)
		for _, m := range vbdMetrics {
			fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s counter\n", m.name, m.help, m.name)
			for _, r := range rows {
				domain, devid := path.Base(path.Dir(r.dir)), path.Base(r.dir)
				fmt.Fprintf(bw, "%s{vbd=%q,domain=%q,devid=%q} %d\n", m.name, r.dir, domain, devid, m.value(r.stats))
			}
		}
		bw.Flush()
	})
}
