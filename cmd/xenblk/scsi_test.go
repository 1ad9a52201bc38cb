package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain points the default control socket into a private directory so
// that a test starting `xenblk sim` without --control never meets (or
// disturbs) a sim the machine's user is running.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xenblk-control-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XENBLK_CONTROL", filepath.Join(dir, "sim.sock"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startSimWithControl builds the binary, starts `xenblk sim` with its
// control socket in a temp dir, and waits for the banner's SCSI line.
func startSimWithControl(t *testing.T, extra ...string) (bin, sock string, sim *exec.Cmd) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "xenblk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock = filepath.Join(dir, "ctl", "sim.sock")
	args := append([]string{"sim", "--disk", filepath.Join(dir, "disk.img"), "--size", "64M",
		"--nbd", freePort(t), "--control", sock}, extra...)
	sim = exec.Command(bin, args...)
	stdout, _ := sim.StdoutPipe()
	var stderr bytes.Buffer
	sim.Stderr = &stderr
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Process.Kill(); sim.Wait() })
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sim exited before printing its SCSI line: %s", stderr.String())
			}
			if strings.HasPrefix(strings.TrimSpace(l), "SCSI") {
				if !strings.Contains(l, "xenblk scsi --control "+sock+" inquiry --vpd 0xb1") {
					t.Fatalf("banner SCSI line %q", l)
				}
				go func() {
					for range lines {
					}
				}()
				return bin, sock, sim
			}
		case <-deadline:
			t.Fatal("sim did not start in 30s")
		}
	}
}

