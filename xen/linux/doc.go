// Package linux implements the xen contracts (package xen) on a real Xen
// host through Linux's device files, in pure Go (no cgo, so one static
// binary runs in any dom0 or driver domain):
//
//   - /dev/xen/gntdev maps other domains' grants (xen.Mapper): one ioctl
//     reserves a range of the device file's offsets for a list of
//     (domain, ref) pairs, and mmap at that offset performs the mapping,
//     read-only when the mapping is PROT_READ. Grant copy is the gntdev
//     GRANT_COPY ioctl.
//   - /dev/xen/gntalloc grants pages of our own (xen.Granter): the kernel
//     allocates the pages, grants them and hands back the references; we
//     mmap them. Deallocation ends foreign access; a page the remote still
//     maps is freed by the kernel when the remote lets go (so Revoke never
//     reports xen.ErrGrantInUse here; it cannot know).
//   - /dev/xen/evtchn binds event channels (xen.Events). Each xen.Channel
//     has its own open file, so a read returns only its own port; the
//     kernel masks a port once it fires until we write it back, which is
//     how notifications coalesce.
//   - xenstore through xenstored's unix socket when there is one, else the
//     kernel's /dev/xen/xenbus, with package xenstore's client.
//
// The ioctl numbers and structure layouts are those of Linux's
// include/uapi/xen/{gntdev,gntalloc,evtchn}.h; internal/cinterop checks them
// against libxen-dev's copies.
package linux
