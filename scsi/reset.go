package scsi

import "sync/atomic"

// LogicalUnitResetter is implemented by engines that keep per-nexus
// state, and by the reservations behind them. LogicalUnitReset carries
// out a LOGICAL UNIT RESET received on nexus n (SAM-5), the transport
// having cleared the task set: an engine establishes a unit attention,
// BUS DEVICE RESET FUNCTION OCCURRED, for every other nexus of the
// logical unit; reservations release an SPC-2 reservation. Persistent
// reservations and registrations are not affected (SPC-4 5.13).
type LogicalUnitResetter interface {
	LogicalUnitReset(n Nexus)
}

// Resets counts the resets of one logical unit. Every engine serving the
// unit (two vbds or vhosts given one disk) shares one, so that a reset
// received through one reaches the nexuses of all: each engine tells
// each of its nexuses once about resets it has not seen. The zero value
// is ready; safe for concurrent use.
type Resets struct{ n atomic.Uint64 }

// Count is the number of resets so far.
func (r *Resets) Count() uint64 { return r.n.Load() }

// Add records a reset and returns the new count.
func (r *Resets) Add() uint64 { return r.n.Add(1) }
