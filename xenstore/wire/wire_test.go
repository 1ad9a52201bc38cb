package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/xenblk/xenblk/xen"
)

func TestHeaderRoundTripAndLimits(t *testing.T) {
	msg := AppendMessage(nil, Header{Type: DirectoryPart, ReqID: 0xdeadbeef, TxID: 9}, []byte("/a\x000\x00"))
	h, err := ParseHeader(msg)
	if err != nil || h != (Header{Type: DirectoryPart, ReqID: 0xdeadbeef, TxID: 9, Len: 5}) {
		t.Fatalf("round trip: %+v %v", h, err)
	}
	if !bytes.Equal(msg[:4], []byte{22, 0, 0, 0}) {
		t.Fatalf("type not little-endian 22: % x", msg[:4])
	}
	if _, err := ParseHeader(msg[:HeaderSize-1]); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("short header: %v", err)
	}
	big := AppendMessage(nil, Header{Type: Read}, make([]byte, PayloadMax+1))
	if _, err := ParseHeader(big); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("payload over the maximum: %v", err)
	}
	if DirectoryPart.String() != "DIRECTORY_PART" || Type(20).String() != "XS_20" {
		t.Fatalf("type names: %v %v", DirectoryPart, Type(20))
	}
}

func TestStringsPermsAndErrors(t *testing.T) {
	if got := SplitStrings(Strings("a", "", "b")); strings.Join(got, "|") != "a||b" {
		t.Fatalf("split: %q", got)
	}
	if got := SplitStrings([]byte("/p\x00value without nul")); len(got) != 2 || got[1] != "value without nul" {
		t.Fatalf("split unterminated: %q", got)
	}
	for _, s := range []string{"n0", "r5", "w65535", "b12"} {
		p, ok := ParsePerm(s)
		if !ok || PermString(p) != s {
			t.Fatalf("perm %s: %+v %v", s, p, ok)
		}
	}
	for _, s := range []string{"", "b", "x1", "r65536", "r+1", "r-1", "r1a"} {
		if _, ok := ParsePerm(s); ok {
			t.Fatalf("perm %q accepted", s)
		}
	}
	e := &Err{Name: EAGAIN, Op: "transaction_end"}
	if !errors.Is(e, xen.ErrAgain) || Name(e) != EAGAIN || e.Error() != "xenstore: transaction_end: EAGAIN" {
		t.Fatalf("EAGAIN: %v", e)
	}
	if !errors.Is(&Err{Name: EPERM}, xen.ErrPermission) || errors.Is(&Err{Name: EINVAL}, xen.ErrNotFound) {
		t.Fatal("sentinel mapping")
	}
	if Name(xen.ErrNotFound) != ENOENT || Name(errors.New("other")) != EINVAL {
		t.Fatal("names of plain errors")
	}
}

// FuzzDecode: the decoders of peer bytes never panic, and a header that
// parses re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(AppendMessage(nil, Header{Type: Read, ReqID: 1}, []byte("/x\x00")))
	f.Add([]byte("b0\x00r7\x00"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if h, err := ParseHeader(in); err == nil {
			if h.Len > PayloadMax {
				t.Fatalf("accepted length %d", h.Len)
			}
			re := AppendMessage(nil, Header{Type: h.Type, ReqID: h.ReqID, TxID: h.TxID}, make([]byte, h.Len))
			if !bytes.Equal(re[:12], in[:12]) {
				t.Fatalf("re-encoding differs")
			}
		}
		for _, s := range SplitStrings(in) {
			if p, ok := ParsePerm(s); ok {
				if q, ok := ParsePerm(PermString(p)); !ok || q != p {
					t.Fatalf("perm %q re-encodes as %q", s, PermString(p))
				}
			}
		}
	})
}
