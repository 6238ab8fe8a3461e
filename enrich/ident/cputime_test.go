package ident

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time consumed by the calling OS thread, in ns.
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// cpuBench runs body b.N times on a locked OS thread and reports, next to
// the wall-clock ns/op, the thread's CPU time per op and the throughput in
// CPU time: on a shared machine (other jobs on the same cores) wall time
// includes the time the benchmark was not running at all.
func cpuBench(b *testing.B, bytes int, body func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	t0 := threadCPU()
	for i := 0; i < b.N; i++ {
		body()
	}
	ns := float64(threadCPU()-t0) / float64(b.N)
	b.StopTimer()
	b.ReportMetric(ns, "cpu-ns/op")
	if bytes > 0 && ns > 0 {
		b.ReportMetric(float64(bytes)/ns*1e3, "cpu-MB/s")
	}
}
