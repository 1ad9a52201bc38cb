package scsi

import "sync"

// PowerOn remembers which nexuses have been told about the power-on reset:
// every I_T nexus gets POWER ON RESET once, at its first command that is
// not exempt. The zero value is ready; safe for concurrent use.
type PowerOn struct {
	mu   sync.Mutex
	seen map[Nexus]bool
}

// Pop reports whether n still had its POWER ON RESET pending, and clears it.
func (p *PowerOn) Pop(n Nexus) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[n] {
		return false
	}
	if p.seen == nil {
		p.seen = make(map[Nexus]bool)
	}
	p.seen[n] = true
	return true
}

// UnitAttentionExempt reports whether op runs without reporting (or
// clearing) a pending unit attention (SPC-4 5.14 / SAM-5): INQUIRY, REPORT
// LUNS, and REQUEST SENSE, which returns the attention as its data instead.
func UnitAttentionExempt(op byte) bool {
	return op == OpInquiry || op == OpReportLuns || op == OpRequestSense
}

// PendingAttention pops the unit attention pending for n: POWER ON RESET
// first, then whatever the reservation engine (if any) queued.
func PendingAttention(p *PowerOn, r Reservations, n Nexus) (Code, bool) {
	if p.Pop(n) {
		return PowerOnReset, true
	}
	if r != nil {
		return r.UnitAttention(n)
	}
	return Code{}, false
}
