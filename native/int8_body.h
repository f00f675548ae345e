/*
 * int8 window matching with AVX-512 VNNI (vpdpbusd), AVX-512 only.
 *
 * Inputs are quantised by the TypeScript side (src/kernels/fast/int8.ts,
 * which also holds the reference): every pixel vector v of the query and of
 * each template gets its own scale s = max|v_c| / 127 and integer values
 * round(v_c / s) in [-127, 127]. Four consecutive channels of one pixel are
 * packed into one 32-bit word, layout [G = ceil(C/4)][H][W] words per map,
 * so 16 pixels of a row are again one 512-bit vector and the valignd shifts
 * of the float kernel work unchanged on whole words.
 *
 * vpdpbusd multiplies unsigned by signed bytes, so the query is stored
 * offset by +128 (u8 = q + 128) and the offset is removed per template
 * pixel: sum_c (q_c + 128) t_c = <q, t> + 128 * sum_c t_c. With
 * tSum[p] = sum_c t_c[p] precomputed, in exact integer arithmetic:
 *   D(p, d) = sQ[p] * (sT[p+d] * (acc - 128 * tSum[p+d])),  acc = sum_c u8(q_c) * t_c.
 * |acc| <= C * 255 * 127 fits int32 for C < 66000, and acc - 128 * tSum
 * (= sum_c q_c t_c, |.| <= C * 127^2) converts to float exactly for C <= 1040.
 *
 * Needs W % 16 == 0 and R <= 7 (the caller falls back to float otherwise).
 */

static inline __attribute__((always_inline)) __m512i i8_shifted(__m512i left, __m512i mid, __m512i right, const int dx) {
  switch (dx) {
#define HETMM_NEG(D) \
  case -(D):         \
    return _mm512_alignr_epi32(mid, left, 16 - (D));
#define HETMM_POS(D) \
  case (D):          \
    return _mm512_alignr_epi32(right, mid, (D));
    HETMM_NEG(1) HETMM_NEG(2) HETMM_NEG(3) HETMM_NEG(4) HETMM_NEG(5) HETMM_NEG(6) HETMM_NEG(7)
    HETMM_POS(1) HETMM_POS(2) HETMM_POS(3) HETMM_POS(4) HETMM_POS(5) HETMM_POS(6) HETMM_POS(7)
#undef HETMM_NEG
#undef HETMM_POS
    default:
      return mid;
  }
}

/* acc[iy][ix] = sum_g vpdpbusd(Q[g][y][x0..], T[g][y+dy0+iy][x0+ix-R..]) for ndy rows, all 2R+1 dx. */
static inline __attribute__((always_inline)) void i8_block(const uint32_t *qrow, size_t qStride, const uint32_t *t,
                                                           size_t idx0, size_t tRowStride, size_t tStride, int G,
                                                           const int ndy, const int R, const int edge, __mmask16 leftMask,
                                                           __mmask16 rightMask, ptrdiff_t prefetchWords,
                                                           __m512i *out) {
  const int ndx = 2 * R + 1;
  __m512i acc[28];
#pragma GCC unroll 28
  for (int a = 0; a < 28; a++) acc[a] = _mm512_setzero_si512();
  for (int g = 0; g < G; g++) {
    const __m512i q = _mm512_loadu_si512(qrow + (size_t)g * qStride);
    const size_t ig = idx0 + (size_t)g * tStride;
    /* template rows are H*W words apart per group: fetch the next query row's */
    if (prefetchWords) _mm_prefetch((const char *)(t + ig + prefetchWords), _MM_HINT_T1);
#pragma GCC unroll 8
    for (int iy = 0; iy < ndy; iy++) {
      const size_t i = ig + (size_t)iy * tRowStride;
      const __m512i mid = _mm512_loadu_si512(t + i);
      /* chunks at the map's left/right edge: masked loads, lanes outside the map are not read (no fault
       * at the arrays' ends); inside chunks every word read lies in the row (W % 16 == 0, R <= 7) */
      const __m512i left = R > 0 ? (edge ? _mm512_maskz_loadu_epi32(leftMask, t + i - 16) : _mm512_loadu_si512(t + i - 16)) : mid;
      const __m512i right = R > 0 ? (edge ? _mm512_maskz_loadu_epi32(rightMask, t + i + 16) : _mm512_loadu_si512(t + i + 16)) : mid;
#pragma GCC unroll 15
      for (int ix = 0; ix < ndx; ix++) {
        const int dx = ix - R;
        /* |dx| >= 2 in inside chunks: one unaligned load instead of a valignd, so that the load ports
         * take part of the shuffles' work (layer1 11% faster on Zen 4 than valignd for every dx, and
         * 1-2% faster than loads for every dx != 0: docs/PERFORMANCE.md) */
        const __m512i tv = (!edge && (dx > 1 || dx < -1)) ? _mm512_loadu_si512(t + i + dx) : i8_shifted(left, mid, right, dx);
        acc[iy * ndx + ix] = _mm512_dpbusd_epi32(acc[iy * ndx + ix], q, tv);
      }
    }
  }
#pragma GCC unroll 28
  for (int a = 0; a < ndy * ndx; a++) out[a] = acc[a];
}

