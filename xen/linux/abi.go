package linux

// The ioctl ABI of Linux's Xen device files (include/uapi/xen/*.h). Every
// number is _IOC(_IOC_NONE, type, nr, size): on every architecture Xen
// runs on (x86, arm), _IOC_NONE is 0 and the size sits in bits 16..29.

func ioc(typ byte, nr uint, size uintptr) uint {
	return uint(size)<<16 | uint(typ)<<8 | nr
}

// Structure sizes as C lays them out on 64-bit Linux (the structures with a
// trailing one-element array count that element).
const (
	SizeofGntdevGrantRef        = 8  // struct ioctl_gntdev_grant_ref
	SizeofGntdevMapGrantRef     = 24 // struct ioctl_gntdev_map_grant_ref
	SizeofGntdevUnmapGrantRef   = 16 // struct ioctl_gntdev_unmap_grant_ref
	SizeofGntdevUnmapNotify     = 16 // struct ioctl_gntdev_unmap_notify
	SizeofGntdevGrantCopySeg    = 24 // struct ioctl_gntdev_grant_copy_segment
	SizeofGntdevGrantCopy       = 16 // struct ioctl_gntdev_grant_copy
	SizeofGntallocAllocGref     = 24 // struct ioctl_gntalloc_alloc_gref
	SizeofGntallocDeallocGref   = 16 // struct ioctl_gntalloc_dealloc_gref
	SizeofGntallocUnmapNotify   = 16 // struct ioctl_gntalloc_unmap_notify
	SizeofEvtchnBindInterdomain = 8  // struct ioctl_evtchn_bind_interdomain
	SizeofEvtchnBindUnboundPort = 4  // struct ioctl_evtchn_bind_unbound_port
	SizeofEvtchnUnbind          = 4  // struct ioctl_evtchn_unbind
	SizeofEvtchnNotify          = 4  // struct ioctl_evtchn_notify
)

// Field offsets used when building the variable-length requests.
const (
	offMapCount = 0  // ioctl_gntdev_map_grant_ref.count
	offMapIndex = 8  // ioctl_gntdev_map_grant_ref.index
	offMapRefs  = 16 // ioctl_gntdev_map_grant_ref.refs

	offAllocDomid   = 0  // ioctl_gntalloc_alloc_gref.domid
	offAllocFlags   = 2  // ioctl_gntalloc_alloc_gref.flags
	offAllocCount   = 4  // ioctl_gntalloc_alloc_gref.count
	offAllocIndex   = 8  // ioctl_gntalloc_alloc_gref.index
	offAllocGrefs   = 16 // ioctl_gntalloc_alloc_gref.gref_ids
	offCopySource   = 0  // ioctl_gntdev_grant_copy_segment.source
	offCopyDest     = 8  // ioctl_gntdev_grant_copy_segment.dest
	offCopyLen      = 16 // ioctl_gntdev_grant_copy_segment.len
	offCopyFlags    = 18 // ioctl_gntdev_grant_copy_segment.flags
	offCopyStatus   = 20 // ioctl_gntdev_grant_copy_segment.status
	offForeignRef   = 0  // .foreign.ref within source/dest
	offForeignOff   = 4  // .foreign.offset
	offForeignDom   = 6  // .foreign.domid
	offNotifyIndex  = 0  // ioctl_gntdev_unmap_notify.index
	offNotifyAct    = 8  // .action
	offNotifyPort   = 12 // .event_channel_port
	offCopySegments = 8  // ioctl_gntdev_grant_copy.segments
)

