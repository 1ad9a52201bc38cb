package pr

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/xenblk/xenblk/scsi"
)

// A registration acknowledged with APTPL survives the backend being killed
// with SIGKILL the instant after the acknowledgement.
func TestAPTPLSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv("XENBLK_PR_CHILD"); dir != "" {
		u, err := Open(&FileStore{Dir: dir}, "lu", nil)
		if err != nil {
			os.Exit(3)
		}
		cdb, param := prOut(OutRegisterAndIgnore, 0, 0, 0xfeed, true)
		var res scsi.Result
		u.Execute(nexuses["A"], &scsi.Command{CDB: cdb, Dir: scsi.DirToDevice, Data: param}, &res, false)
		cdb, param = prOut(OutReserve, TypeWriteExclusiveRegOnly, 0xfeed, 0, false)
		u.Execute(nexuses["A"], &scsi.Command{CDB: cdb, Dir: scsi.DirToDevice, Data: param}, &res, false)
		if res.Status != scsi.StatusGood {
			os.Exit(4)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAPTPLSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "XENBLK_PR_CHILD="+dir)
	err := cmd.Run()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	u, err := Open(&FileStore{Dir: dir}, "lu", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := u.State()
	if len(s.Registrations) != 1 || s.Registrations[0].Key != 0xfeed || !s.Reserved || s.Type != TypeWriteExclusiveRegOnly {
		t.Fatalf("after SIGKILL: %+v", s)
	}
	if !u.Conflict(nexuses["B"], []byte{scsi.OpWrite10, 0, 0, 0, 0, 0, 0, 0, 1, 0}) {
		t.Fatal("the restored reservation is not enforced")
	}
	// A restart is a power on: PRgeneration is zero (it was 1 in the
	// killed process), and the file store's version, a separate counter,
	// still accepts the next change, which is durable in turn.
	if s.Generation != 0 {
		t.Fatalf("PRgeneration %d after a power on, want 0", s.Generation)
	}
	cdb, param := prOut(OutRegisterAndIgnore, 0, 0, 0xbeef, true)
	var res scsi.Result
	u.Execute(nexuses["B"], &scsi.Command{CDB: cdb, Dir: scsi.DirToDevice, Data: param}, &res, false)
	if res.Status != scsi.StatusGood || u.State().Generation != 1 {
		t.Fatalf("register after the power on: status %#x generation %d, want GOOD and 1", res.Status, u.State().Generation)
	}
	u, err = Open(&FileStore{Dir: dir}, "lu", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := u.State(); len(s.Registrations) != 2 || s.Generation != 0 {
		t.Fatalf("after a second power on: %d registrations, generation %d; want 2 and 0", len(s.Registrations), s.Generation)
	}
}
