/* bnnc C runtime: the kernels every generated model shares (C99, no malloc, <stdint.h>/<string.h>).
 *
 * Binary tensors are bit-packed: bit 1 is +1, bit 0 is -1, 64 to a word, per position (pixel) the
 * channels of each group in ceil(channels_per_group / 64) words, unused bits 0. A binary layer's sum
 * over one patch is K - 2 * popcount(x XOR w) (XNOR-popcount); the next layer's input bit is the
 * integer threshold compare s >= T (BatchNorm, scale and sign folded at export, the FINN recipe).
 *
 * Popcount: portable SWAR by default; __builtin_popcountll with GCC/Clang; AVX2 (vpshufb), AVX-512
 * VPOPCNTDQ and NEON (vcnt) kernels where the compiler targets them. Every path computes the same
 * integers. -DBNNC_PORTABLE forces the plain C one.
 */
#ifndef BNNC_RUNTIME_H
#define BNNC_RUNTIME_H

#include <stdint.h>
#include <string.h>

#if !defined(BNNC_PORTABLE) && defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__)
#define BNNC_AVX512 1
#include <immintrin.h>
#elif !defined(BNNC_PORTABLE) && defined(__AVX2__)
#define BNNC_AVX2 1
#include <immintrin.h>
#elif !defined(BNNC_PORTABLE) && (defined(__ARM_NEON) || defined(__ARM_NEON__))
#define BNNC_NEON 1
#include <arm_neon.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BNNC_FN static __attribute__((unused))
#else
#define BNNC_FN static
#endif
/* Layers inlined at each call: the compiler then knows every size and unrolls and vectorizes for it. Off
   when optimizing for size (-Os), or with -DBNNC_SMALL: one copy of the kernels, smaller code. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__OPTIMIZE_SIZE__) && !defined(BNNC_SMALL)
#define BNNC_LAYER static inline __attribute__((always_inline, unused))
#else
#define BNNC_LAYER BNNC_FN
#endif

#if !defined(BNNC_PORTABLE) && (defined(__GNUC__) || defined(__clang__))
#define BNNC_POPCOUNT(v) ((int32_t)__builtin_popcountll(v))
#else
BNNC_FN int32_t bnnc_popcount_swar(uint64_t v) {
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (int32_t)((v * 0x0101010101010101ULL) >> 56);
}
#define BNNC_POPCOUNT(v) bnnc_popcount_swar(v)
#endif

/* Input kinds of a layer. */
enum { BNNC_IN_BITS = 0, BNNC_IN_REAL = 1, BNNC_IN_INT8 = 2, BNNC_IN_FP32 = 3 };
/* Output modes: float s * scale + shift (NCHW), bits s >= T (packed), raw sums (int32 or float, NCHW). */
enum { BNNC_OUT_AFFINE = 0, BNNC_OUT_BITS = 1, BNNC_OUT_SUMS = 2 };

typedef struct {
    int positions, cg, wpg, wpp; /* words at (c, p): p * wpp + (c / cg) * wpg + (c % cg) / 64 */
} bnnc_bits_layout;

typedef struct {
    int in_kind, out_mode, linear;
    int rows;                      /* linear: rows of the input (leading dimensions), each its own vector */
    int cin, cout, groups;         /* linear: cin = features (K) */
    int ih, iw, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
    int in_wpg;                    /* bits input: words of one group at one position (linear: of the vector) */
    int k_valid;                   /* bits input, linear: the real fan-in (the rest of the words is padding) */
    const uint64_t *wbits;         /* bits: [g][o/8][word][8]; real: [o][ceil(K/64)] */
    const int8_t *wq;              /* int8: [o][K] */
    const float *wf;               /* fp32: [g][K][o of the group] */
    const float *scale, *shift;    /* affine output, per channel (NULL: 1 and 0) */
    const int32_t *ti;             /* bits output from integer sums: per channel */
    const float *tf;               /* bits output from float sums: per channel */
    bnnc_bits_layout out;          /* bits output */
    float q_scale; int32_t q_zero; /* int8 input quantization */
} bnnc_layer;

/* ---- XNOR-popcount: acc[o] = sum_j popcount((x[j] ^ w[o/8][j][o%8]) & m[j]) for o < o8 (a multiple of 8) ----
   m (NULL: all ones) masks out the words of taps in a convolution's zero padding, which contribute 0. */
