/*
 * The Go stack's data path across processes, in C with Xen's ring.h
 * macros: what C does on xenblk's design, the yardstick for `xenblk bench`
 * with blkback in its own process, one queue, blkfront's Batch.
 *
 * Shared memory (mapped before fork): the blkif ring, a v1 grant table
 * and the frontend's pool of pre-granted pages (each request slot owns
 * BS/4096 data pages and, for a request of more than 11 segments, one
 * indirect page). Two eventfds are the event channel (one doorbell per
 * end).
 *
 * The frontend keeps QD reads of BS bytes in flight (4 KiB: random, as
 * the bench's randread; larger: sequential, as its seqread): it fills a
 * request from a free slot (an indirect request, its segments written in
 * the slot's indirect page, beyond 11 segments), pushes with
 * RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, and copies each answered slot's
 * pages into that request's caller buffer (one per request in flight).
 * It checks one 8-byte word of every page it copied against what the
 * backend must have read (zeros for null; the bench image's pattern for
 * memory and file) and fails on the first that differs.
 *
 * The backend copies each request out of the ring (and an indirect
 * request's segments out of their granted pages), validates it
 * (operation, segment count, sector range, each segment's sectors and
 * grant entry: type, grantee, writability, frame), and adds it to the
 * pass's batch; once the pass has taken what the ring holds it carries
 * the batch out and writes a cleared response per request, pushing with
 * RING_PUSH_RESPONSES_AND_CHECK_NOTIFY. The batch, per backend:
 *   null    clears the granted sectors;
 *   memory  copies from a 256 MiB region holding the image's pattern;
 *   file    one io_uring SQE per request (READ for one segment, READV
 *           for more), all submitted and waited for in one
 *           io_uring_enter per pass, on IMAGE through the page cache.
 *
 * Both ends use the Go stack's notification scheme: after a pass that
 * found work, poll the ring without re-arming the event index for an
 * adaptive window (internal/adaptpoll's: a poll that finds work doubles
 * it up to its maximum, one that expires halves it down to none, and at
 * none every 16th poll probes the maximum; the backend's maximum is
 * blkback's 20 us, the frontend's blkfront Batch's 100 us); then
 * RING_FINAL_CHECK_FOR_* and sleep in read() on the eventfd.
 *
 * Each end can be pinned to a CPU (sched_setaffinity; -1: not pinned).
 *
 * usage: blkpair SECONDS QD BACKEND BS DISK_BYTES FRONT_CPU BACK_CPU [IMAGE]
 * Prints "IOPS CPU_NS_PER_REQUEST": requests per second, and both ends'
 * CPU time (from the first request on) over the requests.
 */
#define _GNU_SOURCE
#include <stdint.h>
/* ring.h expects the includer to supply the barriers. */
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

#define PAGE 4096
#define SECTORS_PER_PAGE (PAGE / 512)
#define BACK_POLL_NS 20000
#define FRONT_POLL_NS 100000
#define BACKEND_DOM 0
#define MAX_QD 1024
#define MAX_SEGS 256 /* 1 MiB: one indirect page of segments */
#define PATTERN_PERIOD ((uint64_t)1 << 20)

enum backend { NULLB, MEMORY, FILEB };

struct shared {
	volatile int stop;
	int ring_pages;
	int qd, segs;           /* requests in flight, data pages per request */
	int grants;             /* entries in the grant table = pool pages */
	uint64_t disk_bytes;    /* the disk's size (the bench's --size) */
	uint64_t back_cpu_ns;   /* the backend's CPU time from its first request */
};

static struct shared *sh;
static blkif_sring_t *sring;
static grant_entry_v1_t *gnt;
static unsigned char *pool;
static int efd_back, efd_front; /* doorbells: front->back, back->front */
static enum backend backend_kind;

static uint64_t clock_ns(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (uint64_t)t.tv_sec * 1000000000u + t.tv_nsec;
}

static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

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

static void pin(int cpu, const char *who)
{
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		fprintf(stderr, "blkpair: pin the %s to CPU %d: %s\n", who, cpu, strerror(errno));
		exit(1);
	}
}

/* The image's byte at offset off: the Go bench fills 1 MiB of
 * byte(i*7+1), again and again. */
static unsigned char pattern_at(uint64_t off)
{
	return (unsigned char)((off % PATTERN_PERIOD) * 7 + 1);
}

/* ---- the adaptive poll window (internal/adaptpoll) ---- */

