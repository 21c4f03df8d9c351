/* What specgen's CPU kernels share: 8-lane fp32 vectors, loads of fp32 or fp16 weights into them, and fused
 * multiply-adds only where written (the files are built with -ffp-contract=off, so a product and a sum fuse
 * exactly where a kernel says, and every output is summed in one order whatever the batch). */
#ifndef SPECGEN_VEC_H
#define SPECGEN_VEC_H
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
#ifdef __FLT16_MAX__ /* GCC 12+ or clang 15+ on x86; ARM */
typedef _Float16 half;
typedef _Float16 h8 __attribute__((vector_size(16)));
static inline float h2f(half h) { return (float)h; }
#else /* an older compiler: IEEE half bits converted by hand (normal, subnormal, zero, infinity, NaN) */
typedef uint16_t half;
static inline float h2f(half h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000 | (man << 13);
    else if (exp != 0)
        bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (man == 0)
        bits = sign;
    else { /* subnormal: normalize */
        int e = -1;
        uint32_t m = man;
        do { ++e; m <<= 1; } while (!(m & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((m & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
#endif

#if defined(__FMA__) || defined(__F16C__)
#include <immintrin.h>
#endif
#ifdef __FMA__
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

static inline v8 load8h(const half *p) {
#if defined(__F16C__) /* (GCC 12 turns the generic conversion below into eight scalar ones: 3x slower products) */
    return (v8)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#elif defined(__FLT16_MAX__)
    h8 v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, v8);
#else
    return (v8){h2f(p[0]), h2f(p[1]), h2f(p[2]), h2f(p[3]), h2f(p[4]), h2f(p[5]), h2f(p[6]), h2f(p[7])};
#endif
}

static inline float lanes(v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

/* y = x @ w.T (+ b): rows.c. w and b are fp32 in specgen_rows and fp16 in specgen_rows_h (x and y fp32 in both);
 * an fp16 weight is converted exactly, so both give the same sums for the same weights. */
void specgen_rows(const float *x, const float *w, const float *b, float *y, int64_t n, int64_t K, int64_t O,
                  int threads);
void specgen_rows_h(const float *x, const half *w, const half *b, float *y, int64_t n, int64_t K, int64_t O,
                    int threads);
#endif
