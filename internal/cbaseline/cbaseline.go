// Package cbaseline carries the C baseline programs, built with gcc at
// bench time: c/ringpair.c, the ring-only ping-pong with Xen's ring.h.
package cbaseline

import _ "embed"

// RingPair is the source of ringpair.c.
//
//go:embed c/ringpair.c
var RingPair []byte