struct window {
	uint64_t max, cur; /* ns; cur is 0 or in [max/8, max] */
	unsigned probes;
};

/* How long the next poll may last; 0: sleep at once. */
static uint64_t win_next(struct window *w)
{
	if (w->cur)
		return w->cur;
	if (++w->probes % 16)
		return 0;
	return w->max;
}

static void win_hit(struct window *w)
{
	uint64_t c = 2 * w->cur;
	w->cur = c < w->max / 8 ? w->max / 8 : c > w->max ? w->max : c;
}

static void win_miss(struct window *w)
{
	uint64_t c = w->cur / 2;
	w->cur = c < w->max / 8 ? 0 : c;
}

/* A poll after work: until is its deadline while it runs. */
struct poller {
	struct window w;
	int polling;
	uint64_t until;
};

/* Called after a look at the ring that found nothing; after_work: the
 * look before it found work. Returns 1 to look again (polling), 0 to
 * arm the event and sleep. */
static int keep_polling(struct poller *p, int after_work)
{
	uint64_t t = now_ns();
	if (after_work && !p->polling) {
		uint64_t d = win_next(&p->w);
		if (!d)
			return 0;
		p->polling = 1;
		p->until = t + d;
		return 1;
	}
	if (p->polling && t < p->until)
		return 1;
	if (p->polling)
		win_miss(&p->w);
	p->polling = 0;
	return 0;
}

/* Called when a look at the ring found work. */
static void found_work(struct poller *p)
{
	if (p->polling)
		win_hit(&p->w);
	p->polling = 0;
}

/* ---- io_uring, by its system calls (no liburing) ---- */

struct uring {
	int fd;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	struct io_uring_sqe *sqes;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	unsigned queued;
};

static int uring_init(struct uring *u, unsigned entries)
{
	struct io_uring_params p;
	/* The Go ring's flags, then the fallback it takes. */
	unsigned flagsets[] = {IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CLAMP, IORING_SETUP_CLAMP};
	u->fd = -1;
	for (int i = 0; i < 2 && u->fd < 0; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = flagsets[i];
		u->fd = syscall(__NR_io_uring_setup, entries, &p);
	}
	if (u->fd < 0)
		return -1;
	unsigned char *sq = mmap(NULL, p.sq_off.array + p.sq_entries * sizeof(unsigned), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQ_RING);
	unsigned char *cq = mmap(NULL, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_CQ_RING);
	u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || u->sqes == MAP_FAILED)
		return -1;
	u->sq_head = (unsigned *)(sq + p.sq_off.head);
	u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
	u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	u->sq_array = (unsigned *)(sq + p.sq_off.array);
	u->cq_head = (unsigned *)(cq + p.cq_off.head);
	u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
	u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	u->queued = 0;
	return 0;
}

/* Queues a read of iovcnt buffers at off; user is the pass's index. */
static void uring_read(struct uring *u, int fd, struct iovec *iov, int iovcnt, uint64_t off, uint64_t user)
{
	unsigned tail = *u->sq_tail, i = tail & *u->sq_mask;
	struct io_uring_sqe *s = &u->sqes[i];
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->off = off;
	s->user_data = user;
	if (iovcnt == 1) { /* one buffer: READ spares the kernel an iovec */
		s->opcode = IORING_OP_READ;
		s->addr = (uint64_t)(uintptr_t)iov[0].iov_base;
		s->len = iov[0].iov_len;
	} else {
		s->opcode = IORING_OP_READV;
		s->addr = (uint64_t)(uintptr_t)iov;
		s->len = iovcnt;
	}
	u->sq_array[i] = i;
	__atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
	u->queued++;
}

/* Submits what is queued and waits for all of it; each completion's
 * result goes to res[user]. */
static void uring_run(struct uring *u, int *res)
{
	unsigned waiting = u->queued, submit = u->queued;
	while (waiting > 0) {
		int n = syscall(__NR_io_uring_enter, u->fd, submit, waiting, IORING_ENTER_GETEVENTS, NULL, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EBUSY)
				continue;
			perror("blkpair: io_uring_enter");
			exit(1);
		}
		submit -= n < (int)submit ? n : submit;
		unsigned head = *u->cq_head, tail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
		for (; head != tail; head++, waiting--) {
			struct io_uring_cqe *c = &u->cqes[head & *u->cq_mask];
			res[c->user_data] = c->res;
		}
		__atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
	}
	u->queued = 0;
}

