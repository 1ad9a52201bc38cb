//go:build cinterop

package layout

/*
#include <stdint.h>
#include <stddef.h>
#include <xen/xen.h>
#include <xen/io/vscsiif.h>

// Readers and a writer with the C structs, for byte-level agreement.
static uint16_t c_vreq_rqid(void *p) { return ((struct vscsiif_request *)p)->rqid; }
static uint8_t c_vreq_act(void *p) { return ((struct vscsiif_request *)p)->act; }
static uint8_t c_vreq_cmd_len(void *p) { return ((struct vscsiif_request *)p)->cmd_len; }
static uint8_t c_vreq_cmnd(void *p, int i) { return ((struct vscsiif_request *)p)->cmnd[i]; }
static uint16_t c_vreq_timeout(void *p) { return ((struct vscsiif_request *)p)->timeout_per_command; }
static uint16_t c_vreq_channel(void *p) { return ((struct vscsiif_request *)p)->channel; }
static uint16_t c_vreq_id(void *p) { return ((struct vscsiif_request *)p)->id; }
static uint16_t c_vreq_lun(void *p) { return ((struct vscsiif_request *)p)->lun; }
static uint16_t c_vreq_ref_rqid(void *p) { return ((struct vscsiif_request *)p)->ref_rqid; }
static uint8_t c_vreq_dir(void *p) { return ((struct vscsiif_request *)p)->sc_data_direction; }
static uint8_t c_vreq_nseg(void *p) { return ((struct vscsiif_request *)p)->nr_segments; }
static uint32_t c_vreq_gref(void *p, int i) { return ((struct vscsiif_request *)p)->seg[i].gref; }
static uint16_t c_vreq_off(void *p, int i) { return ((struct vscsiif_request *)p)->seg[i].offset; }
static uint16_t c_vreq_len(void *p, int i) { return ((struct vscsiif_request *)p)->seg[i].length; }
static void c_vrsp_encode(void *p, uint16_t rqid, uint8_t sense_len, int32_t rslt, uint32_t resid) {
	struct vscsiif_response *r = p;
	r->rqid = rqid; r->sense_len = sense_len; r->rslt = rslt; r->residual_len = resid;
	for (int i = 0; i < sense_len && i < VSCSIIF_SENSE_BUFFERSIZE; i++)
		r->sense_buffer[i] = (uint8_t)(0xa0 + i);
}
static int c_vring_size(void) { return __CONST_RING_SIZE(vscsiif, 4096); }
static int c_rslt_host(int32_t x) { return XEN_VSCSIIF_RSLT_HOST(x); }
static int c_rslt_status(int32_t x) { return XEN_VSCSIIF_RSLT_STATUS(x); }
*/
import "C"

import "unsafe"

