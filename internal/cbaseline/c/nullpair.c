/*
 * The null backend's data path in C, with Xen's ring.h macros, in two
 * processes: what C does on xenblk's design, the yardstick for the Go
 * stack's `null` backend across processes.
 *
 * Shared memory (mapped before fork): the blkif ring, a v1 grant table
 * and the frontend's pool of pre-granted data pages. Two eventfds are the
 * event channel (one doorbell per end). The frontend keeps QD 4 KiB random
 * reads in flight: it fills a request from a free slot whose pool page is
 * granted once at start, pushes with RING_PUSH_REQUESTS_AND_CHECK_NOTIFY,
 * and copies each answered page into its caller's buffer (one per request
 * in flight). The backend
 * copies each request out of the ring, validates it (operation, segment
 * count, sector range, each segment's sectors and grant entry: type,
 * grantee, writability, frame), clears the granted sectors (the null
 * backend's read), writes a cleared response and pushes with
 * RING_PUSH_RESPONSES_AND_CHECK_NOTIFY.
 *
 * Both ends use the Go stack's notification scheme: after a pass that
 * found work, poll the ring for POLL_NS without re-arming the event index;
 * then RING_FINAL_CHECK_FOR_* and sleep in read() on the eventfd.
 *
 * Prints requests per second. usage: nullpair SECONDS QD
 */
#define _GNU_SOURCE
#include <stdint.h>
/* ring.h expects the includer to supply the barriers. */
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

#define PAGE 4096
#define SECTORS_PER_PAGE (PAGE / 512)
#define POLL_NS 20000
#define BACKEND_DOM 0
#define DISK_SECTORS ((uint64_t)256 << 11) /* 256 MiB, as the Go bench */
#define MAX_QD 1024

struct shared {
	volatile int stop;
	int ring_pages;
	int pool_pages;
};

