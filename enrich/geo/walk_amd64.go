package geo

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasWalkAsm: find6nAsm can run here (it needs POPCNT). In Go, each
// bits.OnesCount64 checks for POPCNT and keeps a call to a fallback, and
// the compiler spills the walk's registers around that call: find6n's
// loops measured about 50 instructions per lane and level, the assembly
// about 25.
var hasWalkAsm = cpu.X86.HasPOPCNT

// find6nAsm is find6n's four branch-free levels in assembly (walk_amd64.s).
//
//go:noescape
func find6nAsm(arena *uint32, top *uint32, hi *uint64, ids *uint32, n int, answers unsafe.Pointer)
