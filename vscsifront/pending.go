package vscsifront

// idQueue is the vhost's commands waiting for room on the ring, by slot
// id, oldest first: a ring buffer allocated once with room for every
// slot, since a slot is queued at most once (exactly while it is
// submitted).
type idQueue struct {
	buf     []int
	head, n int
}

func newIDQueue(capacity int) idQueue { return idQueue{buf: make([]int, capacity)} }

func (q *idQueue) len() int { return q.n }

// at is the i-th oldest id, 0 <= i < len.
func (q *idQueue) at(i int) int { return q.buf[(q.head+i)%len(q.buf)] }

// pushBack queues id behind the others. A full queue is a bug in the
// caller (more ids than slots): it panics.
func (q *idQueue) pushBack(id int) {
	if q.n == len(q.buf) {
		panic("vscsifront: pending queue over its slots")
	}
	q.buf[(q.head+q.n)%len(q.buf)] = id
	q.n++
}

// pushFront queues id before the others.
func (q *idQueue) pushFront(id int) {
	if q.n == len(q.buf) {
		panic("vscsifront: pending queue over its slots")
	}
	q.head = (q.head + len(q.buf) - 1) % len(q.buf)
	q.buf[q.head] = id
	q.n++
}

// popFront takes the oldest id; the queue is not empty.
func (q *idQueue) popFront() int {
	id := q.buf[q.head]
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return id
}

// removeIf takes every id for which drop reports true out of the queue,
// keeping the others in order, and returns how many it took.
func (q *idQueue) removeIf(drop func(id int) bool) int {
	kept := 0
	for i := range q.n {
		id := q.at(i)
		if drop(id) {
			continue
		}
		q.buf[(q.head+kept)%len(q.buf)] = id
		kept++
	}
	removed := q.n - kept
	q.n = kept
	return removed
}

// reset empties the queue.
func (q *idQueue) reset() { q.head, q.n = 0, 0 }
