package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/xen/linux"
	"github.com/xenblk/xenblk/xenstore"
)

// xenstoreOptions is the flags one xenstore command gives all its
// commands: which store.
type xenstoreOptions struct {
	socket string
	xen    xenMode
}

func newXenstoreCmd() *cobra.Command {
	o := &xenstoreOptions{}
	cmd := &cobra.Command{
		Use:   "xenstore",
		Short: "Read and change a xenstore (a real xenstored or `xenblk host`'s) over its unix socket",
		Example: `  XENSTORED_PATH=/tmp/host.xs xenblk xenstore ls /local/domain
  xenblk xenstore --socket /tmp/host.xs write /tool/x hello
  xenblk xenstore read /tool/x
  xenblk xenstore watch -n 2 /tool
  xenblk xenstore rm /tool`,
	}
	socketPathVar(cmd.PersistentFlags(), &o.socket, "socket", "", "xenstored's socket (default $XENSTORED_PATH, else "+xenstore.DefaultSocket+")")
	addXenFlag(cmd.PersistentFlags(), &o.xen, "--socket (or XENSTORED_PATH)")
	var count int // watch's -n
	read := &cobra.Command{Use: "read PATH", Short: "Print a node's value", Example: "  xenblk xenstore read /local/domain/0/name", Args: xenstoreArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Read(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		}}
	write := &cobra.Command{Use: "write PATH VALUE", Short: "Set a node's value, creating it and missing parents", Example: "  xenblk xenstore write /tool/xenblk/note hello", Args: xenstoreArgs(2, "PATH and VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return c.Write(args[0], args[1])
		}}
	rm := &cobra.Command{Use: "rm PATH", Short: "Remove a node and everything below it", Example: "  xenblk xenstore rm /tool/xenblk", Args: xenstoreArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return c.Remove(args[0])
		}}
	ls := &cobra.Command{Use: "ls [PATH]", Short: "Print the tree below PATH (default /) as xenstore-ls does", Example: "  xenblk xenstore ls /local/domain/0/backend/xenblk", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/"
			if len(args) == 1 {
				p = args[0]
			}
			c, err := o.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return printTree(cmd.OutOrStdout(), c, p, 0)
		}}
	watch := &cobra.Command{Use: "watch PATH", Short: "Print the path of every change at or below PATH (the first is the registration)", Example: "  xenblk xenstore watch -n 3 /local/domain/0/backend", Args: xenstoreArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usagef("xenstore watch: -n must be >= 0, got %d", count)
			}
			c, err := o.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			w, err := c.Watch(args[0], "xenblk-cli")
			if err != nil {
				return err
			}
			seen := 0
			for ev := range w.Events() {
				fmt.Fprintln(cmd.OutOrStdout(), ev.Path)
				if seen++; count > 0 && seen >= count {
					return nil
				}
			}
			return fmt.Errorf("xenstore watch: the connection closed")
		}}
	watch.Flags().IntVarP(&count, "count", "n", 0, "exit after this many events (0: never)")
	cmd.AddCommand(read, write, rm, ls, watch)
	return cmd
}

func xenstoreArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("xenstore %s takes %s, got %d arguments", cmd.Name(), what, len(args))
		}
		return nil
	}
}

// dial connects to the store o names.
func (o *xenstoreOptions) dial() (*xenstore.Client, error) {
	if o.socket == "" && os.Getenv("XENSTORED_PATH") == "" && o.xen != "sim" && linux.Available() {
		return linux.DialStore() // xenstored's socket, else /dev/xen/xenbus
	}
	c, err := xenstore.Dial(o.socket)
	if errors.Is(err, syscall.EPROTOTYPE) {
		return nil, notXenstored(cmp.Or(o.socket, xenstore.SocketPath()))
	}
	if err != nil {
		return nil, fmt.Errorf("%w (set --socket or XENSTORED_PATH)", err)
	}
	return c, nil
}

// printTree prints each child of dir as `name = "value"`, indented one
// space per level, then its own children.
func printTree(out io.Writer, c *xenstore.Client, dir string, depth int) error {
	kids, err := c.Directory(dir)
	if err != nil {
		return err
	}
	for _, k := range kids {
		p := path.Join(dir, k)
		v, err := c.Read(p)
		if err != nil {
			v = "" // removed meanwhile, or unreadable: listed without a value
		}
		fmt.Fprintf(out, "%s%s = \"%s\"\n", strings.Repeat(" ", depth), k, escapeValue(v))
		if err := printTree(out, c, p, depth+1); err != nil {
			if _, statErr := c.Directory(p); statErr != nil {
				continue // gone or unreadable: skip its subtree
			}
			return err
		}
	}
	return nil
}

// escapeValue shows a value on one line: backslash, quote and
// non-printable bytes escaped.
func escapeValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch ch := v[i]; {
		case ch == '\\' || ch == '"':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case ch < 0x20 || ch >= 0x7f:
			b.WriteString("\\" + strconv.FormatUint(uint64(ch), 8))
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}
