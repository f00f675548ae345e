/*
 * quantizeInt8 with AVX-512 (the addon uses it when the int8 kernel runs,
 * i.e. on VNNI CPUs). Bit for bit the arithmetic of the scalar steps in
 * hetmm_native.c (quantize_int8_pixels, which also packs the pixels past
 * the last whole 16-pixel block) and of quantizeMap in
 * src/kernels/fast/int8.ts: in double, x = v * (127 / max),
 * q = sign(x) * floor(|x| + 0.5); four channels of a pixel packed into one
 * 32-bit word.
 *
 * Why: the query is quantised on every match call, and the scalar loop
 * (strided byte stores, floor() calls) took about 11 ns per value, 11 ms of
 * CPU for a layer1 query (256 x 64 x 64): a third of that layer's match.
 *
 * `mx` (hw floats, zeroed by the caller) and `inv` (hw doubles) are scratch.
 */

/* q = round-half-away(v * inv) for 8 values, as int32. */
static inline __m256i i8q_round8(__m256 v, __m512d inv) {
  const __m512d x = _mm512_mul_pd(_mm512_cvtps_pd(v), inv);
  const __m512d a = _mm512_abs_pd(x);
  const __m512d f = _mm512_roundscale_pd(_mm512_add_pd(a, _mm512_set1_pd(0.5)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m256i m = _mm512_cvttpd_epi32(f);
  const __mmask8 neg = _mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_LT_OQ);
  return _mm256_mask_sub_epi32(m, neg, _mm256_setzero_si256(), m);
}

static void quantize_int8_avx512(const float *v, int64_t c, int64_t hw, uint8_t *o, float *scale, int32_t *sum,
                                 int offsetBy, float *mx, double *inv) {
  const int64_t hw16 = hw & ~(int64_t)15;
  for (int64_t ch = 0; ch < c; ch++) {
    const float *row = v + ch * hw;
    for (int64_t p = 0; p < hw16; p += 16) {
      const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(row + p));
      /* max_ps(a, m) returns m when a is NaN, as the scalar `a > m` test keeps m */
      _mm512_storeu_ps(mx + p, _mm512_max_ps(a, _mm512_loadu_ps(mx + p)));
    }
  }
  quantize_int8_max(v, c, hw, hw16, mx);
  quantize_int8_scales(mx, hw, scale, inv, sum);
  const int64_t groups = (c + 3) / 4;
  const __m512i low = _mm512_set1_epi32(0xff), off = _mm512_set1_epi32(offsetBy);
  for (int64_t g = 0; g < groups; g++) {
    uint32_t *dst = (uint32_t *)o + g * hw;
    for (int64_t p = 0; p < hw16; p += 16) {
      const __m512d invLo = _mm512_loadu_pd(inv + p), invHi = _mm512_loadu_pd(inv + p + 8);
      __m512i word = _mm512_setzero_si512(), total = _mm512_setzero_si512();
      for (int k = 0; k < 4; k++) {
        const int64_t ch = 4 * g + k;
        __m512i q = _mm512_setzero_si512(); /* channels past C: 0 */
        if (ch < c) {
          const __m512 x = _mm512_loadu_ps(v + ch * hw + p);
          const __m256i lo = i8q_round8(_mm512_castps512_ps256(x), invLo);
          const __m256i hi = i8q_round8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)), invHi);
          q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
          total = _mm512_add_epi32(total, q);
        }
        word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, off), low), 8 * k));
      }
      _mm512_storeu_si512(dst + p, word);
      if (sum) _mm512_storeu_si512(sum + p, _mm512_add_epi32(_mm512_loadu_si512(sum + p), total));
    }
    quantize_int8_pixels(v, c, hw, g, hw16, inv, dst, sum, offsetBy);
  }
}