/* ---- the backend ---- */

/* One request of a pass, validated, waiting for the batch. */
struct pending {
	uint64_t id;
	uint8_t operation;
	int16_t status;
	int n;                 /* segments */
	uint64_t off, len;     /* bytes on the disk */
	struct iovec iov[MAX_SEGS];
};

static struct uring ring_io;
static int image_fd = -1;
static unsigned char *region; /* the memory backend's disk */

/* Checks one segment's grant and sectors; returns its page or NULL. */
static unsigned char *granted(const struct blkif_request_segment *s, int write)
{
	if (s->first_sect > s->last_sect || s->last_sect >= SECTORS_PER_PAGE)
		return NULL;
	if (s->gref >= (grant_ref_t)sh->grants)
		return NULL;
	/* Copy the entry once, flags first (the granter writes them last). */
	uint16_t flags = __atomic_load_n(&gnt[s->gref].flags, __ATOMIC_ACQUIRE);
	domid_t dom = gnt[s->gref].domid;
	uint32_t frame = gnt[s->gref].frame;
	if ((flags & GTF_type_mask) != GTF_permit_access || dom != BACKEND_DOM)
		return NULL;
	if (!write && (flags & GTF_readonly)) /* a read writes the page */
		return NULL;
	if (frame >= (uint32_t)sh->grants)
		return NULL;
	return pool + (size_t)frame * PAGE;
}

/* Validates the request copied out of the ring into p (its segments
 * copied out of their indirect pages, for an indirect one); returns the
 * status, OKAY when p is ready for the batch. */
static int16_t check(const blkif_request_t *req, struct pending *p)
{
	struct blkif_request_segment segs[MAX_SEGS];
	const struct blkif_request_segment *seg = req->seg;
	int write, n;
	uint8_t op = req->operation;
	uint64_t sector = req->sector_number;
	if (op == BLKIF_OP_INDIRECT) {
		const blkif_request_indirect_t *ind = (const blkif_request_indirect_t *)req;
		op = ind->indirect_op;
		n = ind->nr_segments;
		sector = ind->sector_number;
		if (n <= BLKIF_MAX_SEGMENTS_PER_REQUEST || n > MAX_SEGS)
			return BLKIF_RSP_ERROR;
		int per = PAGE / sizeof(struct blkif_request_segment);
		int pages = (n + per - 1) / per;
		for (int k = 0; k < pages; k++) {
			struct blkif_request_segment g = {.gref = ind->indirect_grefs[k], .first_sect = 0, .last_sect = SECTORS_PER_PAGE - 1};
			unsigned char *ipage = granted(&g, 1);
			if (!ipage)
				return BLKIF_RSP_ERROR;
			int m = n - k * per < per ? n - k * per : per;
			memcpy(&segs[k * per], ipage, m * sizeof(segs[0]));
		}
		seg = segs;
	} else {
		n = req->nr_segments;
		if (n < 1 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST)
			return BLKIF_RSP_ERROR;
	}
	switch (op) {
	case BLKIF_OP_READ:
		write = 0;
		break;
	case BLKIF_OP_WRITE:
		write = 1;
		break;
	default:
		return BLKIF_RSP_EOPNOTSUPP;
	}
	uint64_t sectors = 0;
	for (int i = 0; i < n; i++) {
		unsigned char *page = granted(&seg[i], write);
		if (!page)
			return BLKIF_RSP_ERROR;
		p->iov[i].iov_base = page + seg[i].first_sect * 512;
		p->iov[i].iov_len = (seg[i].last_sect - seg[i].first_sect + 1) * 512;
		sectors += seg[i].last_sect - seg[i].first_sect + 1;
	}
	if (sector > sh->disk_bytes / 512 || sectors > sh->disk_bytes / 512 - sector)
		return BLKIF_RSP_ERROR;
	if (write) /* the bench's workloads read; writes are not carried out */
		return BLKIF_RSP_EOPNOTSUPP;
	p->n = n;
	p->off = sector * 512;
	p->len = sectors * 512;
	return BLKIF_RSP_OKAY;
}

/* Adds a checked read to the pass's batch: null and memory carry it out
 * now (one call after another, as their Go batches do at Submit), file
 * queues it on the ring. */
