// Peak f32 FMA throughput of this CPU: independent chains of fused multiply-adds
// in registers (no memory traffic), one thread per core, AVX2 (ymm) and, where the CPU
// has it, AVX-512 (zmm). Prints GFLOP/s per width: the ceiling of any f32 matrix code.
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAINS 12
static long ITERS = 200000000L;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx2,fma"))) static float run_ymm(long iters) {
  __m256 acc[CHAINS];
  __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
  for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
  for (int i = 1; i < CHAINS; i++) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}

__attribute__((target("avx512f"))) static float run_zmm(long iters) {
  __m512 acc[CHAINS];
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
  for (long n = 0; n < iters; n++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

struct job { int zmm; long iters; float sink; };

static void *work(void *p) {
  struct job *j = p;
  j->sink = j->zmm ? run_zmm(j->iters) : run_ymm(j->iters);
  return NULL;
}

static double measure(int zmm, int threads) {
  pthread_t t[64];
  struct job jobs[64];
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (int i = 0; i < threads; i++) {
      jobs[i] = (struct job){zmm, ITERS / 4, 0};
      pthread_create(&t[i], NULL, work, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    double flops = 2.0 * CHAINS * (zmm ? 16 : 8) * (double)(ITERS / 4) * threads;
    double g = flops / dt / 1e9;
    if (g > best) best = g;
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (threads < 1 || threads > 64) threads = 2;
  __builtin_cpu_init();
  printf("threads %d\n", threads);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    printf("ymm (AVX2 FMA)    %.1f GFLOP/s\n", measure(0, threads));
  if (__builtin_cpu_supports("avx512f"))
    printf("zmm (AVX-512 FMA) %.1f GFLOP/s\n", measure(1, threads));
  return 0;
}
