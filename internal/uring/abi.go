package uring

// The kernel ABI of <linux/io_uring.h>, written from its field list. The
// sizes and offsets are checked against the C header by
// internal/cinterop/uringabi (build tag cinterop); the constants too.

// SQE is one submission queue entry (struct io_uring_sqe, 64 bytes).
// Only the fields this package's operations use are named; the unions
// they share are named after the use made of them here.
type SQE struct {
	Opcode      uint8
	Flags       uint8 // IOSQE_*
	IOPrio      uint16
	FD          int32
	Off         uint64 // file offset
	Addr        uint64 // buffer or iovec array address
	Len         uint32 // buffer bytes or iovec count
	OpFlags     uint32 // rw_flags, fsync_flags, ...
	UserData    uint64 // returned in the CQE
	BufIndex    uint16
	Personality uint16
	SpliceFDIn  int32
	Addr3       uint64
	pad2        uint64
}

// CQE is one completion queue entry (struct io_uring_cqe, 16 bytes).
type CQE struct {
	UserData uint64
	Res      int32 // bytes moved, or -errno
	Flags    uint32
}

// SQRingOffsets locates the submission ring's fields in its mapping
// (struct io_sqring_offsets).
type SQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

// CQRingOffsets locates the completion ring's fields in its mapping
// (struct io_cqring_offsets).
type CQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

// Params is io_uring_setup's argument and answer (struct io_uring_params).
type Params struct {
	SQEntries    uint32
	CQEntries    uint32
	Flags        uint32 // SetupXxx
	SQThreadCPU  uint32
	SQThreadIdle uint32
	Features     uint32 // FeatXxx, filled in by the kernel
	WQFD         uint32
	Resv         [3]uint32
	SQOff        SQRingOffsets
	CQOff        CQRingOffsets
}

// Opcodes (enum io_uring_op).
const (
	OpNop    = 0
	OpReadv  = 1
	OpWritev = 2
	OpFsync  = 3
	OpRead   = 22
	OpWrite  = 23
)

// FsyncDatasync in an fsync SQE's OpFlags makes it fdatasync.
const FsyncDatasync = 1

// io_uring_setup flags.
const (
	SetupCQSize      = 1 << 3 // Params.CQEntries is the CQ size wanted
	SetupClamp       = 1 << 4 // clamp sizes to the maximum instead of failing
	SetupSubmitAll   = 1 << 7 // keep submitting after an SQE fails at submission
	SetupCoopTaskrun = 1 << 8 // no interrupting IPI to run completion work
)

// Features the kernel reports in Params.Features.
const (
	FeatSingleMmap   = 1 << 0 // SQ and CQ rings share one mapping
	FeatNodrop       = 1 << 1 // completions are never dropped on CQ overflow
	FeatSubmitStable = 1 << 2 // data behind an SQE may change once submitted
)

// mmap offsets selecting what io_uring's fd maps.
const (
	OffSQRing = 0
	OffCQRing = 0x8000000
	OffSQEs   = 0x10000000
)

// EnterGetEvents makes io_uring_enter wait for min_complete completions.
const EnterGetEvents = 1 << 0
