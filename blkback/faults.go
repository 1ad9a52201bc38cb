package blkback

import "github.com/xenblk/xenblk/internal/faultinject"

func init() {
	faultinject.CrashBackend = func(s any) { s.(*Server).crash() }
	faultinject.DisconnectVBD = func(d any) { d.(*VBD).disconnect() }
}
