package main

import (
	"os"
	"runtime/pprof"
)

// startCPUProfile starts a CPU profile of this process into the file at
// path; the profile is complete once the returned stop has run.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
