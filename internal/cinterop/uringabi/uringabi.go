//go:build cinterop

// Package uringabi checks internal/uring's structure layouts and constants
// against Linux's uapi header <linux/io_uring.h> (linux-libc-dev), through
// cgo. Build tag cinterop.
package uringabi

/*
#include <stddef.h>
#include <linux/io_uring.h>

#define OFF(s, f) offsetof(struct s, f)

enum {
	sqe_opcode = OFF(io_uring_sqe, opcode),
	sqe_flags = OFF(io_uring_sqe, flags),
	sqe_ioprio = OFF(io_uring_sqe, ioprio),
	sqe_fd = OFF(io_uring_sqe, fd),
	sqe_off = OFF(io_uring_sqe, off),
	sqe_addr = OFF(io_uring_sqe, addr),
	sqe_len = OFF(io_uring_sqe, len),
	sqe_rw_flags = OFF(io_uring_sqe, rw_flags),
	sqe_fsync_flags = OFF(io_uring_sqe, fsync_flags),
	sqe_user_data = OFF(io_uring_sqe, user_data),
	sqe_buf_index = OFF(io_uring_sqe, buf_index),
	sqe_personality = OFF(io_uring_sqe, personality),
	sqe_splice_fd_in = OFF(io_uring_sqe, splice_fd_in),
	sqe_addr3 = OFF(io_uring_sqe, addr3),
	cqe_user_data = OFF(io_uring_cqe, user_data),
	cqe_res = OFF(io_uring_cqe, res),
	cqe_flags = OFF(io_uring_cqe, flags),
	sq_head = OFF(io_sqring_offsets, head),
	sq_tail = OFF(io_sqring_offsets, tail),
	sq_ring_mask = OFF(io_sqring_offsets, ring_mask),
	sq_ring_entries = OFF(io_sqring_offsets, ring_entries),
	sq_flags = OFF(io_sqring_offsets, flags),
	sq_dropped = OFF(io_sqring_offsets, dropped),
	sq_array = OFF(io_sqring_offsets, array),
	cq_head = OFF(io_cqring_offsets, head),
	cq_tail = OFF(io_cqring_offsets, tail),
	cq_ring_mask = OFF(io_cqring_offsets, ring_mask),
	cq_ring_entries = OFF(io_cqring_offsets, ring_entries),
	cq_overflow = OFF(io_cqring_offsets, overflow),
	cq_cqes = OFF(io_cqring_offsets, cqes),
	cq_flags = OFF(io_cqring_offsets, flags),
	p_sq_entries = OFF(io_uring_params, sq_entries),
	p_cq_entries = OFF(io_uring_params, cq_entries),
	p_flags = OFF(io_uring_params, flags),
	p_features = OFF(io_uring_params, features),
	p_wq_fd = OFF(io_uring_params, wq_fd),
	p_sq_off = OFF(io_uring_params, sq_off),
	p_cq_off = OFF(io_uring_params, cq_off),
};
*/
import "C"

