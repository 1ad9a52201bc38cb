package qcow2

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
)

// run of a map, as both qemu-img and Map can say it.
type mapRun struct {
	Start, Length int64
	Data, Zero    bool
}

func mergeRuns(rs []mapRun) []mapRun {
	var out []mapRun
	for _, r := range rs {
		if k := len(out) - 1; k >= 0 && out[k].Data == r.Data && out[k].Zero == r.Zero && out[k].Start+out[k].Length == r.Start {
			out[k].Length += r.Length
			continue
		}
		out = append(out, r)
	}
	return out
}

// Map agrees with qemu-img map on which clusters hold data and which
// read as zeros.
func TestMapAgreesWithQemuImg(t *testing.T) {
	needTool(t, "qemu-img")
	const size = 64 << 20
	p := filepath.Join(t.TempDir(), "map.qcow2")
	if err := Create(p, size); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 200<<10)
	for i := range data {
		data[i] = byte(i) | 1
	}
	for _, off := range []int64{0, 3 << 20, 40<<20 + 100} {
		if _, err := d.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.WriteZeroes(3<<20+64<<10, 64<<10); err != nil {
		t.Fatal(err)
	}
	var ours []mapRun
	for off := int64(0); off < size; {
		es, err := d.Map(off, size-off)
		if err != nil || len(es) == 0 {
			t.Fatalf("Map(%d): %v %v", off, es, err)
		}
		for _, e := range es {
			ours = append(ours, mapRun{off, e.Length, !e.Hole && !e.Zero, e.Zero})
			off += e.Length
		}
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	var theirs []mapRun
	out := run(t, "qemu-img", "map", "--output=json", "-f", "qcow2", p)
	if err := json.Unmarshal([]byte(out), &theirs); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	t.Logf("map: %+v", mergeRuns(ours))
	if o, q := mergeRuns(ours), mergeRuns(theirs); !reflect.DeepEqual(o, q) {
		t.Fatalf("Map says %+v\nqemu-img map says %+v", o, q)
	}
}