static void add(struct pending *p, int index)
{
	uint64_t off = p->off;
	switch (backend_kind) {
	case NULLB:
		for (int i = 0; i < p->n; i++)
			memset(p->iov[i].iov_base, 0, p->iov[i].iov_len);
		break;
	case MEMORY:
		for (int i = 0; i < p->n; i++) {
			memcpy(p->iov[i].iov_base, region + off, p->iov[i].iov_len);
			off += p->iov[i].iov_len;
		}
		break;
	case FILEB:
		uring_read(&ring_io, image_fd, p->iov, p->n, off, index);
		break;
	}
}

static void backend(const char *image)
{
	blkif_back_ring_t b;
	uint64_t cpu0 = 0;
	struct poller poll = {.w = {.max = BACK_POLL_NS, .cur = BACK_POLL_NS}};
	int after_work = 0;
	BACK_RING_INIT(&b, sring, (size_t)sh->ring_pages * PAGE);
	int slots = RING_SIZE(&b);
	struct pending *pass = calloc(slots, sizeof(*pass));
	int *res = calloc(slots, sizeof(int));
	if (!pass || !res) {
		perror("blkpair: backend");
		exit(1);
	}
	switch (backend_kind) {
	case MEMORY:
		region = malloc(sh->disk_bytes);
		if (!region) {
			perror("blkpair: memory backend");
			exit(1);
		}
		for (uint64_t o = 0; o < sh->disk_bytes && o < PATTERN_PERIOD; o++)
			region[o] = pattern_at(o);
		for (uint64_t o = PATTERN_PERIOD; o < sh->disk_bytes; o += PATTERN_PERIOD)
			memcpy(region + o, region, sh->disk_bytes - o < PATTERN_PERIOD ? sh->disk_bytes - o : PATTERN_PERIOD);
		break;
	case FILEB:
		image_fd = open(image, O_RDONLY | O_CLOEXEC);
		if (image_fd < 0 || uring_init(&ring_io, slots) < 0) {
			fprintf(stderr, "blkpair: file backend on %s: %s\n", image, strerror(errno));
			exit(1);
		}
		break;
	case NULLB:
		break;
	}
	ring_bell(efd_front); /* ready */
	while (!sh->stop) {
		int handled = 0;
		RING_IDX rc = b.req_cons, rp = sring->req_prod;
		rmb();
		if (RING_REQUEST_PROD_OVERFLOW(&b, rp))
			abort();
		if (rc != rp && !cpu0)
			cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
		for (; rc != rp && !RING_REQUEST_CONS_OVERFLOW(&b, rc); rc++) {
			blkif_request_t req;
			memcpy(&req, RING_GET_REQUEST(&b, rc), sizeof(req));
			b.req_cons = rc + 1;
			struct pending *p = &pass[handled];
			p->id = req.id;
			p->operation = req.operation;
			p->status = check(&req, p);
			res[handled] = 0;
			if (p->status == BLKIF_RSP_OKAY)
				add(p, handled);
			handled++;
		}
		if (backend_kind == FILEB && ring_io.queued)
			uring_run(&ring_io, res);
		for (int i = 0; i < handled; i++) {
			int16_t status = pass[i].status;
			if (status == BLKIF_RSP_OKAY && backend_kind == FILEB && res[i] != (int)pass[i].len)
				status = BLKIF_RSP_ERROR; /* the image is in the page cache: no short reads */
			blkif_response_t *rsp = RING_GET_RESPONSE(&b, b.rsp_prod_pvt);
			memset(rsp, 0, sizeof(*rsp));
			rsp->id = pass[i].id;
			rsp->operation = pass[i].operation;
			rsp->status = status;
			b.rsp_prod_pvt++;
		}
		int notify;
		RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);
		if (notify)
			ring_bell(efd_front);
		if (handled) {
			found_work(&poll);
			after_work = 1;
			continue;
		}
		int again = keep_polling(&poll, after_work);
		after_work = 0;
		if (again)
			continue;
		int more;
		RING_FINAL_CHECK_FOR_REQUESTS(&b, more);
		if (!more)
			sleep_on(efd_back);
	}
	if (cpu0)
		sh->back_cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
}

/* ---- the frontend ---- */

/* Checks one word of every page of a request's data, read from disk
 * offset off: the proof the backend really read. */
