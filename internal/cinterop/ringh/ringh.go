//go:build cinterop

// Package ringh drives Xen's own ring.h macros from Go, so tests can run a
// C front or back end against xenblk's ring package on the same memory and
// compare every notification decision. Build tag cinterop.
package ringh

/*
// ring.h leaves its barriers to the environment (the kernel's mb/rmb/wmb);
// a full barrier for each is correct on every architecture.
#define mb()  __sync_synchronize()
#define rmb() __sync_synchronize()
#define wmb() __sync_synchronize()
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xen/xen.h>
#include <xen/io/blkif.h>

// One C front ring and one C back ring, over whatever memory they are given.
static blkif_front_ring_t cfront;
static blkif_back_ring_t cback;

static void c_front_init(void *mem, int bytes) {
	blkif_sring_t *s = mem;
	SHARED_RING_INIT(s);
	FRONT_RING_INIT(&cfront, s, bytes);
}

// c_front_attach resumes on existing indexes (FRONT_RING_ATTACH).
static void c_front_attach(void *mem, int bytes) {
	FRONT_RING_ATTACH(&cfront, (blkif_sring_t *)mem, ((blkif_sring_t *)mem)->rsp_prod, bytes);
	cfront.req_prod_pvt = ((blkif_sring_t *)mem)->req_prod;
}

static void c_back_attach(void *mem, int bytes) {
	blkif_sring_t *s = mem;
	BACK_RING_ATTACH(&cback, s, s->rsp_prod, bytes);
}

static unsigned c_ring_size(void) { return RING_SIZE(&cfront); }
static unsigned c_free_requests(void) { return RING_FREE_REQUESTS(&cfront); }

// c_front_produce writes n requests with ids first.. and pushes them.
static int c_front_produce(int n, uint64_t first) {
	int notify;
	for (int i = 0; i < n; i++) {
		blkif_request_t *r = RING_GET_REQUEST(&cfront, cfront.req_prod_pvt);
		memset(r, 0, sizeof(*r));
		r->operation = BLKIF_OP_READ;
		r->id = first + i;
		cfront.req_prod_pvt++;
	}
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&cfront, notify);
	return notify;
}

// c_front_consume consumes every response, checking ids run from *next.
static int c_front_consume(uint64_t *next) {
	int n = 0;
	RING_IDX rp = cfront.sring->rsp_prod;
	xen_rmb();
	while (cfront.rsp_cons != rp) {
		blkif_response_t *r = RING_GET_RESPONSE(&cfront, cfront.rsp_cons);
		if (r->id != *next) return -1;
		(*next)++;
		cfront.rsp_cons++;
		n++;
	}
	return n;
}

static int c_front_final_check(void) {
	int more;
	RING_FINAL_CHECK_FOR_RESPONSES(&cfront, more);
	return more;
}

// c_back_serve consumes up to max requests, answers each with its id,
// pushes, and returns the notify decision; *served gets the count.
static int c_back_serve(int max, int *served, uint64_t *next) {
	int n = 0, notify;
	while (n < max && RING_HAS_UNCONSUMED_REQUESTS(&cback)) {
		blkif_request_t req;
		RING_COPY_REQUEST(&cback, cback.req_cons, &req);
		cback.req_cons++;
		if (req.id != *next) return -1;
		(*next)++;
		blkif_response_t *r = RING_GET_RESPONSE(&cback, cback.rsp_prod_pvt);
		memset(r, 0, sizeof(*r));
		r->id = req.id;
		r->operation = req.operation;
		cback.rsp_prod_pvt++;
		n++;
	}
	RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&cback, notify);
	*served = n;
	return notify;
}

static int c_back_final_check(void) {
	int more;
	RING_FINAL_CHECK_FOR_REQUESTS(&cback, more);
	return more;
}

// Rings of test slots of every size the SlotCount test asks for: ring.h
// sizes the slot array from sizeof(union of request and response).
#define SIZED_RING(n) \
	struct sized_req##n { uint8_t b[n]; }; \
	struct sized_rsp##n { uint8_t b[n]; }; \
	DEFINE_RING_TYPES(sized##n, struct sized_req##n, struct sized_rsp##n);
SIZED_RING(8) SIZED_RING(12) SIZED_RING(36) SIZED_RING(64) SIZED_RING(100)
SIZED_RING(108) SIZED_RING(200) SIZED_RING(1000) SIZED_RING(2016)
SIZED_RING(4032) SIZED_RING(4033)

#define CASE_SIZED(n) case n: return __RING_SIZE((struct sized##n##_sring *)mem, bytes);

// c_sized_ring_size is __RING_SIZE for a ring of bytes bytes at mem whose
// slots are slot bytes; -1 for a slot size without a ring type above.
static long c_sized_ring_size(int slot, void *mem, long bytes) {
	switch (slot) {
	CASE_SIZED(8) CASE_SIZED(12) CASE_SIZED(36) CASE_SIZED(64) CASE_SIZED(100)
	CASE_SIZED(108) CASE_SIZED(200) CASE_SIZED(1000) CASE_SIZED(2016)
	CASE_SIZED(4032) CASE_SIZED(4033)
	case sizeof(union blkif_sring_entry): return __RING_SIZE((blkif_sring_t *)mem, bytes);
	}
	return -1;
}

static void *c_alloc_pages(int n) {
	void *p = NULL;
	if (posix_memalign(&p, 4096, 4096 * n) != 0) return NULL;
	memset(p, 0, 4096 * n);
	return p;
}
*/
import "C"

