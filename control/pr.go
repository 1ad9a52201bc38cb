package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/xenblk/xenblk/blkfront"
	"github.com/xenblk/xenblk/scsi/pr"
)

// The "pr" op carries the dedicated blkif reservation operation
// (docs/PROTOCOL.md part 3), shaped like Linux's pr_ops:
//
//	{"op":"pr","device":"xvda","pr":{"action":"reserve","key":1,"type":5}}
//	{"status":0,"resid":0,"pr":{}}
//	{"status":0,"resid":0,"conflict":true}
//	{"status":0,"resid":0,"pr":{"generation":3,"keys":[1,2]}}
//	{"status":0,"resid":0,"pr":{"generation":3,"held":true,"key":1,"type":5}}
//
// A RESERVATION CONFLICT is an answer ("conflict"), not an error.

// PRTarget is a Target that also speaks the dedicated reservation
// operation; *blkfront.Disk is one. A device that is not answers the pr op
// with an error saying so.
type PRTarget interface {
	PRRegister(ctx context.Context, oldKey, newKey uint64, ignore, aptpl bool) error
	PRReserve(ctx context.Context, key uint64, typ pr.Type) error
	PRRelease(ctx context.Context, key uint64, typ pr.Type) error
	PRPreempt(ctx context.Context, key, oldKey uint64, typ pr.Type, abort bool) error
	PRClear(ctx context.Context, key uint64) error
	PRReadKeys(ctx context.Context) (gen uint32, keys []uint64, err error)
	PRReadReservation(ctx context.Context) (blkfront.PRReservation, error)
}

// ErrReservationConflict is what Client.PR returns when another
// initiator's reservation refused the action; it is
// blkfront.ErrReservationConflict, so errors.Is works on either.
var ErrReservationConflict = blkfront.ErrReservationConflict

// PR actions, as the "action" field and `xenblk pr` name them.
const (
	PRRegister        = "register"
	PRReserve         = "reserve"
	PRRelease         = "release"
	PRPreempt         = "preempt"
	PRPreemptAbort    = "preempt-abort"
	PRClear           = "clear"
	PRReadKeys        = "read-keys"
	PRReadReservation = "read-reservation"
)

// PRActions lists every action, in the order tools show them.
var PRActions = []string{PRRegister, PRReserve, PRRelease, PRPreempt, PRPreemptAbort, PRClear, PRReadKeys, PRReadReservation}

// PRRequest is one reservation action. Key is our key (the current one
// for register), OldKey the key being replaced (register) or preempted
// (preempt); Type an SPC-4 reservation type, a number in JSON.
type PRRequest struct {
	Action string  `json:"action"`
	Key    uint64  `json:"key,omitempty"`
	OldKey uint64  `json:"old_key,omitempty"`
	Type   pr.Type `json:"type,omitempty"`
	Ignore bool    `json:"ignore,omitempty"`
	APTPL  bool    `json:"aptpl,omitempty"`
}

// PRResult is a successful action's answer: the read actions fill it.
type PRResult struct {
	Generation uint32   `json:"generation,omitempty"`
	Keys       []uint64 `json:"keys,omitempty"`
	Held       bool     `json:"held,omitempty"`
	Key        uint64   `json:"key,omitempty"`
	Type       pr.Type  `json:"type,omitempty"`
}

// maxPRKeys bounds the keys a response carries (a 4 KiB READ KEYS page
// holds at most 511).
const maxPRKeys = 4096

func handlePR(req *Request, t Target) Response {
	p, ok := t.(PRTarget)
	if !ok {
		return Response{Error: fmt.Sprintf("device %q does not carry the reservation operation", req.Device)}
	}
	if req.PR == nil {
		return Response{Error: "pr op without a pr request"}
	}
	r := req.PR
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var (
		res PRResult
		err error
	)
	switch r.Action {
	case PRRegister:
		// Register: Key is the new key, OldKey the one it replaces.
		err = p.PRRegister(ctx, r.OldKey, r.Key, r.Ignore, r.APTPL)
	case PRReserve:
		err = p.PRReserve(ctx, r.Key, r.Type)
	case PRRelease:
		err = p.PRRelease(ctx, r.Key, r.Type)
	case PRPreempt, PRPreemptAbort:
		err = p.PRPreempt(ctx, r.Key, r.OldKey, r.Type, r.Action == PRPreemptAbort)
	case PRClear:
		err = p.PRClear(ctx, r.Key)
	case PRReadKeys:
		res.Generation, res.Keys, err = p.PRReadKeys(ctx)
		if len(res.Keys) > maxPRKeys {
			res.Keys = res.Keys[:maxPRKeys]
		}
	case PRReadReservation:
		var rr blkfront.PRReservation
		rr, err = p.PRReadReservation(ctx)
		res = PRResult{Generation: rr.Generation, Held: rr.Held, Key: rr.Key, Type: rr.Type}
	default:
		return Response{Error: fmt.Sprintf("unknown pr action %q (want one of %v)", r.Action, PRActions)}
	}
	if errors.Is(err, blkfront.ErrReservationConflict) {
		return Response{Conflict: true}
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{PR: &res}
}

// PR runs one reservation action on device. A RESERVATION CONFLICT is
// ErrReservationConflict; other errors are transport failures, a device
// without the reservation operation, or the backend's refusal.
func (c *Client) PR(device string, r PRRequest) (PRResult, error) {
	resp, err := c.roundTrip(&Request{Op: "pr", Device: device, PR: &r})
	if err != nil {
		return PRResult{}, err
	}
	if resp.Conflict {
		return PRResult{}, ErrReservationConflict
	}
	if resp.PR == nil {
		return PRResult{}, errors.New("control: pr response without a result")
	}
	return *resp.PR, nil
}

var _ PRTarget = (*blkfront.Disk)(nil)
