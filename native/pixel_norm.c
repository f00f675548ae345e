/*
 * l2NormalizePixels(src, srcOffset, c, hw, out): void, synchronous.
 * out[ch * hw + p] = src[srcOffset + ch * hw + p] / max(||src[., p]||, 1e-12)
 * for one [C, HW] map. The arithmetic is that of l2NormalisePixels in
 * src/backbone/backbone.ts (the reference), so results are bit-identical:
 * squares of float32 values are exact in double, summed over channels in
 * channel order, 1 / max(sqrt, 1e-12) in double, product rounded to float32.
 * Pixels are processed in blocks so the block's sums stay in L1.
 */
#define NAPI_VERSION 8
#include "pixel_norm.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define HETMM_NORM_EPSILON 1e-12
#define HETMM_NORM_BLOCK 512

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(HETMM_NO_X86_SIMD)
#define HETMM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HETMM_CLONES
#endif

HETMM_CLONES
static void l2_normalize(const float *restrict src, float *restrict out, size_t c, size_t hw) {
  double sum[HETMM_NORM_BLOCK];
  for (size_t p0 = 0; p0 < hw; p0 += HETMM_NORM_BLOCK) {
    const size_t n = hw - p0 < HETMM_NORM_BLOCK ? hw - p0 : HETMM_NORM_BLOCK;
    for (size_t p = 0; p < n; p++) sum[p] = 0.0;
    for (size_t ch = 0; ch < c; ch++) {
      const float *s = src + ch * hw + p0;
      for (size_t p = 0; p < n; p++) {
        const double v = s[p];
        sum[p] += v * v;
      }
    }
    for (size_t p = 0; p < n; p++) {
      const double norm = sqrt(sum[p]);
      sum[p] = 1.0 / (norm > HETMM_NORM_EPSILON ? norm : HETMM_NORM_EPSILON);
    }
    for (size_t ch = 0; ch < c; ch++) {
      const float *s = src + ch * hw + p0;
      float *o = out + ch * hw + p0;
      for (size_t p = 0; p < n; p++) o[p] = (float)((double)s[p] * sum[p]);
    }
  }
}

static napi_value range_error(napi_env env, const char *msg) {
  napi_throw_range_error(env, "E_ARGUMENT", msg);
  return NULL;
}

static int float_array(napi_env env, napi_value v, float **data, size_t *length) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, length, &p, &ab, &off) != napi_ok || type != napi_float32_array) return 0;
  *data = p;
  return 1;
}

static int whole(napi_env env, napi_value v, int64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

napi_value hetmm_js_l2_normalize_pixels(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5)
    return range_error(env, "l2NormalizePixels expects 5 arguments");
  float *src, *out;
  size_t srcLength, outLength;
  if (!float_array(env, argv[0], &src, &srcLength) || !float_array(env, argv[4], &out, &outLength))
    return range_error(env, "l2NormalizePixels: src and out must be Float32Arrays");
  int64_t offset, c, hw;
  if (!whole(env, argv[1], &offset) || !whole(env, argv[2], &c) || !whole(env, argv[3], &hw) || c < 1 || hw < 1 ||
      c > INT32_MAX || hw > INT32_MAX)
    return range_error(env, "l2NormalizePixels: srcOffset, c, hw must be integers (c, hw >= 1)");
  const uint64_t elements = (uint64_t)c * (uint64_t)hw;
  if ((uint64_t)offset + elements > srcLength || elements > outLength)
    return range_error(env, "l2NormalizePixels: an array is shorter than its shape");
  if (out < src + offset + elements && src + offset < out + elements)
    return range_error(env, "l2NormalizePixels: out must not overlap src");
  l2_normalize(src + offset, out, (size_t)c, (size_t)hw);
  return NULL;
}