static struct shared *sh;
static blkif_sring_t *sring;
static grant_entry_v1_t *gnt;
static unsigned char *pool;
static int efd_back, efd_front; /* doorbells: front->back, back->front */

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static void ring_bell(int fd)
{
	uint64_t one = 1;
	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void sleep_on(int fd)
{
	uint64_t v;
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

/* The backend's per-request work; returns the response status. */
static int16_t handle(const blkif_request_t *req)
{
	int write;
	switch (req->operation) {
	case BLKIF_OP_READ:
		write = 0;
		break;
	case BLKIF_OP_WRITE:
		write = 1;
		break;
	default:
		return BLKIF_RSP_EOPNOTSUPP;
	}
	int n = req->nr_segments;
	if (n < 1 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST)
		return BLKIF_RSP_ERROR;
	uint64_t sectors = 0;
	unsigned char *pages[BLKIF_MAX_SEGMENTS_PER_REQUEST];
	for (int i = 0; i < n; i++) {
		const struct blkif_request_segment *s = &req->seg[i];
		if (s->first_sect > s->last_sect || s->last_sect >= SECTORS_PER_PAGE)
			return BLKIF_RSP_ERROR;
		if (s->gref >= (grant_ref_t)sh->pool_pages)
			return BLKIF_RSP_ERROR;
		/* Copy the entry once, flags first (the granter writes them last). */
		uint16_t flags = __atomic_load_n(&gnt[s->gref].flags, __ATOMIC_ACQUIRE);
		domid_t dom = gnt[s->gref].domid;
		uint32_t frame = gnt[s->gref].frame;
		if ((flags & GTF_type_mask) != GTF_permit_access || dom != BACKEND_DOM)
			return BLKIF_RSP_ERROR;
		if (!write && (flags & GTF_readonly)) /* a read writes the page */
			return BLKIF_RSP_ERROR;
		if (frame >= (uint32_t)sh->pool_pages)
			return BLKIF_RSP_ERROR;
		pages[i] = pool + (size_t)frame * PAGE;
		sectors += s->last_sect - s->first_sect + 1;
	}
	if (req->sector_number > DISK_SECTORS || sectors > DISK_SECTORS - req->sector_number)
		return BLKIF_RSP_ERROR;
	if (!write) /* null: reads are zeros, writes are dropped */
		for (int i = 0; i < n; i++)
			memset(pages[i] + req->seg[i].first_sect * 512, 0,
			       (req->seg[i].last_sect - req->seg[i].first_sect + 1) * 512);
	return BLKIF_RSP_OKAY;
}

static void backend(void)
{
	blkif_back_ring_t b;
	uint64_t last = 0;
	BACK_RING_INIT(&b, sring, (size_t)sh->ring_pages * PAGE);
	while (!sh->stop) {
		int handled = 0;
		RING_IDX rc = b.req_cons, rp = sring->req_prod;
		rmb();
		if (RING_REQUEST_PROD_OVERFLOW(&b, rp))
			abort();
		for (; rc != rp && !RING_REQUEST_CONS_OVERFLOW(&b, rc); rc++) {
			blkif_request_t req;
			memcpy(&req, RING_GET_REQUEST(&b, rc), sizeof(req));
			b.req_cons = rc + 1;
			int16_t status = handle(&req);
			blkif_response_t *rsp = RING_GET_RESPONSE(&b, b.rsp_prod_pvt);
			memset(rsp, 0, sizeof(*rsp));
			rsp->id = req.id;
			rsp->operation = req.operation;
			rsp->status = status;
			b.rsp_prod_pvt++;
			handled++;
		}
		int notify;
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);
		if (notify)
			ring_bell(efd_front);
		if (handled) {
			last = now_ns();
			continue;
		}
		if (last && now_ns() - last < POLL_NS)
			continue;
		last = 0;
		int more;
		RING_FINAL_CHECK_FOR_REQUESTS(&b, more);
		if (!more)
			sleep_on(efd_back);
	}
}

static double frontend(double secs, int qd)
{
	blkif_front_ring_t f;
	/* The callers' buffers: one per request in flight, as an asynchronous
	 * caller has (the Go bench's batch keeps one per tag); a single
	 * buffer would stay in L1 and flatter the copy. */
	static unsigned char bufs[MAX_QD][PAGE] __attribute__((aligned(PAGE)));
	int freeids[MAX_QD], nfree = 0, inflight[MAX_QD] = {0};
	uint64_t done = 0, rng = 42, last = now_ns();
	FRONT_RING_INIT(&f, sring, (size_t)sh->ring_pages * PAGE);
	/* Grant the pool once (persistently): entry i is page i. */
	for (int i = 0; i < qd; i++) {
		gnt[i].domid = BACKEND_DOM;
		gnt[i].frame = i;
		wmb();
		gnt[i].flags = GTF_permit_access;
		freeids[nfree++] = i;
	}
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
	for (;;) {
		while (nfree > 0 && !RING_FULL(&f)) {
			int id = freeids[--nfree];
			blkif_request_t *req = RING_GET_REQUEST(&f, f.req_prod_pvt);
			memset(req, 0, sizeof(*req));
			rng = rng * 6364136223846793005u + 1442695040888963407u;
			req->operation = BLKIF_OP_READ;
			req->nr_segments = 1;
			req->id = id;
			req->sector_number = ((rng >> 20) % (DISK_SECTORS / SECTORS_PER_PAGE)) * SECTORS_PER_PAGE;
			req->seg[0].gref = id;
			req->seg[0].first_sect = 0;
			req->seg[0].last_sect = SECTORS_PER_PAGE - 1;
			inflight[id] = 1;
			f.req_prod_pvt++;
		}
		int notify;
		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);
		if (notify)
			ring_bell(efd_back);
		int got = 0;
		RING_IDX rp = sring->rsp_prod;
		rmb();
		for (RING_IDX rc = f.rsp_cons; rc != rp; rc++) {
			blkif_response_t rsp;
			memcpy(&rsp, RING_GET_RESPONSE(&f, rc), sizeof(rsp));
			if (rsp.id >= (uint64_t)qd || !inflight[rsp.id] || rsp.status != BLKIF_RSP_OKAY)
				abort();
			inflight[rsp.id] = 0;
			memcpy(bufs[rsp.id], pool + rsp.id * PAGE, PAGE);
			freeids[nfree++] = rsp.id;
			got++;
		}
		f.rsp_cons = rp;
		done += got;
		if (got) {
			last = now_ns();
			if (last >= end)
				break;
			continue;
		}
		uint64_t t = now_ns();
		if (t >= end)
			break;
		if (t - last < POLL_NS)
			continue;
		int more;
		RING_FINAL_CHECK_FOR_RESPONSES(&f, more);
		if (!more) {
			sleep_on(efd_front);
			last = now_ns();
		}
	}
	return done / ((now_ns() - t0) / 1e9);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1;
	int qd = argc > 2 ? atoi(argv[2]) : 32;
	if (qd < 1 || qd > MAX_QD) {
		fprintf(stderr, "nullpair: QD must be 1..%d\n", MAX_QD);
		return 2;
	}
	/* One blkif page holds 32 requests; give the ring room for QD. */
	int ring_pages = 1;
	while (ring_pages * 32 < qd)
		ring_pages *= 2;
	size_t gnt_bytes = (qd * sizeof(grant_entry_v1_t) + PAGE - 1) / PAGE * PAGE;
	size_t len = PAGE + (size_t)ring_pages * PAGE + gnt_bytes + (size_t)qd * PAGE;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("nullpair: mmap");
		return 1;
	}
	sh = (struct shared *)mem;
	sring = (blkif_sring_t *)(mem + PAGE);
	gnt = (grant_entry_v1_t *)(mem + PAGE + (size_t)ring_pages * PAGE);
	pool = mem + PAGE + (size_t)ring_pages * PAGE + gnt_bytes;
	sh->ring_pages = ring_pages;
	sh->pool_pages = qd;
	SHARED_RING_INIT(sring);
	efd_back = eventfd(0, EFD_CLOEXEC);
	efd_front = eventfd(0, EFD_CLOEXEC);
	if (efd_back < 0 || efd_front < 0) {
		perror("nullpair: eventfd");
		return 1;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("nullpair: fork");
		return 1;
	}
	if (child == 0) {
		backend();
		_exit(0);
	}
	double rate = frontend(secs, qd);
	sh->stop = 1;
	ring_bell(efd_back);
	int st;
	waitpid(child, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "nullpair: backend failed\n");
		return 1;
	}
	printf("%.0f\n", rate);
	return 0;
}
