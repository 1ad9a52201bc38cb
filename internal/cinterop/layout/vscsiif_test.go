//go:build cinterop

package layout

import (
	"testing"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/ring"
	"github.com/xenblk/xenblk/vscsiif"
)

func vconst(name string, v int) check[vscsiif.Layout] {
	return check[vscsiif.Layout]{name, name, func(*vscsiif.Layout) int { return v }}
}

func vhost(name string, h vscsiif.Host) check[vscsiif.Layout] { return vconst(name, int(h)) }

// vchecks are vscsiif.h's sizes, offsets and constants.
var vchecks = []check[vscsiif.Layout]{
	{"sizeof(vscsiif_request)", size("struct vscsiif_request"), func(l *vscsiif.Layout) int { return l.RequestSize }},
	{"vscsiif_request.rqid", off("vscsiif_request", "rqid"), func(l *vscsiif.Layout) int { return l.ReqRqID }},
	{"vscsiif_request.act", off("vscsiif_request", "act"), func(l *vscsiif.Layout) int { return l.ReqAct }},
	{"vscsiif_request.cmd_len", off("vscsiif_request", "cmd_len"), func(l *vscsiif.Layout) int { return l.ReqCmdLen }},
	{"vscsiif_request.cmnd", off("vscsiif_request", "cmnd"), func(l *vscsiif.Layout) int { return l.ReqCmnd }},
	{"vscsiif_request.timeout_per_command", off("vscsiif_request", "timeout_per_command"), func(l *vscsiif.Layout) int { return l.ReqTimeout }},
	{"vscsiif_request.channel", off("vscsiif_request", "channel"), func(l *vscsiif.Layout) int { return l.ReqChannel }},
	{"vscsiif_request.id", off("vscsiif_request", "id"), func(l *vscsiif.Layout) int { return l.ReqID }},
	{"vscsiif_request.lun", off("vscsiif_request", "lun"), func(l *vscsiif.Layout) int { return l.ReqLUN }},
	{"vscsiif_request.ref_rqid", off("vscsiif_request", "ref_rqid"), func(l *vscsiif.Layout) int { return l.ReqRefRqID }},
	{"vscsiif_request.sc_data_direction", off("vscsiif_request", "sc_data_direction"), func(l *vscsiif.Layout) int { return l.ReqDataDirection }},
	{"vscsiif_request.nr_segments", off("vscsiif_request", "nr_segments"), func(l *vscsiif.Layout) int { return l.ReqNrSegments }},
	{"vscsiif_request.seg", off("vscsiif_request", "seg"), func(l *vscsiif.Layout) int { return l.ReqSeg }},
	{"vscsiif_request.reserved", off("vscsiif_request", "reserved"), func(l *vscsiif.Layout) int { return l.ReqReserved }},
	// Segments are the same 8 bytes on every ABI (DecodeSegment's offsets).
	{"sizeof(scsiif_request_segment)", size("struct scsiif_request_segment"), func(*vscsiif.Layout) int { return vscsiif.SegmentSize }},
	{"scsiif_request_segment.gref", off("scsiif_request_segment", "gref"), func(*vscsiif.Layout) int { return 0 }},
	{"scsiif_request_segment.offset", off("scsiif_request_segment", "offset"), func(*vscsiif.Layout) int { return 4 }},
	{"scsiif_request_segment.length", off("scsiif_request_segment", "length"), func(*vscsiif.Layout) int { return 6 }},
	{"sizeof(vscsiif_response)", size("struct vscsiif_response"), func(l *vscsiif.Layout) int { return l.ResponseSize }},
	{"vscsiif_response.rqid", off("vscsiif_response", "rqid"), func(l *vscsiif.Layout) int { return l.RspRqID }},
	{"vscsiif_response.act", off("vscsiif_response", "act"), func(l *vscsiif.Layout) int { return l.RspAct }},
	{"vscsiif_response.sense_len", off("vscsiif_response", "sense_len"), func(l *vscsiif.Layout) int { return l.RspSenseLen }},
	{"vscsiif_response.sense_buffer", off("vscsiif_response", "sense_buffer"), func(l *vscsiif.Layout) int { return l.RspSense }},
	{"vscsiif_response.rslt", off("vscsiif_response", "rslt"), func(l *vscsiif.Layout) int { return l.RspRslt }},
	{"vscsiif_response.residual_len", off("vscsiif_response", "residual_len"), func(l *vscsiif.Layout) int { return l.RspResidualLen }},
	{"vscsiif_response.reserved", off("vscsiif_response", "reserved"), func(l *vscsiif.Layout) int { return l.RspReserved }},
	{"sizeof(vscsiif_sring_entry)", size("union vscsiif_sring_entry"), func(l *vscsiif.Layout) int { return l.SlotSize }},
	// ring.h's size of a one-page ring against the ring package's.
	{"__CONST_RING_SIZE(vscsiif, 4096)", "__CONST_RING_SIZE(vscsiif, 4096)", func(l *vscsiif.Layout) int {
		return int(ring.SlotCount(vscsiif.PageSize, l.SlotSize))
	}},
	vconst("VSCSIIF_ACT_SCSI_CDB", vscsiif.ActSCSICDB),
	vconst("VSCSIIF_ACT_SCSI_ABORT", vscsiif.ActSCSIAbort),
	vconst("VSCSIIF_ACT_SCSI_RESET", vscsiif.ActSCSIReset),
	vconst("VSCSIIF_ACT_SCSI_SG_PRESET", vscsiif.ActSCSISGPreset),
	vconst("VSCSIIF_SG_TABLESIZE", vscsiif.SGTableSize),
	vconst("VSCSIIF_MAX_COMMAND_SIZE", vscsiif.MaxCommandSize),
	vconst("VSCSIIF_SENSE_BUFFERSIZE", vscsiif.SenseBufferSize),
	vconst("VSCSIIF_PAGE_SIZE", vscsiif.PageSize),
	vconst("VSCSIIF_SG_PER_PAGE", vscsiif.SGPerPage),
	vconst("VSCSIIF_SG_GRANT", vscsiif.SGGrant),
	vhost("XEN_VSCSIIF_RSLT_HOST_OK", vscsiif.HostOK),
	vhost("XEN_VSCSIIF_RSLT_HOST_NO_CONNECT", vscsiif.HostNoConnect),
	vhost("XEN_VSCSIIF_RSLT_HOST_BUS_BUSY", vscsiif.HostBusBusy),
	vhost("XEN_VSCSIIF_RSLT_HOST_TIME_OUT", vscsiif.HostTimeOut),
	vhost("XEN_VSCSIIF_RSLT_HOST_BAD_TARGET", vscsiif.HostBadTarget),
	vhost("XEN_VSCSIIF_RSLT_HOST_ABORT", vscsiif.HostAbort),
	vhost("XEN_VSCSIIF_RSLT_HOST_PARITY", vscsiif.HostParity),
	vhost("XEN_VSCSIIF_RSLT_HOST_ERROR", vscsiif.HostError),
	vhost("XEN_VSCSIIF_RSLT_HOST_RESET", vscsiif.HostReset),
	vhost("XEN_VSCSIIF_RSLT_HOST_BAD_INTR", vscsiif.HostBadIntr),
	vhost("XEN_VSCSIIF_RSLT_HOST_PASSTHROUGH", vscsiif.HostPassthrough),
	vhost("XEN_VSCSIIF_RSLT_HOST_SOFT_ERROR", vscsiif.HostSoftError),
	vhost("XEN_VSCSIIF_RSLT_HOST_IMM_RETRY", vscsiif.HostImmRetry),
	vhost("XEN_VSCSIIF_RSLT_HOST_REQUEUE", vscsiif.HostRequeue),
	vhost("XEN_VSCSIIF_RSLT_HOST_TRANSPORT_DISRUPTED", vscsiif.HostTransportDisrupted),
	vhost("XEN_VSCSIIF_RSLT_HOST_TRANSPORT_FAILFAST", vscsiif.HostTransportFailfast),
	vhost("XEN_VSCSIIF_RSLT_HOST_TARGET_FAILURE", vscsiif.HostTargetFailure),
	vhost("XEN_VSCSIIF_RSLT_HOST_NEXUS_FAILURE", vscsiif.HostNexusFailure),
	vhost("XEN_VSCSIIF_RSLT_HOST_ALLOC_FAILURE", vscsiif.HostAllocFailure),
	vhost("XEN_VSCSIIF_RSLT_HOST_MEDIUM_ERROR", vscsiif.HostMediumError),
	vhost("XEN_VSCSIIF_RSLT_HOST_TRANSPORT_MARGINAL", vscsiif.HostTransportMarginal),
	vconst("XEN_VSCSIIF_RSLT_RESET_SUCCESS", int(vscsiif.ResetSuccess)),
	vconst("XEN_VSCSIIF_RSLT_RESET_FAILED", int(vscsiif.ResetFailed)),
}

