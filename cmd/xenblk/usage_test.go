package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// cliRun is one run of the built binary: its exit status and output.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
}

// cliHarness runs the built binary in an empty working directory with a
// controlled environment: no simulated host, no control socket, no Xen.
type cliHarness struct {
	t    *testing.T
	root *cobra.Command // a tree like the binary's, to walk
	bin  string
	cwd  string
	env  []string
}

func newCLIHarness(t *testing.T) *cliHarness {
	t.Helper()
	dir := t.TempDir()
	h := &cliHarness{t: t, root: newCLI(), bin: filepath.Join(dir, "xenblk"), cwd: filepath.Join(dir, "cwd")}
	if out, err := exec.Command("go", "build", "-o", h.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := os.Mkdir(h.cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XENSTORED_PATH=") && !strings.HasPrefix(kv, "XENBLK_CONTROL=") {
			h.env = append(h.env, kv)
		}
	}
	h.env = append(h.env, "XENBLK_CONTROL="+filepath.Join(dir, "no-control", "sim.sock"))
	return h
}

// run runs the binary; a run that has not ended after a minute is killed
// and reported: every input these tests give is refused before anything
// starts.
func (h *cliHarness) run(args ...string) cliRun {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.bin, args...)
	cmd.Dir, cmd.Env = h.cwd, h.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		h.t.Fatalf("xenblk %q ran for a minute instead of refusing its input", args)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		h.t.Fatalf("xenblk %q: %v", args, err)
	}
	return r
}

// wantUsage checks the convention for a usage mistake: exit 2 and one line
// on stderr saying why.
func (h *cliHarness) wantUsage(args ...string) {
	h.t.Helper()
	r := h.run(args...)
	msg := strings.TrimSuffix(r.stderr, "\n")
	if r.code != exitUsage || !strings.HasPrefix(msg, "xenblk: ") || strings.Contains(msg, "\n") {
		h.t.Errorf("xenblk %q: exit %d, stderr %q; want exit 2 and one line \"xenblk: reason\"", args, r.code, r.stderr)
	}
	if goInternals.MatchString(msg) {
		h.t.Errorf("xenblk %q: stderr %q speaks of Go's parsers, not of what the flag wants", args, msg)
	}
}

// goInternals matches what Go's parsers say of a bad value (a user should
// read what the flag or argument wants instead).
var goInternals = regexp.MustCompile(`strconv\.|encoding/hex|invalid syntax|value out of range`)

// newCLI builds the tree as main does: newRootCmd, then enforceUsage (help
// and completion included).
func newCLI() *cobra.Command {
	root := newRootCmd()
	enforceUsage(root)
	return root
}

// visibleCommands is every command of root's tree a user can reach, root
// included.
func visibleCommands(root *cobra.Command) []*cobra.Command {
	var all []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		all = append(all, c)
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				walk(sub)
			}
		}
	}
	walk(root)
	return all
}

func pathArgs(c *cobra.Command) []string {
	return strings.Fields(strings.TrimPrefix(c.CommandPath(), c.Root().Name()))
}

// checkedFlagTypes refuse "not-a-value" when parsed; freeFormFlagTypes take
// any text (a path, a name). Every flag type is one or the other.
var (
	checkedFlagTypes = map[string]bool{
		"bool": true, "int": true, "intSlice": true, "duration": true, "size": true, "rpm": true,
		"host:port": true, "host:port|unix:path": true, "auto|linux|sim": true, "page": true, "raw|qcow2|auto": true,
		"A:B": true, "NAME=FILE": true,
	}
	freeFormFlagTypes = map[string]bool{"string": true, "stringSlice": true, "path": true}
)