#define BNNC_MASKED(v, j) (m ? (v) & m[j] : (v))
BNNC_LAYER void bnnc_xnor_gemv(const uint64_t *x, const uint64_t *m, int nw, const uint64_t *w, int o8, int32_t *acc) {
    int ob, j;
    for (ob = 0; ob < o8 / 8; ++ob) {
        const uint64_t *wb = w + (long)ob * nw * 8;
#if defined(BNNC_AVX512)
        __m512i a = _mm512_setzero_si512();
        if (m)
            for (j = 0; j < nw; ++j) /* (x ^ w) & m in one ternary-logic op */
                a = _mm512_add_epi64(a, _mm512_popcnt_epi64(_mm512_ternarylogic_epi64(
                        _mm512_set1_epi64((long long)x[j]), _mm512_loadu_si512((const void *)(wb + j * 8)),
                        _mm512_set1_epi64((long long)m[j]), 0x28)));
        else
            for (j = 0; j < nw; ++j)
                a = _mm512_add_epi64(a, _mm512_popcnt_epi64(_mm512_xor_si512(
                        _mm512_set1_epi64((long long)x[j]), _mm512_loadu_si512((const void *)(wb + j * 8)))));
        _mm256_storeu_si256((__m256i *)(acc + ob * 8), _mm512_cvtepi64_epi32(a));
#elif defined(BNNC_AVX2)
        const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                             0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
        const __m256i low = _mm256_set1_epi8(0x0f);
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        for (j = 0; j < nw; ++j) {
            __m256i xv = _mm256_set1_epi64x((long long)x[j]);
            __m256i mv = _mm256_set1_epi64x(m ? (long long)m[j] : -1LL);
            __m256i v0 = _mm256_and_si256(mv, _mm256_xor_si256(xv, _mm256_loadu_si256((const __m256i *)(wb + j * 8))));
            __m256i v1 = _mm256_and_si256(mv, _mm256_xor_si256(xv, _mm256_loadu_si256((const __m256i *)(wb + j * 8 + 4))));
            __m256i c0 = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v0, low)),
                                         _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi64(v0, 4), low)));
            __m256i c1 = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v1, low)),
                                         _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi64(v1, 4), low)));
            a0 = _mm256_add_epi64(a0, _mm256_sad_epu8(c0, _mm256_setzero_si256()));
            a1 = _mm256_add_epi64(a1, _mm256_sad_epu8(c1, _mm256_setzero_si256()));
        }
        {
            int64_t t[8];
            int l;
            _mm256_storeu_si256((__m256i *)t, a0);
            _mm256_storeu_si256((__m256i *)(t + 4), a1);
            for (l = 0; l < 8; ++l) acc[ob * 8 + l] = (int32_t)t[l];
        }
#elif defined(BNNC_NEON)
        {
            uint64x2_t a[4];
            int l;
            for (l = 0; l < 4; ++l) a[l] = vdupq_n_u64(0);
            for (j = 0; j < nw; ++j) {
                uint64x2_t xv = vdupq_n_u64(x[j]), mv = vdupq_n_u64(m ? m[j] : ~(uint64_t)0);
                for (l = 0; l < 4; ++l) {
                    uint8x16_t c = vcntq_u8(vreinterpretq_u8_u64(vandq_u64(mv, veorq_u64(xv, vld1q_u64(wb + j * 8 + l * 2)))));
                    a[l] = vaddq_u64(a[l], vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(c))));
                }
            }
            for (l = 0; l < 4; ++l) {
                acc[ob * 8 + 2 * l] = (int32_t)vgetq_lane_u64(a[l], 0);
                acc[ob * 8 + 2 * l + 1] = (int32_t)vgetq_lane_u64(a[l], 1);
            }
        }
#else
        {
            int32_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int l;
            for (j = 0; j < nw; ++j)
                for (l = 0; l < 8; ++l) a[l] += BNNC_POPCOUNT(BNNC_MASKED(x[j] ^ wb[j * 8 + l], j));
            for (l = 0; l < 8; ++l) acc[ob * 8 + l] = a[l];
        }
#endif
    }
}