static void verify(const unsigned char *buf, uint64_t off, int pages, uint64_t nth)
{
	for (int i = 0; i < pages; i++) {
		/* A word that moves about the page from one request to the next. */
		size_t at = (size_t)i * PAGE + ((nth * 8 + (uint64_t)i * 520) % PAGE & ~(size_t)7);
		for (int k = 0; k < 8; k++) {
			unsigned char want = backend_kind == NULLB ? 0 : pattern_at(off + at + k);
			if (buf[at + k] != want) {
				fprintf(stderr, "blkpair: byte %llu of the disk read as %u, want %u\n",
					(unsigned long long)(off + at + k), buf[at + k], want);
				exit(1);
			}
		}
	}
}

static void frontend(double secs, int qd, int bs, uint64_t *done_out, double *elapsed_out, uint64_t *cpu_out)
{
	blkif_front_ring_t f;
	int segs = sh->segs, indirect = segs > BLKIF_MAX_SEGMENTS_PER_REQUEST;
	/* The callers' buffers: one per request in flight, as the Go bench's
	 * batch keeps one per tag; a single buffer would stay in L1 and
	 * flatter the copy. */
	unsigned char *bufs = aligned_alloc(PAGE, (size_t)qd * bs);
	int freeids[MAX_QD], nfree = 0;
	uint64_t offs[MAX_QD];
	char inflight[MAX_QD] = {0};
	uint64_t done = 0, rng = 42, next = 0;
	struct poller poll = {.w = {.max = FRONT_POLL_NS, .cur = FRONT_POLL_NS}};
	if (!bufs) {
		perror("blkpair: frontend");
		exit(1);
	}
	memset(bufs, 0, (size_t)qd * bs);
	FRONT_RING_INIT(&f, sring, (size_t)sh->ring_pages * PAGE);
	/* Grant the pool once (persistently): entry i is page i; slot id
	 * owns data pages id*segs.. and, indirect, page qd*segs+id. */
	for (int i = 0; i < sh->grants; i++) {
		gnt[i].domid = BACKEND_DOM;
		gnt[i].frame = i;
		wmb();
		gnt[i].flags = GTF_permit_access;
	}
	for (int i = 0; i < qd; i++)
		freeids[nfree++] = i;
	sleep_on(efd_front); /* the backend is ready */
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
	uint64_t cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (;;) {
		while (nfree > 0 && !RING_FULL(&f)) {
			int id = freeids[--nfree];
			blkif_request_t *req = RING_GET_REQUEST(&f, f.req_prod_pvt);
			uint64_t off;
			if (bs == PAGE) {
				rng = rng * 6364136223846793005u + 1442695040888963407u;
				off = ((rng >> 20) % (sh->disk_bytes / PAGE)) * PAGE;
			} else {
				off = next;
				next = (next + bs) % sh->disk_bytes;
			}
			memset(req, 0, sizeof(*req));
			struct blkif_request_segment *seg = req->seg;
			if (indirect) {
				blkif_request_indirect_t *ind = (blkif_request_indirect_t *)req;
				ind->operation = BLKIF_OP_INDIRECT;
				ind->indirect_op = BLKIF_OP_READ;
				ind->nr_segments = segs;
				ind->id = id;
				ind->sector_number = off / 512;
				ind->indirect_grefs[0] = qd * segs + id;
				seg = (struct blkif_request_segment *)(pool + (size_t)(qd * segs + id) * PAGE);
			} else {
				req->operation = BLKIF_OP_READ;
				req->nr_segments = segs;
				req->id = id;
				req->sector_number = off / 512;
			}
			for (int i = 0; i < segs; i++) {
				seg[i].gref = id * segs + i;
				seg[i].first_sect = 0;
				seg[i].last_sect = SECTORS_PER_PAGE - 1;
			}
			offs[id] = off;
			inflight[id] = 1;
			f.req_prod_pvt++;
		}
		int notify;
		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);
		if (notify)
			ring_bell(efd_back);
		int got = 0;
		RING_IDX rp = f.sring->rsp_prod;
		rmb();
		for (RING_IDX rc = f.rsp_cons; rc != rp; rc++) {
			blkif_response_t rsp;
			memcpy(&rsp, RING_GET_RESPONSE(&f, rc), sizeof(rsp));
			if (rsp.id >= (uint64_t)qd || !inflight[rsp.id] || rsp.status != BLKIF_RSP_OKAY) {
				fprintf(stderr, "blkpair: response id %llu status %d\n", (unsigned long long)rsp.id, rsp.status);
				exit(1);
			}
			inflight[rsp.id] = 0;
			unsigned char *buf = bufs + rsp.id * (size_t)bs;
			memcpy(buf, pool + rsp.id * (size_t)segs * PAGE, bs);
			verify(buf, offs[rsp.id], segs, done + got);
			freeids[nfree++] = rsp.id;
			got++;
		}
		f.rsp_cons = rp;
		done += got;
		if (now_ns() >= end)
			break;
		if (got) {
			found_work(&poll);
			continue;
		}
		/* Every pass placed requests: the poll for their answers starts
		 * as a poll after work does. */
		if (keep_polling(&poll, 1))
			continue;
		int more;
		RING_FINAL_CHECK_FOR_RESPONSES(&f, more);
		if (!more)
			sleep_on(efd_front);
	}
	*cpu_out = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	*elapsed_out = (now_ns() - t0) / 1e9;
	*done_out = done;
}

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr, "usage: blkpair SECONDS QD null|memory|file BS DISK_BYTES FRONT_CPU BACK_CPU [IMAGE]\n");
		return 2;
	}
	double secs = atof(argv[1]);
	int qd = atoi(argv[2]), bs = atoi(argv[4]);
	uint64_t disk = strtoull(argv[5], NULL, 10);
	int front_cpu = atoi(argv[6]), back_cpu = atoi(argv[7]);
	const char *image = argc > 8 ? argv[8] : NULL;
	if (!strcmp(argv[3], "null"))
		backend_kind = NULLB;
	else if (!strcmp(argv[3], "memory"))
		backend_kind = MEMORY;
	else if (!strcmp(argv[3], "file") && image)
		backend_kind = FILEB;
	else {
		fprintf(stderr, "blkpair: backend %s: want null, memory, or file with an IMAGE\n", argv[3]);
		return 2;
	}
	if (qd < 1 || qd > MAX_QD || bs < PAGE || bs % PAGE || bs / PAGE > MAX_SEGS || secs <= 0 || disk < (uint64_t)bs || disk % PAGE) {
		fprintf(stderr, "blkpair: want 1 <= QD <= %d, BS a multiple of 4096 up to 1 MiB, DISK_BYTES of whole pages\n", MAX_QD);
		return 2;
	}
	int segs = bs / PAGE;
	int grants = qd * segs + (segs > BLKIF_MAX_SEGMENTS_PER_REQUEST ? qd : 0);
	/* One blkif page holds 32 requests; give the ring room for QD. */
	int ring_pages = 1;
	while (ring_pages * 32 < qd)
		ring_pages *= 2;
	size_t gnt_bytes = (grants * sizeof(grant_entry_v1_t) + PAGE - 1) / PAGE * PAGE;
	size_t len = PAGE + (size_t)ring_pages * PAGE + gnt_bytes + (size_t)grants * PAGE;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("blkpair: mmap");
		return 1;
	}
	sh = (struct shared *)mem;
	sring = (blkif_sring_t *)(mem + PAGE);
	gnt = (grant_entry_v1_t *)(mem + PAGE + (size_t)ring_pages * PAGE);
	pool = mem + PAGE + (size_t)ring_pages * PAGE + gnt_bytes;
	sh->ring_pages = ring_pages;
	sh->qd = qd;
	sh->segs = segs;
	sh->grants = grants;
	sh->disk_bytes = disk;
	SHARED_RING_INIT(sring);
	efd_back = eventfd(0, EFD_CLOEXEC);
	efd_front = eventfd(0, EFD_CLOEXEC);
	if (efd_back < 0 || efd_front < 0) {
		perror("blkpair: eventfd");
		return 1;
	}
	pid_t child = fork();
	if (child < 0) {
		perror("blkpair: fork");
		return 1;
	}
	if (child == 0) {
		/* A frontend that fails (or is killed) takes the backend along. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
			_exit(1);
		pin(back_cpu, "backend");
		backend(image);
		_exit(0);
	}
	pin(front_cpu, "frontend");
	uint64_t done, cpu;
	double elapsed;
	frontend(secs, qd, bs, &done, &elapsed, &cpu);
	sh->stop = 1;
	ring_bell(efd_back);
	int st;
	waitpid(child, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "blkpair: backend failed\n");
		return 1;
	}
	if (done == 0) {
		fprintf(stderr, "blkpair: no request completed\n");
		return 1;
	}
	printf("%.0f %.0f\n", done / elapsed, (double)(cpu + sh->back_cpu_ns) / done);
	return 0;
}
