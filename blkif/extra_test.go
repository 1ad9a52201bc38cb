package blkif

import (
	"bytes"
	"testing"
)

func TestExtraRequestLayout(t *testing.T) {
	r := ExtraRequest{Type: ExtraTypeSCSI, CmdLen: 16, ID: 0x1122334455667788, CmdGref: 0xdeadbeef, DataLen: 4097}
	for abi, idOff := range map[ABI]int{X86_64: 8, ARM: 8, X86_32: 4} {
		slot := fill(abi.SlotSize())
		abi.EncodeExtraRequest(slot, &r)
		if slot[0] != OpExtraData || slot[1] != ExtraTypeSCSI || slot[2] != 16 {
			t.Errorf("%v: header % x", abi, slot[:4])
		}
		if le.Uint64(slot[idOff:]) != r.ID || le.Uint32(slot[idOff+8:]) != r.CmdGref || le.Uint32(slot[idOff+12:]) != r.DataLen {
			t.Errorf("%v: fields not at id@%d: % x", abi, idOff, slot[:32])
		}
		if !bytes.Equal(slot[idOff+16:], make([]byte, abi.SlotSize()-idOff-16)) {
			t.Errorf("%v: tail not zeroed", abi)
		}
		var got ExtraRequest
		abi.DecodeExtraRequest(slot, &got)
		if got != r {
			t.Errorf("%v: round trip %+v", abi, got)
		}
		// A desynchronised reader sees an unknown operation, not a WRITE.
		var base Request
		abi.DecodeRequest(slot, &base)
		if base.Operation == OpWrite || base.Operation == OpRead || base.ID != r.ID {
			t.Errorf("%v: extra slot read as a base request: op %d id %x", abi, base.Operation, base.ID)
		}
	}
}

func TestExtraResponseLayout(t *testing.T) {
	r := ExtraResponse{ResidLen: 100, SenseLen: 18, SCSIStatus: 2, Type: ExtraTypeSCSI, Status: RspOkay}
	for _, abi := range []ABI{X86_64, X86_32, ARM} {
		slot := fill(abi.SlotSize())
		abi.EncodeExtraResponse(slot, &r)
		if !IsExtraResponse(slot) {
			t.Errorf("%v: not recognised", abi)
		}
		var got ExtraResponse
		abi.DecodeExtraResponse(slot, &got)
		if got != r {
			t.Errorf("%v: %+v", abi, got)
		}
		// operation and status sit where a base response has them.
		var base Response
		abi.DecodeResponse(slot, &base)
		if base.Operation != OpExtraData || base.Status != r.Status {
			t.Errorf("%v: base view %+v", abi, base)
		}
		if !bytes.Equal(slot[12:], make([]byte, abi.SlotSize()-12)) {
			t.Errorf("%v: padding not zeroed", abi)
		}
	}
}

func FuzzDecodeExtraRequest(f *testing.F) {
	f.Add(make([]byte, 112), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		abi := ABI(which % 3)
		if len(b) < abi.SlotSize() {
			return
		}
		var r ExtraRequest
		abi.DecodeExtraRequest(b, &r)
		slot := make([]byte, abi.SlotSize())
		abi.EncodeExtraRequest(slot, &r)
		var again ExtraRequest
		abi.DecodeExtraRequest(slot, &again)
		if again != r {
			t.Fatalf("unstable %+v %+v", r, again)
		}
	})
}

func TestPRRequestLayout(t *testing.T) {
	r := PRRequest{Action: PRPreemptAbort, Type: 5 /* SPC-4 Write Exclusive, registrants only */, Flags: PRFlagAPTPL, ID: 77, Key: 0x1111, SAKey: 0x2222, Gref: 99}
	for abi, idOff := range map[ABI]int{X86_64: 8, ARM: 8, X86_32: 4} {
		slot := fill(abi.SlotSize())
		abi.EncodePRRequest(slot, &r)
		if slot[0] != OpReservation || le.Uint64(slot[idOff:]) != 77 || le.Uint64(slot[idOff+8:]) != 0x1111 ||
			le.Uint64(slot[idOff+16:]) != 0x2222 || le.Uint32(slot[idOff+24:]) != 99 {
			t.Errorf("%v: % x", abi, slot[:40])
		}
		if !bytes.Equal(slot[idOff+28:], make([]byte, abi.SlotSize()-idOff-28)) {
			t.Errorf("%v: tail not zeroed", abi)
		}
		var got PRRequest
		abi.DecodePRRequest(slot, &got)
		if got != r {
			t.Errorf("%v: %+v", abi, got)
		}
	}
}

func FuzzDecodePRRequest(f *testing.F) {
	f.Add(make([]byte, 112), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, which uint8) {
		abi := ABI(which % 3)
		if len(b) < abi.SlotSize() {
			return
		}
		var r PRRequest
		abi.DecodePRRequest(b, &r)
		slot := make([]byte, abi.SlotSize())
		abi.EncodePRRequest(slot, &r)
		var again PRRequest
		abi.DecodePRRequest(slot, &again)
		if again != r {
			t.Fatal("unstable")
		}
	})
}
