package imagelock

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The kernel does not say who holds an OFD lock (F_OFD_GETLK and
// /proc/locks give pid -1), but /proc/PID/fdinfo/FD lists the locks of
// each open file, as lslocks reads them. findHolders walks /proc for the
// open files of the image (same device and inode) whose locks cover a
// conflicting byte. It runs only when a lock is refused. Processes of
// other users are invisible without privilege, and of other pid
// namespaces always; then it finds nobody and the error says so.

// lockRange is one lock from an fdinfo "lock:" line, bounds inclusive.
type lockRange struct {
	start, end int64
	write      bool
}

func findHolders(f *os.File, conflicts []int64) []Holder {
	var self unix.Stat_t
	if unix.Fstat(int(f.Fd()), &self) != nil {
		return nil
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	me := os.Getpid()
	var out []Holder
	for _, proc := range procs {
		pid, err := strconv.Atoi(filepath.Base(proc))
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(proc + "/fd")
		var locks []lockRange
		for _, e := range fds {
			if pid == me && e.Name() == strconv.Itoa(int(f.Fd())) {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(proc+"/fd/"+e.Name(), &st) != nil || st.Dev != self.Dev || st.Ino != self.Ino {
				continue
			}
			locks = append(locks, fdLocks(proc+"/fdinfo/"+e.Name())...)
		}
		if h, ok := holderOf(locks, conflicts); ok {
			h.PID, h.Self = pid, pid == me
			h.Command = comm(proc)
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// holderOf reads a process's locks on the image: whether they cover a
// conflicting byte, and what mode they stand for.
func holderOf(locks []lockRange, conflicts []int64) (Holder, bool) {
	covers := func(off int64) (read, write bool) {
		for _, l := range locks {
			if l.start <= off && off <= l.end {
				if l.write {
					write = true
				} else {
					read = true
				}
			}
		}
		return read, write
	}
	var h Holder
	hit := false
	for _, off := range conflicts {
		if r, w := covers(off); r || w {
			hit = true
		}
	}
	if !hit {
		return h, false
	}
	for p := 0; p < numPerms; p++ {
		_, wh := covers(holdBase + int64(p))
		_, wd := covers(denyBase + int64(p))
		h.Whole = h.Whole || wh || wd
	}
	if r, _ := covers(holdBase + permWrite); r {
		h.Mode.Write = true
	}
	if r, _ := covers(denyBase + permWrite); !r {
		h.Mode.Shared = true
	}
	return h, true
}

// fdLocks parses the "lock:" lines of an fdinfo file, such as
//
//	lock:	1: OFDLCK ADVISORY  READ -1 fe:00:9982730 100 101
//
// keeping the fcntl kinds only.
func fdLocks(path string) []lockRange {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []lockRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "lock:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 8 || (fields[1] != "OFDLCK" && fields[1] != "POSIX") {
			continue // a waiter ("->"), or a kind that never conflicts with these (FLOCK, LEASE)
		}
		start, err := strconv.ParseInt(fields[6], 10, 64)
		if err != nil {
			continue
		}
		end := int64(math.MaxInt64)
		if fields[7] != "EOF" {
			if end, err = strconv.ParseInt(fields[7], 10, 64); err != nil {
				continue
			}
		}
		out = append(out, lockRange{start: start, end: end, write: fields[3] == "WRITE"})
	}
	return out
}

func comm(proc string) string {
	b, err := os.ReadFile(proc + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
