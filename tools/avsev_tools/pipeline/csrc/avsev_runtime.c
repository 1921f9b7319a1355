/*
 * Compiled next to the tl2cgen-generated trees into model.so:
 *  - avsev_predict_rows: the batch loop in C (NaN = missing), one call per request, on the
 *    branch-free evaluator (avsev_forest.c) or tl2cgen's if-else trees (avsev_tl2cgen_rows);
 *  - avsev_shap: exact path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2, as in
 *    XGBoost's PredictContribution) over the tree arrays of trees.bin, numeric and
 *    categorical splits.
 * Needs only libc and libm.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "header.h"

#define AVSEV_ABI_VERSION 2 /* 2: AvsevTrees carries categorical splits (at its end) */

int32_t avsev_abi_version(void) { return AVSEV_ABI_VERSION; }

int32_t avsev_num_feature(void) { return get_num_feature(); }

int32_t avsev_num_class(void) {
  int32_t n[N_TARGET];
  get_num_class(n);
  return n[0];
}

/* The branch-free evaluator generated next to the trees (avsev_forest.c). */
int32_t avsev_forest_available(void);
int32_t avsev_forest_rows(const float* x, int64_t n, int32_t nf, int32_t pred_margin,
                          float* out);

#ifndef AVSEV_FOREST_MIN_ROWS
#define AVSEV_FOREST_MIN_ROWS 1 /* from this many rows on, the branch-free evaluator */
#endif

/* tl2cgen's if-else trees, row by row: score n rows of nf floats (row-major,
 * NaN = missing) into out[n * n_class]. Returns 0, or -1 when nf is not the model's
 * feature count. */
int32_t avsev_tl2cgen_rows(const float* x, int64_t n, int32_t nf, int32_t pred_margin,
                           float* out) {
  if (nf != get_num_feature()) return -1;
  const int32_t nc = avsev_num_class();
  union Entry row[nf > 0 ? nf : 1];
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * nf;
    for (int32_t j = 0; j < nf; ++j) {
      if (isnan(xr[j])) {
        row[j].missing = -1;
      } else {
        row[j].fvalue = xr[j];
      }
    }
    float* o = out + r * nc;
    memset(o, 0, sizeof(float) * (size_t)nc);
    predict(row, pred_margin, o);
  }
  return 0;
}

/* Score n rows with the evaluator that wins for the call's shape (see the bench). */
int32_t avsev_predict_rows(const float* x, int64_t n, int32_t nf, int32_t pred_margin,
                           float* out) {
  if (n >= AVSEV_FOREST_MIN_ROWS && avsev_forest_available()) {
    return avsev_forest_rows(x, n, nf, pred_margin, out);
  }
  return avsev_tl2cgen_rows(x, n, nf, pred_margin, out);
}

/* Answers as the API gives them: every probability rounded to `digits` decimals exactly as
 * Python's round(float(p), digits) does, and each row's first largest class.
 * For a float32 p and digits <= 9, p * 10^digits is exact in double (24 + 21 bits), rint
 * rounds it half to even as Python's correctly rounded decimal conversion does, and the
 * division is correctly rounded: the nearest double to the decimal, which is what Python
 * returns. Returns 0, or -1 when digits is outside 0..9. */
int32_t avsev_round_rows(const float* p, int64_t n, int32_t nc, int32_t digits,
                         double* rounded, int32_t* best) {
  if (digits < 0 || digits > 9) return -1;
  double scale = 1.0;
  for (int32_t d = 0; d < digits; ++d) scale *= 10.0;
  for (int64_t r = 0; r < n; ++r) {
    const float* pr = p + r * nc;
    int32_t b = 0;
    for (int32_t c = 0; c < nc; ++c) {
      rounded[r * nc + c] = rint((double)pr[c] * scale) / scale;
      if (pr[c] > pr[b]) b = c;
    }
    best[r] = b;
  }
  return 0;
}

/* ---- TreeSHAP ---------------------------------------------------------------------- */

typedef struct {
  const int32_t* left;        /* child index (global), -1 for a leaf */
  const int32_t* right;
  const int32_t* feature;
  const int32_t* default_left;
  const float* threshold;     /* go left when x < threshold */
  const double* value;        /* leaf value */
  const double* cover;        /* sum of hessians */
  const int32_t* roots;       /* root node of each tree */
  const int32_t* tree_class;  /* output group of each tree */
  const double* tree_expect;  /* cover-weighted mean leaf value of each tree */
  const double* base_margin;  /* per class */
  int32_t n_trees;
  int32_t n_class;
  int32_t n_feature;
  int32_t max_depth;
  /* ABI 2: categorical splits. A node with split_type 1 sends a non-missing value right
   * when it is in [0, 2^24) and its integer part c is in the node's set: bit c % 32 of word
   * c / 32 of its cat_size words from cat_bits[cat_offset] (XGBoost's common::Decision). */
  const int32_t* split_type;
  const int32_t* cat_offset;
  const int32_t* cat_size;
  const uint32_t* cat_bits;
} AvsevTrees;

/* Whether a non-missing value takes the right child of categorical node `node`. */
static int category_goes_right(const AvsevTrees* t, int32_t node, float v) {
  if (!(v >= 0.0f && v < 16777216.0f)) return 0; /* negative or beyond 2^24: not a category */
  const uint32_t c = (uint32_t)v;
  if ((int32_t)(c >> 5) >= t->cat_size[node]) return 0;
  return (int)((t->cat_bits[t->cat_offset[node] + (c >> 5)] >> (c & 31u)) & 1u);
}

