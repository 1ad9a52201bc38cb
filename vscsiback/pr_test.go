package vscsiback_test

import (
	"encoding/binary"
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/vscsiback"
	"github.com/xenblk/xenblk/vscsiif"
)

// prOut runs PERSISTENT RESERVE OUT service action sa with type typ,
// reservation key key and service action key sark on lun a.
func (f *testFront) prOut(a at, sa, typ byte, key, sark uint64) vscsiif.Response {
	f.t.Helper()
	cdb := []byte{scsi.OpPersistentReserveOut, sa, typ, 0, 0, 0, 0, 0, 24, 0}
	param := f.data.Mem[:24]
	clear(param)
	binary.BigEndian.PutUint64(param, key)
	binary.BigEndian.PutUint64(param[8:], sark)
	return f.do(f.cdb(a, cdb, vscsiif.DirToDevice, 24))
}

// prIn runs PERSISTENT RESERVE IN service action sa on lun a and
// returns its parameter data.
func (f *testFront) prIn(a at, sa byte) []byte {
	f.t.Helper()
	rsp := f.do(f.cdb(a, []byte{scsi.OpPersistentReserveIn, sa, 0, 0, 0, 0, 0, 1, 0, 0}, vscsiif.DirFromDevice, 256))
	good(f.t, rsp)
	return append([]byte(nil), f.data.Mem[:256-rsp.ResidualLen]...)
}

// TestReservationsAcrossVhosts: two vhosts given one disk are two nexuses
// of one logical unit whose registrations live in the registry's shared
// store. The first registers and reserves Write Exclusive - Registrants
// Only, as fence_scsi does; the second, unregistered, sees the key and
// the reservation, gets RESERVATION CONFLICT for a WRITE and may READ.
func TestReservationsAcrossVhosts(t *testing.T) {
	r := newRig(t)
	disk := newDisk(t)
	lun := at{0, 0, 0}
	a := r.vhost("1/0", 0, vscsiback.LUN{Engine: r.engine("shared", disk)})
	b := r.vhost("1/1", 0, vscsiback.LUN{Engine: r.engine("shared", disk)})
	a.spoken(lun)
	b.spoken(lun)
	const (
		register         = 0x00
		reserve          = 0x01
		readKeys         = 0x00
		readReservation  = 0x01
		writeExclusiveRO = 0x05
		key              = 0xabc
	)
	good(t, a.prOut(lun, register, 0, 0, key))
	good(t, a.prOut(lun, reserve, writeExclusiveRO, key, 0))

	keys := b.prIn(lun, readKeys)
	if n := binary.BigEndian.Uint32(keys[4:]); n != 8 || binary.BigEndian.Uint64(keys[8:]) != key {
		t.Fatalf("READ KEYS from the other vhost: % x; want the one key %#x", keys, key)
	}
	res := b.prIn(lun, readReservation)
	if binary.BigEndian.Uint32(res[4:]) != 16 || binary.BigEndian.Uint64(res[8:]) != key || res[21]&0x0f != writeExclusiveRO {
		t.Fatalf("READ RESERVATION from the other vhost: % x", res)
	}

	rslt(t, b.do(b.cdb(lun, scsitest.Write10(0, 1), vscsiif.DirToDevice, 512)),
		vscsiif.Result(vscsiif.HostOK, scsi.StatusReservationConflict))
	good(t, b.do(b.cdb(lun, scsitest.Read10(0, 1), vscsiif.DirFromDevice, 512)))
	good(t, a.do(a.cdb(lun, scsitest.Write10(0, 1), vscsiif.DirToDevice, 512)))
}
