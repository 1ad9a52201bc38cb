package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"512", 512}, {"64K", 64 << 10}, {"64k", 64 << 10}, {"1G", 1 << 30}, {"1GiB", 1 << 30},
		{"256MB", 256 << 20}, {"1.5T", 3 << 39}, {" 4G ", 4 << 30}, {"268435456", 256 << 20}, {"1e3K", 1000 << 10},
	} {
		if got, err := parseSize(c.in); err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"-5G", "more than 0"}, {"0", "more than 0"}, {"", "not a size"}, {"G", "not a size"}, {"lots", "not a size"},
		{"inf", "not a size"}, {"NaN", "not a size"}, {"0x10", "not a size"}, {"1000", "1000 bytes, not a whole number of 512-byte sectors (try 1K)"},
		{"0.3K", "307.2 bytes"}, {"9000000T", "too large"},
	} {
		if got, err := parseSize(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseSize(%q) = %d, %v; want an error saying %q", c.in, got, err, c.want)
		}
	}
	for _, n := range []int64{512, 1 << 30, 3 << 39, 256 << 20, 1536} {
		if got, err := parseSize(formatSize(n)); err != nil || got != n {
			t.Errorf("formatSize(%d) = %q reads back as %d, %v", n, formatSize(n), got, err)
		}
	}
}

// Every flag named size, on every command, is read by parseSize: bench
// took bytes where sim took 1G.
func TestEverySizeFlagTakesUnits(t *testing.T) {
	found := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "size" {
				return
			}
			found++
			if _, ok := f.Value.(*sizeValue); !ok {
				t.Errorf("%s --size is a %s flag, not a size", c.CommandPath(), f.Value.Type())
			}
			if _, err := parseSize(f.DefValue); err != nil {
				t.Errorf("%s --size default %q: %v", c.CommandPath(), f.DefValue, err)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	if found < 3 {
		t.Errorf("%d --size flags found; sim, bench and bench-backend have one", found)
	}
}

// Issue 11's input handling, as a user meets it from the shell: bad sizes
// echo what was given (exit 2); a dangling symlink, a 0-byte image and an
// image with a partial last sector say what is wrong and what to do (exit
// 1); a taken NBD port leaves no image behind; a --size that an existing
// image contradicts is said to be ignored.
func TestSimAndNBDServeInputHandling(t *testing.T) {
	bin := buildXenblk(t)
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	fresh := filepath.Join(dir, "fresh.img")
	dangling := filepath.Join(dir, "dangling.img")
	os.Symlink(filepath.Join(dir, "gone.img"), dangling)
	empty := filepath.Join(dir, "empty.img")
	os.WriteFile(empty, nil, 0o644)
	odd := filepath.Join(dir, "odd.img")
	os.WriteFile(odd, make([]byte, 1<<20+100), 0o644)

	for _, c := range []struct {
		args []string
		code int
		want []string
		not  string
	}{
		{[]string{"sim", "--disk", fresh, "--size=-5G"}, 2, []string{`"-5G"`, "more than 0"}, `"-5"`},
		{[]string{"sim", "--disk", fresh, "--size", "lots"}, 2, []string{`"lots"`, "not a size"}, ""},
		{[]string{"bench", "--size", "1000"}, 2, []string{`"1000"`, "not a whole number of 512-byte sectors"}, ""},
		{[]string{"bench", "--size=-5G"}, 2, []string{`"-5G"`}, ""},
		{[]string{"sim", "--disk", fresh, "--size", "64M", "--nbd", taken.Addr().String()}, 1, []string{"NBD export on " + taken.Addr().String()}, ""},
		{[]string{"sim", "--disk", dangling, "--nbd", "127.0.0.1:0"}, 1, []string{"is a symbolic link to " + filepath.Join(dir, "gone.img") + ", which does not exist"}, "file exists"},
		{[]string{"nbd", "serve", "--listen", "127.0.0.1:0", dangling}, 1, []string{"is a symbolic link to"}, ""},
		{[]string{"nbd", "serve", "--listen", "127.0.0.1:0", filepath.Join(dir, "gone.img")}, 1, []string{"gone.img does not exist", "truncate -s"}, "stat"},
		{[]string{"sim", "--disk", empty, "--nbd", "127.0.0.1:0"}, 1, []string{"is 0 bytes; give it a size with truncate -s SIZE " + empty, "or remove it and xenblk sim creates it with --size"}, ""},
		{[]string{"nbd", "serve", "--listen", "127.0.0.1:0", empty}, 1, []string{"is 0 bytes; give it a size with truncate -s SIZE " + empty}, "remove it"},
		{[]string{"sim", "--disk", odd, "--nbd", "127.0.0.1:0"}, 1, []string{"is 1048676 bytes, not a whole number of 512-byte sectors: its last 100 bytes", "truncate -s 1049088 " + odd}, ""},
		{[]string{"nbd", "serve", "--listen", "127.0.0.1:0", odd}, 1, []string{"its last 100 bytes"}, ""},
		{[]string{"sim", "--disk", dir, "--nbd", "127.0.0.1:0"}, 1, []string{"is a directory", "give the path of an image file"}, ""},
		{[]string{"nbd", "serve", "--listen", "127.0.0.1:0", dir}, 1, []string{"is a directory", "give the path of an image file"}, ""},
	} {
		before := dirListing(t, dir)
		_, errs, code := runXenblkCode(t, bin, c.args...)
		if code != c.code {
			t.Errorf("xenblk %v: exit %d, want %d; stderr %q", c.args, code, c.code, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("xenblk %v: stderr %q does not say %q", c.args, errs, w)
			}
		}
		if c.not != "" && strings.Contains(errs, c.not) {
			t.Errorf("xenblk %v: stderr %q says %q", c.args, errs, c.not)
		}
		if after := dirListing(t, dir); after != before {
			t.Errorf("xenblk %v changed the files:\nbefore:\n%s\nafter:\n%s", c.args, before, after)
		}
	}

	// An existing image keeps its size, and a --size that differs is said
	// to be ignored (before the sim starts serving).
	whole := filepath.Join(dir, "whole.img")
	p := startProc(t, bin, "sim", "--disk", whole, "--size", "2M", "--nbd", "127.0.0.1:0")
	p.expect(t, "  NBD ")
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	if st, err := os.Stat(whole); err != nil || st.Size() != 2<<20 {
		t.Fatalf("sim --size 2M made %v, %v", st, err)
	}
	p = startProc(t, bin, "sim", "--disk", whole, "--size", "4G", "--nbd", "127.0.0.1:0")
	p.expect(t, "  NBD ")
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	if want := "--size 4G ignored: " + whole + " exists and is 2097152 bytes"; !strings.Contains(p.errb.String(), want) {
		t.Errorf("stderr %q does not say %q", p.errb.String(), want)
	}
	if st, _ := os.Stat(whole); st.Size() != 2<<20 {
		t.Errorf("the image was resized to %d", st.Size())
	}
}
