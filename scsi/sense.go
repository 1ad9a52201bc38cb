package scsi

import "encoding/binary"

// Sense keys (SPC-4 table 44).
const (
	KeyNoSense        = 0x0
	KeyRecoveredError = 0x1
	KeyNotReady       = 0x2
	KeyMediumError    = 0x3
	KeyHardwareError  = 0x4
	KeyIllegalRequest = 0x5
	KeyUnitAttention  = 0x6
	KeyDataProtect    = 0x7
	KeyAbortedCommand = 0xb
	KeyMiscompare     = 0xe
)

// Code is an additional sense code and qualifier with the sense key it is
// reported under.
type Code struct{ Key, ASC, ASCQ byte }

// The sense codes xenblk reports.
var (
	NoSense                           = Code{KeyNoSense, 0x00, 0x00}
	InvalidOpcode                     = Code{KeyIllegalRequest, 0x20, 0x00}
	LBAOutOfRange                     = Code{KeyIllegalRequest, 0x21, 0x00}
	InvalidFieldInCDB                 = Code{KeyIllegalRequest, 0x24, 0x00}
	LUNNotSupported                   = Code{KeyIllegalRequest, 0x25, 0x00}
	InvalidFieldInParamList           = Code{KeyIllegalRequest, 0x26, 0x00}
	ParamListLengthError              = Code{KeyIllegalRequest, 0x1a, 0x00}
	SavingParamsNotSupported          = Code{KeyIllegalRequest, 0x39, 0x00}
	InvalidReleaseOfReservation       = Code{KeyIllegalRequest, 0x26, 0x04}
	InsufficientRegistrationResources = Code{KeyIllegalRequest, 0x55, 0x04}
	WriteProtected                    = Code{KeyDataProtect, 0x27, 0x00}
	Miscompare                        = Code{KeyMiscompare, 0x1d, 0x00}
	UnrecoveredReadError              = Code{KeyMediumError, 0x11, 0x00}
	WriteError                        = Code{KeyMediumError, 0x0c, 0x00}
	InternalTargetFailure             = Code{KeyHardwareError, 0x44, 0x00}
	// LogicalUnitCommunicationFailure: state the logical unit keeps
	// elsewhere (a reservation store shared across hosts) did not answer
	// in time; a change it asked for may still be stored.
	LogicalUnitCommunicationFailure = Code{KeyHardwareError, 0x08, 0x00}
	PowerOnReset                    = Code{KeyUnitAttention, 0x29, 0x00}
	BusDeviceReset                  = Code{KeyUnitAttention, 0x29, 0x03} // BUS DEVICE RESET FUNCTION OCCURRED: a logical unit reset
	ModeParametersChanged           = Code{KeyUnitAttention, 0x2a, 0x01}
	ReservationsPreempted           = Code{KeyUnitAttention, 0x2a, 0x03}
	ReservationsReleased            = Code{KeyUnitAttention, 0x2a, 0x04}
	RegistrationsPreempted          = Code{KeyUnitAttention, 0x2a, 0x05}
	CapacityDataChanged             = Code{KeyUnitAttention, 0x2a, 0x09}
	MediumNotPresent                = Code{KeyNotReady, 0x3a, 0x00}
)

// FieldPointer is the sense-key specific field of an ILLEGAL REQUEST: which
// byte (and optionally bit) of the CDB or parameter list was wrong.
type FieldPointer struct {
	Valid    bool
	InCDB    bool // C/D: the error is in the CDB, not the parameter list
	BitValid bool
	Bit      uint8
	Byte     uint16
}

// Sense is the content of one sense report, independent of its format.
type Sense struct {
	Code
	InfoValid bool
	Info      uint64 // INFORMATION: e.g. the miscompare offset
	Field     FieldPointer
}

// Fixed-format sense is 18 bytes (additional length 10); descriptor format
// is 8 bytes of header plus descriptors.
const (
	FixedSenseLen = 18
	respFixed     = 0x70 // current error, fixed format
	respDesc      = 0x72 // current error, descriptor format
)

