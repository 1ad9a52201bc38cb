//go:build cinterop

// Package xendev checks xen/linux's ioctl numbers and structure layouts
// against libxen-dev's copies of Linux's uapi headers (xen/sys/gntdev.h,
// gntalloc.h, evtchn.h), through cgo. Build tag cinterop.
package xendev

/*
#include <stdint.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <xen/xen.h>
#include <xen/sys/gntdev.h>
#include <xen/sys/gntalloc.h>
#include <xen/sys/evtchn.h>

enum {
	offsetof_map_count = offsetof(struct ioctl_gntdev_map_grant_ref, count),
	offsetof_map_index = offsetof(struct ioctl_gntdev_map_grant_ref, index),
	offsetof_map_refs = offsetof(struct ioctl_gntdev_map_grant_ref, refs),
	offsetof_alloc_domid = offsetof(struct ioctl_gntalloc_alloc_gref, domid),
	offsetof_alloc_flags = offsetof(struct ioctl_gntalloc_alloc_gref, flags),
	offsetof_alloc_count = offsetof(struct ioctl_gntalloc_alloc_gref, count),
	offsetof_alloc_index = offsetof(struct ioctl_gntalloc_alloc_gref, index),
	offsetof_alloc_grefs = offsetof(struct ioctl_gntalloc_alloc_gref, gref_ids),
	offsetof_copy_source = offsetof(struct ioctl_gntdev_grant_copy_segment, source),
	offsetof_copy_dest = offsetof(struct ioctl_gntdev_grant_copy_segment, dest),
	offsetof_copy_len = offsetof(struct ioctl_gntdev_grant_copy_segment, len),
	offsetof_copy_flags = offsetof(struct ioctl_gntdev_grant_copy_segment, flags),
	offsetof_copy_status = offsetof(struct ioctl_gntdev_grant_copy_segment, status),
	offsetof_foreign_ref = offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.ref),
	offsetof_foreign_offset = offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.offset),
	offsetof_foreign_domid = offsetof(struct ioctl_gntdev_grant_copy_segment, source.foreign.domid),
	offsetof_notify_action = offsetof(struct ioctl_gntdev_unmap_notify, action),
	offsetof_notify_port = offsetof(struct ioctl_gntdev_unmap_notify, event_channel_port),
	offsetof_copy_segments = offsetof(struct ioctl_gntdev_grant_copy, segments),
};
*/
import "C"

