package emulate_test

import (
	"testing"

	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/emulate"
	"github.com/xenblk/xenblk/scsi/scsitest"
	"github.com/xenblk/xenblk/storage"
	"github.com/xenblk/xenblk/storage/storagetest"
)

// FuzzExecute throws arbitrary CDBs and data at the engine over a guarded
// device (a slice of a larger one): no panic, no access outside the device,
// no byte outside the slice changed, a well-formed result.
func FuzzExecute(f *testing.F) {
	seeds := [][]byte{
		scsitest.Read10(0, 1), scsitest.Write10(3, 2), scsitest.Read16(^uint64(0), 1),
		scsitest.Write16(15, 1), scsitest.Inquiry(true, 0x83, 255),
		{scsi.OpUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0},
		{scsi.OpWriteSame16, 0x08, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0},
		{scsi.OpCompareAndWrite, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0},
		{scsi.OpModeSelect10, 0x10, 0, 0, 0, 0, 0, 0, 20, 0},
		{scsi.OpMaintenanceIn, 0x0c, 0x82, 0x9e, 0, 0x10, 0, 0, 1, 0, 0, 0},
		{scsi.OpVerify16, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0},
	}
	for i, s := range seeds {
		f.Add(s, byte(i%3), make([]byte, 1024))
	}
	f.Fuzz(func(t *testing.T, cdb []byte, dir byte, data []byte) {
		const bs, blocks, base = 512, 16, 4
		mem := scsitest.NewMemory(storage.Info{
			Size: (blocks + 2*base) * bs, LogicalBlockSize: bs, PhysicalBlockSize: 4096,
			CanFlush: true, CanDiscard: true, DiscardZeroes: true,
		})
		mem.Fill(0x5a)
		guard := &storagetest.Guard{Device: &storage.Slice{Dev: mem, Offset: base * bs, Size: blocks * bs}}
		e := emulate.New(guard, emulate.Config{Log: quiet()})
		n := scsi.Nexus{Dom: 1}
		var res scsi.Result
		e.Execute(n, &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}}, &res)
		cmd := &scsi.Command{CDB: cdb, Dir: scsi.Direction(dir % 3), Data: data}
		e.Execute(n, cmd, &res)
		if v := guard.Violations(); len(v) > 0 {
			t.Fatalf("out-of-device access: %v", v)
		}
		if res.Resid < 0 || res.Resid > len(data) || res.SenseLen < 0 || res.SenseLen > scsi.MaxSense {
			t.Fatalf("malformed result: resid %d of %d, sense %d", res.Resid, len(data), res.SenseLen)
		}
		if res.Status == scsi.StatusCheckCondition {
			if _, _, ok := scsi.ParseSense(res.SenseBytes()); !ok {
				t.Fatalf("unparseable sense % x", res.SenseBytes())
			}
		}
		b := mem.Contents()
		for i := 0; i < base*bs; i++ {
			if b[i] != 0x5a || b[len(b)-1-i] != 0x5a {
				t.Fatalf("byte outside the slice changed")
			}
		}
	})
}

// FuzzExecuteSequence runs a stream of commands from two nexuses on one
// engine, so that state (mode pages, sense format, unit attentions, data
// written) carries from command to command. Stream format per command:
// cdb length, cdb, direction, data length (2 bytes, little endian), data.
func FuzzExecuteSequence(f *testing.F) {
	cmd := func(cdb []byte, dir byte, data []byte) []byte {
		b := append([]byte{byte(len(cdb))}, cdb...)
		b = append(b, dir, byte(len(data)), byte(len(data)>>8))
		return append(b, data...)
	}
	modeSelect := []byte{0, 0, 0, 0, 0x0a, 10, 0x04, 0x10, 0, 0, 0, 0, 0xff, 0xff, 0, 0}
	f.Add(append(append(cmd([]byte{scsi.OpModeSelect6, 0x10, 0, 0, 16, 0}, 1, modeSelect),
		cmd(scsitest.Read16(100, 1), 2, make([]byte, 512))...),
		cmd(scsitest.Write10(15, 1), 1, make([]byte, 512))...))
	f.Add(cmd([]byte{scsi.OpWriteSame10, 0x08, 0, 0, 0, 0, 0, 0, 16, 0}, 1, make([]byte, 512)))
	f.Fuzz(func(t *testing.T, stream []byte) {
		const bs, blocks, base = 512, 16, 4
		mem := scsitest.NewMemory(storage.Info{
			Size: (blocks + 2*base) * bs, LogicalBlockSize: bs, PhysicalBlockSize: 4096,
			CanFlush: true, CanDiscard: true, DiscardZeroes: true,
		})
		mem.Fill(0x5a)
		guard := &storagetest.Guard{Device: &storage.Slice{Dev: mem, Offset: base * bs, Size: blocks * bs}}
		e := emulate.New(guard, emulate.Config{Log: quiet()})
		var res scsi.Result
		for i := 0; i < 8 && len(stream) > 0; i++ {
			l := int(stream[0]) % (scsi.MaxCDB + 1)
			stream = stream[1:]
			if len(stream) < l+3 {
				return
			}
			cdb := stream[:l]
			dir := scsi.Direction(stream[l] % 3)
			dl := (int(stream[l+1]) | int(stream[l+2])<<8) % 8192
			stream = stream[l+3:]
			data := make([]byte, dl)
			stream = stream[copy(data, stream):]
			e.Execute(scsi.Nexus{Dom: uint16(i % 2)}, &scsi.Command{CDB: cdb, Dir: dir, Data: data}, &res)
			if res.Resid < 0 || res.Resid > dl || res.SenseLen < 0 || res.SenseLen > scsi.MaxSense {
				t.Fatalf("malformed result: resid %d of %d, sense %d", res.Resid, dl, res.SenseLen)
			}
			if res.Status == scsi.StatusCheckCondition {
				if _, _, ok := scsi.ParseSense(res.SenseBytes()); !ok {
					t.Fatalf("unparseable sense % x", res.SenseBytes())
				}
			}
		}
		if v := guard.Violations(); len(v) > 0 {
			t.Fatalf("out-of-device access: %v", v)
		}
		b := mem.Contents()
		for i := 0; i < base*bs; i++ {
			if b[i] != 0x5a || b[len(b)-1-i] != 0x5a {
				t.Fatalf("byte outside the slice changed")
			}
		}
	})
}
