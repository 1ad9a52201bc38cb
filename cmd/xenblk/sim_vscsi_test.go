package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSimVscsi: sim --vscsi gives the guest its disk over PVSCSI beside
// blkif. The banner's LUN URL opens with nbdinfo, its scsi line works as
// printed, and a key registered over blkif (xenblk pr on xvda) is among
// the LUN's (xenblk scsi persist on 0:0:0:0): one reservation unit.
func TestSimVscsi(t *testing.T) {
	nbdinfo := needTool(t, "nbdinfo")
	bin := buildXenblk(t)
	dir := t.TempDir()
	ctl := filepath.Join(dir, "control.sock")
	s := startProc(t, bin, "sim", "--disk", filepath.Join(dir, "disk.img"), "--size", "16M",
		"--nbd", freePort(t), "--control", ctl, "--vscsi")
	line := s.expect(t, "  dom1     vscsifront LUN 0:0:0:0 ")
	if !strings.Contains(line, fmt.Sprintf("%d bytes", 16<<20)) {
		t.Fatalf("LUN line %q", line)
	}
	url := strings.TrimPrefix(s.expect(t, "  NBD      "), "  NBD      ") // after the LUN's line, its URL
	if !strings.HasSuffix(url, "/0:0:0:0") {
		t.Fatalf("the LUN's NBD line names %q", url)
	}
	scsiLine := s.expect(t, "  SCSI     xenblk scsi --control "+ctl+" --device 0:0:0:0 ")
	s.expect(t, "Ctrl-C to stop.")
	if out, err := exec.Command(nbdinfo, "--size", url).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(16<<20) {
		t.Fatalf("nbdinfo --size %s: %v %q", url, err, out)
	}
	if out, code := xenblkRun(t, bin, strings.Fields(strings.TrimPrefix(scsiLine, "  SCSI     xenblk "))...); code != 0 || !strings.Contains(out, "designator_type: NAA") {
		t.Fatalf("the banner's %q: exit %d\n%s", scsiLine, code, out)
	}
	if out, code := xenblkRun(t, bin, "pr", "register", "--control", ctl, "--device", "xvda", "--key", "0x5"); code != 0 {
		t.Fatalf("pr register on xvda: exit %d\n%s", code, out)
	}
	if out, code := xenblkRun(t, bin, "scsi", "persist", "--control", ctl, "--device", "0:0:0:0", "--in", "--read-keys"); code != 0 || !strings.Contains(out, "0x5") {
		t.Fatalf("the LUN's keys: exit %d\n%s", code, out)
	}
	if out, code := xenblkRun(t, bin, "pr", "read-keys", "--control", ctl, "--device", "0:0:0:0"); code != 0 || !strings.Contains(out, "0x5") {
		t.Fatalf("pr read-keys on the LUN: exit %d\n%s", code, out)
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	if code, _ := waitExit(t, s, time.Now(), 30*time.Second); code != 0 {
		t.Fatalf("sim --vscsi exited %d after Ctrl-C: %s", code, s.errb.String())
	}
}