import "unsafe"

// Mem is page-aligned C memory shared by both implementations.
type Mem struct {
	p unsafe.Pointer
	B []byte
}

// Alloc returns n zeroed pages of C memory.
func Alloc(n int) Mem {
	p := C.c_alloc_pages(C.int(n))
	return Mem{p: p, B: unsafe.Slice((*byte)(p), n*4096)}
}

func (m Mem) Free() { C.free(m.p) }

func FrontInit(m Mem)   { C.c_front_init(m.p, C.int(len(m.B))) }
func FrontAttach(m Mem) { C.c_front_attach(m.p, C.int(len(m.B))) }
func BackAttach(m Mem)  { C.c_back_attach(m.p, C.int(len(m.B))) }

// SizedSlots are the slot sizes SizedRingSize knows; 112 is blkif's union.
var SizedSlots = []int{8, 12, 36, 64, 100, 108, 112, 200, 1000, 2016, 4032, 4033}

// SizedRingSize is ring.h's __RING_SIZE for a ring of m's size whose slots
// are slot bytes (one of SizedSlots; -1 otherwise).
func SizedRingSize(m Mem, slot int) int {
	return int(C.c_sized_ring_size(C.int(slot), m.p, C.long(len(m.B))))
}

// RingSize is RING_SIZE of the C front ring.
func RingSize() uint32 { return uint32(C.c_ring_size()) }

// FreeRequests is RING_FREE_REQUESTS of the C front ring.
func FreeRequests() uint32 { return uint32(C.c_free_requests()) }

// FrontProduce writes n requests (ids first, first+1, ...) and pushes.
func FrontProduce(n int, first uint64) bool {
	return C.c_front_produce(C.int(n), C.uint64_t(first)) != 0
}

// FrontConsume consumes all responses; -1 if an id was out of order.
func FrontConsume(next *uint64) int {
	var n C.uint64_t = C.uint64_t(*next)
	r := int(C.c_front_consume(&n))
	*next = uint64(n)
	return r
}

func FrontFinalCheck() bool { return C.c_front_final_check() != 0 }

// BackServe answers up to max requests; served is how many, -1 on a bad id.
func BackServe(max int, next *uint64) (notify bool, served int) {
	var s C.int
	n := C.uint64_t(*next)
	r := C.c_back_serve(C.int(max), &s, &n)
	*next = uint64(n)
	if r < 0 {
		return false, -1
	}
	return r != 0, int(s)
}

func BackFinalCheck() bool { return C.c_back_final_check() != 0 }
