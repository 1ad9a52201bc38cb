// Package control is xenblk's local control protocol: a tool on the host
// (xenblk scsi) sends SCSI commands to a disk that a running xenblk process
// (xenblk sim) holds open, over a unix socket.
//
// Framing: one JSON object per line ('\n'-terminated) each way, strictly
// request then response on a connection; a connection may carry many
// exchanges. A request is
//
//	{"op":"exec","device":"xvda","cdb":"<base64>","dir":2,"data_out":"<base64>","data_in_len":36}
//	{"op":"list"}
//	{"op":"pr","device":"xvda","pr":{"action":"read-keys"}}   (pr.go)
//
// (dir is scsi.Direction: 0 none, 1 to device, 2 from device) and a
// response is
//
//	{"status":2,"sense":"<base64>","resid":0,"data_in":"<base64>"}
//	{"devices":["xvda"]}
//	{"error":"no device \"xvdb\""}
//
// A line is at most MaxLine bytes; data_out and data_in_len are at most
// MaxData. The server treats every client as hostile: a malformed or
// oversized line gets an error response and the connection is closed; it
// never panics on input.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/xenblk/xenblk/scsi"
)

// MaxData bounds a command's data buffer (data-out bytes or data-in length).
const MaxData = 1 << 20

// MaxLine bounds one protocol line: base64 of MaxData plus room for the rest.
const MaxLine = MaxData/3*4 + 4096

// commandTimeout bounds one command on the server.
const commandTimeout = 60 * time.Second

// Target executes SCSI commands; *blkfront.Disk is one.
type Target interface {
	ExecSCSI(ctx context.Context, cdb []byte, dir scsi.Direction, buf []byte) (scsi.Result, error)
}

// Request is one line from client to server.
type Request struct {
	Op        string         `json:"op"`
	Device    string         `json:"device,omitempty"`
	CDB       []byte         `json:"cdb,omitempty"`
	Dir       scsi.Direction `json:"dir,omitempty"`
	DataOut   []byte         `json:"data_out,omitempty"`
	DataInLen int            `json:"data_in_len,omitempty"`
	PR        *PRRequest     `json:"pr,omitempty"` // op "pr" (pr.go)
}

// Response is one line from server to client.
type Response struct {
	Error   string   `json:"error,omitempty"`
	Devices []string `json:"devices,omitempty"`
	Status  byte     `json:"status"`
	Sense   []byte   `json:"sense,omitempty"`
	Resid   int      `json:"resid"`
	DataIn  []byte   `json:"data_in,omitempty"`
	// Op "pr" (pr.go): the action's result, or Conflict for a
	// RESERVATION CONFLICT.
	PR       *PRResult `json:"pr,omitempty"`
	Conflict bool      `json:"conflict,omitempty"`
}

// Result is what Exec returns for a command the device answered.
type Result struct {
	Status byte
	Sense  []byte
	Resid  int
	DataIn []byte // data-in bytes actually transferred (length minus Resid)
}

// DefaultPath is the well-known socket path: $XENBLK_CONTROL if set, else
// /run/xenblk/sim.sock when /run/xenblk can be written (root), else
// $XDG_RUNTIME_DIR/xenblk/sim.sock, else /tmp/xenblk-$UID/sim.sock.
func DefaultPath() string {
	if p := os.Getenv("XENBLK_CONTROL"); p != "" {
		return p
	}
	if os.Geteuid() == 0 {
		return "/run/xenblk/sim.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "xenblk", "sim.sock")
	}
	return filepath.Join(os.TempDir(), "xenblk-"+strconv.Itoa(os.Getuid()), "sim.sock")
}

// ErrInUse means a live server already answers on the socket path.
var ErrInUse = errors.New("control socket in use by a running server")

// Listen prepares path (its directory, mode 0700 when created) and listens
// on it. A socket some live process answers on is left alone (ErrInUse);
// a stale one (nobody answers) is replaced.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Remove the socket file when the listener closes.
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	return l, nil
}

// Devices is the set of named targets a server executes commands on;
// a process adds and removes devices while it serves (a PVSCSI LUN
// hot-added or removed). Its methods are safe for concurrent use.
type Devices struct {
	mu sync.Mutex
	m  map[string]Target
}

// NewDevices is a set holding the targets of m (m itself is not kept).
func NewDevices(m map[string]Target) *Devices {
	d := &Devices{m: make(map[string]Target, len(m))}
	for n, t := range m {
		d.m[n] = t
	}
	return d
}

// Add serves t as name, replacing a device of that name.
func (d *Devices) Add(name string, t Target) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[name] = t
}

// Remove stops serving name; a command running on it finishes.
func (d *Devices) Remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, name)
}

// lookup is the device named name, with every name, sorted.
func (d *Devices) lookup(name string) (Target, []string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	names := make([]string, 0, len(d.m))
	for n := range d.m {
		names = append(names, n)
	}
	sort.Strings(names)
	t, ok := d.m[name]
	return t, names, ok
}