// VSCSINative64 returns vscsiif.h's sizes, offsets and constants as cgo
// sees them on x86_64.
func VSCSINative64() []Field {
	var req C.struct_vscsiif_request
	var rsp C.struct_vscsiif_response
	var seg C.struct_scsiif_request_segment
	var ent C.union_vscsiif_sring_entry
	return []Field{
		{"sizeof(vscsiif_request)", int(unsafe.Sizeof(req))},
		{"vscsiif_request.rqid", int(unsafe.Offsetof(req.rqid))},
		{"vscsiif_request.act", int(unsafe.Offsetof(req.act))},
		{"vscsiif_request.cmd_len", int(unsafe.Offsetof(req.cmd_len))},
		{"vscsiif_request.cmnd", int(unsafe.Offsetof(req.cmnd))},
		{"vscsiif_request.timeout_per_command", int(unsafe.Offsetof(req.timeout_per_command))},
		{"vscsiif_request.channel", int(unsafe.Offsetof(req.channel))},
		{"vscsiif_request.id", int(unsafe.Offsetof(req.id))},
		{"vscsiif_request.lun", int(unsafe.Offsetof(req.lun))},
		{"vscsiif_request.ref_rqid", int(unsafe.Offsetof(req.ref_rqid))},
		{"vscsiif_request.sc_data_direction", int(unsafe.Offsetof(req.sc_data_direction))},
		{"vscsiif_request.nr_segments", int(unsafe.Offsetof(req.nr_segments))},
		{"vscsiif_request.seg", int(unsafe.Offsetof(req.seg))},
		{"vscsiif_request.reserved", int(unsafe.Offsetof(req.reserved))},
		{"sizeof(scsiif_request_segment)", int(unsafe.Sizeof(seg))},
		{"scsiif_request_segment.gref", int(unsafe.Offsetof(seg.gref))},
		{"scsiif_request_segment.offset", int(unsafe.Offsetof(seg.offset))},
		{"scsiif_request_segment.length", int(unsafe.Offsetof(seg.length))},
		{"sizeof(vscsiif_response)", int(unsafe.Sizeof(rsp))},
		{"vscsiif_response.rqid", int(unsafe.Offsetof(rsp.rqid))},
		{"vscsiif_response.act", int(unsafe.Offsetof(rsp.act))},
		{"vscsiif_response.sense_len", int(unsafe.Offsetof(rsp.sense_len))},
		{"vscsiif_response.sense_buffer", int(unsafe.Offsetof(rsp.sense_buffer))},
		{"vscsiif_response.rslt", int(unsafe.Offsetof(rsp.rslt))},
		{"vscsiif_response.residual_len", int(unsafe.Offsetof(rsp.residual_len))},
		{"vscsiif_response.reserved", int(unsafe.Offsetof(rsp.reserved))},
		{"sizeof(vscsiif_sring_entry)", int(unsafe.Sizeof(ent))},
		{"__CONST_RING_SIZE(vscsiif, 4096)", int(C.c_vring_size())},
		{"VSCSIIF_ACT_SCSI_CDB", int(C.VSCSIIF_ACT_SCSI_CDB)},
		{"VSCSIIF_ACT_SCSI_ABORT", int(C.VSCSIIF_ACT_SCSI_ABORT)},
		{"VSCSIIF_ACT_SCSI_RESET", int(C.VSCSIIF_ACT_SCSI_RESET)},
		{"VSCSIIF_ACT_SCSI_SG_PRESET", int(C.VSCSIIF_ACT_SCSI_SG_PRESET)},
		{"VSCSIIF_SG_TABLESIZE", int(C.VSCSIIF_SG_TABLESIZE)},
		{"VSCSIIF_MAX_COMMAND_SIZE", int(C.VSCSIIF_MAX_COMMAND_SIZE)},
		{"VSCSIIF_SENSE_BUFFERSIZE", int(C.VSCSIIF_SENSE_BUFFERSIZE)},
		{"VSCSIIF_PAGE_SIZE", int(C.VSCSIIF_PAGE_SIZE)},
		{"VSCSIIF_SG_PER_PAGE", int(C.VSCSIIF_SG_PER_PAGE)},
		{"VSCSIIF_SG_GRANT", int(C.VSCSIIF_SG_GRANT)},
		{"XEN_VSCSIIF_RSLT_HOST_OK", int(C.XEN_VSCSIIF_RSLT_HOST_OK)},
		{"XEN_VSCSIIF_RSLT_HOST_NO_CONNECT", int(C.XEN_VSCSIIF_RSLT_HOST_NO_CONNECT)},
		{"XEN_VSCSIIF_RSLT_HOST_BUS_BUSY", int(C.XEN_VSCSIIF_RSLT_HOST_BUS_BUSY)},
		{"XEN_VSCSIIF_RSLT_HOST_TIME_OUT", int(C.XEN_VSCSIIF_RSLT_HOST_TIME_OUT)},
		{"XEN_VSCSIIF_RSLT_HOST_BAD_TARGET", int(C.XEN_VSCSIIF_RSLT_HOST_BAD_TARGET)},
		{"XEN_VSCSIIF_RSLT_HOST_ABORT", int(C.XEN_VSCSIIF_RSLT_HOST_ABORT)},
		{"XEN_VSCSIIF_RSLT_HOST_PARITY", int(C.XEN_VSCSIIF_RSLT_HOST_PARITY)},
		{"XEN_VSCSIIF_RSLT_HOST_ERROR", int(C.XEN_VSCSIIF_RSLT_HOST_ERROR)},
		{"XEN_VSCSIIF_RSLT_HOST_RESET", int(C.XEN_VSCSIIF_RSLT_HOST_RESET)},
		{"XEN_VSCSIIF_RSLT_HOST_BAD_INTR", int(C.XEN_VSCSIIF_RSLT_HOST_BAD_INTR)},
		{"XEN_VSCSIIF_RSLT_HOST_PASSTHROUGH", int(C.XEN_VSCSIIF_RSLT_HOST_PASSTHROUGH)},
		{"XEN_VSCSIIF_RSLT_HOST_SOFT_ERROR", int(C.XEN_VSCSIIF_RSLT_HOST_SOFT_ERROR)},
		{"XEN_VSCSIIF_RSLT_HOST_IMM_RETRY", int(C.XEN_VSCSIIF_RSLT_HOST_IMM_RETRY)},
		{"XEN_VSCSIIF_RSLT_HOST_REQUEUE", int(C.XEN_VSCSIIF_RSLT_HOST_REQUEUE)},
		{"XEN_VSCSIIF_RSLT_HOST_TRANSPORT_DISRUPTED", int(C.XEN_VSCSIIF_RSLT_HOST_TRANSPORT_DISRUPTED)},
		{"XEN_VSCSIIF_RSLT_HOST_TRANSPORT_FAILFAST", int(C.XEN_VSCSIIF_RSLT_HOST_TRANSPORT_FAILFAST)},
		{"XEN_VSCSIIF_RSLT_HOST_TARGET_FAILURE", int(C.XEN_VSCSIIF_RSLT_HOST_TARGET_FAILURE)},
		{"XEN_VSCSIIF_RSLT_HOST_NEXUS_FAILURE", int(C.XEN_VSCSIIF_RSLT_HOST_NEXUS_FAILURE)},
		{"XEN_VSCSIIF_RSLT_HOST_ALLOC_FAILURE", int(C.XEN_VSCSIIF_RSLT_HOST_ALLOC_FAILURE)},
		{"XEN_VSCSIIF_RSLT_HOST_MEDIUM_ERROR", int(C.XEN_VSCSIIF_RSLT_HOST_MEDIUM_ERROR)},
		{"XEN_VSCSIIF_RSLT_HOST_TRANSPORT_MARGINAL", int(C.XEN_VSCSIIF_RSLT_HOST_TRANSPORT_MARGINAL)},
		{"XEN_VSCSIIF_RSLT_RESET_SUCCESS", int(C.XEN_VSCSIIF_RSLT_RESET_SUCCESS)},
		{"XEN_VSCSIIF_RSLT_RESET_FAILED", int(C.XEN_VSCSIIF_RSLT_RESET_FAILED)},
	}
}