// Encode writes s into buf in fixed or descriptor format and returns the
// length. Every byte up to the returned length is written (zeros where
// unused); buf must hold at least 32 bytes.
func (s Sense) Encode(buf []byte, descriptor bool) int {
	if descriptor {
		return s.encodeDescriptor(buf)
	}
	b := buf[:FixedSenseLen]
	clear(b)
	b[0] = respFixed
	if s.InfoValid && s.Info <= 0xffffffff {
		b[0] |= 0x80 // VALID: INFORMATION holds a 4-byte value
		binary.BigEndian.PutUint32(b[3:], uint32(s.Info))
	}
	b[2] = s.Key & 0x0f
	b[7] = FixedSenseLen - 8
	b[12] = s.ASC
	b[13] = s.ASCQ
	s.Field.put(b[15:18])
	return FixedSenseLen
}

func (s Sense) encodeDescriptor(buf []byte) int {
	n := 8
	if s.InfoValid {
		n += 12
	}
	if s.Field.Valid {
		n += 8
	}
	b := buf[:n]
	clear(b)
	b[0] = respDesc
	b[1] = s.Key & 0x0f
	b[2] = s.ASC
	b[3] = s.ASCQ
	b[7] = byte(n - 8)
	d := b[8:]
	if s.InfoValid {
		d[0] = 0x00 // information descriptor
		d[1] = 0x0a
		d[2] = 0x80 // VALID
		binary.BigEndian.PutUint64(d[4:], s.Info)
		d = d[12:]
	}
	if s.Field.Valid {
		d[0] = 0x02 // sense key specific descriptor
		d[1] = 0x06
		s.Field.put(d[4:7])
	}
	return n
}

func (f FieldPointer) put(b []byte) {
	if !f.Valid {
		return
	}
	b[0] = 0x80 // SKSV
	if f.InCDB {
		b[0] |= 0x40
	}
	if f.BitValid {
		b[0] |= 0x08 | f.Bit&7
	}
	binary.BigEndian.PutUint16(b[1:], f.Byte)
}

// SetCheck makes r a CHECK CONDITION carrying s. The residual is left as is.
func (r *Result) SetCheck(s Sense, descriptor bool) {
	r.Status = StatusCheckCondition
	r.Sense = [MaxSense]byte{}
	r.SenseLen = s.Encode(r.Sense[:], descriptor)
}

// SetStatus makes r a sense-less status (e.g. RESERVATION CONFLICT).
func (r *Result) SetStatus(status byte) {
	r.Status = status
	r.Sense = [MaxSense]byte{}
	r.SenseLen = 0
}

// ParseSense decodes fixed or descriptor sense data from another party (a
// real disk through SG_IO, or a backend seen from the frontend). It never
// panics; ok is false when b is not sense data it understands.
func ParseSense(b []byte) (s Sense, descriptor, ok bool) {
	if len(b) < 1 {
		return s, false, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 3 {
			return s, false, false
		}
		s.Key = b[2] & 0x0f
		if len(b) >= 7 && b[0]&0x80 != 0 {
			s.InfoValid = true
			s.Info = uint64(binary.BigEndian.Uint32(b[3:7]))
		}
		// Fields past the additional length are not sense data.
		end := len(b)
		if len(b) >= 8 && 8+int(b[7]) < end {
			end = 8 + int(b[7])
		}
		if end >= 14 {
			s.ASC, s.ASCQ = b[12], b[13]
		}
		if end >= 18 {
			s.Field = parseField(b[15:18])
		}
		return s, false, true
	case 0x72, 0x73:
		if len(b) < 4 {
			return s, true, false
		}
		s.Key, s.ASC, s.ASCQ = b[1]&0x0f, b[2], b[3]
		if len(b) < 8 {
			return s, true, true
		}
		d := b[8:]
		if int(b[7]) < len(d) {
			d = d[:b[7]]
		}
		for len(d) >= 2 {
			l := 2 + int(d[1])
			if l > len(d) {
				break
			}
			switch {
			case d[0] == 0x00 && l >= 12:
				s.InfoValid = d[2]&0x80 != 0
				s.Info = binary.BigEndian.Uint64(d[4:12])
			case d[0] == 0x02 && l >= 7:
				s.Field = parseField(d[4:7])
			}
			d = d[l:]
		}
		return s, true, true
	}
	return s, false, false
}

func parseField(b []byte) FieldPointer {
	if b[0]&0x80 == 0 {
		return FieldPointer{}
	}
	return FieldPointer{
		Valid:    true,
		InCDB:    b[0]&0x40 != 0,
		BitValid: b[0]&0x08 != 0,
		Bit:      b[0] & 7,
		Byte:     binary.BigEndian.Uint16(b[1:3]),
	}
}