/* ---- a real-valued input with +-1 weights (the paper's first layer): sum_k (bit ? x[k] : -x[k]) ---- */
BNNC_FN float bnnc_signed_sum(const float *x, int k, const uint64_t *w) {
    int i = 0;
    float s = 0.0f;
#if defined(BNNC_AVX512)
    /* four accumulators, one per 16 inputs of a weight word: the adds don't wait on each other */
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    const __m512 zero = _mm512_setzero_ps();
    for (; i + 64 <= k; i += 64) {
        const uint64_t b = w[i >> 6];
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
        a0 = _mm512_add_ps(a0, _mm512_mask_blend_ps((__mmask16)b, _mm512_sub_ps(zero, v0), v0));
        a1 = _mm512_add_ps(a1, _mm512_mask_blend_ps((__mmask16)(b >> 16), _mm512_sub_ps(zero, v1), v1));
        a2 = _mm512_add_ps(a2, _mm512_mask_blend_ps((__mmask16)(b >> 32), _mm512_sub_ps(zero, v2), v2));
        a3 = _mm512_add_ps(a3, _mm512_mask_blend_ps((__mmask16)(b >> 48), _mm512_sub_ps(zero, v3), v3));
    }
    for (; i + 16 <= k; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        a0 = _mm512_add_ps(a0, _mm512_mask_blend_ps((__mmask16)(w[i >> 6] >> (i & 63)), _mm512_sub_ps(zero, v), v));
    }
    s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(BNNC_AVX2)
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; i + 16 <= k; i += 16) {
        const uint64_t b = w[i >> 6] >> (i & 63);
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        __m256i m0 = _mm256_set1_epi32((int)(b & 0xff)), m1 = _mm256_set1_epi32((int)((b >> 8) & 0xff));
        __m256 on0 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(m0, sel), sel));
        __m256 on1 = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(m1, sel), sel));
        a0 = _mm256_add_ps(a0, _mm256_blendv_ps(_mm256_sub_ps(_mm256_setzero_ps(), v0), v0, on0));
        a1 = _mm256_add_ps(a1, _mm256_blendv_ps(_mm256_sub_ps(_mm256_setzero_ps(), v1), v1, on1));
    }
    {
        float t[8];
        int l;
        _mm256_storeu_ps(t, _mm256_add_ps(a0, a1));
        for (l = 0; l < 8; ++l) s += t[l];
    }
#endif
    for (; i < k; ++i) s += ((w[i >> 6] >> (i & 63)) & 1u) ? x[i] : -x[i];
    return s;
}

BNNC_FN int32_t bnnc_int8_dot(const int16_t *x, const int8_t *w, int k) {
    int32_t s = 0;
    int i;
    for (i = 0; i < k; ++i) s += (int32_t)x[i] * (int32_t)w[i];
    return s;
}

/* out[o] = sum over j in order of x[j] * w[j][o], for n outputs (w: k rows of `stride` values): each sum in
   the order of j, as a plain dot product, yet the loop over o vectorizes */
BNNC_LAYER void bnnc_dot_rows(const float *x, int k, const float *w, int stride, int n, float *out) {
    int j, o;
    for (o = 0; o < n; ++o) out[o] = 0.0f;
    for (j = 0; j < k; ++j) {
        const float v = x[j];
        const float *row = w + (long)j * stride;
        for (o = 0; o < n; ++o) out[o] += v * row[o];
    }
}

/* round half to even, as torch.round and ONNX QuantizeLinear (|v| < 2^22; callers clamp first) */
BNNC_FN float bnnc_round_even(float v) {
    volatile float big = 12582912.0f; /* 1.5 * 2^23: adding it leaves no fraction bits */
    float t = v + big;
    return t - big;
}

BNNC_FN void bnnc_set_bit(uint64_t *out, const bnnc_bits_layout *l, int c, int p) {
    out[(long)p * l->wpp + (c / l->cg) * l->wpg + (c % l->cg) / 64] |= (uint64_t)1 << ((c % l->cg) % 64);
}