typedef struct {
  int32_t feature_index;
  double zero_fraction;
  double one_fraction;
  double pweight;
} PathElement;

static void extend_path(PathElement* u, int d, double zero_fraction, double one_fraction,
                        int feature_index) {
  u[d].feature_index = feature_index;
  u[d].zero_fraction = zero_fraction;
  u[d].one_fraction = one_fraction;
  u[d].pweight = (d == 0 ? 1.0 : 0.0);
  for (int i = d - 1; i >= 0; --i) {
    u[i + 1].pweight += one_fraction * u[i].pweight * (i + 1) / (double)(d + 1);
    u[i].pweight = zero_fraction * u[i].pweight * (d - i) / (double)(d + 1);
  }
}

static void unwind_path(PathElement* u, int d, int path_index) {
  const double one_fraction = u[path_index].one_fraction;
  const double zero_fraction = u[path_index].zero_fraction;
  double next_one_portion = u[d].pweight;
  for (int i = d - 1; i >= 0; --i) {
    if (one_fraction != 0) {
      const double tmp = u[i].pweight;
      u[i].pweight = next_one_portion * (d + 1) / ((double)(i + 1) * one_fraction);
      next_one_portion = tmp - u[i].pweight * zero_fraction * (d - i) / (double)(d + 1);
    } else {
      u[i].pweight = (u[i].pweight * (d + 1)) / (zero_fraction * (d - i));
    }
  }
  for (int i = path_index; i < d; ++i) {
    u[i].feature_index = u[i + 1].feature_index;
    u[i].zero_fraction = u[i + 1].zero_fraction;
    u[i].one_fraction = u[i + 1].one_fraction;
  }
}

static double unwound_path_sum(const PathElement* u, int d, int path_index) {
  const double one_fraction = u[path_index].one_fraction;
  const double zero_fraction = u[path_index].zero_fraction;
  double next_one_portion = u[d].pweight;
  double total = 0;
  for (int i = d - 1; i >= 0; --i) {
    if (one_fraction != 0) {
      const double tmp = next_one_portion * (d + 1) / ((double)(i + 1) * one_fraction);
      total += tmp;
      next_one_portion = u[i].pweight - tmp * zero_fraction * ((d - i) / (double)(d + 1));
    } else if (zero_fraction != 0) {
      total += (u[i].pweight / zero_fraction) / ((d - i) / (double)(d + 1));
    }
  }
  return total;
}

static void tree_shap(const AvsevTrees* t, const float* x, double* phi, int node, int d,
                      PathElement* parent_path, double parent_zero, double parent_one,
                      int parent_feature) {
  PathElement* path = parent_path + d + 1;
  memcpy(path, parent_path, sizeof(PathElement) * (size_t)(d + 1));
  extend_path(path, d, parent_zero, parent_one, parent_feature);

  const int32_t left = t->left[node];
  if (left < 0) {
    for (int i = 1; i <= d; ++i) {
      const double w = unwound_path_sum(path, d, i);
      const PathElement* el = &path[i];
      phi[el->feature_index] += w * (el->one_fraction - el->zero_fraction) * t->value[node];
    }
    return;
  }
  const int32_t right = t->right[node];
  const int32_t split = t->feature[node];
  const float v = x[split];
  int32_t hot;
  if (isnan(v)) {
    hot = t->default_left[node] ? left : right;
  } else if (t->split_type[node]) {
    hot = category_goes_right(t, node, v) ? right : left;
  } else {
    hot = v < t->threshold[node] ? left : right;
  }
  const int32_t cold = hot == left ? right : left;
  const double w = t->cover[node];
  const double hot_zero = t->cover[hot] / w;
  const double cold_zero = t->cover[cold] / w;
  double incoming_zero = 1;
  double incoming_one = 1;

  int path_index = 0;
  for (; path_index <= d; ++path_index) {
    if (path[path_index].feature_index == split) break;
  }
  if (path_index != d + 1) {
    incoming_zero = path[path_index].zero_fraction;
    incoming_one = path[path_index].one_fraction;
    unwind_path(path, d, path_index);
    d -= 1;
  }
  tree_shap(t, x, phi, hot, d + 1, path, hot_zero * incoming_zero, incoming_one, split);
  tree_shap(t, x, phi, cold, d + 1, path, cold_zero * incoming_zero, 0, split);
}

/* SHAP values of one row: phi[n_class * (n_feature + 1)], the last column of each class
 * holding its base value (base margin + expected tree outputs). Only the trees of class
 * `only_class` are walked when it is >= 0 (the other classes' rows stay 0).
 * Returns 0, or -1 on a shape mismatch. */
int32_t avsev_shap(const AvsevTrees* t, const float* x, int32_t nf, int32_t only_class,
                   double* phi) {
  if (nf != t->n_feature) return -1;
  const int32_t stride = nf + 1;
  memset(phi, 0, sizeof(double) * (size_t)(t->n_class * stride));
  const int depth = t->max_depth + 2;
  PathElement paths[(depth * (depth + 1)) / 2 + 1];
  for (int32_t k = 0; k < t->n_trees; ++k) {
    const int32_t c = t->tree_class[k];
    if (only_class >= 0 && c != only_class) continue;
    double* p = phi + (size_t)c * stride;
    tree_shap(t, x, p, t->roots[k], 0, paths, 1.0, 1.0, -1);
    p[nf] += t->tree_expect[k];
  }
  for (int32_t c = 0; c < t->n_class; ++c) {
    if (only_class >= 0 && c != only_class) continue;
    phi[(size_t)c * stride + nf] += t->base_margin[c];
  }
  return 0;
}
