package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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
	walk(newRootCmd()) // before enforceUsage makes groups runnable

	for _, args := range [][]string{{"--help"}, {"sim", "--help"}, {"serve", "--help"}, {"attach", "--help"}} {
		var out bytes.Buffer
		root := newCLI()
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Errorf("xenblk %v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), "Flags:") {
			t.Errorf("xenblk %v printed no usage with flags:\n%s", args, out.String())
		}
	}
}

// xenCommands are the commands that talk to a hypervisor, real or
// simulated, and so take --xen.
var xenCommands = map[string]bool{
	"xenblk attach": true, "xenblk detach": true, "xenblk front": true, "xenblk serve": true,
	"xenblk xenstore": true, "xenblk xenstore read": true, "xenblk xenstore write": true,
	"xenblk xenstore rm": true, "xenblk xenstore ls": true, "xenblk xenstore watch": true,
}

// TestFlagHelpReadsRight checks every flag's line in every --help: pflag
// takes a backquoted word in a usage as the value's name (so "`xenblk
// scsi`" printed "--control xenblk scsi"); a usage that says what the
// default is must not get pflag's "(default X)" too; --xen is offered by
// the commands where it means something, and only there.
func TestFlagHelpReadsRight(t *testing.T) {
	valueName := regexp.MustCompile("^[A-Z][A-Z0-9_/:|-]*$")
	saysDefault := regexp.MustCompile(`\(default[ :]|default:|\bdefault \$`)
	for _, c := range visibleCommands(newCLI()) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if i := strings.IndexByte(f.Usage, '`'); i >= 0 {
				if name, _ := pflag.UnquoteUsage(f); !valueName.MatchString(name) {
					t.Errorf("%s --%s: the backquotes in %q make %q the value's name", c.CommandPath(), f.Name, f.Usage, name)
				}
			}
			line := c.Flags().FlagUsages() // pflag appends "(default X)" unless the default is the zero value
			for _, l := range strings.Split(line, "\n") {
				if strings.Contains(l, "--"+f.Name+" ") && saysDefault.MatchString(f.Usage) && strings.Count(l, "default") > strings.Count(f.Usage, "default") {
					t.Errorf("%s --%s states its default twice:\n%s", c.CommandPath(), f.Name, l)
				}
			}
		})
		hasXen := c.Flags().Lookup("xen") != nil || c.PersistentFlags().Lookup("xen") != nil || c.InheritedFlags().Lookup("xen") != nil
		if hasXen != xenCommands[c.CommandPath()] {
			t.Errorf("%s: has --xen %v, want %v", c.CommandPath(), hasXen, xenCommands[c.CommandPath()])
		}
	}
}
