package xenbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xenblk/xenblk/xen"
)

// Reader reads one store node; xen.Store and xen.Tx are Readers. An
// absent node is reported as xen.ErrNotFound.
type Reader interface {
	Read(path string) (string, error)
}

// ReaderFunc makes a Reader of a function (a driver's view of the other
// end's directory, keys relative to it).
type ReaderFunc func(path string) (string, error)

// Read calls f.
func (f ReaderFunc) Read(path string) (string, error) { return f(path) }

// Integer is what a numeric node may be read as.
type Integer interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

// ReadNumber reads the decimal number at path (spaces around it are
// ignored), def when the node is absent: Linux's xenbus_read_unsigned,
// for signed types too. Unlike Linux, a value that is not a number of
// T's range is an error, not the default: the node is the other end's,
// which may be hostile, and a garbled key is refused rather than guessed.
// Any other read error is returned as it is (with 0).
func ReadNumber[T Integer](r Reader, path string, def T) (T, error) {
	v, ok, err := LookupNumber[T](r, path)
	if err != nil {
		return 0, err
	}
	if !ok {
		return def, nil
	}
	return v, nil
}

// LookupNumber is ReadNumber without a default: ok is false when the
// node is absent, for a caller that keeps an earlier value then.
func LookupNumber[T Integer](r Reader, path string) (v T, ok bool, err error) {
	s, err := r.Read(path)
	if errors.Is(err, xen.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err = parseNumber[T](strings.TrimSpace(s))
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not a number", path, s)
	}
	return v, true, nil
}

// parseNumber parses s as a decimal T, refusing what T cannot hold.
func parseNumber[T Integer](s string) (T, error) {
	var one T = 1
	if -one < 0 { // signed
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || int64(T(n)) != n {
			return 0, strconv.ErrRange
		}
		return T(n), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || uint64(T(n)) != n {
		return 0, strconv.ErrRange
	}
	return T(n), nil
}

// WaitNode waits until done holds for the node at path and returns what
// was read last (err is xen.ErrNotFound while the node is absent). It
// reads once at once, then again on each event of a watch on path (the
// watch fires for the node, its descendants and the removal of an
// ancestor), never by polling. It returns ctx's error, with the last
// value, when ctx ends first, and an error if the store connection goes.
func WaitNode(ctx context.Context, st xen.Store, path string, done func(v string, err error) bool) (string, error) {
	w, err := st.Watch(path, "xenbus-wait")
	if err != nil {
		return "", fmt.Errorf("xenbus: watch %s: %w", path, err)
	}
	defer w.Close()
	for {
		v, err := st.Read(path)
		if done(v, err) {
			return v, err
		}
		select {
		case _, ok := <-w.Events():
			if !ok {
				return v, fmt.Errorf("xenbus: waiting on %s (%s): the store connection closed", path, describe(v, err))
			}
		case <-ctx.Done():
			return v, fmt.Errorf("xenbus: waiting on %s (%s): %w", path, describe(v, err), ctx.Err())
		}
	}
}

// describe says what a read found, for an error.
func describe(v string, err error) string {
	if err != nil {
		return "last read: " + err.Error()
	}
	return fmt.Sprintf("last value %q", v)
}

// Exists is a WaitNode condition: the node is there.
func Exists(_ string, err error) bool { return err == nil }

// OneOf is a WaitNode condition: the node holds one of want (spaces
// around the value ignored).
func OneOf(want ...string) func(string, error) bool {
	return func(v string, err error) bool {
		v = strings.TrimSpace(v)
		for _, w := range want {
			if err == nil && v == w {
				return true
			}
		}
		return false
	}
}
