/* One Hydra++ draft round, and the prefix attention's keys and values, in one call each: the work of
 * `hydra_round` and `PrefixAttention.memory` (specgen/drafters/hydra.py) without the ~150
 * tensor operations (and their dispatch) a PyTorch round issues. Activations are fp32; weights are fp32 or fp16
 * (`half`), read by the row products of rows.c.
 *
 * A round, for each of the batch's n rows (all rows at once in every product):
 *   context = prefix attention of the newest window state over the window's keys and values (pre-norm, one
 *             layer: RMSNorm, multi-head attention over the valid slots, output projection, residual, RMSNorm,
 *             MLP with SiLU, residual);
 *   pre     = the heads' input layers on the context (one product for every head, bias included);
 *   level l = head l on [context; a parent's path]: pre[l] + the token tables' rows for the root and the l tokens
 *             on the path, SiLU, the head's residual blocks (x + SiLU(W x + b)), then the LM head on context + x,
 *             for each of the level's parents. A parent's children are its logits' top R, or R distinct draws
 *             from q = softmax(logits / temperature) over the tokens not `blocked`: the R largest q(x) / E_x
 *             with Exp(1) noise E, child r tested against q without the r draws before it, renormalized (the
 *             race of `draw_distinct`); the tree keeps some of them (`pick`), and q is returned for the
 *             acceptance test. */
#include <math.h>
#include <stdlib.h>

#include "vec.h"

typedef struct {
    int64_t dim, attention_heads, window, vocab, num_heads, blocks, half;
    float eps1, eps2;                 /* the two RMSNorms' epsilon */
    const void *norm1, *norm2;        /* [dim] */
    const void *wq, *wkv, *wo;        /* [dim, dim], [2 dim, dim], [dim, dim] (qkv's rows split, no bias) */
    const void *w1, *b1, *w2, *b2;    /* the prefix MLP: [2 dim, dim] + [2 dim], [dim, 2 dim] + [dim] */
    const void *wc, *bc;              /* every head's context columns: [num_heads dim, dim] + [num_heads dim] */
    const void *const *tables;        /* head i: [(i + 1) vocab, dim], slot j's rows from j * vocab */
    const void *const *sw, *const *sb; /* head i's residual block l at i * blocks + l: [dim, dim] + [dim] */
    const void *lm;                   /* [vocab, dim], no bias */
} hydra_weights;

static float value(const hydra_weights *W, const void *p, int64_t i) {
    return W->half ? h2f(((const half *)p)[i]) : ((const float *)p)[i];
}

static void product(const hydra_weights *W, const float *x, const void *w, const void *b, float *y, int64_t n,
                    int64_t K, int64_t O, int threads) {
    if (W->half)
        specgen_rows_h(x, w, b, y, n, K, O, threads);
    else
        specgen_rows(x, w, b, y, n, K, O, threads);
}

static void rms_norm(const hydra_weights *W, const float *x, const void *weight, float eps, float *y, int64_t n) {
    const int64_t d = W->dim;
    for (int64_t r = 0; r < n; ++r) {
        float s = 0.0f;
        for (int64_t k = 0; k < d; ++k) s += x[r * d + k] * x[r * d + k];
        const float scale = 1.0f / sqrtf(s / (float)d + eps);
        for (int64_t k = 0; k < d; ++k) y[r * d + k] = x[r * d + k] * scale * value(W, weight, k);
    }
}

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

/* x [rows, dim] <- x + SiLU(W x + b) for each of `blocks` residual blocks (sw, sb: [dim, dim] + [dim] each);
 * scratch: [rows, dim] */
static void residual_stack(const hydra_weights *W, const void *const *sw, const void *const *sb, int64_t blocks,
                           float *x, float *scratch, int64_t rows, int threads) {
    const int64_t d = W->dim;
    for (int64_t blk = 0; blk < blocks; ++blk) {
        product(W, x, sw[blk], sb[blk], scratch, rows, d, d, threads);
        for (int64_t i = 0; i < rows * d; ++i) x[i] += silu(scratch[i]);
    }
}

/* softmax(z / temperature) over the tokens not `blocked` (NULL: none) into p [V] */
static void distribution(const float *z, int64_t V, float temperature, const uint8_t *blocked, float *p) {
    float top = -INFINITY, total = 0.0f;
    for (int64_t v = 0; v < V; ++v) {
        p[v] = blocked && blocked[v] ? -INFINITY : z[v] / temperature;
        if (p[v] > top) top = p[v];
    }
    for (int64_t v = 0; v < V; ++v) {
        p[v] = p[v] == -INFINITY ? 0.0f : expf(p[v] - top);
        total += p[v];
    }
    for (int64_t v = 0; v < V; ++v) p[v] /= total;
}

/* keys and values [n, 2 dim] of window states x [n, dim]; returns 0, or 1 when out of memory */
int specgen_hydra_memory(const hydra_weights *W, const float *x, float *out, int64_t n, int threads) {
    float *xn = malloc(sizeof(float) * n * W->dim);
    if (!xn) return 1;
    rms_norm(W, x, W->norm1, W->eps1, xn, n);
    product(W, xn, W->wkv, NULL, out, n, W->dim, 2 * W->dim, threads);
    free(xn);
    return 0;
}

