package main

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// TestOpenImageHint: an image that cannot be opened says what to do when
// a flag or another path is the answer, and only then.
func TestOpenImageHint(t *testing.T) {
	denied := &fs.PathError{Op: "open", Path: "/x.img", Err: syscall.EACCES}
	dir := &fs.PathError{Op: "open", Path: "/x", Err: syscall.EISDIR}
	for _, c := range []struct {
		err      error
		readOnly bool
		want     string // "" for unchanged
	}{
		{denied, false, "give --read-only"},
		{&fs.PathError{Op: "open", Path: "/x.img", Err: syscall.EPERM}, false, "give --read-only"},
		{denied, true, ""},
		{dir, false, "give the path of an image file or a block device"},
		{dir, true, "give the path of an image file or a block device"},
		{&fs.PathError{Op: "truncate", Path: "/x.img", Err: syscall.EFBIG}, false, "give a smaller --size"},
		{errors.New("other"), false, ""},
		{nil, false, ""},
	} {
		got := openImageHint(c.err, c.readOnly)
		switch {
		case c.want == "" && got != c.err:
			t.Errorf("openImageHint(%v, %v) = %v; want it unchanged", c.err, c.readOnly, got)
		case c.want != "" && (got == nil || !strings.Contains(got.Error(), c.want) || !errors.Is(got, c.err)):
			t.Errorf("openImageHint(%v, %v) = %v; want it wrapped, saying %q", c.err, c.readOnly, got, c.want)
		}
	}
}
