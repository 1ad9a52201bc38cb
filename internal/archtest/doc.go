// Package archtest holds the test that keeps ARCHITECTURE.md's layer
// table true: every package of the module is in exactly one row, and no
// package imports one of a higher row; and the test that keeps an etcd
// server out of the xenblk binary. It has no code of its own.
package archtest
