package blkif

// Persistent reservations as a dedicated blkif operation: the reviewer's
// alternative to SCSI pass-through (docs/PROTOCOL.md). It mirrors Linux's
// block-layer pr_ops so that a frontend that is not SCSI-minded can run a
// cluster; the backend serves it with the same reservation engine as the
// SCSI path, so both views agree.

const (
	// OpReservation is the operation number. Upstream numbers operations
	// densely from 0 (6 is the last today); 0x40 stays clear of that
	// range for the foreseeable future, of OpExtraData (0x7f) and of the
	// OpExtraFlag bit.
	OpReservation = 0x40

	// KeyFeatureReservations is written by a backend that serves OpReservation.
	KeyFeatureReservations = "feature-persistent-reservations"

	// RspReservationConflict answers an OpReservation refused because of
	// another initiator's reservation (SCSI RESERVATION CONFLICT). Only
	// OpReservation responses carry it; every other operation keeps
	// blkif.h's three statuses.
	RspReservationConflict int16 = -3
)

// Reservation actions (PRRequest.Action), one per pr_ops method.
const (
	PRRegister        = 1 // key -> sa_key (0 unregisters)
	PRRegisterIgnore  = 2 // register sa_key whatever the current key
	PRReserve         = 3
	PRRelease         = 4
	PRPreempt         = 5 // preempt sa_key's holder/registration using key
	PRPreemptAbort    = 6
	PRClear           = 7
	PRReadKeys        = 8 // data (SPC READ KEYS parameter data) into Gref's page
	PRReadReservation = 9 // data (SPC READ RESERVATION parameter data) into Gref's page
)

// PRFlagAPTPL asks that the registration persist through power loss.
const PRFlagAPTPL = 1 << 0

// PRRequest is an OpReservation request. Layout (one slot, natural
// alignment): operation@0, action@1, type@2, flags@3, id at the ABI's
// request id offset, then key u64, sa_key u64, gref u32; zero to the end.
type PRRequest struct {
	Action uint8
	// Type is an SPC-4 persistent reservation type code (scsi/pr.Type)
	// for reserve, release and preempt; 0 for the others.
	Type  uint8
	Flags uint8
	ID    uint64
	Key   uint64
	SAKey uint64
	// Gref is a page granted writable to the backend for the read
	// actions' parameter data (at most one page); 0 for the others.
	Gref uint32
}

func (a ABI) prOffsets() (id, key, saKey, gref int) {
	id = a.Layout().ReqID
	return id, id + 8, id + 16, id + 24
}

// DecodePRRequest copies an OpReservation slot into r.
func (a ABI) DecodePRRequest(slot []byte, r *PRRequest) {
	id, key, sa, gref := a.prOffsets()
	_ = slot[a.SlotSize()-1]
	r.Action, r.Type, r.Flags = slot[1], slot[2], slot[3]
	r.ID = le.Uint64(slot[id:])
	r.Key = le.Uint64(slot[key:])
	r.SAKey = le.Uint64(slot[sa:])
	r.Gref = le.Uint32(slot[gref:])
}

// EncodePRRequest writes an OpReservation slot, zeroing the rest of it.
func (a ABI) EncodePRRequest(slot []byte, r *PRRequest) {
	id, key, sa, gref := a.prOffsets()
	slot = slot[:a.SlotSize()]
	clear(slot)
	slot[0] = OpReservation
	slot[1], slot[2], slot[3] = r.Action, r.Type, r.Flags
	le.PutUint64(slot[id:], r.ID)
	le.PutUint64(slot[key:], r.Key)
	le.PutUint64(slot[sa:], r.SAKey)
	le.PutUint32(slot[gref:], r.Gref)
}
