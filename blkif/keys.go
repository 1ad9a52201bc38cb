package blkif

// xenstore keys of the blkif handshake (blkif.h, "Backend Device Properties"
// and "Frontend Device Properties"), with their documented defaults where
// blkif.h gives one. Paths are relative to the device's directory.
const (
	// Written by the toolstack in the backend directory.
	KeyMode   = "mode"   // "r" or "w"
	KeyParams = "params" // the backing target
	KeyType   = "type"   // "file", "phy", ...
	KeyOnline = "online"
	KeyState  = "state"

	// Written by the backend.
	KeySectors            = "sectors"                       // disk size in 512-byte units, always
	KeyInfo               = "info"                          // Vdisk* bits
	KeySectorSize         = "sector-size"                   // logical block size; default 512
	KeyPhysicalSectorSize = "physical-sector-size"          // default sector-size
	KeyFeatureBarrier     = "feature-barrier"               // default 0
	KeyFeatureFlushCache  = "feature-flush-cache"           // default 0
	KeyFeatureDiscard     = "feature-discard"               // default 0
	KeyDiscardGranularity = "discard-granularity"           // default sector-size
	KeyDiscardAlignment   = "discard-alignment"             // default 0
	KeyDiscardSecure      = "discard-secure"                // default 0
	KeyFeaturePersistent  = "feature-persistent"            // both ends; default 0
	KeyMaxIndirectSegs    = "feature-max-indirect-segments" // default 0 (none)
	KeyMaxQueues          = "multi-queue-max-queues"        // default 1
	KeyMaxRingPageOrder   = "max-ring-page-order"           // default 0
	KeyFeatureLargeSector = "feature-large-sector-size"     // default 0

	// Written by the frontend.
	KeyRingRef       = "ring-ref" // single-page ring; ring-refN for multi-page
	KeyRingPageOrder = "ring-page-order"
	KeyEventChannel  = "event-channel"
	KeyNumQueues     = "multi-queue-num-queues" // queues under queue-N/
	KeyProtocol      = "protocol"
	KeyVirtualDevice = "virtual-device"
	KeyDeviceType    = "device-type"
)

// MaxRingPageOrder is the largest ring this implementation maps: 16 pages
// (512 slots of 112 bytes), as Linux's blkback (XENBUS_MAX_RING_GRANT_ORDER).
const MaxRingPageOrder = 4

// Device characteristics in xenstore: the reviewer's alternative to SCSI
// pass-through for what guests only need to read (docs/PROTOCOL.md).
// Written by the backend; absent means unknown.
const (
	KeyRotational    = "rotational"      // "0" solid state, "1" spinning
	KeyRotationRate  = "rotation-rate"   // SBC medium rotation rate: 1 = non-rotating, else rpm
	KeyOptimalIOSize = "optimal-io-size" // bytes; a multiple of sector-size

	// XenServer's convention, read by Windows PV drivers: base64 of the
	// standard INQUIRY data and of VPD pages 0x80 and 0x83.
	KeySMDataInquiry    = "sm-data/scsi/0x12/default"
	KeySMDataVPDSerial  = "sm-data/scsi/0x12/0x80"
	KeySMDataVPDIdentif = "sm-data/scsi/0x12/0x83"
)
