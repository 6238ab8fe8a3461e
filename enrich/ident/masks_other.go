//go:build !amd64

package ident

const hasMaskAsm = false

func classMasks(data []byte, out []uint64, _ bool) { classMasksGo(data, out) }

func longStartsAll(ms []uint64, nblk int, out []uint64, p *startParams) {
	panic("ident: no longStarts kernel on this architecture")
}
