package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasHelpWithExamples walks the whole command tree: every
// command a user can run has a one-line summary, a description or
// examples, and `--help` prints them and succeeds.
func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			path := sub.CommandPath()
			if sub.Short == "" {
				t.Errorf("%s: no Short", path)
			}
			if sub.Runnable() && sub.Example == "" {
				t.Errorf("%s: no Example", path)
			}
			if sub.Runnable() && sub.Example != "" && !strings.Contains(sub.Example, "xenblk ") {
				t.Errorf("%s: the example does not show a xenblk command line", path)
			}
			walk(sub)
		}
	}
	walk(rootCmd)

	for _, args := range [][]string{{"--help"}, {"sim", "--help"}, {"serve", "--help"}, {"attach", "--help"}} {
		var out bytes.Buffer
		rootCmd.SetOut(&out)
		rootCmd.SetArgs(args)
		if err := rootCmd.Execute(); err != nil {
			t.Errorf("xenblk %v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "--xen") {
			t.Errorf("xenblk %v printed no usage with the --xen flag:\n%s", args, out.String())
		}
	}
	rootCmd.SetArgs(nil)
	rootCmd.SetOut(nil)
}
