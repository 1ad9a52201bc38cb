package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xenblk/xenblk/nbd"
	"github.com/xenblk/xenblk/storage"
)

var nbdServeFlags struct {
	listen   string
	name     string
	readOnly bool
}

var nbdCmd = &cobra.Command{
	Use:   "nbd",
	Short: "NBD tools: export a raw image with xenblk's NBD server",
}

var nbdServeCmd = &cobra.Command{
	Use:   "serve FILE",
	Short: "Export an existing raw image file over NBD until interrupted",
	Example: `  xenblk nbd serve disk.img                       # nbd://127.0.0.1:10809/
  xenblk nbd serve --listen unix:/tmp/d.sock --name d --read-only disk.img
  nbdinfo nbd+unix:///d?socket=/tmp/d.sock`,
	Args: func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("nbd serve takes exactly one FILE, got %d arguments", len(args))
		}
		return nil
	},
	RunE: runNBDServe,
}

func init() {
	f := nbdServeCmd.Flags()
	listenAddrVar(f, &nbdServeFlags.listen, "listen", "127.0.0.1:"+nbd.DefaultPort, "host:port, or unix:PATH for a unix socket")
	f.StringVar(&nbdServeFlags.name, "name", "", "export name (clients asking for the empty name get it too)")
	f.BoolVar(&nbdServeFlags.readOnly, "read-only", false, "refuse writes")
	nbdCmd.AddCommand(nbdServeCmd)
	rootCmd.AddCommand(nbdCmd)
}

func runNBDServe(cmd *cobra.Command, args []string) error {
	if _, err := os.Stat(args[0]); err != nil {
		if lerr := storage.DanglingLink(args[0]); lerr != nil {
			err = lerr
		}
		return usagef("nbd serve: %v", err)
	}
	dev, _, err := openImage(args[0], 0, nbdServeFlags.readOnly)
	if err != nil {
		return err
	}
	defer dev.Close()
	network, addr := "tcp", nbdServeFlags.listen
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("nbd serve: %w", err)
	}
	srv := &nbd.Server{Exports: []nbd.Export{{Name: nbdServeFlags.name, Description: args[0], Device: dev, ReadOnly: nbdServeFlags.readOnly}}}
	fmt.Fprintf(cmd.OutOrStdout(), "serving %s at %s\n", args[0], nbd.ListenerURL(l, nbdServeFlags.name))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; l.Close(); srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, net.ErrClosed) {
		return err
	}
	return dev.Flush()
}