/* one output position's sums -> the layer's output (acc: int32 for bits/int8, float for real/fp32) */
BNNC_LAYER void bnnc_epilogue(const bnnc_layer *L, const int32_t *si, const float *sf, int o0, int n, int p,
                          int positions, void *out) {
    int o;
    if (L->out_mode == BNNC_OUT_BITS) { /* channel o of the consumer's layout: group gi, bit ci */
        const int cg = L->out.cg, wpg = L->out.wpg;
        int gi = o0 / cg, ci = o0 % cg;
        uint64_t *base = (uint64_t *)out + (long)p * L->out.wpp;
        uint64_t word = 0;
#if defined(BNNC_AVX512)
        if (!sf && cg % 16 == 0 && o0 % 16 == 0) { /* 16 compares at a time, 16 bits of one word */
            for (o = 0; o < n; o += 16) {
                const __mmask16 live = n - o >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - o)) - 1u);
                const __mmask16 on = _mm512_mask_cmpge_epi32_mask(live, _mm512_maskz_loadu_epi32(live, si + o),
                                                                   _mm512_maskz_loadu_epi32(live, L->ti + o0 + o));
                const int c = o0 + o;
                base[(c / cg) * wpg + ((c % cg) >> 6)] |= (uint64_t)on << ((c % cg) & 63);
            }
            return;
        }
#endif
        for (o = o0; o < o0 + n; ++o) {
            const int on = sf ? sf[o - o0] >= L->tf[o] : si[o - o0] >= L->ti[o];
            word |= (uint64_t)on << (ci & 63);
            if ((ci & 63) == 63 || ci == cg - 1 || o == o0 + n - 1) { /* the word is complete: one store */
                base[gi * wpg + (ci >> 6)] |= word;
                word = 0;
            }
            if (++ci == cg) { ci = 0; ++gi; }
        }
        return;
    }
    for (o = o0; o < o0 + n; ++o) {
        float v;
        if (L->out_mode == BNNC_OUT_SUMS) {
            if (sf) ((float *)out)[(long)o * positions + p] = sf[o - o0];
            else ((int32_t *)out)[(long)o * positions + p] = si[o - o0];
            continue;
        }
        v = sf ? sf[o - o0] : (float)si[o - o0];
        if (L->scale) v = v * L->scale[o];
        if (L->shift) v = v + L->shift[o];
        ((float *)out)[(long)o * positions + p] = v;
    }
}

/* The input quantized as an int8 layer quantizes it: q(x) - z, q = clamp(round(x / s) + z, 0, 255). */
BNNC_FN int16_t bnnc_quantize(const bnnc_layer *L, float x) {
    float r = x / L->q_scale;
    float q;
    if (r > 1024.0f) r = 1024.0f;
    if (r < -1024.0f) r = -1024.0f;
    q = bnnc_round_even(r) + (float)L->q_zero;
    if (q < 0.0f) q = 0.0f;
    if (q > 255.0f) q = 255.0f;
    return (int16_t)((int32_t)q - L->q_zero);
}

/* Scratch of bnnc_layer_run, one typed buffer each (no type punning): sums of one position, one patch. */
typedef struct {
    int32_t *si;
    float *sf;
    uint64_t *pw;
    float *pf;
    uint64_t *pm; /* bits: the mask of the patch's words, 0 for taps in the zero padding */
    int16_t *ph;
} bnnc_scratch;

/* One position's outputs o0 .. o0 + n - 1 of group g (n <= BNNC_CHUNK; o0 - g * og a multiple of 8), from the
   position's patch (bits: S->pw, masked by S->pm when `masked`; real or fp32: S->pf or `xf`; int8: S->ph). */