// Facts lists every C-side number the test compares, by the C name.
func Facts() map[string]uint64 {
	return map[string]uint64{
		"sizeof(io_uring_sqe)":      uint64(C.sizeof_struct_io_uring_sqe),
		"sizeof(io_uring_cqe)":      uint64(C.sizeof_struct_io_uring_cqe),
		"sizeof(io_sqring_offsets)": uint64(C.sizeof_struct_io_sqring_offsets),
		"sizeof(io_cqring_offsets)": uint64(C.sizeof_struct_io_cqring_offsets),
		"sizeof(io_uring_params)":   uint64(C.sizeof_struct_io_uring_params),

		"io_uring_sqe.opcode":       uint64(C.sqe_opcode),
		"io_uring_sqe.flags":        uint64(C.sqe_flags),
		"io_uring_sqe.ioprio":       uint64(C.sqe_ioprio),
		"io_uring_sqe.fd":           uint64(C.sqe_fd),
		"io_uring_sqe.off":          uint64(C.sqe_off),
		"io_uring_sqe.addr":         uint64(C.sqe_addr),
		"io_uring_sqe.len":          uint64(C.sqe_len),
		"io_uring_sqe.rw_flags":     uint64(C.sqe_rw_flags),
		"io_uring_sqe.fsync_flags":  uint64(C.sqe_fsync_flags),
		"io_uring_sqe.user_data":    uint64(C.sqe_user_data),
		"io_uring_sqe.buf_index":    uint64(C.sqe_buf_index),
		"io_uring_sqe.personality":  uint64(C.sqe_personality),
		"io_uring_sqe.splice_fd_in": uint64(C.sqe_splice_fd_in),
		"io_uring_sqe.addr3":        uint64(C.sqe_addr3),
		"io_uring_cqe.user_data":    uint64(C.cqe_user_data),
		"io_uring_cqe.res":          uint64(C.cqe_res),
		"io_uring_cqe.flags":        uint64(C.cqe_flags),

		"io_sqring_offsets.head":         uint64(C.sq_head),
		"io_sqring_offsets.tail":         uint64(C.sq_tail),
		"io_sqring_offsets.ring_mask":    uint64(C.sq_ring_mask),
		"io_sqring_offsets.ring_entries": uint64(C.sq_ring_entries),
		"io_sqring_offsets.flags":        uint64(C.sq_flags),
		"io_sqring_offsets.dropped":      uint64(C.sq_dropped),
		"io_sqring_offsets.array":        uint64(C.sq_array),
		"io_cqring_offsets.head":         uint64(C.cq_head),
		"io_cqring_offsets.tail":         uint64(C.cq_tail),
		"io_cqring_offsets.ring_mask":    uint64(C.cq_ring_mask),
		"io_cqring_offsets.ring_entries": uint64(C.cq_ring_entries),
		"io_cqring_offsets.overflow":     uint64(C.cq_overflow),
		"io_cqring_offsets.cqes":         uint64(C.cq_cqes),
		"io_cqring_offsets.flags":        uint64(C.cq_flags),
		"io_uring_params.sq_entries":     uint64(C.p_sq_entries),
		"io_uring_params.cq_entries":     uint64(C.p_cq_entries),
		"io_uring_params.flags":          uint64(C.p_flags),
		"io_uring_params.features":       uint64(C.p_features),
		"io_uring_params.wq_fd":          uint64(C.p_wq_fd),
		"io_uring_params.sq_off":         uint64(C.p_sq_off),
		"io_uring_params.cq_off":         uint64(C.p_cq_off),

		"IORING_OP_NOP":             uint64(C.IORING_OP_NOP),
		"IORING_OP_READV":           uint64(C.IORING_OP_READV),
		"IORING_OP_WRITEV":          uint64(C.IORING_OP_WRITEV),
		"IORING_OP_FSYNC":           uint64(C.IORING_OP_FSYNC),
		"IORING_OP_READ":            uint64(C.IORING_OP_READ),
		"IORING_OP_WRITE":           uint64(C.IORING_OP_WRITE),
		"IORING_FSYNC_DATASYNC":     uint64(C.IORING_FSYNC_DATASYNC),
		"IORING_SETUP_CQSIZE":       uint64(C.IORING_SETUP_CQSIZE),
		"IORING_SETUP_CLAMP":        uint64(C.IORING_SETUP_CLAMP),
		"IORING_SETUP_SUBMIT_ALL":   uint64(C.IORING_SETUP_SUBMIT_ALL),
		"IORING_SETUP_COOP_TASKRUN": uint64(C.IORING_SETUP_COOP_TASKRUN),
		"IORING_FEAT_SINGLE_MMAP":   uint64(C.IORING_FEAT_SINGLE_MMAP),
		"IORING_FEAT_NODROP":        uint64(C.IORING_FEAT_NODROP),
		"IORING_FEAT_SUBMIT_STABLE": uint64(C.IORING_FEAT_SUBMIT_STABLE),
		"IORING_OFF_SQ_RING":        uint64(C.IORING_OFF_SQ_RING),
		"IORING_OFF_CQ_RING":        uint64(C.IORING_OFF_CQ_RING),
		"IORING_OFF_SQES":           uint64(C.IORING_OFF_SQES),
		"IORING_ENTER_GETEVENTS":    uint64(C.IORING_ENTER_GETEVENTS),
	}
}
