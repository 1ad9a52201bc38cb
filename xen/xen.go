// Package xen holds the hypervisor contracts the drivers are written
// against: granting pages, mapping foreign grants, event channels and the
// store. It holds interfaces and small value types only. Two families of
// implementations satisfy them: xen/sim (a simulated host on any Linux
// machine) and xen/linux (real /dev/xen devices). A driver must not be able
// to tell them apart.
package xen

import (
	"errors"
	"time"
)

// DomID identifies a domain. Domain 0 is the privileged control domain.
type DomID uint16

// GrantRef is an index into a granting domain's grant table.
type GrantRef uint32

// Port is an event-channel port, local to the domain that holds it.
type Port uint32

// PageSize is the granularity of grants and ring pages on every ABI we serve.
const PageSize = 4096

// Errors every implementation returns (wrapped with detail) so that callers
// can test them with errors.Is.
var (
	// ErrGrantInUse: end-access while the remote still has the page mapped.
	ErrGrantInUse = errors.New("xen: grant is still mapped by the remote domain")
	// ErrBadGrant: the reference is out of range, not granted to the
	// mapping domain, revoked, or read-only when write access was asked.
	ErrBadGrant = errors.New("xen: bad grant reference")
	// ErrGrantTableFull: the granting domain has no free grant entries
	// for the pages asked (Xen's per-domain limit, gnttab_max_frames; on
	// Linux also gntalloc's per-user limit). Freeing grants or asking for
	// fewer pages can succeed.
	ErrGrantTableFull = errors.New("xen: grant table full")
	// ErrClosed: the object was closed (locally or by the other side).
	ErrClosed = errors.New("xen: closed")
	// ErrNoDomain: the named domain does not exist.
	ErrNoDomain = errors.New("xen: no such domain")
	// ErrNotFound: a xenstore path does not exist (ENOENT).
	ErrNotFound = errors.New("xen: no such store node")
	// ErrAgain: a store transaction conflicted and must be retried (EAGAIN).
	ErrAgain = errors.New("xen: store transaction conflict")
	// ErrPermission: the store refused access (EACCES).
	ErrPermission = errors.New("xen: permission denied")
)

// Granted is a run of this domain's own pages granted to one remote domain,
// contiguous in our address space. Refs[i] grants Mem[i*PageSize:(i+1)*PageSize].
type Granted struct {
	Remote   DomID
	ReadOnly bool
	Refs     []GrantRef
	Mem      []byte
	// Handle is the implementation's own bookkeeping; callers leave it alone.
	Handle any
}

// Granter is the granting (frontend) side: Linux's /dev/xen/gntalloc, or the
// simulated grant table.
type Granter interface {
	// Grant allocates count zeroed pages and grants each to remote.
	Grant(remote DomID, count int, readOnly bool) (*Granted, error)
	// Revoke ends foreign access to every page of g and releases them. It
	// fails with ErrGrantInUse while the remote still maps any of them; the
	// caller may retry after the remote unmaps.
	Revoke(g *Granted) error
}

// Mapping is a contiguous local view of foreign pages.
type Mapping interface {
	// Bytes is the mapped memory: len = PageSize * number of refs mapped.
	// Writing to a read-only mapping faults, as on real Xen.
	Bytes() []byte
	// Unmap releases the mapping. The memory must not be touched afterwards.
	Unmap() error
}

// GrantCopySegment is one operation of a grant copy: bytes move between a
// foreign granted page and local memory without mapping the page.
type GrantCopySegment struct {
	Dom    DomID
	Ref    GrantRef
	Offset uint16 // within the foreign page
	Local  []byte // len(Local)+Offset <= PageSize
	// ToForeign: copy Local into the foreign page (the page must be granted
	// writable); otherwise copy the foreign page into Local.
	ToForeign bool
	// Err is set per segment by Copy.
	Err error
}

// Mapper is the mapping (backend) side: Linux's /dev/xen/gntdev, or the
// simulated equivalent.
type Mapper interface {
	// Map maps refs granted by dom into one contiguous mapping. readOnly
	// asks for a read-only mapping (required for read-only grants).
	Map(dom DomID, refs []GrantRef, readOnly bool) (Mapping, error)
	// Copy performs each segment, recording per-segment errors; it returns
	// a non-nil error if any segment failed, and then every segment not
	// known to be performed carries an Err.
	Copy(segs []GrantCopySegment) error
}

// Channel is one bound local event-channel port.
type Channel interface {
	Port() Port
	// Notify signals the remote end.
	Notify() error
	// Wait blocks until the channel has been signalled since the last Wait
	// returned (notifications coalesce), or the channel is closed
	// (ErrClosed), or the timeout passes (returns false, nil); timeout <= 0
	// means forever. It burns no CPU while blocked.
	Wait(timeout time.Duration) (signalled bool, err error)
	// Pending reports, without blocking, whether a notification is pending,
	// and clears it. It serves busy-poll mode.
	Pending() bool
	// Mask stops notifications from waking Wait; Unmask re-enables them
	// (a notification that arrived while masked is delivered on Unmask).
	Mask()
	Unmask()
	// Close unbinds the port. A Wait in progress returns ErrClosed.
	Close() error
}

// Events allocates and binds event channels.
type Events interface {
	// AllocUnbound allocates a port that remote may bind to.
	AllocUnbound(remote DomID) (Channel, error)
	// BindInterdomain binds a local port to remote's unbound port.
	BindInterdomain(remote DomID, remotePort Port) (Channel, error)
}

// Perm is one entry of a xenstore node's permission list. The first entry
// names the owner and the access of every domain not listed.
type Perm struct {
	Dom   DomID
	Read  bool
	Write bool
}

// WatchEvent is one watch firing: the path that changed and the watch token.
type WatchEvent struct {
	Path  string
	Token string
}

// Watch delivers events for a registered watch until Close.
type Watch interface {
	Events() <-chan WatchEvent
	Close() error
}

// Tx is one xenstore transaction.
type Tx interface {
	Read(path string) (string, error)
	Write(path, value string) error
	Mkdir(path string) error
	Remove(path string) error
	Directory(path string) ([]string, error)
	SetPerms(path string, perms []Perm) error
}

// Store is a xenstore connection as the drivers need it.
type Store interface {
	Read(path string) (string, error)
	Write(path, value string) error
	Mkdir(path string) error
	Remove(path string) error
	Directory(path string) ([]string, error)
	GetPerms(path string) ([]Perm, error)
	SetPerms(path string, perms []Perm) error
	// Watch registers a watch on path and its descendants. As in Xen, one
	// event fires at registration.
	Watch(path, token string) (Watch, error)
	// Transaction runs fn in a transaction, retrying it while the commit
	// reports a conflict (ErrAgain).
	Transaction(fn func(Tx) error) error
	// DomainPath returns /local/domain/<dom>.
	DomainPath(dom DomID) (string, error)
	Close() error
}

// Domain is one domain's view of the hypervisor: everything a driver
// running in that domain may use.
type Domain interface {
	ID() DomID
	Granter() Granter
	Mapper() Mapper
	Events() Events
	Store() Store
	Close() error
}
