package main

import (
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagTrials are values to give a flag until its Set takes one: each
// flag type accepts at least one of them.
var flagTrials = []string{"7", "1", "true", "false", "2s", "5s", "127.0.0.1:7", "/tmp/xenblk-tree-test.sock", "sim", "64M", "xvdq", "qcow2", "blkif/null:vscsi/null", "d=/tmp/xenblk-tree-test.img"}

// TestTreesShareNoFlags: every flag of every command, hidden ones
// included, lives in the tree newRootCmd built. Two trees are built; each
// flag of the first is given a value other than its default; then every
// flag of the second still has its default.
func TestTreesShareNoFlags(t *testing.T) {
	first, second := newCLI(), newCLI()
	set := 0
	forEachFlag(first, func(c *cobra.Command, f *pflag.Flag) {
		for _, v := range flagTrials {
			if v != f.DefValue && f.Value.Set(v) == nil && f.Value.String() != f.DefValue {
				set++
				return
			}
		}
		t.Errorf("%s --%s (%s): no trial value sets it to something else than %q", c.CommandPath(), f.Name, f.Value.Type(), f.DefValue)
	})
	if set < 80 {
		t.Fatalf("set %d flags: the walk missed commands", set)
	}
	forEachFlag(second, func(c *cobra.Command, f *pflag.Flag) {
		if got := f.Value.String(); got != f.DefValue {
			t.Errorf("%s --%s in a new tree is %q, not its default %q: set through another tree", c.CommandPath(), f.Name, got, f.DefValue)
		}
	})
}

// forEachFlag calls fn for each flag a command of root's tree defines
// (its own and its persistent ones, not those it inherits).
func forEachFlag(root *cobra.Command, fn func(*cobra.Command, *pflag.Flag)) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { fn(c, f) })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
