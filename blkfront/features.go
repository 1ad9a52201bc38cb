package blkfront

import (
	"github.com/xenblk/xenblk/blkif"
	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenbus"
)

// backendFeature is one key of the backend's directory that blkfront
// reads, the value it stands for when absent, and where it goes in Info.
type backendFeature struct {
	key string
	def int64
	// late: Linux's blkback publishes the key only when it connects, not
	// at InitWait (Linux's blkfront reads it again then), so attach reads
	// it again, and a key present then wins over what connect read.
	late bool
	set  func(in *Info, v int64)
}

// backendFeatures is every feature key, for both reads: connect, before
// the rings are set up, and attach, once the backend is Connected.
var backendFeatures = [...]backendFeature{
	{blkif.KeyFeatureFlushCache, 0, true, func(in *Info, v int64) { in.Flush = v == 1 }},
	{blkif.KeyFeatureBarrier, 0, true, func(in *Info, v int64) { in.Barrier = v == 1 }},
	{blkif.KeyFeatureDiscard, 0, true, func(in *Info, v int64) { in.Discard = v == 1 }},
	{blkif.KeyDiscardSecure, 0, true, func(in *Info, v int64) { in.DiscardSecure = v == 1 }},
	{blkif.KeyDiscardGranularity, 0, true, func(in *Info, v int64) { in.DiscardGranularity = uint32(v) }},
	{blkif.KeyDiscardAlignment, 0, true, func(in *Info, v int64) { in.DiscardAlignment = uint32(v) }},
	{blkif.KeyFeaturePersistent, 0, true, func(in *Info, v int64) { in.Persistent = v == 1 }},
	{blkif.KeyMaxIndirectSegs, 0, false, func(in *Info, v int64) { in.IndirectSegments = int(v) }},
	{blkif.KeyMaxQueues, 1, false, func(in *Info, v int64) { in.Queues = int(v) }},
	{blkif.KeyMaxRingPageOrder, 0, false, func(in *Info, v int64) { in.RingPageOrder = int(v) }},
	{blkif.KeyFeatureExtraRequest, 0, false, func(in *Info, v int64) { in.ExtraRequest = v >= blkif.ExtraRequestVersion }},
	{blkif.KeyFeatureReservations, 0, false, func(in *Info, v int64) { in.Reservations = v == 1 }},
}

// readFeatures sets in's features from the backend's directory dir:
// every key (its default when absent), or, with lateOnly, the late keys
// that are present.
func readFeatures(st xen.Store, dir string, in *Info, lateOnly bool) error {
	for _, f := range backendFeatures {
		if lateOnly && !f.late {
			continue
		}
		v, ok, err := xenbus.LookupNumber[int64](st, dir+"/"+f.key)
		if err != nil {
			return err
		}
		if !ok {
			if lateOnly {
				continue
			}
			v = f.def
		}
		f.set(in, v)
	}
	return nil
}
