// Package cbaseline carries the C baseline programs, built with gcc at
// bench time: c/ringpair.c, the ring-only ping-pong with Xen's ring.h, and
// c/blkpair.c, the data path of the null, memory and file backends and
// of the frontend on the same design (ring, grant table, pre-granted
// pool, indirect requests, eventfds, one io_uring batch per ring pass) in
// two processes.
package cbaseline

import _ "embed"

// RingPair is the source of ringpair.c.
//
//go:embed c/ringpair.c
var RingPair []byte

// BlkPair is the source of blkpair.c.
//
//go:embed c/blkpair.c
var BlkPair []byte