/* The tree, level by level: plan[l] = (parents P, ranks R, nodes N); ancestors holds each level's [P, l + 1]
 * slots (of the root, slot 0, and the drafted tokens on each parent's path), pick its nodes' [N] indices into
 * the [P, R] children, slots their [N] slots; the arrays run level after level. newest [n, dim] (the window's
 * last state), memory [n, window, 2 dim], valid [n, window]; root [n]; noise [n, all levels' parents, vocab] or
 * NULL (top guesses); blocked [vocab] or NULL. Out, in node order: tokens [n, size + 1] (the root first),
 * ok [n, size], q [n, size, vocab] (only with noise). Returns 0, or 1 when out of memory. */
int specgen_hydra_tree(const hydra_weights *W, int64_t n, const float *newest, const float *memory,
                        const uint8_t *valid, const int64_t *root, int64_t levels, const int64_t *plan,
                        const int64_t *ancestors, const int64_t *pick, const int64_t *slots, int64_t size,
                        const float *noise, float temperature, const uint8_t *blocked, int64_t *tokens, uint8_t *ok,
                        float *q, int threads) {
    const int64_t d = W->dim, V = W->vocab, w = W->window, H = W->attention_heads, dh = d / H;
    int64_t most = 1, ranks = 1, parents = 0;
    for (int64_t l = 0; l < levels; ++l) {
        if (plan[3 * l] > most) most = plan[3 * l];
        if (plan[3 * l + 1] > ranks) ranks = plan[3 * l + 1];
        parents += plan[3 * l];
    }
    float *a = malloc(sizeof(float) * n * most * d), *b = malloc(sizeof(float) * n * most * d);
    float *c = malloc(sizeof(float) * n * most * d), *m = malloc(sizeof(float) * n * 2 * d);
    float *ctx = malloc(sizeof(float) * n * d), *pre = malloc(sizeof(float) * n * W->num_heads * d);
    float *logits = malloc(sizeof(float) * n * most * V), *score = malloc(sizeof(float) * w);
    float *kids = malloc(sizeof(float) * ranks * V); /* one parent's children's distributions */
    int64_t *drawn = malloc(sizeof(int64_t) * ranks);
    if (!a || !b || !c || !m || !ctx || !pre || !logits || !score || !kids || !drawn) {
        free(a), free(b), free(c), free(m), free(ctx), free(pre), free(logits), free(score), free(kids), free(drawn);
        return 1;
    }
    const float scale = 1.0f / sqrtf((float)dh);

    /* the prefix attention on the newest state */
    rms_norm(W, newest, W->norm1, W->eps1, a, n);
    product(W, a, W->wq, NULL, b, n, d, d, threads); /* queries */
    for (int64_t r = 0; r < n; ++r) {
        const float *mem = memory + r * w * 2 * d;
        for (int64_t h = 0; h < H; ++h) {
            const float *qh = b + r * d + h * dh;
            float top = -INFINITY, total = 0.0f;
            for (int64_t k = 0; k < w; ++k) {
                score[k] = -INFINITY;
                if (!valid[r * w + k]) continue;
                float s = 0.0f;
                for (int64_t j = 0; j < dh; ++j) s += qh[j] * mem[k * 2 * d + h * dh + j];
                score[k] = s * scale;
                if (score[k] > top) top = score[k];
            }
            for (int64_t k = 0; k < w; ++k) {
                score[k] = valid[r * w + k] ? expf(score[k] - top) : 0.0f;
                total += score[k];
            }
            float *out = a + r * d + h * dh;
            for (int64_t j = 0; j < dh; ++j) out[j] = 0.0f;
            for (int64_t k = 0; k < w; ++k) {
                if (score[k] == 0.0f) continue;
                const float p = score[k] / total, *v = mem + k * 2 * d + d + h * dh;
                for (int64_t j = 0; j < dh; ++j) out[j] += p * v[j];
            }
        }
    }
    product(W, a, W->wo, NULL, b, n, d, d, threads);
    for (int64_t i = 0; i < n * d; ++i) c[i] = newest[i] + b[i]; /* h */
    rms_norm(W, c, W->norm2, W->eps2, a, n);
    product(W, a, W->w1, W->b1, m, n, d, 2 * d, threads);
    for (int64_t i = 0; i < n * 2 * d; ++i) m[i] = silu(m[i]);
    product(W, m, W->w2, W->b2, b, n, 2 * d, d, threads);
    for (int64_t i = 0; i < n * d; ++i) ctx[i] = c[i] + b[i];

    /* the heads, level by level */
    product(W, ctx, W->wc, W->bc, pre, n, d, W->num_heads * d, threads);
    for (int64_t r = 0; r < n; ++r) tokens[r * (size + 1)] = root[r];
    int64_t used = 0; /* parents of the levels before: their noise rows */
    for (int64_t l = 0; l < levels; ++l) {
        const int64_t P = plan[3 * l], R = plan[3 * l + 1], N = plan[3 * l + 2], rows = n * P;
        for (int64_t r = 0; r < n; ++r)
            for (int64_t p = 0; p < P; ++p) {
                float *x = a + (r * P + p) * d;
                for (int64_t k = 0; k < d; ++k) x[k] = pre[(r * W->num_heads + l) * d + k];
                for (int64_t j = 0; j <= l; ++j) { /* the path's tokens, root first */
                    const int64_t t = tokens[r * (size + 1) + ancestors[p * (l + 1) + j]];
                    const int64_t row = (j * V + t) * d;
                    for (int64_t k = 0; k < d; ++k) x[k] += value(W, W->tables[l], row + k);
                }
                for (int64_t k = 0; k < d; ++k) x[k] = silu(x[k]);
            }
        residual_stack(W, W->sw + l * W->blocks, W->sb + l * W->blocks, W->blocks, a, b, rows, threads);
        for (int64_t r = 0; r < n; ++r)
            for (int64_t i = 0; i < P * d; ++i) c[r * P * d + i] = ctx[r * d + i % d] + a[r * P * d + i];
        product(W, c, W->lm, NULL, logits, rows, d, V, threads);
        for (int64_t r = 0; r < n; ++r)
            for (int64_t p = 0; p < P; ++p) {
                const float *z = logits + (r * P + p) * V;
                if (noise == NULL) { /* the top R, best first */
                    for (int64_t i = 0; i < R; ++i) {
                        int64_t best = -1;
                        for (int64_t v = 0; v < V; ++v) {
                            int taken = 0;
                            for (int64_t j = 0; j < i; ++j) taken |= drawn[j] == v;
                            if (!taken && (best < 0 || z[v] > z[best])) best = v;
                        }
                        drawn[i] = best;
                    }
                } else { /* R distinct draws, and what each was drawn from */
                    float *p0 = kids;
                    distribution(z, V, temperature, blocked, p0);
                    const float *e = noise + (r * parents + used + p) * V;
                    for (int64_t i = 0; i < R; ++i) { /* the i-th largest key q(x) / E_x */
                        int64_t best = -1;
                        float key = 0.0f;
                        for (int64_t v = 0; v < V; ++v) {
                            int taken = 0;
                            for (int64_t j = 0; j < i; ++j) taken |= drawn[j] == v;
                            const float kv = p0[v] / e[v];
                            if (!taken && (best < 0 || kv > key)) key = kv, best = v;
                        }
                        drawn[i] = best;
                        if (i > 0) { /* q without the draws before, renormalized */
                            float *prev = kids + (i - 1) * V, *left = kids + i * V, sum = 0.0f;
                            for (int64_t v = 0; v < V; ++v) {
                                left[v] = v == drawn[i - 1] ? 0.0f : prev[v];
                                sum += left[v];
                            }
                            if (sum > 0.0f)
                                for (int64_t v = 0; v < V; ++v) left[v] /= sum;
                        }
                    }
                }
                for (int64_t k = 0; k < N; ++k) { /* the children the tree keeps */
                    const int64_t at = pick[k];
                    if (at / R != p) continue;
                    const int64_t i = at % R, s = slots[k];
                    tokens[r * (size + 1) + s] = drawn[i];
                    if (noise == NULL) {
                        ok[r * size + s - 1] = 1;
                    } else {
                        const float *qi = kids + i * V;
                        memcpy(q + (r * size + s - 1) * V, qi, sizeof(float) * V);
                        ok[r * size + s - 1] = qi[drawn[i]] > 0.0f;
                    }
                }
            }
        ancestors += P * (l + 1), pick += N, slots += N, used += P;
    }
    free(a), free(b), free(c), free(m), free(ctx), free(pre), free(logits), free(score), free(kids), free(drawn);
    return 0;
}

