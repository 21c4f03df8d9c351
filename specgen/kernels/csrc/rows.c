/* y = x @ w.T (+ b) for a few rows of x, in fp32 on the CPU: the product behind every decode step and every
 * verification (specgen/kernels/narrow.py says when it is used and why), and behind the heads' draft rounds
 * (draft.c), whose weights may be fp16 (read at half the bytes, converted exactly, multiplied in fp32).
 *
 * x [n, K], w [O, K], b [O] and y [n, O], all contiguous. Each thread takes a contiguous run of output columns
 * (rows of w) and, for each, reads that weight row once from memory and multiplies it with up to 8 rows of x at
 * a time (x stays in the L1 cache). So the weights are read once whatever n is, which is what a decode step
 * and a verification are bound by, and n rows cost little more than one until the arithmetic catches up.
 *
 * Every output element is summed in the same order (8 lanes over k, then the lanes in a fixed tree, then the
 * tail), whatever n, the row's place among them and the thread split: a row's result does not depend on which
 * other rows were computed with it, so a verification's products equal a decode step's bit for bit.
 *
 * Written with GCC vector extensions rather than intrinsics, so it builds for any target GCC or clang knows
 * (AVX2 and FMA where the machine has them: specgen builds it with -march=native on the machine that runs it). */
#include "vec.h"

#define AHEAD 4096 /* floats */

/* Weight row o against rows r0 .. r0 + R - 1 of x (R is a constant at every call, so the loops unroll and the
 * R accumulators stay in registers); one body for fp32 and fp16 weights (WT, LOAD). */
#define BLOCK(NAME, WT, LOAD, ONE)                                                                                \
    static inline __attribute__((always_inline)) void NAME(int R, const WT *restrict w, const float *restrict x,  \
                                                           const WT *restrict b, float *restrict y, int64_t K,    \
                                                           int64_t O, int64_t o, int64_t r0) {                    \
        v8 acc[8];                                                                                                \
        for (int j = 0; j < R; ++j) acc[j] = (v8){0};                                                             \
        const WT *wr = w + o * K;                                                                                 \
        const int64_t K8 = K & ~(int64_t)7;                                                                       \
        for (int64_t k = 0; k < K8; k += 8) {                                                                     \
            __builtin_prefetch(wr + k + AHEAD, 0, 0); /* 16 KB of fp32 on: 10-20% faster here than without */     \
            v8 wv = LOAD(wr + k);                                                                                 \
            for (int j = 0; j < R; ++j) acc[j] = fma8(wv, load8(x + (r0 + j) * K + k), acc[j]);                   \
        }                                                                                                         \
        for (int j = 0; j < R; ++j) {                                                                             \
            float s = lanes(acc[j]);                                                                              \
            for (int64_t k = K8; k < K; ++k) s = fma1(ONE(wr[k]), x[(r0 + j) * K + k], s);                        \
            y[(r0 + j) * O + o] = b ? s + ONE(b[o]) : s;                                                          \
        }                                                                                                         \
    }

static inline float same(float v) { return v; }

BLOCK(block, float, load8, same)
BLOCK(block_h, half, load8h, h2f)

#define ROWS(BLK)                                                                                                 \
    _Pragma("omp parallel for num_threads(threads) schedule(static)") for (int64_t o = 0; o < O; ++o) {           \
        int64_t r = 0;                                                                                            \
        for (; r + 8 <= n; r += 8) BLK(8, w, x, b, y, K, O, o, r);                                                \
        if (r + 4 <= n) { BLK(4, w, x, b, y, K, O, o, r); r += 4; }                                               \
        if (r + 2 <= n) { BLK(2, w, x, b, y, K, O, o, r); r += 2; }                                               \
        if (r < n) BLK(1, w, x, b, y, K, O, o, r);                                                                \
    }

void specgen_rows(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t K, int64_t O,
                  int threads) {
    ROWS(block)
}

void specgen_rows_h(const float *x, const half *w, const half *b, float *y, int64_t n, int64_t K, int64_t O,
                    int threads) {
    ROWS(block_h)
}
