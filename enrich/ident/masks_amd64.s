#include "textflag.h"

// func classMasksVBMI(data *byte, nblk int, out *uint64, consts *byte)
//
// Per 64-byte block: VPERMI2B looks up the classes of bytes 0..127 in the
// two-register table (index bit 7 is ignored), bytes with bit 7 set are
// overwritten with the high-byte class set, and one VPTESTMB per mask
// slot yields that slot's 64-bit mask.
TEXT ·classMasksVBMI(SB), NOSPLIT, $0-32
	MOVQ data+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ out+16(FP), DI
	MOVQ consts+24(FP), AX
	VMOVDQU64 0(AX), Z1
	VMOVDQU64 64(AX), Z2
	VMOVDQU64 128(AX), Z10
	VMOVDQU64 192(AX), Z11
	VMOVDQU64 256(AX), Z12
	VMOVDQU64 320(AX), Z13
	VMOVDQU64 384(AX), Z14
	VMOVDQU64 448(AX), Z15
	VMOVDQU64 512(AX), Z16
	VMOVDQU64 576(AX), Z17
	VMOVDQU64 640(AX), Z3
	TESTQ CX, CX
	JLE   done

loop:
	VMOVDQU64 (SI), Z0
	VPMOVB2M  Z0, K1
	VPERMI2B  Z2, Z1, Z0
	VMOVDQU8  Z3, K1, Z0
	VPTESTMB  Z10, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 0(DI)
	VPTESTMB  Z11, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 8(DI)
	VPTESTMB  Z12, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 16(DI)
	VPTESTMB  Z13, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 24(DI)
	VPTESTMB  Z14, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 32(DI)
	VPTESTMB  Z15, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 40(DI)
	VPTESTMB  Z16, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 48(DI)
	VPTESTMB  Z17, Z0, K2
	KMOVQ     K2, R8
	MOVQ      R8, 56(DI)
	ADDQ      $64, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       loop

done:
	VZEROUPPER
	RET

// func longStartsVBMI(ms *uint64, nblk int, out *uint64, p *startParams)
//
// Z0 = a block's eight masks (lo), Z1 = the next block's (hi). A doubling
// step by k, in the lanes of its K mask: lo &= lo>>k | hi<<(64-k),
// hi &= hi>>k. Then lo &= lo>>d | hi<<(64-d) with per-lane d.
TEXT ·longStartsVBMI(SB), NOSPLIT, $0-32
	MOVQ ms+0(FP), SI
	MOVQ nblk+8(FP), CX
	MOVQ out+16(FP), DI
	MOVQ p+24(FP), AX
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
	VMOVDQU64 Z0, 0(DI)

	ADDQ $64, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  lloop

ldone:
	VZEROUPPER
	RET
