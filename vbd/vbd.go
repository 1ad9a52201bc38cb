// Package vbd is the xenstore schema of a virtual block device, both
// ways: the nodes a toolstack writes into the backend and frontend
// directories (as libxl does, plus xenblk's own keys from the disk spec),
// and how a backend reads them back — the disk to open (ReadDisk,
// Disk.Open), the logical unit its SCSI engine is made for (ReadUnit), and
// the nodes it writes about that engine (ReportEngine). One set of names
// serves both ends.
//
// Opening a disk knows no blkif and no store: a PVSCSI LUN is a Disk too
// (its p-dev the Path), opened and locked the same way, and its engine
// comes from the same scsiengine.Registry.
package vbd

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/diskspec"
	"github.com/xenblk/xenblk/xen"
)

// Nodes of a vbd's directories. xenblk's own keys (diskspec.OwnKeys) are
// backend nodes of the same names.
const (
	// The backend directory, written by the toolstack (libxl's names).
	KeyFrontend      = "frontend"
	KeyFrontendID    = "frontend-id"
	KeyOnline        = blkif.KeyOnline
	KeyRemovable     = "removable"
	KeyBootable      = "bootable"
	KeyDev           = "dev"
	KeyType          = blkif.KeyType // file | phy
	KeyMode          = blkif.KeyMode // r | w, or libxl's w! (shared writable)
	KeyDeviceType    = blkif.KeyDeviceType
	KeyParams        = blkif.KeyParams // the backing path
	KeyFormat        = "format"
	KeySpec          = "spec" // the disk spec, rendered (diskspec.Spec.String)
	KeyDiscardEnable = "discard-enable"
	KeyState         = blkif.KeyState
	// KeyScript is the hotplug script libxl runs for the vbd once its
	// backend is in InitWait (/etc/xen/scripts/block for xl's
	// format=raw disks); the script reports in hotplug-status.
	KeyScript = "script"

	// The frontend directory, written by the toolstack.
	KeyBackend       = "backend"
	KeyBackendID     = "backend-id"
	KeyVirtualDevice = blkif.KeyVirtualDevice

	// The backend directory, written by the backend about the SCSI engine
	// (the keys that choose it are diskspec's: scsi, pr, scsi-policy;
	// docs/PROTOCOL.md, "SG_IO pass-through").
	KeySCSIEngine = "scsi-engine" // with scsi=passthrough, what the vbd got: emulate | passthrough
	KeySCSIError  = "scsi-error"  // why pass-through was refused (the vbd then gets emulation)
)

// Node is one node of a directory, by its name in the directory.
type Node struct{ Key, Value string }

// BackendNodes are the backend directory's nodes for spec attached to
// the guest frontend, whose directory is frontendDir, in the order
// libxl's device_disk_add writes them, ending with state Initialising.
func BackendNodes(spec diskspec.Spec, frontendDir string, frontend xen.DomID) []Node {
	mode := "w"
	if spec.ReadOnly {
		mode = "r"
	}
	devType, removable := deviceType(spec)
	typ := spec.BackendType
	if typ == "" {
		typ = "file"
		if strings.HasPrefix(spec.Target, "/dev/") {
			typ = "phy"
		}
	}
	nodes := []Node{
		{KeyFrontend, frontendDir},
		{KeyFrontendID, strconv.Itoa(int(frontend))},
		{KeyOnline, "1"},
		{KeyRemovable, removable},
		{KeyBootable, "1"},
		{KeyDev, spec.Vdev},
		{KeyType, typ},
		{KeyMode, mode},
		{KeyDeviceType, devType},
		{KeyParams, spec.Target},
		{KeyFormat, string(spec.Format)},
		{KeySpec, spec.String()},
	}
	if spec.Discard != nil {
		nodes = append(nodes, Node{KeyDiscardEnable, boolValue(*spec.Discard)})
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Extra)) {
		nodes = append(nodes, Node{k, spec.Extra[k]})
	}
	return append(nodes, Node{KeyState, "1"})
}

// FrontendNodes are the frontend directory's nodes for spec, served by
// the backend domain from backendDir as virtual device devID.
func FrontendNodes(spec diskspec.Spec, backendDir string, backend xen.DomID, devID uint32) []Node {
	devType, _ := deviceType(spec)
	return []Node{
		{KeyBackend, backendDir},
		{KeyBackendID, strconv.Itoa(int(backend))},
		{KeyVirtualDevice, strconv.Itoa(int(devID))},
		{KeyDeviceType, devType},
		{KeyState, "1"},
	}
}

func deviceType(spec diskspec.Spec) (devType, removable string) {
	if spec.CDROM {
		return "cdrom", "1"
	}
	return "disk", "0"
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
