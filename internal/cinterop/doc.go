// Package cinterop checks xenblk's wire formats and ring semantics against
// Xen's own C headers (Debian libxen-dev). Its tests use cgo and build only
// with the cinterop tag; `make check` runs them and never skips them.
package cinterop
