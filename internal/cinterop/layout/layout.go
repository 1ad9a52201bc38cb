//go:build cinterop

// Package layout checks blkif's and vscsiif's Go layout tables against
// Xen's own C headers: x86_64 through cgo (the compiler's sizeof/offsetof),
// x86_32 by compiling a probe with gcc -m32 and reading the constants it
// emits. The blkif extension's structs, written in C from docs/PROTOCOL.md,
// are checked the same way; for vscsiif, the header's constants and rslt
// macros too (vscsiif.go). Build tag cinterop; `make check` runs it and
// never skips it.
package layout

/*
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <xen/xen.h>
#include <xen/io/blkif.h>
#include "extension.h"

// Readers that decode a slot with the C structs, for byte-level agreement.
static uint64_t c_req_id(void *p) { return ((struct blkif_request *)p)->id; }
static uint64_t c_req_sector(void *p) { return ((struct blkif_request *)p)->sector_number; }
static uint8_t c_req_nseg(void *p) { return ((struct blkif_request *)p)->nr_segments; }
static uint32_t c_req_gref(void *p, int i) { return ((struct blkif_request *)p)->seg[i].gref; }
static uint8_t c_req_first(void *p, int i) { return ((struct blkif_request *)p)->seg[i].first_sect; }
static uint8_t c_req_last(void *p, int i) { return ((struct blkif_request *)p)->seg[i].last_sect; }
static uint64_t c_disc_nr(void *p) { return ((struct blkif_request_discard *)p)->nr_sectors; }
static uint16_t c_ind_nseg(void *p) { return ((struct blkif_request_indirect *)p)->nr_segments; }
static uint32_t c_ind_gref(void *p, int i) { return ((struct blkif_request_indirect *)p)->indirect_grefs[i]; }
static uint64_t c_ind_id(void *p) { return ((struct blkif_request_indirect *)p)->id; }
static void c_encode_rsp(void *p, uint64_t id, uint8_t op, int16_t st) {
	struct blkif_response *r = p;
	r->id = id; r->operation = op; r->status = st;
}
static uint64_t c_extra_id(void *p) { return ((struct blkif_request_extra *)p)->id; }
static uint32_t c_extra_gref(void *p) { return ((struct blkif_request_extra *)p)->cmd_gref; }
static uint32_t c_extra_len(void *p) { return ((struct blkif_request_extra *)p)->data_len; }
*/
import "C"

import "unsafe"

// Field is one size or offset the C compiler computed.
type Field struct {
	Name string
	C    int
}

