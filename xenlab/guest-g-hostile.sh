# Scenario g, in the hostile guest (booted with xen_blkfront blacklisted:
# no kernel frontend takes its vbds): internal/hostileguest's cases, our
# Go code on this domain's gntalloc, evtchn and xenbus, against xenblk
# serve in dom0 on the four vbds dom0 attached (hostileguest.VBDs). The
# program prints its own ok:/FAIL: lines. Environment (create_guest):
# XENTEST_STRANGER, the good guest's domain id.
step "the hostile frontend's cases"
check test -c /dev/xen/gntalloc
check test -c /dev/xen/evtchn
# Each of its waits is bounded (two minutes); the whole run by this.
if XENTEST_ROLE=hostile-guest timeout 1800 xentest.test; then
  ok "the hostile guest's program ended, every check passed"
else
  bad "the hostile guest's program: status $?"
fi
