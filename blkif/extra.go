package blkif

// The SCSI extension (docs/PROTOCOL.md): a request whose operation carries
// OpExtraFlag is followed in the next ring slot by an extra slot, and its
// response by an extra response. Both layouts use natural alignment and put
// every field that other structs share (id, operation, status) at the same
// offset as they do, on each ABI.

const (
	// OpExtraFlag marks a request followed by an extra slot.
	OpExtraFlag = 0x80
	// OpExtraData is the operation byte of an extra slot and of an extra
	// response. It is deliberately not a valid operation: a backend that
	// lost track of pairing, or one that never heard of the extension,
	// answers it with an error instead of reading it as a WRITE (the RFC's
	// type=1 at offset 0 would have been BLKIF_OP_WRITE).
	OpExtraData = 0x7f

	// ExtraTypeSCSI: the extra slot carries a SCSI command.
	ExtraTypeSCSI = 1

	// KeyFeatureExtraRequest is written by the backend (the highest
	// version it speaks) and by the frontend (the version it uses).
	KeyFeatureExtraRequest = "feature-extra-request"
	// ExtraRequestVersion is the version this implementation speaks.
	ExtraRequestVersion = 1

	// Limits of version 1: CDBs of 6 to 32 bytes (SPC's shortest and
	// variable-length commands up to 32 bytes).
	MinCDBLength = 6
	MaxCDBLength = 32
	// SenseOffset is where the backend writes sense data in the command
	// page; the CDB sits at offset 0. Fixed so they never overlap.
	SenseOffset = 256
	// MaxSenseLength is SPC's maximum sense length.
	MaxSenseLength = 252
)

// ExtraRequest is a decoded extra slot.
type ExtraRequest struct {
	Type    uint8
	CmdLen  uint8
	Flags   uint8
	ID      uint64
	CmdGref uint32
	// DataLen is the exact number of bytes to transfer, at most the
	// segments' total; it need not be a multiple of 512.
	DataLen uint32
}

// ExtraResponse is a decoded extra response. It carries no id: it is the
// response slot right after its base response, published with it.
type ExtraResponse struct {
	ResidLen   uint32
	SenseLen   uint8
	SCSIStatus uint8
	Type       uint8
	Status     int16
}

// Offsets of the extra slot: op@0, type@1, cmd_len@2, flags@3, then id at
// the ABI's request id offset, cmd_gref and data_len after it.
func (a ABI) extraOffsets() (id, gref, dataLen int) {
	l := a.Layout()
	return l.ReqID, l.ReqID + 8, l.ReqID + 12
}

// DecodeExtraRequest copies an extra slot into r.
func (a ABI) DecodeExtraRequest(slot []byte, r *ExtraRequest) {
	id, gref, dl := a.extraOffsets()
	_ = slot[a.SlotSize()-1]
	r.Type = slot[1]
	r.CmdLen = slot[2]
	r.Flags = slot[3]
	r.ID = le.Uint64(slot[id:])
	r.CmdGref = le.Uint32(slot[gref:])
	r.DataLen = le.Uint32(slot[dl:])
}

// EncodeExtraRequest writes an extra slot, zeroing the rest of it.
func (a ABI) EncodeExtraRequest(slot []byte, r *ExtraRequest) {
	id, gref, dl := a.extraOffsets()
	slot = slot[:a.SlotSize()]
	clear(slot)
	slot[0] = OpExtraData
	slot[1] = r.Type
	slot[2] = r.CmdLen
	slot[3] = r.Flags
	le.PutUint64(slot[id:], r.ID)
	le.PutUint32(slot[gref:], r.CmdGref)
	le.PutUint32(slot[dl:], r.DataLen)
}

// Extra response layout (fits x86_32's 12-byte response): resid_len u32@0,
// sense_len u8@4, scsi_status u8@5, type u8@6, reserved@7,
// operation u8@8 = OpExtraData, reserved@9, status i16@10.

// DecodeExtraResponse copies an extra response out of slot.
func (a ABI) DecodeExtraResponse(slot []byte, r *ExtraResponse) {
	_ = slot[11]
	r.ResidLen = le.Uint32(slot[0:])
	r.SenseLen = slot[4]
	r.SCSIStatus = slot[5]
	r.Type = slot[6]
	r.Status = int16(le.Uint16(slot[10:]))
}

// IsExtraResponse reports whether a response slot holds an extra response.
func IsExtraResponse(slot []byte) bool { return slot[8] == OpExtraData }

// EncodeExtraResponse writes an extra response, zeroing the rest of the slot.
func (a ABI) EncodeExtraResponse(slot []byte, r *ExtraResponse) {
	slot = slot[:a.SlotSize()]
	clear(slot)
	le.PutUint32(slot[0:], r.ResidLen)
	slot[4] = r.SenseLen
	slot[5] = r.SCSIStatus
	slot[6] = r.Type
	slot[8] = OpExtraData
	le.PutUint16(slot[10:], uint16(r.Status))
}
