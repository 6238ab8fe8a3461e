#include "textflag.h"

// func classMasksVBMI(data *byte, nblk int, out *uint64, consts *byte, acc *[8]uint64)
//
// Per 64-byte block: VPERMB reverses the bytes of each quadword, VPERMI2B
// looks up the classes of bytes 0..127 in the two-register table (index
// bit 7 is ignored) and bytes with bit 7 set are overwritten with the
// high-byte class set. Each quadword is then an 8x8 bit matrix (row: a
// byte's class bits); VGF2P8AFFINEQB against the vector of unit bytes
// transposes it, so byte c of quadword g is class c's mask of bytes
// 8g..8g+7, and one VPERMB gathers the bytes of each class into its
// quadword. The block's eight masks leave in one 64-byte store, which the
// longStarts kernel's 64-byte load can forward from (eight 8-byte stores
// cannot be forwarded to a wider load). A second table lookup ORs each
// byte's special bits (specialBits; Z12 those of bytes >= 0x80) into *acc.
TEXT ·classMasksVBMI(SB), NOSPLIT, $0-40
	MOVQ data+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ out+16(FP), DI
	MOVQ consts+24(FP), AX
	MOVQ acc+32(FP), R9
	VMOVDQU64 0(AX), Z1
	VMOVDQU64 64(AX), Z2
	VMOVDQU64 128(AX), Z3
	VMOVDQU64 192(AX), Z4
	VMOVDQU64 256(AX), Z5
	VMOVDQU64 320(AX), Z6
	VMOVDQU64 384(AX), Z8
	VMOVDQU64 448(AX), Z9
	VMOVDQU64 (R9), Z10
	VMOVDQU64 512(AX), Z12
	TESTQ CX, CX
	JLE   done

loop:
	VMOVDQU64      (SI), Z0
	VPERMB         Z0, Z4, Z0
	VPMOVB2M       Z0, K1
	VMOVDQA64      Z0, Z11
	VPERMI2B       Z9, Z8, Z11
	VMOVDQU8       Z12, K1, Z11
	VPORQ          Z11, Z10, Z10
	VPERMI2B       Z2, Z1, Z0
	VMOVDQU8       Z3, K1, Z0
	VGF2P8AFFINEQB $0, Z0, Z5, Z0
	VPERMB         Z0, Z6, Z0
	VMOVDQU64      Z0, 0(DI)
	ADDQ           $64, SI
	ADDQ           $64, DI
	DECQ           CX
	JNZ            loop

done:
	VMOVDQU64 Z10, (R9)
	VZEROUPPER
	RET

// func runStartsVBMI(ms *uint64, nblk int, out *uint64, nz *byte, p *startParams)
//
// Z0 = a block's eight masks (lo), Z1 = the next block's (hi). A doubling
// step by k, in the lanes of its K mask: lo &= lo>>k | hi<<(64-k),
// hi &= hi>>k. Then lo &= lo>>d | hi<<(64-d) with per-lane d: longStarts.
// A run start is a set bit of that whose predecessor (Z7 carries the
// previous block's) is clear; nz[blk] gets one bit per class with a start.
TEXT ·runStartsVBMI(SB), NOSPLIT, $0-40
	MOVQ ms+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ out+16(FP), DI
	MOVQ nz+24(FP), BX
	MOVQ p+32(FP), AX
	VPXORQ Z7, Z7, Z7
	VMOVDQU64 0(AX), Z8
	VMOVDQU64 64(AX), Z9
	KMOVW     128(AX), K1
	KMOVW     136(AX), K2
	KMOVW     144(AX), K3
	KMOVW     152(AX), K4
	KMOVW     160(AX), K5
	TESTQ CX, CX
	JLE   ldone