// TestUsageMistakesExitTwo walks the whole command tree: a command that
// groups others refuses to run without one and refuses an unknown one; every
// runnable command refuses unknown flags, arguments it does not take, and
// bad values for every flag whose type can be checked; each with exit 2,
// one line, and nothing created in the working directory.
func TestUsageMistakesExitTwo(t *testing.T) {
	h := newCLIHarness(t)
	groups, leaves := 0, 0
	for _, c := range visibleCommands(h.root) {
		path := pathArgs(c)
		if c.HasSubCommands() {
			groups++
			h.wantUsage(path...)
			h.wantUsage(append(path, "no-such-command")...)
			continue
		}
		if c.Name() == "help" {
			h.wantUsage("help", "no-such-command")
			continue
		}
		leaves++
		h.wantUsage(append(path, "--no-such-flag")...)
		h.wantUsage(append(path, "extra-1", "extra-2", "extra-3", "extra-4", "extra-5")...)
		c.Flags().VisitAll(func(f *pflag.Flag) {
			switch typ := f.Value.Type(); {
			case checkedFlagTypes[typ]:
				h.wantUsage(append(path, "--"+f.Name+"=not-a-value")...)
			case !freeFormFlagTypes[typ]:
				t.Errorf("%s --%s: flag type %q is neither checked nor free-form for this test", c.CommandPath(), f.Name, typ)
			}
		})
	}
	if groups < 5 || leaves < 20 {
		t.Fatalf("walked %d groups and %d runnable commands: the tree is not what the test expects", groups, leaves)
	}

	// The cases the issue reported, and each kind of address flag.
	for _, args := range [][]string{
		{"bogus"}, {"pr", "reserv"}, {"sim", "extra-arg"},
		{"attach", "--domain", "1"}, {"detach", "--domain", "1"},
		{"attach", "--domain", "1", "--vscsi", "/x.img"}, {"attach", "--domain", "1", "--vscsi", "/x.img, 0:0:0:0, feature-host"},
		{"detach", "--domain", "1", "--vscsi", "xvda"}, {"detach", "--domain", "1", "--vhost", "-5"},
		{"attach", "--xen=bogus", "--domain", "1", "vdev=xvda, target=/x.img"},
		{"sim", "--nbd", "127.0.0.1:99999"}, {"sim", "--nbd", "bogus"}, {"sim", "--nbd", "no_such host:1"},
		{"front", "--nbd", "127.0.0.1:-1"}, {"serve", "--metrics", "9469"},
		{"serve", "--pr-store", "bogus"}, {"serve", "--pr-store", "etcd://h1"}, {"serve", "--pr-store-ca", "/x.pem"},
		{"serve", "--pr-store", "etcd://h1:2379", "--pr-store-cert", "/x.pem"}, {"serve", "--pr-store-timeout", "0s"},
		{"serve", "--pr-lease", "0s"},
		{"bench", "--pr-stores", "bogus"}, {"bench", "--pr-stores", "etcd://h1"}, {"bench", "--pr-store-ca", "/x.pem"},
		{"bench", "--pr-stores", "etcd://h1:2379", "--pr-store-timeout", "0s"},
		{"sim", "--vscsi", "--read-only"}, {"front", "--vhost", "-5"}, {"front", "--vhost", "0", "--vdev", "xvdb"}, {"front", "--vhost", "0", "--reattach"},
		{"nbd", "serve", "--listen", "bogus", "disk.img"}, {"nbd", "serve", "--listen", "unix:", "disk.img"},
		{"sim", "--control", "/" + strings.Repeat("d", maxSocketPath)},
		{"host", "--socket", "/" + strings.Repeat("d", maxSocketPath)},
		{"sim", "--rotation-rate", "65536"}, {"sim", "--rotation-rate", "-2"},
		{"help", "pr", "reserv"},
		{"scsi", "inquiry", "--vpd", "0x1ff"}, {"scsi", "raw", "12", "zz"}, {"pr", "register", "--key", "zz"},
		{"front", "--wait", "0s"}, {"front", "--wait", "-1m"}, {"scsi", "raw", "00"}, {"scsi", "raw", "12", "00", "00", "00", "24"},
		{"attach", "--domain", "-5", "vdev=xvda, target=/x.img"}, {"detach", "--domain", "99999", "xvda"},
		{"attach", "--domain", "1", "--backend-domain", "-2", "vdev=xvda, target=/x.img"},
		{"detach", "--domain", "-5", "--vscsi", "0:0:0:0"},
	} {
		h.wantUsage(args...)
	}

	// A value given but out of range is named, not called missing.
	for _, c := range []struct{ args []string }{
		{[]string{"attach", "--domain", "-5", "vdev=xvda, target=/x.img"}},
		{[]string{"detach", "--domain", "99999", "xvda"}},
		{[]string{"attach", "--domain", "1", "--backend-domain", "-2", "vdev=xvda, target=/x.img"}},
	} {
		r := h.run(c.args...)
		flag, value := c.args[len(c.args)-3], c.args[len(c.args)-2]
		if !strings.Contains(r.stderr, flag+" "+value) || strings.Contains(r.stderr, "required") {
			t.Errorf("xenblk %q: %q; want the message to name %s %s", c.args, r.stderr, flag, value)
		}
	}

	if left, _ := os.ReadDir(h.cwd); len(left) > 0 {
		t.Errorf("refused commands left %d entries in the working directory (first %s)", len(left), left[0].Name())
	}
}

