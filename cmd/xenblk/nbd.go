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

	"github.com/xenblk/xenblk/diskspec"
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
	// exports are --export's images, served beside FILE.
	exports exportList
}

// exportList is --export: NAME=FILE, repeatable, each checked as parsed.
type exportList []nbdImage

func (l *exportList) String() string {
	parts := make([]string, len(*l))
	for i, e := range *l {
		parts[i] = e.name + "=" + e.path
	}
	return strings.Join(parts, ",")
}

func (l *exportList) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=FILE")
	}
	*l = append(*l, nbdImage{name, path})
	return nil
}

func (l *exportList) Type() string { return "NAME=FILE" }

// nbdImage is one image nbd serve exports.
type nbdImage struct{ name, path string }

// images are the exports nbd serve was asked for: FILE under --name,
// then each --export NAME=FILE; names must differ.
func (o *nbdServeOptions) images(file string) ([]nbdImage, error) {
	imgs := []nbdImage{{o.name, file}}
	seen := map[string]bool{o.name: true}
	for _, e := range o.exports {
		if seen[e.name] {
			return nil, usagef("nbd serve: --export %s=%s: export name %q is taken (--name or another --export)", e.name, e.path, e.name)
		}
		seen[e.name] = true
		imgs = append(imgs, e)
	}
	return imgs, nil
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
  xenblk nbd serve --name a a.img --export b=b.qcow2 --export c=c.img  # three exports
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
	f.Var(&o.exports, "export", "also export another image (repeatable)")
	o.tls.addFlags(f)
	imageFormatVar(f, &o.format, "the image's format: raw, qcow2, or auto (qcow2 when the file begins with qcow2's magic, else raw)")
	return cmd
}

func runNBDServe(cmd *cobra.Command, o *nbdServeOptions, args []string) error {
	keepServingWithoutStdout()
	tlsConfig, err := o.tls.config("nbd serve")
	if err != nil {
		return err
	}
	imgs, err := o.images(args[0])
	if err != nil {
		return err
	}
	exports := make([]nbd.Export, 0, len(imgs))
	formats := make([]diskspec.Format, 0, len(imgs))
	defer func() {
		for _, e := range exports {
			e.Device.Close()
		}
	}()
	for _, img := range imgs {
		if _, err := os.Stat(img.path); err != nil {
			if lerr := storage.DanglingLink(img.path); lerr != nil {
				return lerr
			}
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disk image %s does not exist: nbd serve exports an image that is there (make one with truncate -s 1G %s, or qemu-img create)", img.path, img.path)
			}
			return fmt.Errorf("nbd serve: %w", err)
		}
		dev, format, _, err := openImage(img.path, o.format, 0, o.readOnly, ownRotationRate)
		if err != nil {
			return err
		}
		exports = append(exports, nbd.Export{Name: img.name, Description: img.path, Device: dev, ReadOnly: o.readOnly})
		formats = append(formats, format)
	}
	l, err := net.Listen(listenNetwork(o.listen))
	if err != nil {
		return fmt.Errorf("nbd serve: %w", err)
	}
	srv := &nbd.Server{Exports: exports, TLSConfig: tlsConfig, TLSRequired: o.tls.required}
	for i, e := range exports {
		url := o.tls.url(nbd.ListenerURL(l, e.Name))
		fmt.Fprintf(cmd.OutOrStdout(), "serving %s (%s) at %s\n", e.Description, formats[i], url)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; l.Close(); srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, net.ErrClosed) {
		return err
	}
	var ferr error
	for _, e := range exports {
		if err := e.Device.Flush(); err != nil && ferr == nil {
			ferr = fmt.Errorf("nbd serve: flush %s: %w", e.Description, err)
		}
	}
	return ferr
}
