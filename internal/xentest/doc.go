// Package xentest holds the tests that need a real Xen hypervisor: the
// block-device conformance suite through our frontend and backend over
// xen/linux (real grants and event channels), and hostile peers on real
// Xen. They run in dom0 in the Xen lab (`make xenlab` compiles this
// package's test binary and runs it there with XENBLK_REQUIRE_XEN=1);
// anywhere else they skip, saying so.
package xentest