// Facts lists every C-side number the test compares.
func Facts() map[string]uint64 {
	return map[string]uint64{
		"IOCTL_GNTDEV_MAP_GRANT_REF":      uint64(C.IOCTL_GNTDEV_MAP_GRANT_REF),
		"IOCTL_GNTDEV_UNMAP_GRANT_REF":    uint64(C.IOCTL_GNTDEV_UNMAP_GRANT_REF),
		"IOCTL_GNTDEV_SET_UNMAP_NOTIFY":   uint64(C.IOCTL_GNTDEV_SET_UNMAP_NOTIFY),
		"IOCTL_GNTDEV_GRANT_COPY":         uint64(C.IOCTL_GNTDEV_GRANT_COPY),
		"IOCTL_GNTALLOC_ALLOC_GREF":       uint64(C.IOCTL_GNTALLOC_ALLOC_GREF),
		"IOCTL_GNTALLOC_DEALLOC_GREF":     uint64(C.IOCTL_GNTALLOC_DEALLOC_GREF),
		"IOCTL_GNTALLOC_SET_UNMAP_NOTIFY": uint64(C.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY),
		"IOCTL_EVTCHN_BIND_INTERDOMAIN":   uint64(C.IOCTL_EVTCHN_BIND_INTERDOMAIN),
		"IOCTL_EVTCHN_BIND_UNBOUND_PORT":  uint64(C.IOCTL_EVTCHN_BIND_UNBOUND_PORT),
		"IOCTL_EVTCHN_UNBIND":             uint64(C.IOCTL_EVTCHN_UNBIND),
		"IOCTL_EVTCHN_NOTIFY":             uint64(C.IOCTL_EVTCHN_NOTIFY),
		"IOCTL_EVTCHN_RESET":              uint64(C.IOCTL_EVTCHN_RESET),

		"sizeof(ioctl_gntdev_grant_ref)":          uint64(C.sizeof_struct_ioctl_gntdev_grant_ref),
		"sizeof(ioctl_gntdev_map_grant_ref)":      uint64(C.sizeof_struct_ioctl_gntdev_map_grant_ref),
		"sizeof(ioctl_gntdev_unmap_grant_ref)":    uint64(C.sizeof_struct_ioctl_gntdev_unmap_grant_ref),
		"sizeof(ioctl_gntdev_unmap_notify)":       uint64(C.sizeof_struct_ioctl_gntdev_unmap_notify),
		"sizeof(ioctl_gntdev_grant_copy_segment)": uint64(C.sizeof_struct_ioctl_gntdev_grant_copy_segment),
		"sizeof(ioctl_gntdev_grant_copy)":         uint64(C.sizeof_struct_ioctl_gntdev_grant_copy),
		"sizeof(ioctl_gntalloc_alloc_gref)":       uint64(C.sizeof_struct_ioctl_gntalloc_alloc_gref),
		"sizeof(ioctl_gntalloc_dealloc_gref)":     uint64(C.sizeof_struct_ioctl_gntalloc_dealloc_gref),
		"sizeof(ioctl_gntalloc_unmap_notify)":     uint64(C.sizeof_struct_ioctl_gntalloc_unmap_notify),
		"sizeof(ioctl_evtchn_bind_interdomain)":   uint64(C.sizeof_struct_ioctl_evtchn_bind_interdomain),
		"sizeof(ioctl_evtchn_bind_unbound_port)":  uint64(C.sizeof_struct_ioctl_evtchn_bind_unbound_port),
		"sizeof(ioctl_evtchn_unbind)":             uint64(C.sizeof_struct_ioctl_evtchn_unbind),
		"sizeof(ioctl_evtchn_notify)":             uint64(C.sizeof_struct_ioctl_evtchn_notify),

		"offsetof(ioctl_gntdev_map_grant_ref, count)":             uint64(C.offsetof_map_count),
		"offsetof(ioctl_gntdev_map_grant_ref, index)":             uint64(C.offsetof_map_index),
		"offsetof(ioctl_gntdev_map_grant_ref, refs)":              uint64(C.offsetof_map_refs),
		"offsetof(ioctl_gntalloc_alloc_gref, domid)":              uint64(C.offsetof_alloc_domid),
		"offsetof(ioctl_gntalloc_alloc_gref, flags)":              uint64(C.offsetof_alloc_flags),
		"offsetof(ioctl_gntalloc_alloc_gref, count)":              uint64(C.offsetof_alloc_count),
		"offsetof(ioctl_gntalloc_alloc_gref, index)":              uint64(C.offsetof_alloc_index),
		"offsetof(ioctl_gntalloc_alloc_gref, gref_ids)":           uint64(C.offsetof_alloc_grefs),
		"offsetof(ioctl_gntdev_grant_copy_segment, source)":       uint64(C.offsetof_copy_source),
		"offsetof(ioctl_gntdev_grant_copy_segment, dest)":         uint64(C.offsetof_copy_dest),
		"offsetof(ioctl_gntdev_grant_copy_segment, len)":          uint64(C.offsetof_copy_len),
		"offsetof(ioctl_gntdev_grant_copy_segment, flags)":        uint64(C.offsetof_copy_flags),
		"offsetof(ioctl_gntdev_grant_copy_segment, status)":       uint64(C.offsetof_copy_status),
		"offsetof(source.foreign, ref)":                           uint64(C.offsetof_foreign_ref),
		"offsetof(source.foreign, offset)":                        uint64(C.offsetof_foreign_offset),
		"offsetof(source.foreign, domid)":                         uint64(C.offsetof_foreign_domid),
		"offsetof(ioctl_gntdev_unmap_notify, action)":             uint64(C.offsetof_notify_action),
		"offsetof(ioctl_gntdev_unmap_notify, event_channel_port)": uint64(C.offsetof_notify_port),
		"offsetof(ioctl_gntdev_grant_copy, segments)":             uint64(C.offsetof_copy_segments),
		"UNMAP_NOTIFY_SEND_EVENT":                                 uint64(C.UNMAP_NOTIFY_SEND_EVENT),
		"GNTALLOC_FLAG_WRITABLE":                                  uint64(C.GNTALLOC_FLAG_WRITABLE),
	}
}
