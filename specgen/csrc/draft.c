/* One Hydra++ draft round for a chain of guesses, and the prefix attention's keys and values, in one call each:
 * the work of `hydra_round` and `PrefixAttention.memory` (specgen/drafters/heads.py, specgen/heads/hydra.py) for
 * the trees a CPU decode uses, without the ~150 tensor operations (and their dispatch) a round issues in PyTorch.
 * Activations are fp32; weights are fp32 or fp16 (`half`), read by the row products of rows.c.
 *
 * A round, for each of the batch's n rows (all rows at once in every product):
 *   context = prefix attention of the newest window state over the window's keys and values (pre-norm, one
 *             layer: RMSNorm, 4-head attention over the valid slots, output projection, residual, RMSNorm, MLP
 *             with SiLU, residual);
 *   pre     = the heads' input layers on the context (one product for every head, bias included);
 *   level l = head l on [context; the path's tokens]: pre[l] + the token tables' rows for the root and the l
 *             guesses before it, SiLU, the head's residual blocks (x + SiLU(W x + b)), then the LM head on
 *             context + x; its guess is the argmax of the logits (no `noise`), or the draw q(x) / E_x largest
 *             from q = softmax(logits / temperature) over the tokens not `blocked`, with Exp(1) noise E (the
 *             race of `draw_distinct`); q is returned for the acceptance test. */
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
    return W->half ? (float)((const half *)p)[i] : ((const float *)p)[i];
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

/* keys and values [n, 2 dim] of window states x [n, dim] */
void specgen_hydra_memory(const hydra_weights *W, const float *x, float *out, int64_t n, int threads) {
    float *xn = malloc(sizeof(float) * n * W->dim);
    rms_norm(W, x, W->norm1, W->eps1, xn, n);
    product(W, xn, W->wkv, NULL, out, n, W->dim, 2 * W->dim, threads);
    free(xn);
}

/* newest [n, dim] (the window's last state), memory [n, window, 2 dim], valid [n, window]; root [n]; noise
 * [n, levels, vocab] or NULL (argmax guesses); blocked [vocab] or NULL. Out: tokens [n, levels], ok [n, levels],
 * q [n, levels, vocab] (only with noise). */
void specgen_hydra_chain(const hydra_weights *W, int64_t n, const float *newest, const float *memory,
                         const uint8_t *valid, const int64_t *root, int64_t levels, const float *noise,
                         float temperature, const uint8_t *blocked, int64_t *tokens, uint8_t *ok, float *q,
                         int threads) {
    const int64_t d = W->dim, V = W->vocab, w = W->window, H = W->attention_heads, dh = d / H;
    float *a = malloc(sizeof(float) * n * d), *b = malloc(sizeof(float) * n * d), *c = malloc(sizeof(float) * n * d);
    float *m = malloc(sizeof(float) * n * 2 * d), *ctx = malloc(sizeof(float) * n * d);
    float *pre = malloc(sizeof(float) * n * W->num_heads * d), *logits = malloc(sizeof(float) * n * V);
    float *score = malloc(sizeof(float) * w);
    const float scale = 1.0f / sqrtf((float)dh);

    /* the prefix attention on the newest state */
    rms_norm(W, newest, W->norm1, W->eps1, a, n);
    product(W, a, W->wq, NULL, b, n, d, d, threads); /* queries */
    for (int64_t r = 0; r < n; ++r) {
        const float *mem = memory + r * w * 2 * d;
        for (int64_t h = 0; h < H; ++h) {
            const float *qh = b + r * d + h * dh;
            float top = -INFINITY;
            for (int64_t k = 0; k < w; ++k) {
                score[k] = -INFINITY;
                if (!valid[r * w + k]) continue;
                float s = 0.0f;
                for (int64_t j = 0; j < dh; ++j) s += qh[j] * mem[k * 2 * d + h * dh + j];
                score[k] = s * scale;
                if (score[k] > top) top = score[k];
            }
            float total = 0.0f;
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

    /* the heads, level by level along the chain */
    product(W, ctx, W->wc, W->bc, pre, n, d, W->num_heads * d, threads);
    for (int64_t l = 0; l < levels; ++l) {
        for (int64_t r = 0; r < n; ++r) {
            float *x = a + r * d;
            for (int64_t k = 0; k < d; ++k) x[k] = pre[(r * W->num_heads + l) * d + k];
            for (int64_t j = 0; j <= l; ++j) { /* the root, then the guesses before this level */
                const int64_t t = j == 0 ? root[r] : tokens[r * levels + j - 1];
                const int64_t row = (j * V + t) * d;
                for (int64_t k = 0; k < d; ++k) x[k] += value(W, W->tables[l], row + k);
            }
            for (int64_t k = 0; k < d; ++k) x[k] = silu(x[k]);
        }
        for (int64_t blk = 0; blk < W->blocks; ++blk) {
            product(W, a, W->sw[l * W->blocks + blk], W->sb[l * W->blocks + blk], b, n, d, d, threads);
            for (int64_t i = 0; i < n * d; ++i) a[i] += silu(b[i]);
        }
        for (int64_t i = 0; i < n * d; ++i) c[i] = ctx[i] + a[i];
        product(W, c, W->lm, NULL, logits, n, d, V, threads);
        for (int64_t r = 0; r < n; ++r) {
            const float *z = logits + r * V;
            int64_t best = 0;
            if (noise == NULL) { /* the top guess */
                for (int64_t v = 1; v < V; ++v)
                    if (z[v] > z[best]) best = v;
                tokens[r * levels + l] = best;
                ok[r * levels + l] = 1;
                continue;
            }
            float *p = q + (r * levels + l) * V, top = -INFINITY, total = 0.0f;
            for (int64_t v = 0; v < V; ++v) {
                p[v] = blocked && blocked[v] ? -INFINITY : z[v] / temperature;
                if (p[v] > top) top = p[v];
            }
            for (int64_t v = 0; v < V; ++v) {
                p[v] = p[v] == -INFINITY ? 0.0f : expf(p[v] - top);
                total += p[v];
            }
            const float *e = noise + (r * levels + l) * V;
            float key = -1.0f;
            for (int64_t v = 0; v < V; ++v) {
                p[v] /= total;
                const float kv = p[v] / e[v];
                if (kv > key) key = kv, best = v;
            }
            tokens[r * levels + l] = best;
            ok[r * levels + l] = p[best] > 0.0f;
        }
    }
    free(a), free(b), free(c), free(m), free(ctx), free(pre), free(logits), free(score);
}
