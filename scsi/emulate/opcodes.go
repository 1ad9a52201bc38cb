package emulate

import (
	"encoding/binary"

	"github.com/xenblk/xenblk/scsi"
)

// command describes one supported command for REPORT SUPPORTED OPERATION
// CODES: its CDB usage data is a mask of the CDB bits the engine looks at
// (SPC-4 6.35.3), byte 0 being the opcode and, for service-action
// commands, byte 1 the service action field.
type command struct {
	op    byte
	sa    uint16
	hasSA bool
	usage []byte
}

func c(usage ...byte) command { return command{op: usage[0], usage: usage} }

// cs describes a service-action command; the usage data carries the
// action's value in the SERVICE ACTION field, as SPC-4 requires.
func cs(sa uint16, usage ...byte) command {
	usage[1] = usage[1]&^0x1f | byte(sa)
	return command{op: usage[0], sa: sa, hasSA: true, usage: usage}
}

// commands is every command the engine emulates, sorted by opcode then
// service action.
var commands = []command{
	c(0x00, 0, 0, 0, 0, 0),                                                                             // TEST UNIT READY
	c(0x03, 0x01, 0, 0, 0xff, 0),                                                                       // REQUEST SENSE
	c(0x08, 0x1f, 0xff, 0xff, 0xff, 0),                                                                 // READ(6)
	c(0x0a, 0x1f, 0xff, 0xff, 0xff, 0),                                                                 // WRITE(6)
	c(0x12, 0x01, 0xff, 0xff, 0xff, 0),                                                                 // INQUIRY
	c(0x15, 0x11, 0, 0, 0xff, 0),                                                                       // MODE SELECT(6)
	c(0x16, 0, 0, 0, 0, 0),                                                                             // RESERVE(6)
	c(0x17, 0, 0, 0, 0, 0),                                                                             // RELEASE(6)
	c(0x1a, 0x08, 0xff, 0xff, 0xff, 0),                                                                 // MODE SENSE(6)
	c(0x1b, 0x01, 0, 0x0f, 0xf7, 0),                                                                    // START STOP UNIT
	c(0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0),                                                  // READ CAPACITY(10)
	c(0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0),                                            // READ(10)
	c(0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0),                                            // WRITE(10)
	c(0x2f, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0),                                            // VERIFY(10)
	c(0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0),                                            // SYNCHRONIZE CACHE(10)
	c(0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0),                                            // WRITE SAME(10)
	c(0x42, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0),                                                           // UNMAP
	c(0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0),                                                        // MODE SELECT(10)
	c(0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0),                                                                 // RESERVE(10)
	c(0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0),                                                                 // RELEASE(10)
	c(0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0),                                                  // MODE SENSE(10)
	cs(0, 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0),                                                    // PR IN: READ KEYS
	cs(1, 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0),                                                    // PR IN: READ RESERVATION
	cs(2, 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0),                                                    // PR IN: REPORT CAPABILITIES
	cs(3, 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0),                                                    // PR IN: READ FULL STATUS
	cs(0, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: REGISTER
	cs(1, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: RESERVE
	cs(2, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: RELEASE
	cs(3, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: CLEAR
	cs(4, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: PREEMPT
	cs(5, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: PREEMPT AND ABORT
	cs(6, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: REGISTER AND IGNORE EXISTING KEY
	cs(7, 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),                                           // PR OUT: REGISTER AND MOVE
	c(0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),        // READ(16)
	c(0x89, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0, 0),                 // COMPARE AND WRITE
	c(0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),        // WRITE(16)
	c(0x8f, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),        // VERIFY(16)
	c(0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),        // SYNCHRONIZE CACHE(16)
	c(0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),        // WRITE SAME(16)
	cs(0x10, 0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0),                         // READ CAPACITY(16)
	cs(0x12, 0x9e, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0), // GET LBA STATUS
	c(0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0),                                            // REPORT LUNS
	cs(0x0c, 0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),                         // REPORT SUPPORTED OPERATION CODES
	c(0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),                                // READ(12)
	c(0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),                                // WRITE(12)
	c(0xaf, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0),                                // VERIFY(12)
}

// supports reports whether the engine would execute cmd now: the policy
// allows it and the device or configuration can do it.
func (e *Engine) supports(cmd *command) bool {
	if !e.policy.AllowsAction(cmd.op, cmd.sa) {
		return false
	}
	switch {
	case scsi.IsPersistentReservation(cmd.op):
		return e.res != nil
	case cmd.op == scsi.OpUnmap:
		return e.dev.Info().CanDiscard
	}
	return true
}

func (e *Engine) reportSupportedOpcodes(cmd *scsi.Command, res *scsi.Result) {
	cdb := cmd.CDB
	rctd := cdb[2]&0x80 != 0
	opt := cdb[2] & 0x07
	reqOp, reqSA := cdb[3], be16(cdb[4:6])
	alloc := int(be32(cdb[6:10]))
	var buf [4 + 64*20]byte
	switch opt {
	case 0:
		n := 4
		for i := range commands {
			d := &commands[i]
			if !e.supports(d) {
				continue
			}
			b := buf[n:]
			b[0] = d.op
			binary.BigEndian.PutUint16(b[2:], d.sa)
			if d.hasSA {
				b[5] = 0x01 // SERVACTV
			}
			binary.BigEndian.PutUint16(b[6:], uint16(len(d.usage)))
			n += 8
			if rctd {
				b[5] |= 0x02 // CTDP
				n += putTimeouts(buf[n:])
			}
		}
		binary.BigEndian.PutUint32(buf[0:], uint32(n-4))
		reply(cmd, res, alloc, buf[:n])
	case 1, 2, 3:
		hasSA := scsi.HasServiceAction(reqOp)
		if (opt == 1 && hasSA) || (opt == 2 && !hasSA) {
			e.failField(res, scsi.InvalidFieldInCDB, 2, 2)
			return
		}
		if !hasSA {
			reqSA = 0
		}
		support := byte(0x01) // not supported
		n := 4
		for i := range commands {
			d := &commands[i]
			if d.op == reqOp && d.sa == reqSA && e.supports(d) {
				support = 0x03 // supported per standard
				binary.BigEndian.PutUint16(buf[2:], uint16(len(d.usage)))
				n += copy(buf[4:], d.usage)
				break
			}
		}
		buf[1] = support
		if rctd {
			buf[1] |= 0x80 // CTDP
			n += putTimeouts(buf[n:])
		}
		reply(cmd, res, alloc, buf[:n])
	default:
		e.failField(res, scsi.InvalidFieldInCDB, 2, 2)
	}
}

// putTimeouts writes a command timeouts descriptor with no timeouts given
// (zeros: the engine has no command-specific limits).
func putTimeouts(b []byte) int {
	clear(b[:12])
	binary.BigEndian.PutUint16(b[0:], 0x0a)
	return 12
}
