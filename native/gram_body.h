/*
 * Per-pixel Gram matrices (pixelGram, for PTS), compiled once per
 * instruction-set variant like kernels_body.h (variant_bodies.h includes this
 * file right after it, under the same VARIANT / VPART_T / VPARTS /
 * GRAM_BLOCK / F16_ROW macros).
 *
 *   G_p[i][j] = sum_c T_i[c][p] * T_j[c][p],  p in [p0, p1), i, j < N.
 *
 * Sixteen consecutive pixels are the 16 lanes of one vector (NCHW makes
 * T_i[c][p..p+15] contiguous), so every (i, j) pair is one accumulator and
 * there are no horizontal sums. It is a symmetric rank-C update per lane,
 * blocked like a GEMM so that it runs from cache instead of memory (the
 * previous kernel streamed all N maps of a 64-pixel item, 12.5-50 MB at
 * N = 761, once per block of 4 rows and was memory-bound at ~5.4 GMAC/s):
 *
 *   task    = (16-pixel chunk, panel of PI = GRAM_PANEL images i0 .. i0+PI-1);
 *             computes G[i][j] for i in the panel and j >= i (upper triangle).
 *   A       [PI][kc][16]  the panel's vectors for one block of kc <= GRAM_KC
 *             channels, packed once per channel block (~L2-sized);
 *   Bp      [B][kc][16]   GRAM_BLOCK images j, packed per j-block (~L1-sized)
 *             and reused by every i-block of the panel;
 *   acc     [PI][N - i0][16]  the running sums across channel blocks.
 *   micro   B x B accumulators (i-block x j-block) over kc channels:
 *             2B loads per B^2 FMAs.
 *
 * float16 is converted while packing, so the inner loop only sees float32.
 * Channels are summed in ascending order per lane (float32 FMA), like the
 * previous kernel. Tasks run chunk-major, so the pool's threads share one
 * chunk's source rows in L3, and the heavy panels (small i0) of each chunk
 * come first. Both halves of each matrix are written:
 *   out[(p - p0) * N * N + i * N + j].
 */

#ifndef HETMM_GRAM_COMMON
#define HETMM_GRAM_COMMON
/* Images per panel (a multiple of 16 and of every variant's GRAM_BLOCK) and
 * channels per packed block: A = 128 x 32 x 16 floats = 256 KiB (L2), a
 * j-block 4 x 32 x 16 = 8 KiB (L1). Measured on Zen 4 (N = 761, 48 pixels,
 * one thread, CPU time): 32/128 gave 26 and 24 GMAC/s at C = 256 and 1024,
 * 64/64 30 and 30, 128/32 32 and 35 (larger panels stream the j side fewer
 * times). */
#define GRAM_PANEL 128
#define GRAM_KC 32
/* Register-block side upper bound over all variants (scratch sizing). */
#define GRAM_MAX_BLOCK 4

static inline long gram_chunks(const GramJob *job) { return (job->p1 - job->p0 + 15) / 16; }
static inline int gram_panels(const GramJob *job) { return (job->n + GRAM_PANEL - 1) / GRAM_PANEL; }
static inline long gram_tasks(const GramJob *job) { return gram_chunks(job) * gram_panels(job); }

/* Floats of per-thread scratch a task needs: A + Bp + acc (see above). */
static inline size_t gram_scratch_floats(const GramJob *job) {
  const size_t kc = job->c < GRAM_KC ? (size_t)job->c : GRAM_KC;
  const size_t nPad = ((size_t)job->n + 15) / 16 * 16; /* acc rows are read in 16-column tiles */
  return 16 * (GRAM_PANEL * kc + GRAM_MAX_BLOCK * kc + GRAM_PANEL * nPad);
}

/* Two-source lane selections of the 16 x 16 transpose below, one pair per
 * step b = 8, 4, 2, 1: lo keeps the lanes l with (l & b) == 0 of the first
 * row and brings the second row's lanes l - b into the others; hi the
 * converse. Applied to rows (k, k + b) for every k with (k & b) == 0, each
 * step swaps the off-diagonal b x b blocks of every 2b x 2b block. */