BNNC_LAYER void bnnc_chunk(const bnnc_layer *L, int g, int o0, int n, int p, int positions, int valid, int masked,
                           const uint64_t *xw, const float *xf, void *out, const bnnc_scratch *S) {
    const int cg = L->cin / L->groups, og = L->cout / L->groups, taps = L->kh * L->kw, k = cg * taps;
    const int local = o0 - g * og; /* the chunk's first output within its group */
    int32_t *si = S->si;
    float *sf = S->sf;
    int o;
    if (L->in_kind == BNNC_IN_BITS) {
        const int nw = L->linear ? L->in_wpg : taps * L->in_wpg;
        const int o8 = (og + 7) / 8 * 8;
        bnnc_xnor_gemv(xw, masked ? S->pm : 0, nw, L->wbits + ((long)g * (o8 / 8) + local / 8) * nw * 8,
                       (n + 7) / 8 * 8, si);
        for (o = 0; o < n; ++o) si[o] = (L->linear ? L->k_valid : valid * cg) - 2 * si[o];
        bnnc_epilogue(L, si, 0, o0, n, p, positions, out);
    } else if (L->in_kind == BNNC_IN_INT8) {
        for (o = 0; o < n; ++o) si[o] = bnnc_int8_dot(S->ph, L->wq + (long)(o0 + o) * k, k);
        bnnc_epilogue(L, si, 0, o0, n, p, positions, out);
    } else {
        if (L->in_kind == BNNC_IN_REAL)
            for (o = 0; o < n; ++o) sf[o] = bnnc_signed_sum(xf, k, L->wbits + (long)(o0 + o) * ((k + 63) / 64));
        else
            bnnc_dot_rows(xf, k, L->wf + (long)g * og * k + local, og, n, sf);
        bnnc_epilogue(L, 0, sf, o0, n, p, positions, out);
    }
}

/* A Linear or Conv1d/Conv2d layer of any kind, BNNC_CHUNK outputs at a time (the scratch holds one chunk). */
#define BNNC_CHUNK 64
BNNC_LAYER void bnnc_layer_run(const bnnc_layer *L, const void *in, void *out, const bnnc_scratch *S) {
    const int cg = L->cin / L->groups, og = L->cout / L->groups;
    const int taps = L->kh * L->kw, k = cg * taps;
    const int positions = L->oh * L->ow, in_positions = L->ih * L->iw;
    int g, y, x, o, row;
    if (L->out_mode == BNNC_OUT_BITS) memset(out, 0, sizeof(uint64_t) * (size_t)L->out.positions * L->out.wpp);
    if (L->linear) {
        for (row = 0; row < L->rows; ++row) {
            const float *xf = L->in_kind == BNNC_IN_BITS ? 0 : (const float *)in + (long)row * k;
            void *dst = L->out_mode == BNNC_OUT_AFFINE ? (void *)((float *)out + (long)row * L->cout) : out;
            if (L->in_kind == BNNC_IN_INT8)
                for (x = 0; x < k; ++x) S->ph[x] = bnnc_quantize(L, xf[x]);
            for (o = 0; o < L->cout; o += BNNC_CHUNK)
                bnnc_chunk(L, 0, o, L->cout - o < BNNC_CHUNK ? L->cout - o : BNNC_CHUNK, 0, 1, 0, 0,
                           (const uint64_t *)in, xf, dst, S);
        }
        return;
    }
    for (g = 0; g < L->groups; ++g)
        for (y = 0; y < L->oh; ++y)
            for (x = 0; x < L->ow; ++x) {
                const int p = y * L->ow + x;
                int ky, kx, c, j, valid = 0, missing = 0;
                for (ky = 0; ky < L->kh; ++ky)
                    for (kx = 0; kx < L->kw; ++kx) {
                        const int iy = y * L->sh - L->ph + ky * L->dh, ix = x * L->sw - L->pw + kx * L->dw;
                        const int inside = iy >= 0 && iy < L->ih && ix >= 0 && ix < L->iw;
                        const int t = ky * L->kw + kx;
                        if (L->in_kind == BNNC_IN_BITS) {
                            uint64_t *dst = S->pw + (long)t * L->in_wpg, *mask = S->pm + (long)t * L->in_wpg;
                            const uint64_t *src = (const uint64_t *)in
                                + ((long)(iy * L->iw + ix) * L->groups + g) * L->in_wpg;
                            for (j = 0; j < L->in_wpg; ++j) {
                                dst[j] = inside ? src[j] : 0;
                                mask[j] = inside ? ~(uint64_t)0 : 0;
                            }
                        } else {
                            for (c = 0; c < cg; ++c) {
                                const long at = (long)(g * cg + c) * in_positions + (long)iy * L->iw + ix;
                                const int e = c * taps + t;
                                if (L->in_kind == BNNC_IN_INT8)
                                    S->ph[e] = inside ? bnnc_quantize(L, ((const float *)in)[at]) : 0;
                                else
                                    S->pf[e] = inside ? ((const float *)in)[at] : 0.0f;
                            }
                        }
                        valid += inside;
                        missing |= !inside;
                    }
                for (o = 0; o < og; o += BNNC_CHUNK)
                    bnnc_chunk(L, g, g * og + o, og - o < BNNC_CHUNK ? og - o : BNNC_CHUNK, p, positions, valid,
                               missing, S->pw, S->pf, out, S);
            }
}