// runXenblkCode runs the binary and returns its stdout, stderr and exit
// code. A command still running after 90s (far beyond what any needs)
// is killed and fails the test: a hang must not stall the suite.
func runXenblkCode(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("xenblk %v did not exit in 90s: %s", args, errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestSCSICommandsAgainstSim(t *testing.T) {
	bin, sock, sim := startSimWithControl(t, "--rotation-rate", "7200")
	scsiCmd := func(args ...string) (string, string, int) {
		return runXenblkCode(t, bin, append([]string{"scsi", "--control", sock}, args...)...)
	}
	expect := func(wantCode int, wants []string, args ...string) string {
		t.Helper()
		out, errs, code := scsiCmd(args...)
		if code != wantCode {
			t.Fatalf("xenblk scsi %v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, wantCode, out, errs)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Fatalf("xenblk scsi %v: output lacks %q:\n%s", args, w, out)
			}
		}
		return out
	}
	// The first command after power on sees the unit attention: CHECK
	// CONDITION, decoded, exit 3.
	expect(3, []string{"CHECK CONDITION", "Sense key: Unit Attention, asc/ascq 0x29/0x00",
		"The unit reports it was powered on or reset", "the next command will succeed"}, "tur")
	expect(0, []string{"TEST UNIT READY: ready"}, "tur")
	expect(0, []string{"Nominal rotation rate: 7200 rpm"}, "inquiry", "--vpd", "0xb1")
	expect(0, []string{"Vendor identification: XENBLK", "Peripheral device type: disk", "version=0x06"}, "inquiry")
	expect(0, []string{"0xb1\tBlock device characteristics"}, "inquiry", "--vpd", "0")
	expect(0, []string{"designator_type: NAA,  code_set: Binary", "      0x6"}, "inquiry", "--vpd", "0x83")
	expect(0, []string{"Last LBA=131071 (0x1ffff), Number of logical blocks=131072", "Logical block length=512 bytes"}, "readcap")
	expect(0, []string{"Device size: 67108864 bytes, 64.0 MiB"}, "readcap", "--16")
	expect(0, []string{"Lun list length = 8 which imples 1 lun entry", "    0000000000000000"}, "luns")
	expect(0, []string{"Received 36 bytes of data:", " 00     00 00 06", "XENBLK"}, "raw", "12", "00", "00", "00", "24", "00", "--request", "36")
	expect(3, []string{"SCSI Status: CHECK CONDITION", "Sense key: Illegal Request, asc/ascq 0x20/0x00 Invalid command operation code"}, "raw", "ff000000000000000000")
	expect(0, []string{"Sense key: No Sense"}, "sense")
	expect(0, []string{" 00     00 80 00 14"}, "inquiry", "--vpd", "0x80", "--hex")
	expect(0, []string{"Unit serial number:"}, "inquiry", "--vpd", "0x80", "--device", "xvda")

	// Persistent reservations: sg_persist's flags and output.
	expect(0, []string{"there are NO registered reservation keys"}, "persist", "--in", "--read-keys")
	expect(0, []string{"PR out: command (register) successful"}, "persist", "--out", "--register", "--param-sark", "0x1")
	expect(0, []string{"PR out: command (register and ignore existing key) successful"}, "persist", "-o", "-I", "-S", "2")
	expect(0, []string{"  PR generation=0x2, 1 registered reservation key follows:\n    0x2\n"}, "persist", "-i", "-k")
	expect(3, []string{"RESERVATION CONFLICT"}, "persist", "-o", "-G", "-S", "3")
	expect(0, []string{"successful"}, "persist", "-o", "-R", "-K", "2", "-T", "5")
	expect(0, []string{"Key=0x2", "scope: LU_SCOPE,  type: Write Exclusive, registrants only"}, "persist", "-i", "-r")
	expect(0, []string{"<< Reservation holder >>"}, "persist", "-i", "-s")
	expect(0, []string{"Type Mask Valid(TMV): 1"}, "persist", "-i", "-c")
	// REGISTER AND MOVE hands the reservation to another nexus (here one
	// no guest has attached yet), which READ FULL STATUS then shows.
	const dest = "xen:dom7:/local/domain/0/backend/vbd/7/51712"
	expect(2, nil, "persist", "-o", "-M", "-K", "2", "-S", "9")
	expect(3, []string{"Illegal Request", "Invalid field in parameter list"}, "persist", "-o", "-M", "-K", "2", "-S", "9", "-X", dest, "-Q", "2")
	expect(3, []string{"RESERVATION CONFLICT"}, "persist", "-o", "-M", "-K", "5", "-S", "9", "-X", dest)
	expect(0, []string{"PR out: command (register and move) successful"}, "persist", "-o", "-M", "-K", "2", "-S", "9", "-X", dest)
	expect(0, []string{"    Key=0x2\n      All target ports bit clear\n      Relative port address: 0x1\n      not reservation holder",
		"    Key=0x9\n      All target ports bit clear\n      Relative port address: 0x1\n      << Reservation holder >>\n      scope: LU_SCOPE,  type: Write Exclusive, registrants only",
		"(" + dest + ")"}, "persist", "-i", "-s")
	expect(0, []string{"Key=0x9"}, "persist", "-i", "-r")
	expect(0, []string{"successful"}, "persist", "-o", "-C", "-K", "2")
	expect(0, []string{"PR generation=0x4, there are NO registered reservation keys"}, "persist", "-i", "-k")
	if _, _, code := scsiCmd("persist", "-o"); code != 2 {
		t.Errorf("persist -o without an action: exit %d, want 2", code)
	}
	if _, _, code := scsiCmd("persist", "-o", "-G", "-S", "xyz"); code != 2 {
		t.Errorf("bad key: exit %d, want 2", code)
	}

	// Usage mistakes exit 2, transport failures 1.
	if _, _, code := scsiCmd("raw", "zz"); code != 2 {
		t.Errorf("raw zz: exit %d, want 2", code)
	}
	if _, _, code := scsiCmd("inquiry", "--vpd", "0x1ff"); code != 2 {
		t.Errorf("--vpd 0x1ff: exit %d, want 2", code)
	}
	if _, errs, code := scsiCmd("tur", "--device", "xvdq"); code != 1 || !strings.Contains(errs, "no device") {
		t.Errorf("unknown device: exit %d, stderr %q", code, errs)
	}
	if _, _, code := runXenblkCode(t, bin, "scsi", "--control", sock+".missing", "tur"); code != 1 {
		t.Errorf("missing socket: exit %d, want 1", code)
	}

	// A second sim on the same control socket refuses to start.
	_, errs, code := runXenblkCode(t, bin, "sim", "--disk", filepath.Join(t.TempDir(), "d2.img"), "--size", "1M",
		"--nbd", freePort(t), "--control", sock)
	if code == 0 || !strings.Contains(errs, "in use") {
		t.Errorf("second sim on a live socket: exit %d, stderr %q", code, errs)
	}

	// Ctrl-C removes the socket.
	sim.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- sim.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("sim did not stop on SIGINT")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left after exit: %v", err)
	}
}