// Ioctl numbers.
var (
	IoctlGntdevMapGrantRef      = ioc('G', 0, SizeofGntdevMapGrantRef)
	IoctlGntdevUnmapGrantRef    = ioc('G', 1, SizeofGntdevUnmapGrantRef)
	IoctlGntdevSetUnmapNotify   = ioc('G', 7, SizeofGntdevUnmapNotify)
	IoctlGntdevGrantCopy        = ioc('G', 8, SizeofGntdevGrantCopy)
	IoctlGntallocAllocGref      = ioc('G', 5, SizeofGntallocAllocGref)
	IoctlGntallocDeallocGref    = ioc('G', 6, SizeofGntallocDeallocGref)
	IoctlGntallocSetUnmapNotify = ioc('G', 7, SizeofGntallocUnmapNotify)
	IoctlEvtchnBindInterdomain  = ioc('E', 1, SizeofEvtchnBindInterdomain)
	IoctlEvtchnBindUnboundPort  = ioc('E', 2, SizeofEvtchnBindUnboundPort)
	IoctlEvtchnUnbind           = ioc('E', 3, SizeofEvtchnUnbind)
	IoctlEvtchnNotify           = ioc('E', 4, SizeofEvtchnNotify)
	IoctlEvtchnReset            = ioc('E', 5, 0)
)

// Flags and actions.
const (
	GntallocFlagWritable = 1      // GNTALLOC_FLAG_WRITABLE
	UnmapNotifyClearByte = 0x1    // UNMAP_NOTIFY_CLEAR_BYTE
	UnmapNotifySendEvent = 0x2    // UNMAP_NOTIFY_SEND_EVENT
	GntcopySourceGref    = 1 << 0 // GNTCOPY_source_gref
	GntcopyDestGref      = 1 << 1 // GNTCOPY_dest_gref
	GntstOkay            = 0      // GNTST_okay
)

// Device files.
const (
	DevGntdev   = "/dev/xen/gntdev"
	DevGntalloc = "/dev/xen/gntalloc"
	DevEvtchn   = "/dev/xen/evtchn"
	DevXenbus   = "/dev/xen/xenbus"
	DevPrivcmd  = "/dev/xen/privcmd"
	// XenstoredSocket is where xenstored (C or OCaml) listens in dom0.
	XenstoredSocket = "/run/xenstored/socket"
)

// Offsets names each field offset above by its C spelling, for the
// cinterop check against the headers.
func Offsets() map[string]int {
	return map[string]int{
		"offsetof(ioctl_gntdev_map_grant_ref, count)":             offMapCount,
		"offsetof(ioctl_gntdev_map_grant_ref, index)":             offMapIndex,
		"offsetof(ioctl_gntdev_map_grant_ref, refs)":              offMapRefs,
		"offsetof(ioctl_gntalloc_alloc_gref, domid)":              offAllocDomid,
		"offsetof(ioctl_gntalloc_alloc_gref, flags)":              offAllocFlags,
		"offsetof(ioctl_gntalloc_alloc_gref, count)":              offAllocCount,
		"offsetof(ioctl_gntalloc_alloc_gref, index)":              offAllocIndex,
		"offsetof(ioctl_gntalloc_alloc_gref, gref_ids)":           offAllocGrefs,
		"offsetof(ioctl_gntdev_grant_copy_segment, source)":       offCopySource,
		"offsetof(ioctl_gntdev_grant_copy_segment, dest)":         offCopyDest,
		"offsetof(ioctl_gntdev_grant_copy_segment, len)":          offCopyLen,
		"offsetof(ioctl_gntdev_grant_copy_segment, flags)":        offCopyFlags,
		"offsetof(ioctl_gntdev_grant_copy_segment, status)":       offCopyStatus,
		"offsetof(source.foreign, ref)":                           offForeignRef,
		"offsetof(source.foreign, offset)":                        offForeignOff,
		"offsetof(source.foreign, domid)":                         offForeignDom,
		"offsetof(ioctl_gntdev_unmap_notify, action)":             offNotifyAct,
		"offsetof(ioctl_gntdev_unmap_notify, event_channel_port)": offNotifyPort,
		"offsetof(ioctl_gntdev_grant_copy, segments)":             offCopySegments,
	}
}
