package ident

import "golang.org/x/sys/cpu"

// hasMaskAsm: the AVX-512 VBMI kernel can run here.
var hasMaskAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VBMI

// maskConsts is the kernel's constant block: the mask bits of bytes
// 0..127 (bytes >= 0x80 are text only), then one 64-byte vector per mask
// slot filled with that slot's bit, then a vector of the bits of bytes >= 0x80.
var maskConsts = func() (t [128 + 64*maskStride + 64]byte) {
	copy(t[:128], maskBits[:128])
	for c := 0; c < maskStride; c++ {
		for i := 0; i < 64; i++ {
			t[128+64*c+i] = 1 << c
		}
	}
	for i := 0; i < 64; i++ {
		t[128+64*maskStride+i] = maskBits[0x80]
	}
	return t
}()

func init() {
	for b := 0x80; b < 256; b++ {
		if maskBits[b] != maskBits[0x80] {
			panic("ident: the mask kernel assumes all bytes >= 0x80 share one class set")
		}
	}
}

// classMasksVBMI is classMasksGo for nblk blocks at data.
//
//go:noescape
func classMasksVBMI(data *byte, nblk int, out *uint64, consts *byte)

func classMasks(data []byte, out []uint64, asm bool) {
	nblk := len(data) / 64
	if nblk == 0 {
		return
	}
	if !asm {
		classMasksGo(data, out)
		return
	}
	_ = out[nblk*maskStride-1]
	classMasksVBMI(&data[0], nblk, &out[0], &maskConsts[0])
}

// longStartsVBMI is longStarts for all classes of nblk blocks at once, one
// class per 64-bit lane, writing out[blk*maskStride+c].
//
//go:noescape
func longStartsVBMI(ms *uint64, nblk int, out *uint64, p *startParams)

func longStartsAll(ms []uint64, nblk int, out []uint64, p *startParams) {
	if nblk == 0 {
		return
	}
	_ = ms[(nblk+1)*maskStride-1]
	_ = out[nblk*maskStride-1]
	longStartsVBMI(&ms[0], nblk, &out[0], p)
}
