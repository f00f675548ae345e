/* Per-pixel L2 normalisation of feature maps (pixel_norm.c); registered by hetmm_native.c. */
#ifndef HETMM_PIXEL_NORM_H
#define HETMM_PIXEL_NORM_H
#include <node_api.h>

napi_value hetmm_js_l2_normalize_pixels(napi_env env, napi_callback_info info);

#endif
