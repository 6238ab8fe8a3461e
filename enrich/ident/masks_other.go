//go:build !amd64

package ident

const hasMaskAsm = false

func classMasks(data []byte, out []uint64, _ bool, _ *[8]uint64) { classMasksGo(data, out) }

func runStartsAll(ms []uint64, nblk int, out []uint64, nz []byte, p *startParams) {
	panic("ident: no runStarts kernel on this architecture")
}

func walkRuns(ms []uint64, c int, as []uint64, stride int, nz []byte, nblk int, vis *lenSet, out []uint64) int {
	return walkRunsGo(ms, c, as, stride, nz, nblk, vis, out)
}

func gramScreenRuns(x *Index, data []byte, runs []uint64, stride, w0 int, fold uint64, out []uint64) int {
	return gramScreenRunsGo(x, data, runs, stride, w0, fold, out)
}

// load64 is le64(b[i:]) (on amd64 one unaligned load).
func load64(b []byte, i int) uint64 { return le64(b[i:]) }
