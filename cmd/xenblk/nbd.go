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

// nbdServeOptions is one nbd serve command's flags.
type nbdServeOptions struct {
	listen   string
	name     string
	readOnly bool
	format   imageFormat
	tls      nbdTLSOptions
}

func newNBDCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nbd",
		Short: "NBD tools: export a raw or qcow2 image with xenblk's NBD server",
	}
	cmd.AddCommand(newNBDServeCmd())
	return cmd
}

func newNBDServeCmd() *cobra.Command {
	o := &nbdServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve FILE",
		Short: "Export an existing raw or qcow2 image file over NBD until interrupted",
		Example: `  xenblk nbd serve disk.img                       # nbd://127.0.0.1:10809/
  xenblk nbd serve --listen unix:/tmp/d.sock --name d --read-only disk.img
  nbdinfo nbd+unix:///d?socket=/tmp/d.sock
  xenblk nbd serve --tls-cert server-cert.pem --tls-key server-key.pem --tls-required disk.img`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("nbd serve takes exactly one FILE, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runNBDServe(cmd, o, args) },
	}
	f := cmd.Flags()
	listenAddrVar(f, &o.listen, "listen", "127.0.0.1:"+nbd.DefaultPort, "host:port, or unix:PATH for a unix socket")
	f.StringVar(&o.name, "name", "", "export name (clients asking for the empty name get it too)")
	f.BoolVar(&o.readOnly, "read-only", false, "refuse writes")
	o.tls.addFlags(f)
	imageFormatVar(f, &o.format, "the image's format: raw, qcow2, or auto (qcow2 when the file begins with qcow2's magic, else raw)")
	return cmd
}

func runNBDServe(cmd *cobra.Command, o *nbdServeOptions, args []string) error {
	tlsConfig, err := o.tls.config()
	if err != nil {
		return err
	}
	if _, err := os.Stat(args[0]); err != nil {
		if lerr := storage.DanglingLink(args[0]); lerr != nil {
			err = lerr
		}
		return usagef("nbd serve: %v", err)
	}
	dev, format, _, err := openImage(args[0], o.format, 0, o.readOnly, ownRotationRate)
	if err != nil {
		return err
	}
	defer dev.Close()
	network, addr := "tcp", o.listen
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return fmt.Errorf("nbd serve: %w", err)
	}
	srv := &nbd.Server{Exports: []nbd.Export{{Name: o.name, Description: args[0], Device: dev, ReadOnly: o.readOnly}},
		TLSConfig: tlsConfig, TLSRequired: o.tls.required}
	url := nbd.ListenerURL(l, o.name)
	if o.tls.required {
		url = tlsURL(url)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "serving %s (%s) at %s\n", args[0], format, url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; l.Close(); srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, net.ErrClosed) {
		return err
	}
	return dev.Flush()
}
