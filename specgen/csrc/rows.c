/* y = x @ w.T (+ b) for a few rows of x, in fp32 on the CPU: the product behind every decode step and every
 * verification (specgen/cpu.py says when it is used and why).
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
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

/* Built with -ffp-contract=off, so a product and a sum fuse only where written here (compilers otherwise fuse
 * some loops and not others, and the order above would then depend on n). */
#ifdef __FMA__
#include <immintrin.h>
static inline v8 fma8(v8 a, v8 b, v8 c) { return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }
static inline float fma1(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}
#else
static inline v8 fma8(v8 a, v8 b, v8 c) { return a * b + c; }
static inline float fma1(float a, float b, float c) { return a * b + c; }
#endif

static inline v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

#define AHEAD 4096 /* floats */

static inline float lanes(v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* Weight row o against rows r0 .. r0 + R - 1 of x (R is a constant at every call, so the loops unroll and the
 * R accumulators stay in registers). */
static inline __attribute__((always_inline)) void block(int R, const float *restrict w, const float *restrict x,
                                                        const float *restrict b, float *restrict y, int64_t K,
                                                        int64_t O, int64_t o, int64_t r0) {
    v8 acc[8];
    for (int j = 0; j < R; ++j) acc[j] = (v8){0};
    const float *wr = w + o * K;
    const int64_t K8 = K & ~(int64_t)7;
    for (int64_t k = 0; k < K8; k += 8) {
        __builtin_prefetch(wr + k + AHEAD, 0, 0); /* the weights 16 KB on: 10-20% faster here than without */
        v8 wv = load8(wr + k);
        for (int j = 0; j < R; ++j) acc[j] = fma8(wv, load8(x + (r0 + j) * K + k), acc[j]);
    }
    for (int j = 0; j < R; ++j) {
        float s = lanes(acc[j]);
        for (int64_t k = K8; k < K; ++k) s = fma1(wr[k], x[(r0 + j) * K + k], s);
        y[(r0 + j) * O + o] = b ? s + b[o] : s;
    }
}

void specgen_rows(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t K, int64_t O,
                  int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t o = 0; o < O; ++o) {
        int64_t r = 0;
        for (; r + 8 <= n; r += 8) block(8, w, x, b, y, K, O, o, r);
        if (r + 4 <= n) { block(4, w, x, b, y, K, O, o, r); r += 4; }
        if (r + 2 <= n) { block(2, w, x, b, y, K, O, o, r); r += 2; }
        if (r < n) block(1, w, x, b, y, K, O, o, r);
    }
}
