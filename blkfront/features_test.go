package blkfront

import (
	"strings"
	"testing"

	"github.com/xenblk/xenblk/xen/sim"
)

// The feature table's two reads: connect takes every key (its default
// when absent); attach takes again only the late keys that are present,
// keeping what connect read for the rest.
func TestReadFeatures(t *testing.T) {
	h, err := sim.NewHost()
	if err != nil {
		t.Fatal(err)
	}
	st := h.Store()
	const dir = "/local/domain/0/backend/xenblk/1/51712"
	for k, v := range map[string]string{
		"feature-flush-cache":             "1",
		"feature-max-indirect-segments":   "256",
		"max-ring-page-order":             "4",
		"feature-extra-request":           "1",
		"feature-persistent-reservations": "1",
	} {
		st.Write(dir+"/"+k, v)
	}
	var in Info
	if err := readFeatures(st, dir, &in, false); err != nil {
		t.Fatal(err)
	}
	want := Info{Flush: true, IndirectSegments: 256, Queues: 1, RingPageOrder: 4, ExtraRequest: true, Reservations: true}
	if in != want {
		t.Fatalf("connect read\n%+v, want\n%+v", in, want)
	}

	// Linux's blkback publishes these when it connects.
	for k, v := range map[string]string{
		"feature-flush-cache":           "0",
		"feature-discard":               "1",
		"discard-granularity":           "4096",
		"feature-persistent":            "1",
		"feature-max-indirect-segments": "32", // not late: negotiated already
		"multi-queue-max-queues":        "4",
	} {
		st.Write(dir+"/"+k, v)
	}
	if err := readFeatures(st, dir, &in, true); err != nil {
		t.Fatal(err)
	}
	want.Flush, want.Discard, want.DiscardGranularity, want.Persistent = false, true, 4096, true
	if in != want {
		t.Fatalf("attach read\n%+v, want\n%+v", in, want)
	}

	st.Write(dir+"/discard-alignment", "many")
	if err := readFeatures(st, dir, &in, true); err == nil || !strings.Contains(err.Error(), `discard-alignment: "many" is not a number`) {
		t.Fatalf("a garbled key: %v", err)
	}
}