static void i8_block_dispatch(const uint32_t *qrow, size_t qStride, const uint32_t *t, size_t idx0,
                              size_t tRowStride, size_t tStride, int G, int ndy, int R, __mmask16 leftMask,
                              __mmask16 rightMask, ptrdiff_t prefetchWords, __m512i *out) {
#define HETMM_IFITS(NY, RR) ((NY) * (2 * (RR) + 1) <= 28)
#define HETMM_ICASE(NY, RR)                                                                                   \
  case (NY) * 16 + (RR):                                                                                      \
    if (HETMM_IFITS(NY, RR)) {                                                                                \
      if (leftMask != 0xFFFF || rightMask != 0xFFFF)                                                          \
        i8_block(qrow, qStride, t, idx0, tRowStride, tStride, G, HETMM_IFITS(NY, RR) ? (NY) : 1, RR, 1, leftMask,    \
                 rightMask, prefetchWords, out);                                                              \
      else                                                                                                    \
        i8_block(qrow, qStride, t, idx0, tRowStride, tStride, G, HETMM_IFITS(NY, RR) ? (NY) : 1, RR, 0, leftMask,    \
                 rightMask, prefetchWords, out);                                                              \
      return;                                                                                                 \
    }                                                                                                         \
    break;
#define HETMM_IROW(RR) \
  HETMM_ICASE(1, RR) HETMM_ICASE(2, RR) HETMM_ICASE(3, RR) HETMM_ICASE(4, RR) HETMM_ICASE(5, RR) HETMM_ICASE(6, RR) \
  HETMM_ICASE(7, RR) HETMM_ICASE(8, RR)
  switch (ndy * 16 + R) {
    HETMM_IROW(0) HETMM_IROW(1) HETMM_IROW(2) HETMM_IROW(3) HETMM_IROW(4) HETMM_IROW(5) HETMM_IROW(6) HETMM_IROW(7)
    default:
      break;
  }
#undef HETMM_IROW
#undef HETMM_ICASE
#undef HETMM_IFITS
  abort(); /* unreachable: ndy * (2R + 1) <= 28, ndy <= 8, R <= 7 */
}

