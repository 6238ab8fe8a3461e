//go:build !amd64

package geo

import "unsafe"

const hasWalkAsm = false

func find6nAsm(arena *uint32, top *uint32, hi *uint64, ids *uint32, n int, answers unsafe.Pointer) {
	panic("geo: no assembly walk on this architecture")
}
