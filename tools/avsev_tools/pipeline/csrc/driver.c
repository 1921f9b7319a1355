/*
 * Cross-architecture check: dlopen a model.so, score rows read from a file of float32
 * (row-major, NaN = missing) and print each probability with 9 significant digits.
 * Built for the bundle's architecture and run under qemu-user when it is not the host's.
 * Usage: driver MODEL.so ROWS.bin N_FEATURE [SYMBOL]
 * SYMBOL: avsev_predict_rows (default), avsev_forest_rows or avsev_tl2cgen_rows.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int32_t (*predict_rows_fn)(const float*, int64_t, int32_t, int32_t, float*);
typedef int32_t (*num_class_fn)(void);

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s MODEL.so ROWS.bin N_FEATURE [SYMBOL]\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 3;
  }
  predict_rows_fn predict_rows = (predict_rows_fn)dlsym(lib, argc == 5 ? argv[4] : "avsev_predict_rows");
  num_class_fn num_class = (num_class_fn)dlsym(lib, "avsev_num_class");
  if (!predict_rows || !num_class) {
    fprintf(stderr, "dlsym: %s\n", dlerror());
    return 3;
  }
  const int32_t nf = atoi(argv[3]);
  FILE* f = fopen(argv[2], "rb");
  if (!f) return 4;
  fseek(f, 0, SEEK_END);
  const long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  const int64_t n = bytes / (long)(sizeof(float) * nf);
  float* x = malloc((size_t)bytes);
  if (fread(x, 1, (size_t)bytes, f) != (size_t)bytes) return 4;
  fclose(f);
  const int32_t nc = num_class();
  float* out = malloc(sizeof(float) * (size_t)(n * nc));
  if (predict_rows(x, n, nf, 0, out) != 0) return 5;
  for (int64_t r = 0; r < n; ++r) {
    for (int32_t c = 0; c < nc; ++c) printf(c ? " %.9g" : "%.9g", out[r * nc + c]);
    printf("\n");
  }
  return 0;
}
