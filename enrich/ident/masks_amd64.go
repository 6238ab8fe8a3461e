package ident

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// hasMaskAsm: the AVX-512 kernels (VBMI byte permutes, GFNI transposes,
// DQ mask moves) can run here.
var hasMaskAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ &&
	cpu.X86.HasAVX512VBMI && cpu.X86.HasAVX512GFNI

// maskConsts is the mask kernel's constant block: the mask bits of bytes
// 0..127, a vector of the bits of bytes >= 0x80 (which all share one set),
// the byte permutation reversing each quadword, the unit bytes 1<<c at
// byte c of each quadword (the transpose's operand), and the permutation
// moving byte c of quadword g to byte g of quadword c; then the special
// bits of bytes 0..127, and a vector of those of bytes >= 0x80.
var maskConsts = func() (t [128 + 4*64 + 128 + 64]byte) {
	copy(t[:128], maskBits[:128])
	copy(t[384:], specialBits[:128])
	for i := 512; i < len(t); i++ {
		t[i] = specialBits[0x80]
	}
	for i := 0; i < 64; i++ {
		g, j := i/8, i%8
		t[128+i] = maskBits[0x80]
		t[192+i] = byte(g*8 + 7 - j)
		t[256+i] = 1 << j
		t[320+i] = byte(j*8 + g)
	}
	return t
}()

func init() {
	for b := 0x80; b < 256; b++ {
		if maskBits[b] != maskBits[0x80] || specialBits[b] != specialBits[0x80] {
			panic("ident: the mask kernel assumes all bytes >= 0x80 share one class set and one special set")
		}
	}
}

// classMasksVBMI is classMasksGo for nblk blocks at data.
//
//go:noescape
func classMasksVBMI(data *byte, nblk int, out *uint64, consts *byte, acc *[8]uint64)

// classMasks writes the class masks of data's blocks to out and, with the
// kernel (asm), ORs the special bits of data's bytes into the bytes of acc;
// the Go builder leaves acc alone (see buildMasks).
func classMasks(data []byte, out []uint64, asm bool, acc *[8]uint64) {
	nblk := len(data) / 64
	if nblk == 0 {
		return
	}
	if !asm {
		classMasksGo(data, out)
		return
	}
	_ = out[nblk*maskStride-1]
	classMasksVBMI(&data[0], nblk, &out[0], &maskConsts[0], acc)
}

// runStartsVBMI is longStarts for all classes of nblk blocks at once, one
// class per 64-bit lane, reduced to run starts (runStarts): it writes
// out[blk*maskStride+c], and to nz[blk] bit c if that is not zero.
//
//go:noescape
func runStartsVBMI(ms *uint64, nblk int, out *uint64, nz *byte, p *startParams)

func runStartsAll(ms []uint64, nblk int, out []uint64, nz []byte, p *startParams) {
	if nblk == 0 {
		return
	}
	_ = ms[(nblk+1)*maskStride-1]
	_ = out[nblk*maskStride-1]
	_ = nz[nblk-1]
	runStartsVBMI(&ms[0], nblk, &out[0], &nz[0], p)
}

// walkRunsAsm is walkRunsGo in assembly (see masks_amd64.s).
//
//go:noescape
func walkRunsAsm(msc *uint64, asc *uint64, strideBytes int, nz *byte, cbit uint8, nblk int, vis *lenSet, out *uint64) int

func walkRuns(ms []uint64, c int, as []uint64, stride int, nz []byte, nblk int, vis *lenSet, out []uint64) int {
	if nblk == 0 {
		return 0
	}
	_ = ms[(nblk+1)*maskStride-1]
	_ = as[(nblk-1)*stride+c*(stride/maskStride)]
	_ = out[walkOutLen(nblk)-1]
	var nzp *byte
	if nz != nil {
		_ = nz[nblk-1]
		nzp = &nz[0]
	}
	return walkRunsAsm(&ms[c], &as[c*(stride/maskStride)], stride*8, nzp, 1<<c, nblk, vis, &out[0])
}

// gramScreenRunsAsm is gramScreenRunsGo in assembly (see masks_amd64.s).
//
//go:noescape
func gramScreenRunsAsm(data *byte, runs *uint64, nruns int, stride int, w0 int, fold uint64, seed uint64, gshift uint, gram *uint64, out *uint64) int

func gramScreenRuns(x *Index, data []byte, runs []uint64, stride, w0 int, fold uint64, out []uint64) int {
	if len(runs) == 0 {
		return 0
	}
	// The kernel trusts that every run lies inside data and is longer than
	// w0 >= stride+7, so each sample's 8 bytes are inside its run (run and
	// Index.gramStride make sure), and that out has gramHitsLen entries.
	_ = out[gramHitsLen(len(data), len(runs), stride)-1]
	return gramScreenRunsAsm(&data[0], &runs[0], len(runs), stride, w0, fold, x.seed, x.gshift, &x.gram[0], &out[0])
}

// load64 is le64(b[i:]) for a caller that knows i+8 <= len(b): one
// unaligned load (amd64 allows them), cheap enough for the inliner to put
// the whole-run filter test (Index.mayMatch) inside the run loops.
func load64(b []byte, i int) uint64 {
	return *(*uint64)(unsafe.Pointer(&b[i]))
}
