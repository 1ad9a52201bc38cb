// Package cbaseline carries the C baseline programs, built with gcc at
// bench time: c/ringpair.c, the ring-only ping-pong with Xen's ring.h, and
// c/nullpair.c, the null backend's and the frontend's per-request work on
// the same design (ring, grant table, pre-granted pool, eventfds) in two
// processes.
package cbaseline

import _ "embed"

// RingPair is the source of ringpair.c.
//
//go:embed c/ringpair.c
var RingPair []byte

// NullPair is the source of nullpair.c.
//
//go:embed c/nullpair.c
var NullPair []byte
