/*
 * Kernel bodies, compiled once per instruction-set variant.
 *
 * hetmm_native.c includes this file three times (through variant_bodies.h),
 * each time under a different `#pragma GCC target` and with VARIANT(name)
 * appending a suffix, so one source
 * yields the AVX-512, AVX2+FMA and baseline (SSE2) machine code. The maths is
 * written with GCC vector extensions on 16-float vectors (v16sf): under
 * AVX-512 one vector is one zmm register, under AVX2 two ymm, under SSE2 four
 * xmm. MAX_ACC (accumulators per pass) is set per variant to fit the register
 * file.
 *
 * Expected macros: VARIANT(name), MAX_ACC, MAX_NDX, VPART_T / VPARTS (a
 * register-sized part of a 16-float vector and how many make one), and
 * F16_ROW(dst, src, n) converting n IEEE half values to float. (The per-pixel
 * Gram kernel, compiled the same way, is in gram_body.h.)
 */

/* ---- window matching ------------------------------------------------------
 *
 * For one query row y, a 16-pixel chunk x0 and a block of offsets
 * dy in [dy0, dy0+ndy), dx in [dx0, dx0+ndx):
 *   acc[iy][ix][lane] = sum_c Q[c][y][x0+lane] * T[c][y+dy][x0+lane+dx]
 * = D(p, d) for 16 pixels p at once: no horizontal reductions, one template
 * vector and one FMA per accumulator and channel. Each D(p, d) then feeds
 * Fwd(p) (|d| <= rf) and Bwd(p + d) (|d| <= rb).
 *
 * Where the data lives:
 *   qpad  [H][C][Wq]      the query, copied once per job; Wq = W rounded up
 *                         to 16 (zero tail), so one query row is contiguous.
 *   templates, "direct"   (AVX-512, W a multiple of 16, R <= 7) read in place
 *                         from the caller's [N][C][H][W] array; float16 is
 *                         converted on load, or for windows >= 7x7 once per
 *                         item into scratch [C][rows][W].
 *   tpad  [rows][C][Wt]   otherwise: rows [rowLo, rowHi) of one template
 *                         copied with zero padding, x = 0 at column padL
 *                         (a multiple of 16 >= R, so chunk starts stay 64-byte
 *                         aligned and every dx in [-R, R] stays in bounds).
 */

