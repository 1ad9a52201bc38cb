package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xenblk/xenblk/xen"
	"github.com/xenblk/xenblk/xenstore"
)

// proc is one running xenblk process. Its stdout lines arrive on lines
// (and, with its stderr, in its log file); exited closes when it is gone.
type proc struct {
	name   string
	cmd    *exec.Cmd
	lines  chan string
	exited chan struct{}
	err    error // set before exited closes
}

// lineWriter hands each complete line to a channel, never blocking the
// child: a full channel drops lines (only the first few are waited for).
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	out  chan string
	copy *os.File
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.copy.Write(p)
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.out <- string(w.buf[:i]):
		default:
		}
		w.buf = w.buf[i+1:]
	}
}

// start runs bin with args; its output goes to dir/logs/<name>.log.
func start(dir, name, bin string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "--- %s %s\n", time.Now().Format(time.StampMilli), strings.Join(args, " "))
	p := &proc{name: name, cmd: exec.Command(bin, args...), lines: make(chan string, 64), exited: make(chan struct{})}
	p.cmd.Stdout = &lineWriter{out: p.lines, copy: lf}
	p.cmd.Stderr = lf
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		fmt.Fprintf(lf, "--- %s exited: %v\n", time.Now().Format(time.StampMilli), p.err)
		lf.Close()
		close(p.exited)
	}()
	return p, nil
}

// kill sends SIGKILL and waits for the process to be gone (a killed
// process is reaped by the kernel at once; the bound only guards a bug).
func (p *proc) kill() error {
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) still there 30 s after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// expect waits for a stdout line starting with prefix and returns the
// rest of it; it fails when the process exits first or after timeout.
func (p *proc) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l := <-p.lines:
			if strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix), nil
			}
		case <-p.exited:
			// Lines written just before the exit are already queued.
			select {
			case l := <-p.lines:
				if strings.HasPrefix(l, prefix) {
					return strings.TrimPrefix(l, prefix), nil
				}
				continue
			default:
			}
			return "", fmt.Errorf("%s exited (%v) before printing %q", p.name, p.err, prefix)
		case <-deadline:
			return "", fmt.Errorf("%s printed no %q in %v", p.name, prefix, timeout)
		}
	}
}

// machine is one simulated Xen machine made of xenblk processes: the host
// (xenstore, grants, event channels, domain memory, all in its memory),
// the backend daemon and one guest exporting its vbd over NBD. The disk
// image, the persistent-reservation directory and the journal directory
// live in dir across restarts.
type machine struct {
	bin, dir         string
	sock, xenstored  string
	image            string
	host, serve      *proc
	front            *proc
	guest            int    // the front's domain id
	nbdURL           string // the front's export
	attachedGuest    int    // the guest the vbd is attached for (-1: none)
	frontStarts      int
	serveJournalDir  string
	servePRDir       string
	connectTimeout   time.Duration
	readinessTimeout time.Duration
}

func newMachine(bin, dir, image string) *machine {
	return &machine{
		bin: bin, dir: dir, image: image,
		sock:             filepath.Join(dir, "host.sock"),
		xenstored:        filepath.Join(dir, "xenstored"),
		serveJournalDir:  filepath.Join(dir, "run", "journal"),
		servePRDir:       filepath.Join(dir, "pr"),
		attachedGuest:    -1,
		connectTimeout:   90 * time.Second,
		readinessTimeout: 30 * time.Second,
	}
}

// boot starts the host and the backend. The journal lives under run/,
// which a boot clears as a reboot clears /run: it describes rings of a
// machine that no longer exists.
func (m *machine) boot() error {
	if err := os.RemoveAll(filepath.Join(m.dir, "run")); err != nil {
		return err
	}
	var err error
	if m.host, err = start(m.dir, "host", m.bin, "host", "--socket", m.sock, "--xenstored", m.xenstored); err != nil {
		return err
	}
	// It prints both sockets once it listens on them.
	if _, err := m.host.expect("xenstored: ", m.readinessTimeout); err != nil {
		return err
	}
	m.attachedGuest = -1
	return m.startServe()
}

func (m *machine) startServe() error {
	var err error
	m.serve, err = start(m.dir, "serve", m.bin, "serve", "--host", m.sock,
		"--pr-dir", m.servePRDir, "--journal-dir", m.serveJournalDir)
	if err != nil {
		return err
	}
	_, err = m.serve.expect("xenblk serve: serving", m.readinessTimeout)
	return err
}

