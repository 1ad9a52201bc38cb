package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is a release's name, set when linking
// (-ldflags "-X main.version=v1.2.3"); otherwise the module version Go
// recorded is shown ("(devel)" for a build from a checkout).
var version string

// setVersion gives root its --version, from what the Go linker stamped
// into the binary.
func setVersion(root *cobra.Command) {
	info, _ := debug.ReadBuildInfo()
	root.Version = versionText(info)
	root.SetVersionTemplate("xenblk {{.Version}}\n")
}

// versionText is what --version prints after "xenblk ": the version, the
// commit it was built from (and whether the tree had uncommitted changes),
// and the Go toolchain, from what the Go linker stamped into the binary.
func versionText(info *debug.BuildInfo) string {
	v, goVersion := version, runtime.Version()
	settings := map[string]string{}
	if info != nil {
		if v == "" {
			v = info.Main.Version
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		for _, s := range info.Settings {
			settings[s.Key] = s.Value
		}
	}
	if v == "" {
		v = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", v)
	if rev := settings["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "commit %s", rev)
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(&b, " (%s)", t)
		}
		if settings["vcs.modified"] == "true" {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	} else if version == "" {
		// A version set when linking (make build: git describe) already
		// names the commit; say "unknown" only when nothing does.
		b.WriteString("commit unknown (built without version control information)\n")
	}
	fmt.Fprintf(&b, "built with %s for %s/%s", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}
