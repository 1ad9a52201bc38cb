package vscsiif

// The rslt of a response: a SCSI status in bits 0..7 and a host status in
// bits 16..23 (XEN_VSCSIIF_RSLT_STATUS, XEN_VSCSIIF_RSLT_HOST), the other
// bits zero. Linux's scsifront maps each host value onto the DID_* code of
// the same name (the numbers are Linux's own DID_* numbers) and keeps the
// status byte; Linux's scsiback (since 5.19) writes only these values, and
// answers task management with ResetSuccess or ResetFailed instead.

// Host is the host status of rslt (XEN_VSCSIIF_RSLT_HOST_*).
type Host uint8

const (
	HostOK                 Host = 0  // the command reached the device: see the status byte
	HostNoConnect          Host = 1  // no such device (scsiback: channel:id:lun not attached)
	HostBusBusy            Host = 2  // bus busy through timeout
	HostTimeOut            Host = 3  // timed out for another reason
	HostBadTarget          Host = 4  // bad target
	HostAbort              Host = 5  // aborted for another reason
	HostParity             Host = 6  // parity error
	HostError              Host = 7  // internal error (scsiback: a request it refuses)
	HostReset              Host = 8  // reset by somebody
	HostBadIntr            Host = 9  // unexpected interrupt
	HostPassthrough        Host = 10 // force command past mid-layer
	HostSoftError          Host = 11 // retry requested
	HostImmRetry           Host = 12 // hidden retry requested
	HostRequeue            Host = 13 // requeue command requested
	HostTransportDisrupted Host = 14 // transport error disrupted I/O
	HostTransportFailfast  Host = 15 // transport class fastfailed
	HostTargetFailure      Host = 16 // permanent target failure
	HostNexusFailure       Host = 17 // permanent nexus failure on path
	HostAllocFailure       Host = 18 // space allocation on device failed
	HostMediumError        Host = 19 // medium error
	HostTransportMarginal  Host = 20 // transport marginal errors
)

// The rslt of an ActSCSIAbort or ActSCSIReset response
// (XEN_VSCSIIF_RSLT_RESET_*: Linux's SCSI error handler's SUCCESS and
// FAILED). scsiback answers ResetFailed when the task management function
// did not complete, an abort of an rqid it does not know among them.
const (
	ResetSuccess int32 = 0x2002
	ResetFailed  int32 = 0x2003
)

// Result builds a command's rslt from its host and SCSI status.
func Result(host Host, status uint8) int32 { return int32(host)<<16 | int32(status) }

// HostOf is rslt's host status (XEN_VSCSIIF_RSLT_HOST).
func HostOf(rslt int32) Host { return Host(rslt >> 16) }

// StatusOf is rslt's SCSI status (XEN_VSCSIIF_RSLT_STATUS).
func StatusOf(rslt int32) uint8 { return uint8(rslt) }