/* Distributions from a residual stack of n states x [n, dim]: x + SiLU(W x + b) for each of its `blocks` (sw, sb:
 * [dim, dim] + [dim] each, in the heads' precision), the LM head, then softmax(logits / temperature) over the
 * tokens not `blocked` (NULL: none) into out [n, vocab]: `vertical_logits` and `Sampling.probs` for Hawk's drawn
 * vertical guesses. Returns 0, or 1 when out of memory. */
int specgen_stack_probs(const hydra_weights *W, const void *const *sw, const void *const *sb, int64_t blocks,
                        const float *x, int64_t n, float temperature, const uint8_t *blocked, float *out,
                        int threads) {
    const int64_t d = W->dim, V = W->vocab;
    float *a = malloc(sizeof(float) * n * d), *b = malloc(sizeof(float) * n * d), *z = malloc(sizeof(float) * n * V);
    if (!a || !b || !z) {
        free(a), free(b), free(z);
        return 1;
    }
    memcpy(a, x, sizeof(float) * n * d);
    residual_stack(W, sw, sb, blocks, a, b, n, threads);
    product(W, a, W->lm, NULL, z, n, d, V, threads);
    for (int64_t r = 0; r < n; ++r) distribution(z + r * V, V, temperature, blocked, out + r * V);
    free(a), free(b), free(z);
    return 0;
}