func TestVSCSIX86_64MatchesTheCompiler(t *testing.T) {
	matchCgo(t, VSCSINative64(), vchecks, map[string]*vscsiif.Layout{"x86_64": vscsiif.LayoutOf(blkif.X86_64), "arm": vscsiif.LayoutOf(blkif.ARM)})
}

func TestVSCSIX86_32MatchesGCC(t *testing.T) {
	l := vscsiif.LayoutOf(blkif.X86_32)
	matchM32(t, []string{"<stddef.h>", "<stdint.h>", "<xen/xen.h>", "<xen/io/vscsiif.h>"}, vchecks, l)
	if l.RequestSize != 252 || l.ResponseSize != 252 || l.RspRslt != 100 {
		t.Errorf("x86_32 table drifted: %+v", *l)
	}
}

// TestVSCSIBytesAgreeWithC encodes with Go and reads with the C structs,
// and the reverse, on the native ABI.
func TestVSCSIBytesAgreeWithC(t *testing.T) {
	abi := blkif.X86_64
	slot := make([]byte, vscsiif.SlotSize(abi))
	r := vscsiif.Request{RqID: 0xbeef, Act: vscsiif.ActSCSICDB, CmdLen: 16, TimeoutPerCommand: 0x1e1f,
		Channel: 0x0102, ID: 0x0304, LUN: 0x0506, RefRqID: 0x0708, DataDirection: vscsiif.DirToDevice, NrSegments: vscsiif.SGTableSize}
	for i := range r.Cmnd {
		r.Cmnd[i] = byte(0xc0 + i)
	}
	for i := range r.Seg {
		r.Seg[i] = vscsiif.Segment{Gref: uint32(0x10000 + i), Offset: uint16(i * 100), Length: uint16(4096 - i*100)}
	}
	vscsiif.EncodeRequest(abi, slot, &r)
	if VReqRqID(slot) != r.RqID || VReqAct(slot) != r.Act || VReqCmdLen(slot) != r.CmdLen || VReqTimeout(slot) != r.TimeoutPerCommand ||
		VReqChannel(slot) != r.Channel || VReqID(slot) != r.ID || VReqLUN(slot) != r.LUN || VReqRefRqID(slot) != r.RefRqID ||
		VReqDirection(slot) != r.DataDirection || VReqNrSegments(slot) != r.NrSegments {
		t.Fatalf("C reads the request's header differently: % x", slot[:32])
	}
	for i := range r.Cmnd {
		if VReqCmnd(slot, i) != r.Cmnd[i] {
			t.Fatalf("cmnd[%d] differs in C", i)
		}
	}
	for i, s := range r.Seg {
		if VReqGref(slot, i) != s.Gref || VReqOff(slot, i) != s.Offset || VReqLen(slot, i) != s.Length {
			t.Fatalf("seg[%d] differs in C", i)
		}
	}
	clear(slot)
	VEncodeResponse(slot, 0x1234, 18, vscsiif.Result(vscsiif.HostOK, 0x02), 4000)
	var rsp vscsiif.Response
	vscsiif.DecodeResponse(abi, slot, &rsp)
	want := vscsiif.Response{RqID: 0x1234, SenseLen: 18, Rslt: 2, ResidualLen: 4000}
	for i := 0; i < 18; i++ {
		want.Sense[i] = byte(0xa0 + i)
	}
	if rsp != want {
		t.Fatalf("Go decodes the C response as %+v", rsp)
	}
}

// TestRsltMacros applies XEN_VSCSIIF_RSLT_HOST and _STATUS to values
// with every byte set and compares them with HostOf and StatusOf.
func TestRsltMacros(t *testing.T) {
	for _, x := range []int32{0, 0x2002, 0x2003, 0x00010000, 0x00070002, 0x7fffffff, -1, -0x7f000000, 0x12345678} {
		if got, want := int(vscsiif.HostOf(x)), RsltHost(x); got != want {
			t.Errorf("host of %#x: Go %d, C %d", x, got, want)
		}
		if got, want := int(vscsiif.StatusOf(x)), RsltStatus(x); got != want {
			t.Errorf("status of %#x: Go %d, C %d", x, got, want)
		}
		if h, s := vscsiif.HostOf(x), vscsiif.StatusOf(x); x&^0x00ff00ff == 0 && vscsiif.Result(h, s) != x {
			t.Errorf("Result(%d, %d) != %#x", h, s, x)
		}
	}
}
