//go:build unix

package warehouse

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user+system) of the whole process, DuckDB's threads included. The
// benchmarks report rows per CPU-second next to rows per wall-second because the machine they run
// on is shared: wall time moves with the neighbours' load, CPU time much less.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