// Serve answers clients on l until l is closed, executing commands on the
// named devices. It returns nil once l is closed, and closes open
// connections on the way out.
func Serve(l net.Listener, devices map[string]Target) error {
	return ServeDevices(l, NewDevices(devices))
}

// ServeDevices is Serve on a set that may change while it serves.
func ServeDevices(l net.Listener, devices *Devices) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveConn(c, devices)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

func serveConn(c net.Conn, devices *Devices) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), MaxLine)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req Request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			enc.Encode(Response{Error: "bad request: " + err.Error()})
			return
		}
		if enc.Encode(handle(&req, devices)) != nil {
			return
		}
	}
	if err := sc.Err(); err != nil {
		enc.Encode(Response{Error: "bad request: " + err.Error()})
	}
}

func handle(req *Request, devices *Devices) Response {
	t, names, ok := devices.lookup(req.Device)
	switch req.Op {
	case "list":
		return Response{Devices: names}
	case "exec", "pr":
	default:
		return Response{Error: fmt.Sprintf("unknown op %q", req.Op)}
	}
	if !ok {
		return Response{Error: fmt.Sprintf("no device %q (have %v)", req.Device, names)}
	}
	if req.Op == "pr" {
		return handlePR(req, t)
	}
	if len(req.CDB) == 0 || len(req.CDB) > scsi.MaxCDB {
		return Response{Error: fmt.Sprintf("CDB of %d bytes (1..%d)", len(req.CDB), scsi.MaxCDB)}
	}
	var buf []byte
	switch req.Dir {
	case scsi.DirNone:
		if len(req.DataOut) != 0 || req.DataInLen != 0 {
			return Response{Error: "direction none with a data buffer"}
		}
	case scsi.DirToDevice:
		if req.DataInLen != 0 {
			return Response{Error: "data-in length on a to-device command"}
		}
		if len(req.DataOut) > MaxData {
			return Response{Error: fmt.Sprintf("data-out of %d bytes (max %d)", len(req.DataOut), MaxData)}
		}
		buf = req.DataOut
	case scsi.DirFromDevice:
		if len(req.DataOut) != 0 {
			return Response{Error: "data-out on a from-device command"}
		}
		if req.DataInLen < 0 || req.DataInLen > MaxData {
			return Response{Error: fmt.Sprintf("data-in length %d (0..%d)", req.DataInLen, MaxData)}
		}
		buf = make([]byte, req.DataInLen)
	default:
		return Response{Error: fmt.Sprintf("bad direction %d", req.Dir)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	res, err := t.ExecSCSI(ctx, req.CDB, req.Dir, buf)
	if err != nil {
		return Response{Error: err.Error()}
	}
	resp := Response{Status: res.Status, Resid: res.Resid}
	if res.SenseLen > 0 {
		resp.Sense = res.SenseBytes()
	}
	if req.Dir == scsi.DirFromDevice {
		n := len(buf) - res.Resid
		if n < 0 || n > len(buf) {
			n = len(buf)
		}
		resp.DataIn = buf[:n]
	}
	return resp
}

// Client is one connection to a control server. It is not safe for
// concurrent use.
type Client struct {
	conn net.Conn
	sc   *bufio.Scanner
	enc  *json.Encoder
}

// Dial connects to the server on the unix socket path.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 4096), MaxLine)
	return &Client{conn: c, sc: sc, enc: json.NewEncoder(c)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) roundTrip(req *Request) (*Response, error) {
	if err := c.enc.Encode(req); err != nil {
		return nil, err
	}
	if !c.sc.Scan() {
		if err := c.sc.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("control: server closed the connection")
	}
	var resp Response
	if err := json.Unmarshal(c.sc.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("control: bad response: %w", err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return &resp, nil
}

// Devices lists the server's device names, sorted.
func (c *Client) Devices() ([]string, error) {
	resp, err := c.roundTrip(&Request{Op: "list"})
	if err != nil {
		return nil, err
	}
	return resp.Devices, nil
}

// Exec runs one command on device: dataOut is sent for scsi.DirToDevice,
// dataInLen bytes are asked for with scsi.DirFromDevice. A SCSI status
// other than GOOD is a Result, not an error; errors are transport or
// server-side failures.
func (c *Client) Exec(device string, cdb []byte, dir scsi.Direction, dataOut []byte, dataInLen int) (Result, error) {
	resp, err := c.roundTrip(&Request{Op: "exec", Device: device, CDB: cdb, Dir: dir, DataOut: dataOut, DataInLen: dataInLen})
	if err != nil {
		return Result{}, err
	}
	if len(resp.DataIn) > dataInLen {
		return Result{}, fmt.Errorf("control: %d data-in bytes for %d asked", len(resp.DataIn), dataInLen)
	}
	return Result{Status: resp.Status, Sense: resp.Sense, Resid: resp.Resid, DataIn: resp.DataIn}, nil
}