/* ---- binarizing a real-valued tensor (NCHW, or one vector) into a layout: bit = x - beta >= 0 ---- */
BNNC_FN void bnnc_binarize(const float *x, int channels, int positions, const float *beta, int beta_per_position,
                          const bnnc_bits_layout *l, uint64_t *out) {
    int c, p;
    memset(out, 0, sizeof(uint64_t) * (size_t)l->positions * l->wpp);
    for (c = 0; c < channels; ++c) { /* channel by channel: the loop over positions reads x in order */
        const int word = (c / l->cg) * l->wpg + (c % l->cg) / 64, shift = (c % l->cg) & 63;
        const float *xc = x + (long)c * positions;
        uint64_t *dst = out + word;
        if (beta_per_position)
            for (p = 0; p < positions; ++p)
                dst[(long)p * l->wpp] |= (uint64_t)(xc[p] - beta[(long)c * positions + p] >= 0.0f) << shift;
        else {
            const float b = beta ? beta[c] : 0.0f;
            for (p = 0; p < positions; ++p) dst[(long)p * l->wpp] |= (uint64_t)(xc[p] - b >= 0.0f) << shift;
        }
    }
}

/* ---- per-position thresholds (a conv flattened into a Linear): sums (C, P) -> bits ---- */
BNNC_FN void bnnc_threshold_positions(const int32_t *si, const float *sf, const int32_t *ti, const float *tf,
                                     int channels, int positions, const bnnc_bits_layout *l, uint64_t *out) {
    int c, p;
    memset(out, 0, sizeof(uint64_t) * (size_t)l->positions * l->wpp);
    for (c = 0; c < channels; ++c)
        for (p = 0; p < positions; ++p) {
            const long i = (long)c * positions + p;
            if (sf ? sf[i] >= tf[i] : si[i] >= ti[i]) bnnc_set_bit(out, l, c, p);
        }
}

/* ---- pooling geometry: 2-d (a 1-d pool has h = 1) ---- */
typedef struct {
    int ih, iw, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
} bnnc_pool;

/* max pooling of packed bits: OR of the window (the max of bits); padding is never the max */
BNNC_FN void bnnc_pool_bits(const uint64_t *in, const bnnc_pool *P, int wpp, uint64_t *out) {
    int y, x, ky, kx, j;
    for (y = 0; y < P->oh; ++y)
        for (x = 0; x < P->ow; ++x) {
            uint64_t *dst = out + (long)(y * P->ow + x) * wpp;
            memset(dst, 0, sizeof(uint64_t) * (size_t)wpp);
            for (ky = 0; ky < P->kh; ++ky)
                for (kx = 0; kx < P->kw; ++kx) {
                    const int iy = y * P->sh - P->ph + ky * P->dh, ix = x * P->sw - P->pw + kx * P->dw;
                    if (iy < 0 || iy >= P->ih || ix < 0 || ix >= P->iw) continue;
                    for (j = 0; j < wpp; ++j) dst[j] |= in[(long)(iy * P->iw + ix) * wpp + j];
                }
        }
}

/* max pooling of float or int32 planes (NCHW) */
BNNC_FN void bnnc_max_pool(const void *in, int is_int, int channels, const bnnc_pool *P, void *out) {
    int c, y, x, ky, kx;
    for (c = 0; c < channels; ++c)
        for (y = 0; y < P->oh; ++y)
            for (x = 0; x < P->ow; ++x) {
                int first = 1;
                float mf = 0.0f;
                int32_t mi = 0;
                for (ky = 0; ky < P->kh; ++ky)
                    for (kx = 0; kx < P->kw; ++kx) {
                        const int iy = y * P->sh - P->ph + ky * P->dh, ix = x * P->sw - P->pw + kx * P->dw;
                        long at;
                        if (iy < 0 || iy >= P->ih || ix < 0 || ix >= P->iw) continue;
                        at = ((long)c * P->ih + iy) * P->iw + ix;
                        if (is_int) {
                            const int32_t v = ((const int32_t *)in)[at];
                            if (first || v > mi) mi = v;
                        } else {
                            const float v = ((const float *)in)[at];
                            if (first || v > mf || v != v) mf = v;
                        }
                        first = 0;
                    }
                if (is_int) ((int32_t *)out)[((long)c * P->oh + y) * P->ow + x] = mi;
                else ((float *)out)[((long)c * P->oh + y) * P->ow + x] = mf;
            }
}