// TestAddressFlagsParse pins what the address flags accept.
func TestAddressFlagsParse(t *testing.T) {
	for _, s := range []string{"127.0.0.1:10809", ":0", "[::1]:80", "localhost:65535", "[fe80::1%eth0]:9", "node-1.example:1"} {
		if err := checkTCPAddr(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range []string{"", "bogus", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "a_b:1", "-a:1", "1.2.3.4:5:6"} {
		if err := checkTCPAddr(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestSimNamesAnotherSimOnlyWhenTheAddressIsTaken: the hint about another
// sim is for EADDRINUSE only; another listen failure says only what it was.
func TestSimNamesAnotherSimOnlyWhenTheAddressIsTaken(t *testing.T) {
	h := newCLIHarness(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	sim := func(nbd string) cliRun {
		dir := t.TempDir()
		return h.run("sim", "--disk", filepath.Join(dir, "d.img"), "--size", "16M", "--nbd", nbd,
			"--control", filepath.Join(dir, "c.sock"))
	}
	r := sim(taken.Addr().String())
	if r.code != exitFailure || !strings.Contains(r.stderr, "another xenblk sim running? pick another with --nbd") {
		t.Errorf("NBD address in use: exit %d, stderr %q", r.code, r.stderr)
	}
	// 192.0.2.1 (TEST-NET-1) is no address of this machine: EADDRNOTAVAIL.
	r = sim("192.0.2.1:10809")
	if r.code != exitFailure || !strings.Contains(r.stderr, "192.0.2.1:10809") || strings.Contains(r.stderr, "another xenblk sim") {
		t.Errorf("NBD address not local: exit %d, stderr %q", r.code, r.stderr)
	}
}

// flagToken is a flag named in a message: --name or --name=value.
var flagToken = regexp.MustCompile(`^--([a-z][a-z0-9-]*)`)

// checkFlagsNamed reports every --flag in text that the command it refers
// to does not have. A flag refers to cmd, unless it follows "xenblk PATH"
// in the same clause (a command line shown as advice), where it refers to
// the command that PATH names.
func checkFlagsNamed(t *testing.T, cmd *cobra.Command, where, text string) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		checkLineFlags(t, cmd, where, strings.TrimPrefix(line, cmd.Root().Name()+": "))
	}
}

func checkLineFlags(t *testing.T, cmd *cobra.Command, where, text string) {
	t.Helper()
	cur := cmd
	descending := false
	for _, w := range strings.Fields(text) {
		word := strings.Trim(w, "()[]'\"`,;:.")
		switch {
		case word == cmd.Root().Name():
			cur, descending = cmd.Root(), true
		case descending && subcommand(cur, word) != nil:
			cur = subcommand(cur, word)
		case flagToken.MatchString(word):
			descending = false
			name := flagToken.FindStringSubmatch(word)[1]
			if !hasFlag(cur, name) {
				t.Errorf("%s names --%s, which %q does not have:\n  %s", where, name, cur.CommandPath(), text)
			}
		default:
			descending = false
		}
		if strings.ContainsAny(w[len(w)-1:], ");,.") {
			cur, descending = cmd, false
		}
	}
}

// hasFlag: c has the flag, or c groups commands and one of them has it (a
// group's help describes its commands' flags).
func hasFlag(c *cobra.Command, name string) bool {
	if c.Flags().Lookup(name) != nil || c.PersistentFlags().Lookup(name) != nil || c.InheritedFlags().Lookup(name) != nil {
		return true
	}
	for _, sub := range c.Commands() {
		if hasFlag(sub, name) {
			return true
		}
	}
	return false
}

func subcommand(c *cobra.Command, name string) *cobra.Command {
	for _, s := range c.Commands() {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// commandsThatStartWork begin serving or measuring when given nothing;
// their hints are reached through hintScenarios.
var commandsThatStartWork = map[string]bool{"xenblk sim": true, "xenblk bench": true}

// hintScenarios are inputs that reach a command's hints beyond its first
// check: past its argument and required-flag checks, to where it looks for
// a host, a store, a control socket or a file.
func hintScenarios(t *testing.T) map[string][][]string {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	missing := filepath.Join(dir, "missing", "x.sock")
	return map[string][][]string{
		"xenblk attach": {{"--domain", "1", "vdev=xvda, target=/nonexistent.img"},
			{"--domain", "1", "--xenstore", missing, "vdev=xvda, target=/nonexistent.img"},
			{"--domain", "1", "--vscsi", "/nonexistent.img, 0:0:0:0"},
			{"--domain", "1", "--xenstore", missing, "--vscsi", "/nonexistent.img, 0:0:0:0"}},
		"xenblk detach": {{"--domain", "1", "xvda"}, {"--domain", "1", "--xenstore", missing, "xvda"},
			{"--domain", "1", "--xenstore", missing, "--vscsi", "0:0:0:0"}, {"--domain", "1", "--xenstore", missing, "--vhost", "0"}},
		"xenblk front": {{"--host", missing}, {"--vdev", "bogus"}, {"--host", missing, "--vhost", "0"}},
		"xenblk serve": {{"--host", missing}, {"--pr-store", "etcd://" + taken.Addr().String(), "--pr-store-timeout", "300ms"},
			{"--pr-store", "etcd://" + taken.Addr().String(), "--pr-store-timeout", "300ms", "--pr-store-ca", empty}},
		"xenblk host": {{"--socket", missing}},
		"xenblk sim": {{"--disk", filepath.Join(dir, "d.img"), "--size", "16M", "--nbd", taken.Addr().String(), "--control", filepath.Join(dir, "c.sock")},
			{"--disk", empty, "--control", filepath.Join(dir, "c2.sock")}, {"--size", "-5G"}},
		"xenblk bench": {{"--backend", "bogus"}, {"--queues", "9"}, {"--workload", "bogus"}, {"--duration", "1ms"},
			{"--pr-stores", "etcd://" + taken.Addr().String(), "--pr-store-timeout", "300ms"}},
		"xenblk nbd serve": {{"/nonexistent.img"}, {empty}},
	}
}

// TestHintsNameFlagsTheCommandHas runs every runnable command as a user
// who has not yet given what it needs would: with no host, store or
// control socket, with placeholder arguments, in each --xen mode it takes,
// and with the scenarios above; every flag its output names must be one
// the command (or the command shown with it) has. Help texts, flag usages
// and examples are held to the same rule.
func TestHintsNameFlagsTheCommandHas(t *testing.T) {
	h := newCLIHarness(t)
	scenarios := hintScenarios(t)
	runs := 0
	for _, c := range visibleCommands(h.root) {
		if !strings.HasPrefix(c.CommandPath(), "xenblk completion") { // cobra's text, naming other tools' flags
			checkFlagsNamed(t, c, c.CommandPath()+"'s help", c.Long)
		}
		for _, line := range strings.Split(c.Example, "\n") {
			checkFlagsNamed(t, c, c.CommandPath()+"'s example", line)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			checkFlagsNamed(t, c, c.CommandPath()+" --"+f.Name+"'s usage", f.Usage)
		})
		if !c.Runnable() || c.HasSubCommands() || c.Name() == "help" {
			continue
		}
		// Placeholders may be enough for a command to succeed (scsi-policy
		// prints the default policy); the scenarios never are.
		var inputs [][]string
		if !commandsThatStartWork[c.CommandPath()] {
			inputs = append(inputs, placeholders(c))
		}
		firstScenario := len(inputs)
		inputs = append(inputs, scenarios[c.CommandPath()]...)
		modes := []string{""}
		if c.Flags().Lookup("xen") != nil || c.InheritedFlags().Lookup("xen") != nil {
			modes = append(modes, "--xen=sim", "--xen=linux", "--xen=auto")
		}
		for i, in := range inputs {
			for _, mode := range modes {
				args := append(pathArgs(c), in...)
				if mode != "" {
					args = append(args, mode)
				}
				r := h.run(args...)
				runs++
				if r.code == exitOK && i >= firstScenario {
					t.Errorf("xenblk %q succeeded; the scenario meant to reach a hint", args)
				}
				said := r.stderr
				if !strings.HasPrefix(c.CommandPath(), "xenblk completion") { // a shell script naming the shell's flags
					said += r.stdout
				}
				checkFlagsNamed(t, c, "xenblk "+strings.Join(args, " "), said)
			}
		}
	}
	if runs < 40 {
		t.Fatalf("only %d runs: the walk missed commands", runs)
	}
}

// placeholders are arguments of the number and kind the command's usage
// line asks for.
func placeholders(c *cobra.Command) []string {
	var args []string
	for _, w := range strings.Fields(c.Use)[1:] {
		switch {
		case strings.HasPrefix(w, "["):
		case w == "DISKSPEC":
			args = append(args, "vdev=xvda, target=/nonexistent.img")
		case w == "FILE":
			args = append(args, "/nonexistent.img")
		case strings.HasPrefix(w, "CDB"):
			args = append(args, "00")
		default:
			args = append(args, "/placeholder")
		}
	}
	return args
}

// TestVersion: --version says the version, the commit and the Go
// toolchain, and is the root's flag only.
func TestVersion(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-07T05:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	want := "(devel)\ncommit 0123456789abcdef0123456789abcdef01234567 (2026-12-07T05:00:00Z), with uncommitted changes\nbuilt with go1.99.1 for " + runtime.GOOS + "/" + runtime.GOARCH
	if got := versionText(info); got != want {
		t.Errorf("versionText:\n%s\nwant\n%s", got, want)
	}
	if got := versionText(&debug.BuildInfo{}); !strings.Contains(got, "commit unknown") {
		t.Errorf("without vcs settings: %q", got)
	}
	// make build links git describe's name in (GOFLAGS may hold
	// -buildvcs=false): then that names the commit, and no line says unknown.
	version = "b11758f"
	got := versionText(&debug.BuildInfo{})
	version = ""
	if !strings.HasPrefix(got, "b11758f\n") || strings.Contains(got, "unknown") {
		t.Errorf("linked version, no vcs settings: %q", got)
	}

	h := newCLIHarness(t)
	r := h.run("--version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "xenblk ") || !strings.Contains(r.stdout, "built with "+runtime.Version()) {
		t.Errorf("xenblk --version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	h.wantUsage("sim", "--version")
}
