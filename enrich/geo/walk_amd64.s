#include "textflag.h"

// A level is two passes over the keys, each prefetching what the next
// needs: STEP_A reads the node's word (prefetched by the level before),
// computes the entry's index into 256(SP)(R11*4) and prefetches its line;
// STEP_B reads the entry. A leaf (bit 31 clear) walks the dummy node 0
// with index 0 and is kept by masking.

// STEP_A: entry AX, sub-block index CX (< 2^16). Clobbers BX, CX, DX, R12, R13.
#define STEP_A \
	MOVL       AX, BX; \
	SARL       $31, BX; \
	MOVL       AX, DX; \
	ANDL       $0x3fffffff, DX; \
	ANDL       BX, DX; \
	ANDL       BX, CX; \
	MOVL       CX, R12; \
	SHRL       $6, R12; \
	LEAL       (R12)(R12*2), R12; \
	ADDL       R12, DX; \
	MOVQ       $2, R13; \
	SHLQ       CX, R13; \
	DECQ       R13; \
	ANDQ       (SI)(DX*4), R13; \
	POPCNTQ    R13, R13; \
	ADDL       8(SI)(DX*4), R13; \
	DECL       R13; \
	MOVL       R13, 256(SP)(R11*4); \
	PREFETCHT0 (SI)(R13*4)

// STEP_B: entry AX -> the entry at the index STEP_A left. Clobbers BX, DX, R13.
#define STEP_B \
	MOVL 256(SP)(R11*4), DX; \
	MOVL (SI)(DX*4), R13; \
	MOVL AX, BX; \
	SARL $31, BX; \
	ANDL BX, R13; \
	NOTL BX; \
	ANDL BX, AX; \
	ORL  R13, AX

// PREFETCH_NODE prefetches the first line of the node of entry AX (node 0
// for a leaf), which holds a byte node's words, for the next level's loop.
#define PREFETCH_NODE \
	MOVL       AX, BX; \
	SARL       $31, BX; \
	ANDL       AX, BX; \
	ANDL       $0x3fffffff, BX; \
	PREFETCHT0 (SI)(BX*4)

// PREFETCH_WORD prefetches the /32 level's word for the /16 entry AX and
// key (R8)(R11*8).
#define PREFETCH_WORD \
	MOVL       AX, BX; \
	SARL       $31, BX; \
	MOVQ       (R8)(R11*8), CX; \
	SHRQ       $38, CX; \
	ANDL       $0x3ff, CX; \
	ANDL       BX, CX; \
	ANDL       AX, BX; \
	ANDL       $0x3fffffff, BX; \
	LEAL       (CX)(CX*2), CX; \
	ADDL       CX, BX; \
	PREFETCHT0 (SI)(BX*4)

// func find6nAsm(arena *uint32, top *uint32, hi *uint64, ids *uint32, n int, answers unsafe.Pointer)
//
// find6n's four branch-free levels for n (1..64) keys, level by level,
// into ids; a key still at a node after them (below /48, or /56 in a
// dense /32) is left to the caller. Every load of a level was prefetched
// by the pass before, so the misses of all keys overlap (software
// prefetches retire at once and do not fill the out-of-order window as
// waiting loads do). The frame holds each lane's fourth-level index,
// chosen at the third level by the entry's wide flag, then each lane's
// entry index.
TEXT ·find6nAsm(SB), NOSPLIT, $512-48
	MOVQ arena+0(FP), SI
	MOVQ hi+16(FP), R8
	MOVQ ids+24(FP), R9
	MOVQ n+32(FP), R10
	MOVQ answers+40(FP), DI

	MOVQ top+8(FP), R12
	XORQ R11, R11
l1:
	MOVQ (R8)(R11*8), AX
	SHRQ $48, AX
	MOVL (R12)(AX*4), AX
	MOVL AX, (R9)(R11*4)
	PREFETCH_WORD
	INCQ R11
	CMPQ R11, R10
	JLT  l1

	// /32: a 16-bit node.
	XORQ R11, R11
l2a:
	MOVL    (R9)(R11*4), AX
	MOVQ    (R8)(R11*8), CX
	SHRQ    $32, CX
	MOVWLZX CX, CX
	STEP_A
	INCQ    R11
	CMPQ    R11, R10
	JLT     l2a
	XORQ    R11, R11
l2b:
	MOVL (R9)(R11*4), AX
	STEP_B
	MOVL AX, (R9)(R11*4)
	PREFETCH_NODE
	INCQ R11
	CMPQ R11, R10
	JLT  l2b

	// /40 in a byte node, or /48 in a 16-bit node (then /48 or /56 next).
	XORQ R11, R11
l3a:
	MOVL    (R9)(R11*4), AX
	MOVQ    (R8)(R11*8), DX
	MOVQ    DX, CX
	SHRQ    $24, CX
	MOVBLZX CX, CX
	MOVQ    DX, R12
	SHRQ    $16, R12
	MOVWLZX R12, R12
	MOVQ    DX, R13
	SHRQ    $16, R13
	MOVBLZX R13, R13
	SHRQ    $8, DX
	MOVBLZX DX, DX
	BTL     $30, AX
	CMOVLCS R12, CX
	CMOVLCS DX, R13
	MOVL    R13, (SP)(R11*4)
	STEP_A
	INCQ    R11
	CMPQ    R11, R10
	JLT     l3a
	XORQ    R11, R11
l3b:
	MOVL (R9)(R11*4), AX
	STEP_B
	MOVL AX, (R9)(R11*4)
	PREFETCH_NODE
	INCQ R11
	CMPQ R11, R10
	JLT  l3b

	XORQ R11, R11
l4a:
	MOVL (R9)(R11*4), AX
	MOVL (SP)(R11*4), CX
	STEP_A
	INCQ R11
	CMPQ R11, R10
	JLT  l4a
	XORQ R11, R11
l4b:
	MOVL       (R9)(R11*4), AX
	STEP_B
	MOVL       AX, (R9)(R11*4)
	MOVL       AX, DX
	SHLQ       $6, DX
	PREFETCHT0 (DI)(DX*1) // the answer line, for the fill (a stray address for a key still at a node: prefetches do not fault)
	INCQ       R11
	CMPQ       R11, R10
	JLT        l4b
	RET
