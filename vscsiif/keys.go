package vscsiif

import "strconv"

// xenstore keys of a vhost (vscsiif.h, "Feature and Parameter
// Negotiation", "Xenstore format in practice" and "Backend/frontend
// protocol"). A vhost is one backend directory
// backend/vscsi/<domid>/<vhost> and its frontend device/vscsi/<vhost>;
// its LUNs are under vscsi-devs/dev-N/ on both sides. Paths are relative
// to the vhost's directory.
const (
	// Written by the toolstack in the backend directory. The usual
	// frontend, frontend-id, online and state are there too.
	KeyFeatureHost = "feature-host" // "0" (whole-host mode is not served)
	KeyDevs        = "vscsi-devs"   // the LUNs: vscsi-devs/dev-N/

	// A LUN's nodes under KeyDevs/dev-N/ in the backend directory.
	KeyPDev     = "p-dev"     // what serves the LUN: "h:c:t:l", a WWN, or xenblk's designations (docs/PROTOCOL.md)
	KeyVDev     = "v-dev"     // the guest's address "h:c:t:l"
	KeyPDevName = "p-devname" // toolstack's note, free text
	KeyDevState = "state"     // LUNState*; the frontend keeps its own dev-N/state

	// Written by the toolstack for itself.
	KeyLibxlCtrlIndex = "libxl_ctrl_index"

	// Written by the backend: the most segments an SGGrant request may
	// carry, SGTableSize..MaxSGGrant; absent or 0 means no SGGrant.
	KeyFeatureSGGrant = "feature-sg-grant"

	// Written by the frontend (a single-page ring, no multi-page form).
	KeyRingRef      = "ring-ref"
	KeyEventChannel = "event-channel"
	KeyProtocol     = "protocol" // blkif.Protocol*; absent = native
)

// DevPath is the directory of LUN n relative to a vhost: vscsi-devs/dev-n.
func DevPath(n int) string { return KeyDevs + "/dev-" + strconv.Itoa(n) }

// The states of vscsiif.h's "Backend/frontend protocol", as XenbusState
// values (package xenbus names them; a test pins them to it).
//
// A LUN's state (KeyDevs/dev-N/state in the backend directory):
const (
	LUNStateNew       = 1 // toolstack: p-dev and v-dev are written, attach it (Initialising)
	LUNStateAttached  = 3 // backend: the LUN is set up, the frontend has yet to take it (Initialised)
	LUNStateConnected = 4 // backend: the LUN is served (Connected)
	LUNStateRemove    = 5 // toolstack: detach it (Closing)
	LUNStateRemoved   = 6 // backend: detached; the toolstack then deletes dev-N (Closed)
)

// A vhost's own state goes through the usual handshake to Connected, and
// through these to add or remove LUNs on a connected vhost:
const (
	VhostStateReconfiguring = 7 // toolstack: LUNs added (LUNStateNew) or to remove (LUNStateRemove)
	VhostStateReconfigured  = 8 // backend: done; Connected again once the frontend is
)
