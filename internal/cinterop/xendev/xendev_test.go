//go:build cinterop

package xendev

import (
	"testing"

	"github.com/xenblk/xenblk/xen/linux"
)

// TestAgainstHeaders compares every ioctl number, structure size and
// field offset xen/linux uses with what the C compiler makes of Linux's
// uapi headers.
func TestAgainstHeaders(t *testing.T) {
	facts := Facts()
	ours := map[string]uint64{
		"IOCTL_GNTDEV_MAP_GRANT_REF":      uint64(linux.IoctlGntdevMapGrantRef),
		"IOCTL_GNTDEV_UNMAP_GRANT_REF":    uint64(linux.IoctlGntdevUnmapGrantRef),
		"IOCTL_GNTDEV_SET_UNMAP_NOTIFY":   uint64(linux.IoctlGntdevSetUnmapNotify),
		"IOCTL_GNTDEV_GRANT_COPY":         uint64(linux.IoctlGntdevGrantCopy),
		"IOCTL_GNTALLOC_ALLOC_GREF":       uint64(linux.IoctlGntallocAllocGref),
		"IOCTL_GNTALLOC_DEALLOC_GREF":     uint64(linux.IoctlGntallocDeallocGref),
		"IOCTL_GNTALLOC_SET_UNMAP_NOTIFY": uint64(linux.IoctlGntallocSetUnmapNotify),
		"IOCTL_EVTCHN_BIND_INTERDOMAIN":   uint64(linux.IoctlEvtchnBindInterdomain),
		"IOCTL_EVTCHN_BIND_UNBOUND_PORT":  uint64(linux.IoctlEvtchnBindUnboundPort),
		"IOCTL_EVTCHN_UNBIND":             uint64(linux.IoctlEvtchnUnbind),
		"IOCTL_EVTCHN_NOTIFY":             uint64(linux.IoctlEvtchnNotify),
		"IOCTL_EVTCHN_RESET":              uint64(linux.IoctlEvtchnReset),

		"sizeof(ioctl_gntdev_grant_ref)":          linux.SizeofGntdevGrantRef,
		"sizeof(ioctl_gntdev_map_grant_ref)":      linux.SizeofGntdevMapGrantRef,
		"sizeof(ioctl_gntdev_unmap_grant_ref)":    linux.SizeofGntdevUnmapGrantRef,
		"sizeof(ioctl_gntdev_unmap_notify)":       linux.SizeofGntdevUnmapNotify,
		"sizeof(ioctl_gntdev_grant_copy_segment)": linux.SizeofGntdevGrantCopySeg,
		"sizeof(ioctl_gntdev_grant_copy)":         linux.SizeofGntdevGrantCopy,
		"sizeof(ioctl_gntalloc_alloc_gref)":       linux.SizeofGntallocAllocGref,
		"sizeof(ioctl_gntalloc_dealloc_gref)":     linux.SizeofGntallocDeallocGref,
		"sizeof(ioctl_gntalloc_unmap_notify)":     linux.SizeofGntallocUnmapNotify,
		"sizeof(ioctl_evtchn_bind_interdomain)":   linux.SizeofEvtchnBindInterdomain,
		"sizeof(ioctl_evtchn_bind_unbound_port)":  linux.SizeofEvtchnBindUnboundPort,
		"sizeof(ioctl_evtchn_unbind)":             linux.SizeofEvtchnUnbind,
		"sizeof(ioctl_evtchn_notify)":             linux.SizeofEvtchnNotify,
		"UNMAP_NOTIFY_SEND_EVENT":                 linux.UnmapNotifySendEvent,
		"GNTALLOC_FLAG_WRITABLE":                  linux.GntallocFlagWritable,
	}
	for name, off := range linux.Offsets() {
		ours[name] = uint64(off)
	}
	for name, want := range facts {
		got, ok := ours[name]
		if !ok {
			t.Errorf("%s: xen/linux has no value for it", name)
			continue
		}
		if got != want {
			t.Errorf("%s: xen/linux says %#x, the C headers %#x", name, got, want)
		}
	}
	if len(ours) != len(facts) {
		t.Errorf("xen/linux names %d facts, the C side %d", len(ours), len(facts))
	}
}
