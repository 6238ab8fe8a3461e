package geo

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasWalkAsm: find6nAsm can run here (it needs POPCNT). In Go, each
// bits.OnesCount64 checks for POPCNT and keeps a call to a fallback, and
// the compiler spills the walk's registers around that call (find6n's Go
// loops are about 50 instructions per key and level); and Go has no
// prefetch instruction, which the assembly uses to keep the misses of all
// keys of a batch round in flight.
var hasWalkAsm = cpu.X86.HasPOPCNT

// find6nAsm is find6n's four branch-free levels in assembly (walk_amd64.s)
// for 1..chunkLen keys, prefetching each key's answer line (answers[id]).
// It reads the arena at the indices the trie holds, without bounds
// checks: the trie tests compare it with a binary search over the table.
//
//go:noescape
func find6nAsm(arena *uint32, top *uint32, hi *uint64, ids *uint32, n int, answers unsafe.Pointer)