// startGuest starts a front (a new guest domain), attaches the vbd to it
// as libxl would, and waits for its NBD export. A vbd left attached for a
// guest that is gone is detached first, as a toolstack cleans up after a
// dead domain.
func (m *machine) startGuest(ctx context.Context) error {
	if m.attachedGuest >= 0 {
		if err := m.cleanUpDeadGuest(m.attachedGuest); err != nil {
			return err
		}
		m.attachedGuest = -1
	}
	var err error
	m.frontStarts++
	m.front, err = start(m.dir, "front", m.bin, "front", "--host", m.sock, "--name", fmt.Sprintf("soak%d", m.frontStarts),
		"--nbd", "127.0.0.1:0", "--wait", "1m")
	if err != nil {
		return err
	}
	dom, err := m.front.expect("domain ", m.readinessTimeout)
	if err != nil {
		return err
	}
	if _, err := fmt.Sscan(dom, &m.guest); err != nil {
		return fmt.Errorf("front printed domain %q", dom)
	}
	if err := m.xenblk(ctx, "attach", "--xenstore", m.xenstored, "--domain", fmt.Sprint(m.guest),
		"format=raw, vdev=xvda, access=rw, target="+m.image); err != nil {
		return err
	}
	m.attachedGuest = m.guest
	m.nbdURL, err = m.front.expect("NBD ", m.connectTimeout)
	return err
}

// cleanUpDeadGuest waits until the vbd of a domain that died is let go
// of. Serve removes a dead domain's devices itself, as libxl does when it
// destroys a domain, so the backend directory usually just goes; a
// backend that only reached Closed (6: its rings unmapped, its requests
// finished) has its directory removed here, as a toolstack would, which
// makes serve close the disk.
func (m *machine) cleanUpDeadGuest(dom int) error {
	st, err := xenstore.Dial(m.xenstored)
	if err != nil {
		return fmt.Errorf("xenstore %s: %w", m.xenstored, err)
	}
	defer st.Close()
	be := fmt.Sprintf("/local/domain/0/backend/xenblk/%d/51712", dom)
	w, err := st.Watch(be+"/state", "soak")
	if err != nil {
		return err
	}
	defer w.Close()
	deadline := time.After(m.readinessTimeout)
	for {
		v, err := st.Read(be + "/state")
		if errors.Is(err, xen.ErrNotFound) {
			m.note("serve removed the dead guest's vbd %s", be)
			return nil
		}
		if err != nil {
			return fmt.Errorf("the dead guest's vbd %s: %w", be, err)
		}
		if strings.TrimSpace(v) == "6" {
			break
		}
		select {
		case _, ok := <-w.Events():
			if !ok {
				return fmt.Errorf("xenstore connection lost waiting for %s/state", be)
			}
		case <-deadline:
			return fmt.Errorf("the backend did not close %s within %v of its guest's death (state %s)", be, m.readinessTimeout, strings.TrimSpace(v))
		}
	}
	m.note("backend closed %s; removing it", be)
	if err := st.Remove(be); err != nil && !errors.Is(err, xen.ErrNotFound) {
		return err
	}
	return nil
}

// note appends a timestamped line to logs/soak.log.
func (m *machine) note(format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(m.dir, "logs", "soak.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().Format(time.StampMilli), fmt.Sprintf(format, args...))
}

// xenblk runs a short xenblk command, bounded.
func (m *machine) xenblk(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, m.bin, args...).CombinedOutput()
	m.note("xenblk %s: %v in %v: %s", strings.Join(args, " "), err, time.Since(t0).Round(time.Millisecond), bytes.TrimSpace(out))
	if err != nil {
		return fmt.Errorf("xenblk %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// gone reports a process of the machine that exited without being
// killed: a crash of ours, never expected.
func (m *machine) gone() error {
	for _, p := range []*proc{m.host, m.serve, m.front} {
		if p == nil {
			continue
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited on its own (%v)", p.name, p.err)
		default:
		}
	}
	return nil
}

// crash kills every process of the machine at once: the host holds
// xenstore and the grants in memory, so killing it is the machine's end.
func (m *machine) crash() error {
	var errs []error
	for _, p := range []*proc{m.host, m.front, m.serve} {
		if p != nil {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	for _, p := range []*proc{m.host, m.front, m.serve} {
		if err := p.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	m.host, m.front, m.serve = nil, nil, nil
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// storeTree lists the host's /local/domain, for a failure report.
func (m *machine) storeTree() string {
	if m.host == nil {
		return "(no host running)"
	}
	select {
	case <-m.host.exited:
		return "(the host is gone)"
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, m.bin, "xenstore", "ls", "--socket", m.xenstored, "/local/domain").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(xenstore ls: %v) %s", err, out)
	}
	return string(out)
}

// logTails returns the end of each process's log, for a failure report.
func (m *machine) logTails() string {
	var b strings.Builder
	for _, n := range []string{"soak", "host", "serve", "front"} {
		data, _ := os.ReadFile(filepath.Join(m.dir, "logs", n+".log"))
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&b, "--- %s.log (last %d lines)\n%s\n", n, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
