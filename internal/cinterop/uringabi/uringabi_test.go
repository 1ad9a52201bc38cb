//go:build cinterop

package uringabi

import (
	"maps"
	"slices"
	"testing"
	"unsafe"

	"github.com/xenblk/xenblk/internal/uring"
)

// TestAgainstHeader compares every size, offset and constant
// internal/uring hands the kernel with what the C compiler makes of
// <linux/io_uring.h>.
func TestAgainstHeader(t *testing.T) {
	var sqe uring.SQE
	var cqe uring.CQE
	var sq uring.SQRingOffsets
	var cq uring.CQRingOffsets
	var p uring.Params
	ours := map[string]uint64{
		"sizeof(io_uring_sqe)":      uint64(unsafe.Sizeof(sqe)),
		"sizeof(io_uring_cqe)":      uint64(unsafe.Sizeof(cqe)),
		"sizeof(io_sqring_offsets)": uint64(unsafe.Sizeof(sq)),
		"sizeof(io_cqring_offsets)": uint64(unsafe.Sizeof(cq)),
		"sizeof(io_uring_params)":   uint64(unsafe.Sizeof(p)),

		"io_uring_sqe.opcode":       uint64(unsafe.Offsetof(sqe.Opcode)),
		"io_uring_sqe.flags":        uint64(unsafe.Offsetof(sqe.Flags)),
		"io_uring_sqe.ioprio":       uint64(unsafe.Offsetof(sqe.IOPrio)),
		"io_uring_sqe.fd":           uint64(unsafe.Offsetof(sqe.FD)),
		"io_uring_sqe.off":          uint64(unsafe.Offsetof(sqe.Off)),
		"io_uring_sqe.addr":         uint64(unsafe.Offsetof(sqe.Addr)),
		"io_uring_sqe.len":          uint64(unsafe.Offsetof(sqe.Len)),
		"io_uring_sqe.rw_flags":     uint64(unsafe.Offsetof(sqe.OpFlags)),
		"io_uring_sqe.fsync_flags":  uint64(unsafe.Offsetof(sqe.OpFlags)),
		"io_uring_sqe.user_data":    uint64(unsafe.Offsetof(sqe.UserData)),
		"io_uring_sqe.buf_index":    uint64(unsafe.Offsetof(sqe.BufIndex)),
		"io_uring_sqe.personality":  uint64(unsafe.Offsetof(sqe.Personality)),
		"io_uring_sqe.splice_fd_in": uint64(unsafe.Offsetof(sqe.SpliceFDIn)),
		"io_uring_sqe.addr3":        uint64(unsafe.Offsetof(sqe.Addr3)),
		"io_uring_cqe.user_data":    uint64(unsafe.Offsetof(cqe.UserData)),
		"io_uring_cqe.res":          uint64(unsafe.Offsetof(cqe.Res)),
		"io_uring_cqe.flags":        uint64(unsafe.Offsetof(cqe.Flags)),

		"io_sqring_offsets.head":         uint64(unsafe.Offsetof(sq.Head)),
		"io_sqring_offsets.tail":         uint64(unsafe.Offsetof(sq.Tail)),
		"io_sqring_offsets.ring_mask":    uint64(unsafe.Offsetof(sq.RingMask)),
		"io_sqring_offsets.ring_entries": uint64(unsafe.Offsetof(sq.RingEntries)),
		"io_sqring_offsets.flags":        uint64(unsafe.Offsetof(sq.Flags)),
		"io_sqring_offsets.dropped":      uint64(unsafe.Offsetof(sq.Dropped)),
		"io_sqring_offsets.array":        uint64(unsafe.Offsetof(sq.Array)),
		"io_cqring_offsets.head":         uint64(unsafe.Offsetof(cq.Head)),
		"io_cqring_offsets.tail":         uint64(unsafe.Offsetof(cq.Tail)),
		"io_cqring_offsets.ring_mask":    uint64(unsafe.Offsetof(cq.RingMask)),
		"io_cqring_offsets.ring_entries": uint64(unsafe.Offsetof(cq.RingEntries)),
		"io_cqring_offsets.overflow":     uint64(unsafe.Offsetof(cq.Overflow)),
		"io_cqring_offsets.cqes":         uint64(unsafe.Offsetof(cq.CQEs)),
		"io_cqring_offsets.flags":        uint64(unsafe.Offsetof(cq.Flags)),
		"io_uring_params.sq_entries":     uint64(unsafe.Offsetof(p.SQEntries)),
		"io_uring_params.cq_entries":     uint64(unsafe.Offsetof(p.CQEntries)),
		"io_uring_params.flags":          uint64(unsafe.Offsetof(p.Flags)),
		"io_uring_params.features":       uint64(unsafe.Offsetof(p.Features)),
		"io_uring_params.wq_fd":          uint64(unsafe.Offsetof(p.WQFD)),
		"io_uring_params.sq_off":         uint64(unsafe.Offsetof(p.SQOff)),
		"io_uring_params.cq_off":         uint64(unsafe.Offsetof(p.CQOff)),

		"IORING_OP_NOP":             uring.OpNop,
		"IORING_OP_READV":           uring.OpReadv,
		"IORING_OP_WRITEV":          uring.OpWritev,
		"IORING_OP_FSYNC":           uring.OpFsync,
		"IORING_OP_READ":            uring.OpRead,
		"IORING_OP_WRITE":           uring.OpWrite,
		"IORING_FSYNC_DATASYNC":     uring.FsyncDatasync,
		"IORING_SETUP_CQSIZE":       uring.SetupCQSize,
		"IORING_SETUP_CLAMP":        uring.SetupClamp,
		"IORING_SETUP_SUBMIT_ALL":   uring.SetupSubmitAll,
		"IORING_SETUP_COOP_TASKRUN": uring.SetupCoopTaskrun,
		"IORING_FEAT_SINGLE_MMAP":   uring.FeatSingleMmap,
		"IORING_FEAT_NODROP":        uring.FeatNodrop,
		"IORING_FEAT_SUBMIT_STABLE": uring.FeatSubmitStable,
		"IORING_OFF_SQ_RING":        uring.OffSQRing,
		"IORING_OFF_CQ_RING":        uring.OffCQRing,
		"IORING_OFF_SQES":           uring.OffSQEs,
		"IORING_ENTER_GETEVENTS":    uring.EnterGetEvents,
	}
	facts := Facts()
	names := slices.Sorted(maps.Keys(facts))
	for name := range ours {
		if _, inC := facts[name]; !inC {
			names = append(names, name)
		}
	}
	for _, name := range names {
		got, inGo := ours[name]
		want, inC := facts[name]
		switch {
		case !inGo:
			t.Errorf("%s: internal/uring has no value for it", name)
		case !inC:
			t.Errorf("%s: the C side does not check it", name)
		case got != want:
			t.Errorf("%s: internal/uring says %#x, <linux/io_uring.h> %#x", name, got, want)
		}
	}
}