static inline __attribute__((always_inline)) void VARIANT(match_block)(
    const float *qrow, size_t qStride, const float *trow0, size_t tRowStride, size_t tStride, int C,
    int ndy, int ndx, v16sf *out) {
  /* A 16-pixel vector is held as VPARTS register-sized parts (VPART_T): GCC
   * keeps arrays of native-width vectors in registers, but spills arrays of
   * v16sf to the stack when the target has no 512-bit registers. */
  enum { PART = 16 / VPARTS };
  VPART_T acc[MAX_ACC * VPARTS];
#pragma GCC unroll 32
  for (int a = 0; a < MAX_ACC * VPARTS; a++) acc[a] = (VPART_T){0};
  for (int c = 0; c < C; c++) {
    VPART_T q[VPARTS];
    memcpy(q, qrow + (size_t)c * qStride, sizeof q);
    const float *tc = trow0 + (size_t)c * tStride;
#pragma GCC unroll 8
    for (int iy = 0; iy < ndy; iy++) {
#pragma GCC unroll 16
      for (int ix = 0; ix < ndx; ix++) {
#pragma GCC unroll 4
        for (int k = 0; k < VPARTS; k++) {
          VPART_T t;
          memcpy(&t, tc + (size_t)iy * tRowStride + ix + k * PART, sizeof t); /* unaligned load */
          acc[(iy * ndx + ix) * VPARTS + k] += q[k] * t;
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int a = 0; a < ndy * ndx; a++) memcpy(&out[a], &acc[a * VPARTS], sizeof out[a]);
}

/* Dispatch on (ndy, ndx) to a fully unrolled block with constant trip counts.
 * Only the combinations the pass planner can produce are generated. */
static void VARIANT(match_block_dispatch)(const float *qrow, size_t qStride, const float *trow0,
                                          size_t tRowStride, size_t tStride, int C, int ndy, int ndx,
                                          v16sf *out) {
#define HETMM_FITS(NY, NX) ((NY) * (NX) <= MAX_ACC && (NX) <= MAX_NDX)
#define HETMM_BLOCK_CASE(NY, NX)                                                                    \
  case (NY) * 16 + (NX):                                                                            \
    if (HETMM_FITS(NY, NX)) {                                                \
      VARIANT(match_block)(qrow, qStride, trow0, tRowStride, tStride, C, HETMM_FITS(NY, NX) ? (NY) : 1, HETMM_FITS(NY, NX) ? (NX) : 1, out); \
      return;                                                                                       \
    }                                                                                               \
    break;
  switch (ndy * 16 + ndx) {
#include "block_cases.h"
    default:
      break;
  }
  /* unreachable: the planner keeps ndy * ndx <= MAX_ACC and ndx <= MAX_NDX */
  abort();
#undef HETMM_BLOCK_CASE
#undef HETMM_FITS
}

#ifdef HETMM_VALIGN
/* AVX-512 only: the same block, but each template row is read with three
 * ALIGNED loads (x0-16, x0, x0+16) and the 2R+1 shifted vectors are built in
 * registers with valignd. Unaligned 64-byte loads straddle two cache lines
 * and measured about 2x slower than this on Zen 4. Needs R <= 15; the block
 * covers every dx in [-R, R] for ndy template rows. */
static inline __attribute__((always_inline)) __m512 VARIANT(shifted)(__m512i left, __m512i mid, __m512i right,
                                                                     const int dx) {
  switch (dx) {
#define HETMM_NEG(D) \
  case -(D):         \
    return _mm512_castsi512_ps(_mm512_alignr_epi32(mid, left, 16 - (D)));
#define HETMM_POS(D) \
  case (D):          \
    return _mm512_castsi512_ps(_mm512_alignr_epi32(right, mid, (D)));
    HETMM_NEG(1) HETMM_NEG(2) HETMM_NEG(3) HETMM_NEG(4) HETMM_NEG(5) HETMM_NEG(6) HETMM_NEG(7)
    HETMM_POS(1) HETMM_POS(2) HETMM_POS(3) HETMM_POS(4) HETMM_POS(5) HETMM_POS(6) HETMM_POS(7)
#undef HETMM_NEG
#undef HETMM_POS
    default:
      return _mm512_castsi512_ps(mid);
  }
}

/* Loads 16 template values at element index idx as floats; lanes outside
 * mask read as 0 without touching memory (AVX-512 fault suppression), which
 * is how the first/last chunk of a row avoid reading past the row. */
static inline __attribute__((always_inline)) __m512i VARIANT(load_t)(const void *base, size_t idx, __mmask16 mask,
                                                                     const int f16) {
  if (f16) return _mm512_castps_si512(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (const uint16_t *)base + idx)));
  return _mm512_castps_si512(_mm512_maskz_loadu_ps(mask, (const float *)base + idx));
}

static inline __attribute__((always_inline)) void VARIANT(match_block_valign)(
    const float *qrow, size_t qStride, const void *tBase, size_t idx0, size_t tRowStride, size_t tStride, int C,
    int ndy, const int R, __mmask16 leftMask, __mmask16 rightMask, const int f16, ptrdiff_t prefetch, v16sf *out) {
  const int ndx = 2 * R + 1;
  const size_t elemSize = f16 ? 2 : 4;
  __m512 acc[MAX_ACC];
#pragma GCC unroll 32
  for (int a = 0; a < MAX_ACC; a++) acc[a] = _mm512_setzero_ps();
  for (int c = 0; c < C; c++) {
    const __m512 q = _mm512_load_ps(qrow + (size_t)c * qStride);
    const size_t ic = idx0 + (size_t)c * tStride;
    /* Template rows sit H*W elements apart per channel, a stride the hardware
     * prefetcher does not follow: fetch the row the next query row will need
     * into L2 while this one computes. */
    if (prefetch) _mm_prefetch((const char *)tBase + (ic * elemSize + (size_t)prefetch), _MM_HINT_T1);
#pragma GCC unroll 8
    for (int iy = 0; iy < ndy; iy++) {
      const size_t i = ic + (size_t)iy * tRowStride;
      const __m512i mid = VARIANT(load_t)(tBase, i, 0xFFFF, f16);
      const __m512i left = R > 0 ? VARIANT(load_t)(tBase, i - 16, leftMask, f16) : mid;
      const __m512i right = R > 0 ? VARIANT(load_t)(tBase, i + 16, rightMask, f16) : mid;
#pragma GCC unroll 16
      for (int ix = 0; ix < ndx; ix++) {
        acc[iy * ndx + ix] = _mm512_fmadd_ps(q, VARIANT(shifted)(left, mid, right, ix - R), acc[iy * ndx + ix]);
      }
    }
  }
#pragma GCC unroll 32
  for (int a = 0; a < ndy * ndx; a++) out[a] = (v16sf)acc[a];
}

#define HETMM_VALIGN_MAX_R 7
static void VARIANT(match_block_valign_dispatch)(const float *qrow, size_t qStride, const void *tBase,
                                                 size_t idx0, size_t tRowStride, size_t tStride, int C, int ndy,
                                                 int R, __mmask16 leftMask, __mmask16 rightMask, int f16,
                                                 ptrdiff_t prefetch, v16sf *out) {
#define HETMM_VFITS(NY, RR) ((NY) * (2 * (RR) + 1) <= MAX_ACC)
#define HETMM_VCASE(NY, RR)                                                                          \
  case (NY) * 16 + (RR):                                                                             \
    if (HETMM_VFITS(NY, RR)) {                                                                       \
      if (f16)                                                                                       \
        VARIANT(match_block_valign)(qrow, qStride, tBase, idx0, tRowStride, tStride, C,              \
                                    HETMM_VFITS(NY, RR) ? (NY) : 1, RR, leftMask, rightMask, 1, prefetch, out); \
      else                                                                                           \
        VARIANT(match_block_valign)(qrow, qStride, tBase, idx0, tRowStride, tStride, C,              \
                                    HETMM_VFITS(NY, RR) ? (NY) : 1, RR, leftMask, rightMask, 0, prefetch, out); \
      return;                                                                                        \
    }                                                                                                \
    break;
#define HETMM_VROW(RR) \
  HETMM_VCASE(1, RR) HETMM_VCASE(2, RR) HETMM_VCASE(3, RR) HETMM_VCASE(4, RR) HETMM_VCASE(5, RR) HETMM_VCASE(6, RR) \
  HETMM_VCASE(7, RR) HETMM_VCASE(8, RR)
  switch (ndy * 16 + R) {
    HETMM_VROW(0) HETMM_VROW(1) HETMM_VROW(2) HETMM_VROW(3) HETMM_VROW(4) HETMM_VROW(5) HETMM_VROW(6) HETMM_VROW(7)
    default:
      break;
  }
#undef HETMM_VROW
#undef HETMM_VCASE
#undef HETMM_VFITS
  abort(); /* unreachable: the planner keeps ndy * (2R + 1) <= MAX_ACC, ndy <= 8, R <= 7 */
}
#endif

/* One work item: template t, query rows [y0, y1). */
static void VARIANT(match_item)(const MatchJob *job, Scratch *s, int t, int y0, int y1) {
  const int C = job->c, H = job->h, W = job->w, R = job->r;
  const int Wq = job->wq, padL = job->padL, Wt = job->wt;
  const int rowLo = y0 - R < 0 ? 0 : y0 - R;
  const int rowHi = y1 + R > H ? H : y1 + R;
  const size_t HW = (size_t)H * W;

#ifdef HETMM_VALIGN
  const int useValign = R <= HETMM_VALIGN_MAX_R;
#else
  const int useValign = 0;
#endif
  /* Direct: rows of 16k pixels are read in place (float16 converted on load),
   * no copy at all. Otherwise the needed rows are copied (and converted) into
   * the zero-padded tpad. */
  const int direct = useValign && W % 16 == 0;
  float *tpad = s->tpad;
  const void *tBase;
  size_t tOrigin, tRowStride, tStride; /* element index of (row rowBase, x = 0); strides */
  int rowBase, tF16;
  if (direct && job->f16 && job->f16Scratch) {
    /* float16 with a wide window: every template value is read 2R+1 times, so
     * convert the needed rows once into scratch ([C][rows][W] float32) rather
     * than on every load. */
    const int rows = rowHi - rowLo;
    for (int c = 0; c < C; c++) {
      F16_ROW(tpad + (size_t)c * rows * W, job->t16 + ((size_t)t * C + c) * HW + (size_t)rowLo * W,
              rows * W);
    }
    tBase = tpad;
    tOrigin = 0;
    tRowStride = (size_t)W;
    tStride = (size_t)rows * W;
    rowBase = rowLo;
    tF16 = 0;
  } else if (direct) {
    tBase = job->f16 ? (const void *)job->t16 : (const void *)job->t32;
    tOrigin = (size_t)t * C * HW;
    tRowStride = (size_t)W;
    tStride = HW;
    rowBase = 0;
    tF16 = job->f16;
  } else {
    for (int c = 0; c < C; c++) { /* source-contiguous order */
      for (int r = rowLo; r < rowHi; r++) {
        float *dst = tpad + ((size_t)(r - rowLo) * C + c) * Wt;
        memset(dst, 0, sizeof(float) * padL);
        size_t srcOff = ((size_t)t * C + c) * HW + (size_t)r * W;
        if (job->f16) {
          F16_ROW(dst + padL, job->t16 + srcOff, W);
        } else {
          memcpy(dst + padL, job->t32 + srcOff, sizeof(float) * W);
        }
        memset(dst + padL + W, 0, sizeof(float) * (size_t)(Wt - padL - W));
      }
    }
    tBase = tpad;
    tOrigin = (size_t)padL;
    tRowStride = (size_t)C * Wt;
    tStride = (size_t)Wt;
    rowBase = rowLo;
    tF16 = 0;
  }
  (void)tF16; /* only the AVX-512 path reads float16 in place */

  /* Passes over offset blocks. */
  const v16sf negInf = (v16sf){0} - (v16sf){0} + (float)-INFINITY;
  v16si lane;
  for (int i = 0; i < 16; i++) lane[i] = i;
  v16sf acc[MAX_ACC];
  for (int y = y0; y < y1; y++) {
    const int dyLo = -y > -R ? -y : -R;
    const int dyHi = H - 1 - y < R ? H - 1 - y : R;
    float *fwdRow = s->fwd + (size_t)y * Wq;
    for (int x0 = 0; x0 < Wq; x0 += 16) {
      const float *qrow = job->qpad + (size_t)y * C * Wq + x0;
      const v16si xs = lane + x0;
      const v16si inRow = xs < W; /* lanes past the row end carry no pixel */
      /* useValign: one dx block covering [-R, R] */
      const int dxStep = useValign ? 2 * R + 1 : MAX_NDX;
      for (int dx0 = -R; dx0 <= R; dx0 += dxStep) {
        const int ndx = R - dx0 + 1 < dxStep ? R - dx0 + 1 : dxStep;
        int ndyMax = MAX_ACC / ndx;
        if (useValign && ndyMax > 8) ndyMax = 8;
        for (int dy0 = dyLo; dy0 <= dyHi; dy0 += ndyMax) {
          const int ndy = dyHi - dy0 + 1 < ndyMax ? dyHi - dy0 + 1 : ndyMax;
          const size_t idx = tOrigin + (size_t)(y + dy0 - rowBase) * tRowStride + (size_t)x0;
#ifdef HETMM_VALIGN
          if (useValign) {
            const __mmask16 leftMask = direct && x0 == 0 ? 0 : 0xFFFF;
            const __mmask16 rightMask = direct && x0 + 16 >= W ? 0 : 0xFFFF;
            /* bytes from row y + dy0 to row y + R + 1, same chunk; only in place, once per chunk */
            const ptrdiff_t prefetch = direct && tBase != tpad && dy0 == dyLo && y + R + 1 < H
                                           ? (ptrdiff_t)((R + 1 - dy0) * (ptrdiff_t)tRowStride * (tF16 ? 2 : 4))
                                           : 0;
            VARIANT(match_block_valign_dispatch)(qrow, Wq, tBase, idx, tRowStride, tStride, C, ndy, R, leftMask,
                                                 rightMask, tF16, prefetch, acc);
          } else
#endif
            VARIANT(match_block_dispatch)(qrow, Wq, (const float *)tBase + idx + dx0, tRowStride, tStride, C, ndy,
                                          ndx, acc);
          /* Epilogue: exclude lanes whose neighbour p + d is outside the map. */
          for (int iy = 0; iy < ndy; iy++) {
            const int dy = dy0 + iy;
            const int ady = dy < 0 ? -dy : dy;
            for (int ix = 0; ix < ndx; ix++) {
              const int dx = dx0 + ix;
              const int adx = dx < 0 ? -dx : dx;
              const v16si nx = xs + dx;
              const v16si valid = inRow & (nx >= 0) & (nx < W);
              const v16sf v = (v16sf)(((v16si)acc[iy * ndx + ix] & valid) | ((v16si)negInf & ~valid));
              if (ady <= job->rf && adx <= job->rf) {
                v16sf f;
                memcpy(&f, fwdRow + x0, sizeof f);
                f = HETMM_VMAX(f, v);
                memcpy(fwdRow + x0, &f, sizeof f);
              }
              if (ady <= job->rb && adx <= job->rb) {
                /* Bwd(p + d) = max over D(p, d): shifted row of the bwd buffer */
                float *b = s->bwd + (size_t)(y + dy) * job->wb + job->padB + x0 + dx;
                v16sf bv;
                memcpy(&bv, b, sizeof bv);
                bv = HETMM_VMAX(bv, v);
                memcpy(b, &bv, sizeof bv);
              }
            }
          }
        }
      }
    }
  }
}