/* average pooling (torch's AvgPool: count_include_pad counts the padding, ceil_mode windows are clipped) */
BNNC_FN void bnnc_avg_pool(const float *in, int channels, const bnnc_pool *P, int count_include_pad, float *out) {
    int c, y, x, ky, kx;
    for (c = 0; c < channels; ++c)
        for (y = 0; y < P->oh; ++y)
            for (x = 0; x < P->ow; ++x) {
                const int y0 = y * P->sh - P->ph, x0 = x * P->sw - P->pw;
                int y1 = y0 + P->kh, x1 = x0 + P->kw, n;
                float s = 0.0f;
                if (y1 > P->ih + P->ph) y1 = P->ih + P->ph;
                if (x1 > P->iw + P->pw) x1 = P->iw + P->pw;
                n = (y1 - y0) * (x1 - x0);
                if (!count_include_pad) {
                    const int a = y0 < 0 ? 0 : y0, b = x0 < 0 ? 0 : x0;
                    const int e = y1 > P->ih ? P->ih : y1, f = x1 > P->iw ? P->iw : x1;
                    n = (e - a) * (f - b);
                }
                for (ky = y0; ky < y1; ++ky)
                    for (kx = x0; kx < x1; ++kx)
                        if (ky >= 0 && ky < P->ih && kx >= 0 && kx < P->iw) s += in[((long)c * P->ih + ky) * P->iw + kx];
                out[((long)c * P->oh + y) * P->ow + x] = s / (float)n;
            }
}

/* the input index torch's reflect (mode 0), replicate (1) or circular (2) padding reads at index i of n */
BNNC_FN long bnnc_pad_index(long i, long n, int mode) {
    if (mode == 0) return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i;
    if (mode == 1) return i < 0 ? 0 : i >= n ? n - 1 : i;
    return ((i % n) + n) % n;
}

/* padding (planes NCHW; a 1-d one has ih = 1, top = 0): reflect (0), replicate (1), circular (2), or the constant
   value (3) outside the input */
BNNC_FN void bnnc_pad(const float *in, int channels, int ih, int iw, int top, int left, int oh, int ow, int mode,
                      float value, float *out) {
    int c, y, x;
    for (c = 0; c < channels; ++c)
        for (y = 0; y < oh; ++y) {
            float *dst = out + ((long)c * oh + y) * ow;
            if (mode == 3) {
                const int iy = y - top;
                for (x = 0; x < ow; ++x) {
                    const int ix = x - left;
                    dst[x] = iy >= 0 && iy < ih && ix >= 0 && ix < iw ? in[((long)c * ih + iy) * iw + ix] : value;
                }
                continue;
            }
            {
                const float *row = in + ((long)c * ih + bnnc_pad_index(y - top, ih, mode)) * iw;
                for (x = 0; x < ow; ++x) dst[x] = row[bnnc_pad_index(x - left, iw, mode)];
            }
        }
}

#ifdef BNNC_MATH /* kernels of <math.h> functions: compiled where the model uses one */
BNNC_FN float bnnc_sigmoid(float v) { return (float)(1.0 / (1.0 + exp(-(double)v))); }

/* one layer and direction of an LSTM (kind 0; torch's gates i, f, g, o) or a GRU (kind 1; r, z, n) over a sequence
   x (steps x features), from a zero state h (and c) that it leaves final; h_t goes to out + t * out_stride.
   gates: scratch of 4 * hidden (LSTM) or 6 * hidden (GRU) floats */