lloop:
	VMOVDQU64 0(SI), Z0
	VMOVDQU64 64(SI), Z1

	VPSRLQ $1, Z0, Z2
	VPSLLQ $63, Z1, Z3
	VPORQ  Z3, Z2, Z2
	VPANDQ Z2, Z0, K1, Z0
	VPSRLQ $1, Z1, Z3
	VPANDQ Z3, Z1, K1, Z1

	VPSRLQ $2, Z0, Z2
	VPSLLQ $62, Z1, Z3
	VPORQ  Z3, Z2, Z2
	VPANDQ Z2, Z0, K2, Z0
	VPSRLQ $2, Z1, Z3
	VPANDQ Z3, Z1, K2, Z1

	VPSRLQ $4, Z0, Z2
	VPSLLQ $60, Z1, Z3
	VPORQ  Z3, Z2, Z2
	VPANDQ Z2, Z0, K3, Z0
	VPSRLQ $4, Z1, Z3
	VPANDQ Z3, Z1, K3, Z1

	VPSRLQ $8, Z0, Z2
	VPSLLQ $56, Z1, Z3
	VPORQ  Z3, Z2, Z2
	VPANDQ Z2, Z0, K4, Z0
	VPSRLQ $8, Z1, Z3
	VPANDQ Z3, Z1, K4, Z1

	VPSRLQ $16, Z0, Z2
	VPSLLQ $48, Z1, Z3
	VPORQ  Z3, Z2, Z2
	VPANDQ Z2, Z0, K5, Z0
	VPSRLQ $16, Z1, Z3
	VPANDQ Z3, Z1, K5, Z1

	VPSRLVQ Z8, Z0, Z2
	VPSLLVQ Z9, Z1, Z3
	VPORQ   Z3, Z2, Z2
	VPANDQ  Z2, Z0, Z0

	VPSLLQ    $1, Z0, Z2
	VPSRLQ    $63, Z7, Z3
	VPORQ     Z3, Z2, Z2
	VPANDNQ   Z0, Z2, Z3
	VMOVDQA64 Z0, Z7
	VMOVDQU64 Z3, 0(DI)
	VPTESTMQ  Z3, Z3, K6
	KMOVB     K6, R8
	MOVB      R8, 0(BX)

	ADDQ $64, SI
	ADDQ $64, DI
	INCQ BX
	DECQ CX
	JNZ  lloop

ldone:
	VZEROUPPER
	RET

// func walkRunsAsm(msc *uint64, asc *uint64, strideBytes int, nz *byte, cbit uint8, nblk int, vis *lenSet, out *uint64) int
//
// walkRuns for one class: msc points at the class's mask of block 0 (the
// next block's is 64 bytes on), asc at its run starts of block 0 (the next
// block's strideBytes on), nz (or nil) at the per-block bytes whose bit
// cbit says the block has a start of the class. For every start i of a
// block, the run ends at the first clear mask bit after it, in this block
// or (the zero block after the data ends every run) a later one; runs
// whose length n < 1024 is not in vis are dropped, the others written to
// out as st | e<<32. Plain x86-64: no register survives a Go call, so the
// same loop in Go spilled and reloaded its state around every run.
TEXT ·walkRunsAsm(SB), NOSPLIT, $0-72
	MOVQ msc+0(FP), SI
	MOVQ asc+8(FP), DI
	MOVQ strideBytes+16(FP), R8
	MOVQ nz+24(FP), R9
	MOVQ nblk+40(FP), R10
	MOVQ vis+48(FP), R11
	MOVQ out+56(FP), R12
	XORQ BX, BX  // block
	XORQ R14, R14 // runs written

wblk:
	CMPQ BX, R10
	JGE  wdone
	TESTQ R9, R9
	JZ    wstarts
	MOVBLZX (R9)(BX*1), AX
	TESTB   AL, cbit+32(FP)
	JZ      wnext

wstarts:
	MOVQ  (DI), DX
	TESTQ DX, DX
	JZ    wnext

wrun:
	BSFQ DX, CX         // i
	LEAQ -1(DX), AX
	ANDQ AX, DX         // clear start i
	MOVQ BX, R15
	SHLQ $6, R15
	MOVQ (SI)(R15*1), AX // the block's mask (R15 = blk*64 = its byte offset)
	ADDQ CX, R15         // st
	SHRQ CX, AX
	NOTQ AX
	BSFQ AX, AX          // run length within the block; ZF: all ones from 0
	JZ   wcross
	LEAQ (AX)(CX*1), R13
	CMPQ R13, $64
	JGE  wcross
	ADDQ R15, AX         // e
	JMP  wlen

