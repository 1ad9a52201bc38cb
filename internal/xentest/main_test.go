package xentest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/xenblk/xenblk/internal/hostileguest"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xen/linux"
)

// TestMain runs the binary as a lab guest's program instead of the tests
// when XENTEST_ROLE names one:
//
//	hostile-guest  the hostile frontend's cases (internal/hostileguest)
//	               from this domU against the vbds dom0 attached to it;
//	               XENTEST_STRANGER is a domain that is neither this one
//	               nor the backend's. It prints ok:/FAIL: lines and exits
//	               1 if any check failed.
func TestMain(m *testing.M) {
	switch role := os.Getenv("XENTEST_ROLE"); role {
	case "":
		os.Exit(m.Run())
	case "hostile-guest":
		os.Exit(hostileGuest())
	default:
		fmt.Printf("FAIL: XENTEST_ROLE=%q names no role (hostile-guest)\n", role)
		os.Exit(2)
	}
}

// guestWait bounds each of the hostile guest's waits: long, for a lab
// under emulation on a loaded host; a backend that hangs still fails.
const guestWait = 120 * time.Second

func hostileGuest() int {
	stranger, err := strconv.ParseUint(os.Getenv("XENTEST_STRANGER"), 10, 16)
	if err != nil {
		fmt.Printf("FAIL: XENTEST_STRANGER=%q: want the id of a domain that is neither this one nor the backend's\n", os.Getenv("XENTEST_STRANGER"))
		return 2
	}
	dom, err := linux.Open()
	if err != nil {
		fmt.Printf("FAIL: open Xen in the guest: %v\n", err)
		return 1
	}
	defer dom.Close()
	failed := hostileguest.Run(context.Background(), hostileguest.Config{Domain: dom, Stranger: xen.DomID(stranger), Wait: guestWait,
		Report: func(ok bool, what string) {
			if ok {
				fmt.Println("ok: hostile:", what)
			} else {
				fmt.Println("FAIL: hostile:", what)
			}
		}})
	if failed > 0 {
		return 1
	}
	return 0
}
