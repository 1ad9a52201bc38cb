package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pinProcess sets the CPU affinity of every thread of process pid (0:
// this one) to the one CPU cpu, and returns what puts every thread back
// on the CPUs the process had. Threads a process starts later inherit
// their creator's affinity, so once every thread is pinned the process
// stays pinned; the scan repeats until it finds no thread it has not
// pinned (a thread started during it).
func pinProcess(pid, cpu int) (restore func(), err error) {
	dir := "/proc/self/task"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/task", pid)
	}
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &old); err != nil {
		return nil, fmt.Errorf("bench: affinity of %d: %w", pid, err)
	}
	restore = func() { setAffinity(dir, &old, nil) }
	var set unix.CPUSet
	set.Set(cpu)
	done := map[int]bool{}
	for range 10 {
		n, err := setAffinity(dir, &set, done)
		if err != nil {
			restore()
			return nil, fmt.Errorf("bench: pin process %d to CPU %d: %w", pid, cpu, err)
		}
		if n == 0 {
			return restore, nil
		}
	}
	restore()
	return nil, fmt.Errorf("bench: pin process %d to CPU %d: it keeps starting threads", pid, cpu)
}

// allowedCPUs lists up to n of the CPUs this process may run on, lowest
// first (none if the kernel will not say).
func allowedCPUs(n int) []int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < n; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// setAffinity sets set on every thread listed in dir not in done (all,
// done nil), adding them to done; it returns how many it set. A thread
// that ended meanwhile is no error.
func setAffinity(dir string, set *unix.CPUSet, done map[int]bool) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil || done[tid] {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return n, err
		}
		if done != nil {
			done[tid] = true
		}
		n++
	}
	return n, nil
}

// threadsCPU is the CPU time the live threads of process pid have run
// (the sum of their /proc schedstat), in nanoseconds: precise where the
// process's tick-based utime and stime are not.
func threadsCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: %s: %q", dir, b)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}
