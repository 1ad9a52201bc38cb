package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path"
	"slices"
	"sort"

	"github.com/xenblk/xenblk/blkback"
	"github.com/xenblk/xenblk/scsi/pr"
	"github.com/xenblk/xenblk/scsi/pr/etcdstore"
	"github.com/xenblk/xenblk/scsiengine"
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

// metricsHandler serves the counters of every vbd srv serves, of every
// vhost vsrv serves (no vhost family when vsrv is nil), of every
// reservation unit engines opened, and of the shared reservation store
// (etcd nil: the file store, which has none).
func metricsHandler(srv *blkback.Server, vsrv *vscsiback.Server, engines *scsiengine.Registry, etcd *etcdstore.Store) http.Handler {
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
		writePRMetrics(bw, engines, etcd)
		bw.Flush()
	})
}

// prUnitMetrics are the per-unit reservation counters (pr.Unit.Stats).
var prUnitMetrics = []metric[pr.Stats]{
	{"xenblk_pr_in_commands_total", "PERSISTENT RESERVE IN commands.", "counter", func(s pr.Stats) uint64 { return s.In }},
	{"xenblk_pr_out_commands_total", "Commands that change reservation state (PR OUT, RESERVE, RELEASE, logical unit resets).", "counter", func(s pr.Stats) uint64 { return s.Out }},
	{"xenblk_pr_cas_conflicts_total", "Compare-and-swaps that found the state changed by another host, each followed by a reload and a retry.", "counter", func(s pr.Stats) uint64 { return s.Conflicts }},
	{"xenblk_pr_store_failures_total", "Commands refused because the reservation store failed or did not answer in time.", "counter", func(s pr.Stats) uint64 { return s.Failures }},
	{"xenblk_pr_fail_closed", "1 while admissions that depend on the reservation are refused because this host's view of the shared store expired.", "gauge", func(s pr.Stats) uint64 {
		if s.FailClosed {
			return 1
		}
		return 0
	}},
}

// writePRMetrics writes the reservation units' and the etcd store's
// metrics.
func writePRMetrics(bw *bufio.Writer, engines *scsiengine.Registry, etcd *etcdstore.Store) {
	units := engines.Units()
	ids := slices.Sorted(maps.Keys(units))
	for _, m := range prUnitMetrics {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, id := range ids {
			fmt.Fprintf(bw, "%s{lu=%q} %d\n", m.name, id, m.value(units[id].Stats()))
		}
	}
	if etcd == nil {
		return
	}
	st := etcd.Stats()
	metric := func(name, typ, help string, samples ...string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, s := range samples {
			fmt.Fprintf(bw, "%s%s\n", name, s)
		}
	}
	metric("xenblk_pr_etcd_loads_total", "counter", "Linearizable reads of a unit's state from etcd.",
		fmt.Sprintf(" %d", st.Loads))
	metric("xenblk_pr_etcd_load_errors_total", "counter", "Reads from etcd that failed or ran out of time.",
		fmt.Sprintf(" %d", st.LoadErrors))
	metric("xenblk_pr_etcd_cas_total", "counter", "Compare-and-swaps sent to etcd, by result.",
		fmt.Sprintf(`{result="stored"} %d`, st.CASStored), fmt.Sprintf(`{result="conflict"} %d`, st.CASConflicts),
		fmt.Sprintf(`{result="error"} %d`, st.CASErrors))
	metric("xenblk_pr_etcd_watch_events_total", "counter", "Changes the watch delivered (any host's).",
		fmt.Sprintf(" %d", st.WatchEvents))
	metric("xenblk_pr_etcd_watch_resyncs_total", "counter", "Watch streams broken or compacted and resumed.",
		fmt.Sprintf(" %d", st.WatchResyncs))
	metric("xenblk_pr_etcd_watch_lag_seconds_sum", "counter", "Sum over delivered changes of delivery time minus the writer's clock at the write.",
		fmt.Sprintf(" %g", st.WatchLagSum.Seconds()))
	metric("xenblk_pr_etcd_watch_lag_seconds", "gauge", "The latest delivered change's lag (delivery time minus the writer's clock).",
		fmt.Sprintf(" %g", st.WatchLagLast.Seconds()))
}
