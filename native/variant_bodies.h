/* Compiles the matching and Gram bodies for one SIMD variant, then clears its
 * parameters so the next variant can define its own. Include once per variant
 * (no include guard on purpose), after defining VARIANT, MAX_ACC, MAX_NDX,
 * VPART_T, VPARTS, GRAM_BLOCK, F16_ROW (and optionally HETMM_VALIGN), inside
 * the variant's `#pragma GCC target` region. */
#include "kernels_body.h"
#include "gram_body.h"
#undef VARIANT
#undef MAX_ACC
#undef MAX_NDX
#undef VPART_T
#undef VPARTS
#undef GRAM_BLOCK
#undef F16_ROW
#undef HETMM_VALIGN
