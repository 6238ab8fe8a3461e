//go:build !amd64

package ident

const hasMaskAsm = false

func classMasks(data []byte, out []uint64, _ bool, _ *[8]uint64) { classMasksGo(data, out) }

func runStartsAll(ms []uint64, nblk int, out []uint64, nz []byte, p *startParams) {
	panic("ident: no runStarts kernel on this architecture")
}