BNNC_FN void bnnc_recurrent(int kind, const float *x, int steps, int features, int hidden, const float *w_ih,
                            const float *w_hh, const float *b_ih, const float *b_hh, int reverse, float *gates,
                            float *h, float *c, float *out, int out_stride) {
    const int rows = (kind == 0 ? 4 : 3) * hidden;
    float *gh = gates + rows;
    int t, j, k;
    for (j = 0; j < hidden; ++j) { h[j] = 0.0f; if (c) c[j] = 0.0f; }
    for (t = 0; t < steps; ++t) {
        const int s = reverse ? steps - 1 - t : t;
        const float *xt = x + (long)s * features;
        for (j = 0; j < rows; ++j) {
            float a = b_ih[j], b = b_hh[j];
            for (k = 0; k < features; ++k) a += w_ih[(long)j * features + k] * xt[k];
            for (k = 0; k < hidden; ++k) b += w_hh[(long)j * hidden + k] * h[k];
            if (kind == 0) gates[j] = a + b; else { gates[j] = a; gh[j] = b; }
        }
        for (j = 0; j < hidden; ++j) {
            if (kind == 0) {
                const float i = bnnc_sigmoid(gates[j]), f = bnnc_sigmoid(gates[hidden + j]);
                const float g = (float)tanh((double)gates[2 * hidden + j]), o = bnnc_sigmoid(gates[3 * hidden + j]);
                c[j] = f * c[j] + i * g;
                h[j] = o * (float)tanh((double)c[j]);
            } else {
                const float r = bnnc_sigmoid(gates[j] + gh[j]), z = bnnc_sigmoid(gates[hidden + j] + gh[hidden + j]);
                const float n = (float)tanh((double)(gates[2 * hidden + j] + r * gh[2 * hidden + j]));
                h[j] = (1.0f - z) * n + z * h[j];
            }
            out[(long)s * out_stride + j] = h[j];
        }
    }
}
#endif

/* adaptive average (is_max 0) or max (1) pooling: cell i covers [floor(i * in / out), ceil((i + 1) * in / out));
   a NaN wins a maximum, as in torch */
BNNC_FN void bnnc_adaptive_pool(const float *in, int channels, int ih, int iw, int oh, int ow, int is_max,
                                float *out) {
    int c, y, x, a, b;
    for (c = 0; c < channels; ++c)
        for (y = 0; y < oh; ++y)
            for (x = 0; x < ow; ++x) {
                const int y0 = y * ih / oh, y1 = ((y + 1) * ih + oh - 1) / oh;
                const int x0 = x * iw / ow, x1 = ((x + 1) * iw + ow - 1) / ow;
                float s = is_max ? in[((long)c * ih + y0) * iw + x0] : 0.0f;
                for (a = y0; a < y1; ++a)
                    for (b = x0; b < x1; ++b) {
                        const float v = in[((long)c * ih + a) * iw + b];
                        if (!is_max) s += v;
                        else if (v > s || v != v) s = v;
                    }
                out[((long)c * oh + y) * ow + x] = is_max ? s : s / (float)((y1 - y0) * (x1 - x0));
            }
}

/* out[i] = a[ia] OP b[ib] over an n-d shape with broadcast strides (0 where a dimension is broadcast) */
BNNC_FN void bnnc_broadcast(const float *a, const float *b, float *out, int op, int rank, const int *shape,
                           const int *sa, const int *sb) {
    int idx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long total = 1, i;
    int d;
    for (d = 0; d < rank; ++d) total *= shape[d];
    for (i = 0; i < total; ++i) {
        long ia = 0, ib = 0;
        float u, v, r;
        for (d = 0; d < rank; ++d) { ia += (long)idx[d] * sa[d]; ib += (long)idx[d] * sb[d]; }
        u = a[ia];
        v = b[ib];
        r = op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v;
        out[i] = r;
        for (d = rank - 1; d >= 0; --d) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

/* out = in permuted: out index i (row-major over the output shape) reads in at sum idx[d] * strides[d] */
BNNC_FN void bnnc_permute(const float *in, float *out, int rank, const int *shape, const int *strides) {
    int idx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long total = 1, i;
    int d;
    for (d = 0; d < rank; ++d) total *= shape[d];
    for (i = 0; i < total; ++i) {
        long at = 0;
        for (d = 0; d < rank; ++d) at += (long)idx[d] * strides[d];
        out[i] = in[at];
        for (d = rank - 1; d >= 0; --d) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

#endif /* BNNC_RUNTIME_H */