wcross:
	// The run reaches the block's end: the first block after it that is
	// not all ones ends it.
	LEAQ 1(BX), AX

wcrossloop:
	MOVQ AX, R13
	SHLQ $6, R13
	MOVQ (SI)(R13*1), R13
	CMPQ R13, $-1
	JNE  wcrossend
	INCQ AX
	JMP  wcrossloop

wcrossend:
	NOTQ R13
	BSFQ R13, R13
	SHLQ $6, AX
	ADDQ R13, AX         // e

wlen:
	MOVQ AX, R13
	SUBQ R15, R13        // n
	CMPQ R13, $1024
	JAE  wstore
	MOVQ R13, CX
	SHRQ $6, CX
	MOVQ (R11)(CX*8), CX
	BTQ  R13, CX
	JCC  wskip

wstore:
	SHLQ $32, AX
	ORQ  R15, AX
	MOVQ AX, (R12)(R14*8)
	INCQ R14

wskip:
	TESTQ DX, DX
	JNZ   wrun

wnext:
	ADDQ R8, DI
	INCQ BX
	JMP  wblk

wdone:
	MOVQ R14, ret+64(FP)
	RET

// func gramScreenRunsAsm(data *byte, runs *uint64, nruns int, stride int, w0 int, fold uint64, seed uint64, gshift uint, gram *uint64, out *uint64) int
//
// gramScreenRunsGo in assembly: for each run i = [st, e) of runs, the
// samples at data+st+q, q = 0, stride, ... < e-st-w0+stride (at least one:
// e-st > w0), whose 8 bytes ORed with fold are inGram are written to out as
// i<<32 | (st+q). The branch on a hit is taken rarely (the bitmap is
// sparse), so it predicts well. Every general register but BP and SP is
// in use; nruns and w0 are read from the arguments.
TEXT ·gramScreenRunsAsm(SB), NOSPLIT, $0-88
	MOVQ data+0(FP), SI
	MOVQ runs+8(FP), R8
	MOVQ stride+24(FP), R10
	MOVQ fold+40(FP), R11
	MOVQ seed+48(FP), R12
	MOVQ gshift+56(FP), CX
	MOVQ gram+64(FP), R13
	MOVQ out+72(FP), R14
	XORQ DI, DI   // run index
	XORQ R15, R15 // samples written

rloop:
	CMPQ DI, nruns+16(FP)
	JGE  rdone
	MOVQ (R8)(DI*8), AX
	MOVL AX, BX         // st
	SHRQ $32, AX        // e
	SUBQ w0+32(FP), AX
	ADDQ R10, AX
	LEAQ (SI)(AX*1), R9 // samples end: data + e - w0 + stride
	ADDQ SI, BX         // sample pointer: data + st

sloop:
	MOVQ  (BX), AX
	ORQ   R11, AX
	XORQ  R12, AX
	MOVQ  $0xD6E8FEB86659FD93, DX
	IMULQ DX, AX
	MOVQ  AX, DX
	SHRQ  $32, DX
	XORQ  DX, AX
	MOVQ  $0x9E3779B97F4A7C15, DX
	IMULQ DX, AX
	SHRQ  CX, AX        // bit index
	MOVQ  AX, DX
	SHRQ  $6, DX
	MOVQ  (R13)(DX*8), DX
	BTQ   AX, DX
	JCS   shit

snext:
	ADDQ R10, BX
	CMPQ BX, R9
	JLT  sloop
	INCQ DI
	JMP  rloop

shit:
	MOVQ BX, AX
	SUBQ SI, AX         // st + q
	MOVQ DI, DX
	SHLQ $32, DX
	ORQ  DX, AX
	MOVQ AX, (R14)(R15*8)
	INCQ R15
	JMP  snext

rdone:
	MOVQ R15, ret+80(FP)
	RET