static const v16si g_transposeLo[4] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
    {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
    {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
    {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
};
static const v16si g_transposeHi[4] = {
    {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
    {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
    {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
    {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31},
};
#endif

/* Packs images [img0, img0 + nimg) x channels [c0, c0 + kc) x pixels
 * [ps, ps + lanes) into dst[r][c][16], rows nimg .. rows-1 and lanes past
 * `lanes` zero (they add nothing and are never written out). */
static void VARIANT(gram_pack)(const GramJob *job, int img0, int nimg, int rows, int c0, int kc, long ps, int lanes,
                               float *dst) {
  const size_t HW = (size_t)job->h * job->w;
  const size_t C = (size_t)job->c;
  for (int r = 0; r < rows; r++) {
    float *d = dst + (size_t)r * kc * 16;
    if (r >= nimg) {
      memset(d, 0, sizeof(float) * 16 * (size_t)kc);
      continue;
    }
    const size_t src = ((size_t)(img0 + r) * C + (size_t)c0) * HW + (size_t)ps;
    for (int c = 0; c < kc; c++, d += 16) {
      if (job->f16) {
        F16_ROW(d, job->t16 + src + (size_t)c * HW, lanes);
      } else {
        memcpy(d, job->t32 + src + (size_t)c * HW, sizeof(float) * (size_t)lanes);
      }
      for (int l = lanes; l < 16; l++) d[l] = 0.0f;
    }
  }
}

/* acc[x][y] (+)= sum_c a[x][c] * b[y][c] for a B x B block; row strides in
 * floats: a and b rows are kc * 16 apart, acc rows accStride apart. */
static inline __attribute__((always_inline)) void VARIANT(gram_micro)(const float *a, const float *b, int kc,
                                                                    float *acc, size_t accStride, int first) {
  enum { B = GRAM_BLOCK, PART = 16 / VPARTS };
  VPART_T r[B * B * VPARTS];
#pragma GCC unroll 16
  for (int x = 0; x < B; x++) {
#pragma GCC unroll 16
    for (int y = 0; y < B; y++) {
#pragma GCC unroll 4
      for (int k = 0; k < VPARTS; k++) {
        if (first) {
          r[(x * B + y) * VPARTS + k] = (VPART_T){0};
        } else {
          memcpy(&r[(x * B + y) * VPARTS + k], acc + x * accStride + (size_t)y * 16 + k * PART, sizeof(VPART_T));
        }
      }
    }
  }
  const size_t row = (size_t)kc * 16;
  for (int c = 0; c < kc; c++) {
    VPART_T av[B][VPARTS], bv[B][VPARTS];
#pragma GCC unroll 4
    for (int x = 0; x < B; x++) {
      memcpy(av[x], a + x * row + (size_t)c * 16, sizeof av[x]);
      memcpy(bv[x], b + x * row + (size_t)c * 16, sizeof bv[x]);
    }
#pragma GCC unroll 4
    for (int x = 0; x < B; x++) {
#pragma GCC unroll 4
      for (int y = 0; y < B; y++) {
#pragma GCC unroll 4
        for (int k = 0; k < VPARTS; k++) r[(x * B + y) * VPARTS + k] += av[x][k] * bv[y][k];
      }
    }
  }
#pragma GCC unroll 16
  for (int x = 0; x < B; x++) {
#pragma GCC unroll 16
    for (int y = 0; y < B; y++) {
#pragma GCC unroll 4
      for (int k = 0; k < VPARTS; k++)
        memcpy(acc + x * accStride + (size_t)y * 16 + k * PART, &r[(x * B + y) * VPARTS + k], sizeof(VPART_T));
    }
  }
}

/* In-place transpose of 16 rows of 16 floats (see g_transposeLo). */
static inline __attribute__((always_inline)) void VARIANT(gram_transpose16)(v16sf *t) {
#pragma GCC unroll 4
  for (int step = 0; step < 4; step++) {
    const int b = 8 >> step;
#pragma GCC unroll 16
    for (int k = 0; k < 16; k++) {
      if (k & b) continue;
      const v16sf r0 = t[k], r1 = t[k + b];
      t[k] = __builtin_shuffle(r0, r1, g_transposeLo[step]);
      t[k + b] = __builtin_shuffle(r0, r1, g_transposeHi[step]);
    }
  }
}

/* One task (see the top of this file); `s->gram` holds gram_scratch_floats(job). */
static void VARIANT(gram_task)(const GramJob *job, Scratch *s, long task) {
  enum { B = GRAM_BLOCK };
  const int N = job->n, C = job->c;
  const int nPanels = gram_panels(job);
  const long chunk = task / nPanels;
  const int panel = (int)(task % nPanels);
  const long ps = job->p0 + 16 * chunk;
  const int lanes = job->p1 - ps < 16 ? (int)(job->p1 - ps) : 16;
  const int i0 = panel * GRAM_PANEL;
  const int ni = N - i0 < GRAM_PANEL ? N - i0 : GRAM_PANEL;
  const int niPad = (ni + B - 1) / B * B;
  const int nj = N - i0; /* j in [i0, N) */
  const int njPad = (nj + B - 1) / B * B;
  const int kcMax = C < GRAM_KC ? C : GRAM_KC;
  float *A = s->gram;
  float *Bp = A + (size_t)GRAM_PANEL * kcMax * 16;
  float *acc = Bp + (size_t)GRAM_MAX_BLOCK * kcMax * 16;
  const size_t accStride = (size_t)njPad * 16;

  for (int c0 = 0; c0 < C; c0 += GRAM_KC) {
    const int kc = C - c0 < GRAM_KC ? C - c0 : GRAM_KC;
    VARIANT(gram_pack)(job, i0, ni, niPad, c0, kc, ps, lanes, A);
    for (int jb = 0; jb < njPad; jb += B) {
      VARIANT(gram_pack)(job, i0 + jb, nj - jb < B ? nj - jb : B, B, c0, kc, ps, lanes, Bp);
      /* blocks with ib > jb hold only pairs j < i: the mirror writes them */
      for (int ib = 0; ib < niPad && ib <= jb; ib += B) {
        VARIANT(gram_micro)(A + (size_t)ib * kc * 16, Bp, kc, acc + (size_t)ib * accStride + (size_t)jb * 16,
                            accStride, c0 == 0);
      }
    }
  }

  /* Write-out: acc holds [pair][lane], out wants [lane][pair]. Transposing
   * 16 x 16 tiles in registers turns 32 scattered scalar stores per pair
   * (measured: 40 % of the kernel's time at C = 256) into contiguous
   * 16-float row pieces: row i gets columns j >= i from the 16 pairs
   * (x, y..y+15), column i (rows j) from the 16 pairs (x..x+15, y). */
  const size_t NN = (size_t)N * N;
  float *outBase = job->out + (size_t)(ps - job->p0) * NN;
  v16sf t[16];
  for (int x = 0; x < ni; x++) { /* rows i = i0 + x, columns j = i0 + y, y >= x */
    for (int y0 = x & ~15; y0 < nj; y0 += 16) {
      for (int k = 0; k < 16; k++) memcpy(&t[k], acc + (size_t)x * accStride + (size_t)(y0 + k) * 16, sizeof t[k]);
      VARIANT(gram_transpose16)(t);
      const int lo = x > y0 ? x - y0 : 0, hi = nj - y0 < 16 ? nj - y0 : 16;
      if (lo == 0 && hi == 16) {
        for (int l = 0; l < lanes; l++) memcpy(outBase + (size_t)l * NN + (size_t)(i0 + x) * N + i0 + y0, &t[l], 64);
      } else {
        for (int l = 0; l < lanes; l++)
          memcpy(outBase + (size_t)l * NN + (size_t)(i0 + x) * N + i0 + y0 + lo, (float *)&t[l] + lo, sizeof(float) * (size_t)(hi - lo));
      }
    }
  }
  for (int x0 = 0; x0 < ni; x0 += 16) { /* rows j = i0 + y, columns i = i0 + x, x <= y */
    for (int y = x0; y < nj; y++) {
      for (int k = 0; k < 16; k++) memcpy(&t[k], acc + (size_t)(x0 + k) * accStride + (size_t)y * 16, sizeof t[k]);
      VARIANT(gram_transpose16)(t);
      const int hi = (ni < y + 1 ? ni : y + 1) - x0 < 16 ? (ni < y + 1 ? ni : y + 1) - x0 : 16;
      if (hi == 16) {
        for (int l = 0; l < lanes; l++) memcpy(outBase + (size_t)l * NN + (size_t)(i0 + y) * N + i0 + x0, &t[l], 64);
      } else {
        for (int l = 0; l < lanes; l++) memcpy(outBase + (size_t)l * NN + (size_t)(i0 + y) * N + i0 + x0, &t[l], sizeof(float) * (size_t)hi);
      }
    }
  }
}