// The C readers of a vscsiif_request, exposed to the tests.

func VReqRqID(p []byte) uint16        { return uint16(C.c_vreq_rqid(unsafe.Pointer(&p[0]))) }
func VReqAct(p []byte) uint8          { return uint8(C.c_vreq_act(unsafe.Pointer(&p[0]))) }
func VReqCmdLen(p []byte) uint8       { return uint8(C.c_vreq_cmd_len(unsafe.Pointer(&p[0]))) }
func VReqCmnd(p []byte, i int) uint8  { return uint8(C.c_vreq_cmnd(unsafe.Pointer(&p[0]), C.int(i))) }
func VReqTimeout(p []byte) uint16     { return uint16(C.c_vreq_timeout(unsafe.Pointer(&p[0]))) }
func VReqChannel(p []byte) uint16     { return uint16(C.c_vreq_channel(unsafe.Pointer(&p[0]))) }
func VReqID(p []byte) uint16          { return uint16(C.c_vreq_id(unsafe.Pointer(&p[0]))) }
func VReqLUN(p []byte) uint16         { return uint16(C.c_vreq_lun(unsafe.Pointer(&p[0]))) }
func VReqRefRqID(p []byte) uint16     { return uint16(C.c_vreq_ref_rqid(unsafe.Pointer(&p[0]))) }
func VReqDirection(p []byte) uint8    { return uint8(C.c_vreq_dir(unsafe.Pointer(&p[0]))) }
func VReqNrSegments(p []byte) uint8   { return uint8(C.c_vreq_nseg(unsafe.Pointer(&p[0]))) }
func VReqGref(p []byte, i int) uint32 { return uint32(C.c_vreq_gref(unsafe.Pointer(&p[0]), C.int(i))) }
func VReqOff(p []byte, i int) uint16  { return uint16(C.c_vreq_off(unsafe.Pointer(&p[0]), C.int(i))) }
func VReqLen(p []byte, i int) uint16  { return uint16(C.c_vreq_len(unsafe.Pointer(&p[0]), C.int(i))) }

// VEncodeResponse writes a response with the C struct, sense bytes
// 0xa0, 0xa1, ... for senseLen bytes.
func VEncodeResponse(p []byte, rqid uint16, senseLen uint8, rslt int32, resid uint32) {
	C.c_vrsp_encode(unsafe.Pointer(&p[0]), C.uint16_t(rqid), C.uint8_t(senseLen), C.int32_t(rslt), C.uint32_t(resid))
}

// RsltHost and RsltStatus apply XEN_VSCSIIF_RSLT_HOST and _STATUS.
func RsltHost(x int32) int   { return int(C.c_rslt_host(C.int32_t(x))) }
func RsltStatus(x int32) int { return int(C.c_rslt_status(C.int32_t(x))) }
