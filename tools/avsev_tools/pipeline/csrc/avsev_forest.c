/*
 * Branch-free tree evaluation, appended by the build to the generated trees
 * (`avsev.pipeline.compile.generate_forest` writes AVSEV_FOREST_* and forest_block above).
 *
 * Rows are scored AVSEV_BLOCK at a time. A block is transposed to column-major
 * (xb[feature * AVSEV_BLOCK + row]) so that every split compares AVSEV_BLOCK contiguous
 * values against one threshold; each tree is evaluated bottom-up as nested selects
 * (node value = go left ? left value : right value), which compilers turn into vector
 * compares and blends: no data-dependent branch, no gather. The missing-value default
 * direction is folded into the comparison (`x < t ? L : R` sends NaN right,
 * `x >= t ? R : L` sends it left), with XGBoost's float32 thresholds and `<`.
 * Trees are added in order onto the base margin in float32, then softmax as XGBoost does.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

int32_t avsev_forest_available(void) { return AVSEV_FOREST_AVAILABLE; }

int32_t avsev_forest_block_rows(void) { return AVSEV_BLOCK; }

#if AVSEV_FOREST_AVAILABLE

#define AVSEV_LANES 8 /* AVX2: 8 floats; NEON and SSE: 2 vectors of 4 */

static void finish_row(const float* acc, int32_t r, int32_t pred_margin, float* o) {
  for (int32_t c = 0; c < AVSEV_FOREST_NC; ++c) o[c] = acc[c * AVSEV_BLOCK + r];
  if (pred_margin) return;
#if AVSEV_FOREST_SOFTMAX
  float wmax = o[0];
  for (int32_t c = 1; c < AVSEV_FOREST_NC; ++c) wmax = o[c] > wmax ? o[c] : wmax;
  float wsum = 0.0f;
  for (int32_t c = 0; c < AVSEV_FOREST_NC; ++c) {
    o[c] = expf(o[c] - wmax);
    wsum += o[c];
  }
  for (int32_t c = 0; c < AVSEV_FOREST_NC; ++c) o[c] /= wsum;
#endif
}

/* Score n rows of nf floats (row-major, NaN = missing) into out[n * n_class].
 * Returns 0, or -1 when nf is not the model's feature count. */
int32_t avsev_forest_rows(const float* x, int64_t n, int32_t nf, int32_t pred_margin,
                          float* out) {
  if (nf != AVSEV_FOREST_NF) return -1;
  float xb[AVSEV_FOREST_NF * AVSEV_BLOCK] __attribute__((aligned(64)));
  float acc[AVSEV_FOREST_NC * AVSEV_BLOCK] __attribute__((aligned(64)));
  for (int64_t r0 = 0; r0 < n; r0 += AVSEV_BLOCK) {
    const int32_t m = (int32_t)(n - r0 < AVSEV_BLOCK ? n - r0 : AVSEV_BLOCK);
    const float* xr = x + r0 * AVSEV_FOREST_NF;
    for (int32_t r = 0; r < m; ++r) {
      for (int32_t j = 0; j < AVSEV_FOREST_NF; ++j) xb[j * AVSEV_BLOCK + r] = xr[r * AVSEV_FOREST_NF + j];
    }
    /* a short block is scored in whole vectors: pad it to a multiple of AVSEV_LANES */
    const int32_t mv = (m + AVSEV_LANES - 1) / AVSEV_LANES * AVSEV_LANES;
    for (int32_t r = m; r < mv; ++r) {
      for (int32_t j = 0; j < AVSEV_FOREST_NF; ++j) xb[j * AVSEV_BLOCK + r] = 0.0f;
    }
    for (int32_t c = 0; c < AVSEV_FOREST_NC; ++c) {
      for (int32_t r = 0; r < mv; ++r) acc[c * AVSEV_BLOCK + r] = avsev_forest_base[c];
    }
    forest_block(xb, acc, mv);
    for (int32_t r = 0; r < m; ++r) finish_row(acc, r, pred_margin, out + (r0 + r) * AVSEV_FOREST_NC);
  }
  return 0;
}

#else

int32_t avsev_forest_rows(const float* x, int64_t n, int32_t nf, int32_t pred_margin,
                          float* out) {
  (void)x, (void)n, (void)nf, (void)pred_margin, (void)out;
  return -2; /* this model has no branch-free evaluator (see the build's card) */
}

#endif
