/*
 * Ring-only ping-pong with Xen's ring.h macros over blkif.h's ring: a
 * frontend thread pushes batches of requests, a backend thread consumes
 * them and answers, both busy-polling the shared indexes (no event
 * channel). Prints round trips per second. The Go counterpart is
 * bench.GoRingPair; both move the same 112-byte requests and 16-byte
 * responses through one 4 KiB page (32 slots).
 *
 * usage: ringpair SECONDS
 */
#include <stdint.h>
/* ring.h expects the includer to supply the barriers. */
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <xen/xen.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

static union { blkif_sring_t s; char page[4096]; } shared __attribute__((aligned(4096)));
static volatile int stop;

static void *backend(void *arg)
{
	blkif_back_ring_t b;
	(void)arg;
	BACK_RING_INIT(&b, &shared.s, 4096);
	while (!stop) {
		RING_IDX rc = b.req_cons, rp = __atomic_load_n(&shared.s.req_prod, __ATOMIC_ACQUIRE);
		if (rc == rp)
			continue;
		for (; rc != rp; rc++) {
			blkif_request_t req;
			memcpy(&req, RING_GET_REQUEST(&b, rc), sizeof(req));
			blkif_response_t *rsp = RING_GET_RESPONSE(&b, b.rsp_prod_pvt);
			memset(rsp, 0, sizeof(*rsp));
			rsp->id = req.id;
			rsp->operation = req.operation;
			rsp->status = BLKIF_RSP_OKAY;
			b.rsp_prod_pvt++;
		}
		b.req_cons = rc;
		int notify;
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);
		(void)notify;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1;
	blkif_front_ring_t f;
	pthread_t t;
	struct timespec t0, t1;
	unsigned long long done = 0, loops = 0;

	SHARED_RING_INIT(&shared.s);
	FRONT_RING_INIT(&f, &shared.s, 4096);
	pthread_create(&t, NULL, backend, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		while (!RING_FULL(&f)) {
			blkif_request_t *req = RING_GET_REQUEST(&f, f.req_prod_pvt);
			memset(req, 0, sizeof(*req));
			req->operation = BLKIF_OP_READ;
			req->id = f.req_prod_pvt;
			f.req_prod_pvt++;
		}
		int notify;
		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);
		(void)notify;
		RING_IDX rp = __atomic_load_n(&shared.s.rsp_prod, __ATOMIC_ACQUIRE);
		for (RING_IDX rc = f.rsp_cons; rc != rp; rc++) {
			blkif_response_t rsp;
			memcpy(&rsp, RING_GET_RESPONSE(&f, rc), sizeof(rsp));
			if (rsp.status != BLKIF_RSP_OKAY)
				abort();
			done++;
		}
		f.rsp_cons = rp;
		if ((++loops & 0xfff) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 >= secs)
				break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	stop = 1;
	pthread_join(t, NULL);
	printf("%.0f\n", done / ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9));
	return 0;
}