/* One work item: template t, query rows [y0, y1). Same epilogue as the float kernel. */
static void match_item_int8(const MatchJob *job, Scratch *s, int t, int y0, int y1) {
  const int G = job->c, H = job->h, W = job->w, R = job->r, Wq = job->wq;
  const size_t HW = (size_t)H * W;
  const uint32_t *tq = job->t8 + (size_t)t * G * HW;
  const float *tScale = job->tScale + (size_t)t * HW;
  const int32_t *tSum = job->tSum + (size_t)t * HW;
  const __m512 negInf = _mm512_set1_ps(-INFINITY);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const int ndx = 2 * R + 1;
  int ndyMax = 28 / ndx;
  if (ndyMax > 8) ndyMax = 8;
  __m512i acc[28];
  for (int y = y0; y < y1; y++) {
    const int dyLo = -y > -R ? -y : -R;
    const int dyHi = H - 1 - y < R ? H - 1 - y : R;
    float *fwdRow = s->fwd + (size_t)y * Wq;
    for (int x0 = 0; x0 < W; x0 += 16) {
      const uint32_t *qrow = job->q8 + (size_t)y * W + x0;
      const __m512 qs = _mm512_loadu_ps(job->qScale + (size_t)y * W + x0);
      const __m512i xs = _mm512_add_epi32(lane, _mm512_set1_epi32(x0));
      const __mmask16 leftMask = x0 == 0 ? 0 : 0xFFFF;
      const __mmask16 rightMask = x0 + 16 >= W ? 0 : 0xFFFF;
      __mmask16 validDx[15];
      for (int ix = 0; ix < ndx; ix++) {
        const __m512i nx = _mm512_add_epi32(xs, _mm512_set1_epi32(ix - R));
        validDx[ix] = _mm512_cmpge_epi32_mask(nx, _mm512_setzero_si512()) & _mm512_cmplt_epi32_mask(nx, _mm512_set1_epi32(W));
      }
      /* The forward max of this chunk stays in a register; each backward row gets its 2R+1 shifted
       * contributions merged into three aligned vectors (x0 - 16, x0, x0 + 16) first: one unaligned
       * read-modify-write per offset overlapped the previous one's store, which the store buffer
       * cannot forward. */
      __m512 fwdMax = _mm512_loadu_ps(fwdRow + x0);
      for (int dy0 = dyLo; dy0 <= dyHi; dy0 += ndyMax) {
        const int ndy = dyHi - dy0 + 1 < ndyMax ? dyHi - dy0 + 1 : ndyMax;
        const size_t idx = (size_t)(y + dy0) * W + x0;
        const ptrdiff_t prefetch = dy0 == dyLo && y + R + 1 < H ? (ptrdiff_t)(R + 1 - dy0) * W : 0;
        i8_block_dispatch(qrow, HW, tq, idx, (size_t)W, HW, G, ndy, R, leftMask, rightMask, prefetch, acc);
        for (int iy = 0; iy < ndy; iy++) {
          const int dy = dy0 + iy;
          const int ady = dy < 0 ? -dy : dy;
          const size_t rowOff = (size_t)(y + dy) * W + x0;
          __m512 bLeft = negInf, bMid = negInf, bRight = negInf;
          for (int ix = 0; ix < ndx; ix++) {
            const int dx = ix - R;
            const int adx = dx < 0 ? -dx : dx;
            const int fwdOn = ady <= job->rf && adx <= job->rf, bwdOn = ady <= job->rb && adx <= job->rb;
            if (!fwdOn && !bwdOn) continue;
            const __mmask16 valid = validDx[ix];
            /* masked-off lanes are not read (fault suppression), so row ends are safe */
            const __m512 st = _mm512_maskz_loadu_ps(valid, tScale + (ptrdiff_t)rowOff + dx);
            const __m512i ts = _mm512_maskz_loadu_epi32(valid, tSum + (ptrdiff_t)rowOff + dx);
            const __m512i exact = _mm512_sub_epi32(acc[iy * ndx + ix], _mm512_slli_epi32(ts, 7));
            const __m512 d = _mm512_mul_ps(qs, _mm512_mul_ps(_mm512_cvtepi32_ps(exact), st));
            const __m512 v = _mm512_mask_blend_ps(valid, negInf, d);
            if (fwdOn) fwdMax = _mm512_max_ps(fwdMax, v);
            if (bwdOn) {
              /* lane l lands on x0 + l + dx: split into the aligned vectors at x0 and x0 -/+ 16 */
              const __m512i up = _mm512_add_epi32(lane, _mm512_set1_epi32(dx < 0 ? -dx : 16 - dx));
              if (dx == 0) {
                bMid = _mm512_max_ps(bMid, v);
              } else if (dx > 0) {
                bMid = _mm512_max_ps(bMid, _mm512_permutex2var_ps(negInf, up, v));
                bRight = _mm512_max_ps(bRight, _mm512_permutex2var_ps(v, up, negInf));
              } else {
                bMid = _mm512_max_ps(bMid, _mm512_permutex2var_ps(v, up, negInf));
                bLeft = _mm512_max_ps(bLeft, _mm512_permutex2var_ps(negInf, up, v));
              }
            }
          }
          if (ady <= job->rb) {
            float *b = s->bwd + (size_t)(y + dy) * job->wb + job->padB + x0;
            _mm512_storeu_ps(b, _mm512_max_ps(_mm512_loadu_ps(b), bMid));
            if (job->rb > 0) {
              _mm512_storeu_ps(b - 16, _mm512_max_ps(_mm512_loadu_ps(b - 16), bLeft));
              _mm512_storeu_ps(b + 16, _mm512_max_ps(_mm512_loadu_ps(b + 16), bRight));
            }
          }
        }
      }
      _mm512_storeu_ps(fwdRow + x0, fwdMax);
    }
  }
}
