package vscsiback

import "github.com/xenblk/xenblk/internal/faultinject"

func init() {
	faultinject.CrashVscsiBackend = func(s any) { s.(*Server).crash() }
}