// Native64 returns sizes and offsets of the x86_64 structs as cgo sees them.
func Native64() []Field {
	var req C.struct_blkif_request
	var disc C.struct_blkif_request_discard
	var ind C.struct_blkif_request_indirect
	var rsp C.struct_blkif_response
	var seg C.struct_blkif_request_segment
	var ent C.union_blkif_sring_entry
	var ex C.struct_blkif_request_extra
	var exr C.struct_blkif_response_extra
	var pr C.struct_blkif_request_reservation
	return []Field{
		{"sizeof(blkif_request)", int(unsafe.Sizeof(req))},
		{"blkif_request.id", int(unsafe.Offsetof(req.id))},
		{"blkif_request.sector_number", int(unsafe.Offsetof(req.sector_number))},
		{"blkif_request.seg", int(unsafe.Offsetof(req.seg))},
		{"sizeof(blkif_request_segment)", int(unsafe.Sizeof(seg))},
		{"sizeof(blkif_request_discard)", int(unsafe.Sizeof(disc))},
		{"blkif_request_discard.id", int(unsafe.Offsetof(disc.id))},
		{"blkif_request_discard.sector_number", int(unsafe.Offsetof(disc.sector_number))},
		{"blkif_request_discard.nr_sectors", int(unsafe.Offsetof(disc.nr_sectors))},
		{"sizeof(blkif_request_indirect)", int(unsafe.Sizeof(ind))},
		{"blkif_request_indirect.nr_segments", int(unsafe.Offsetof(ind.nr_segments))},
		{"blkif_request_indirect.id", int(unsafe.Offsetof(ind.id))},
		{"blkif_request_indirect.sector_number", int(unsafe.Offsetof(ind.sector_number))},
		{"blkif_request_indirect.handle", int(unsafe.Offsetof(ind.handle))},
		{"blkif_request_indirect.indirect_grefs", int(unsafe.Offsetof(ind.indirect_grefs))},
		{"sizeof(blkif_response)", int(unsafe.Sizeof(rsp))},
		{"blkif_response.id", int(unsafe.Offsetof(rsp.id))},
		{"blkif_response.operation", int(unsafe.Offsetof(rsp.operation))},
		{"blkif_response.status", int(unsafe.Offsetof(rsp.status))},
		{"sizeof(blkif_sring_entry)", int(unsafe.Sizeof(ent))},
		{"blkif_request_extra.id", int(unsafe.Offsetof(ex.id))},
		{"blkif_request_extra.cmd_gref", int(unsafe.Offsetof(ex.cmd_gref))},
		{"blkif_request_extra.data_len", int(unsafe.Offsetof(ex.data_len))},
		{"sizeof(blkif_response_extra)", int(unsafe.Sizeof(exr))},
		{"blkif_response_extra.operation", int(unsafe.Offsetof(exr.operation))},
		{"blkif_response_extra.status", int(unsafe.Offsetof(exr.status))},
		{"blkif_request_reservation.id", int(unsafe.Offsetof(pr.id))},
		{"blkif_request_reservation.key", int(unsafe.Offsetof(pr.key))},
		{"blkif_request_reservation.sa_key", int(unsafe.Offsetof(pr.sa_key))},
		{"blkif_request_reservation.gref", int(unsafe.Offsetof(pr.gref))},
	}
}

// The C readers, exposed to the tests (cgo is not allowed in _test files).

func ReqID(p []byte) uint64          { return uint64(C.c_req_id(unsafe.Pointer(&p[0]))) }
func ReqSector(p []byte) uint64      { return uint64(C.c_req_sector(unsafe.Pointer(&p[0]))) }
func ReqNrSegments(p []byte) uint8   { return uint8(C.c_req_nseg(unsafe.Pointer(&p[0]))) }
func ReqGref(p []byte, i int) uint32 { return uint32(C.c_req_gref(unsafe.Pointer(&p[0]), C.int(i))) }
func ReqFirst(p []byte, i int) uint8 { return uint8(C.c_req_first(unsafe.Pointer(&p[0]), C.int(i))) }
func ReqLast(p []byte, i int) uint8  { return uint8(C.c_req_last(unsafe.Pointer(&p[0]), C.int(i))) }
func DiscardNr(p []byte) uint64      { return uint64(C.c_disc_nr(unsafe.Pointer(&p[0]))) }
func IndNrSegments(p []byte) uint16  { return uint16(C.c_ind_nseg(unsafe.Pointer(&p[0]))) }
func IndGref(p []byte, i int) uint32 { return uint32(C.c_ind_gref(unsafe.Pointer(&p[0]), C.int(i))) }
func IndID(p []byte) uint64          { return uint64(C.c_ind_id(unsafe.Pointer(&p[0]))) }
func ExtraID(p []byte) uint64        { return uint64(C.c_extra_id(unsafe.Pointer(&p[0]))) }
func ExtraGref(p []byte) uint32      { return uint32(C.c_extra_gref(unsafe.Pointer(&p[0]))) }
func ExtraDataLen(p []byte) uint32   { return uint32(C.c_extra_len(unsafe.Pointer(&p[0]))) }

// EncodeResponse writes a response with the C struct.
func EncodeResponse(p []byte, id uint64, op uint8, status int16) {
	C.c_encode_rsp(unsafe.Pointer(&p[0]), C.uint64_t(id), C.uint8_t(op), C.int16_t(status))
}
