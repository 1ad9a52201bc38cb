package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/xenblk/xenblk/xen/sim"
)

// intRangeValue is a whole-number flag that accepts lo..hi only, checked
// when the flag is parsed (a usage mistake, exit 2, before anything is
// opened or created). note, if not empty, says where the range comes from.
type intRangeValue struct {
	p      *int
	lo, hi int
	note   string
}

func intRangeVar(f *pflag.FlagSet, p *int, name string, def, lo, hi int, note, usage string) {
	*p = def
	f.Var(intRangeValue{p: p, lo: lo, hi: hi, note: note}, name, usage)
}

func (v intRangeValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v intRangeValue) Type() string { return "int" }

func (v intRangeValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < v.lo || n > v.hi {
		if v.note != "" {
			return fmt.Errorf("want a whole number from %d to %d (%s)", v.lo, v.hi, v.note)
		}
		return fmt.Errorf("want a whole number from %d to %d", v.lo, v.hi)
	}
	*v.p = n
	return nil
}

// grantFramesVar is sim's and host's --grant-frames: the simulated
// domains' grant-table size, Xen's gnttab_max_frames.
func grantFramesVar(f *pflag.FlagSet, p *int) {
	intRangeVar(f, p, "grant-frames", sim.DefaultGrantFrames, 1, sim.MaxGrantFrames, "",
		fmt.Sprintf("size of each domain's grant table in pages of %d entries, 1 to %d (Xen's gnttab_max_frames)", sim.EntriesPerFrame, sim.MaxGrantFrames))
}
