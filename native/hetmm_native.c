/*
 * hetmm_native: the fast CPU backend's hot kernels, as a plain N-API addon
 * (node_api.h only).
 *
 *   matchLayer  forward + backward window matching of one query map against
 *               N templates (float32 or float16 bits), one layer.
 *   pixelGram   per-pixel Gram matrices of a feature stack (for PTS).
 *   matchLayerInt8  matchLayer on int8-quantised maps (AVX-512 VNNI only,
 *               int8_body.h); quantizeInt8 packs one map (synchronous; the
 *               reference is src/kernels/fast/int8.ts); alignmentOffset
 *               lets the caller place packed maps on 64-byte boundaries.
 *
 * matchLayerHere / matchLayerInt8Here run the same kernels synchronously and
 * single-threaded on the calling thread, without the pool (for one pipeline
 * per core, each on its own worker thread: see run_match_here).
 *
 * The pooled calls run asynchronously (napi_create_async_work) and return a Promise, so
 * the event loop is never blocked. The work itself is spread over a
 * persistent pthread pool created once per process, by the first init(threads)
 * call (the JS loader passes hetmm's `threads` setting; 0 = one per CPU); per-thread scratch grows when needed and is otherwise reused,
 * so the hot path does not allocate. One job runs on the pool at a time;
 * concurrent calls queue on a mutex.
 *
 * The kernels are compiled three times from kernels_body.h and gram_body.h (AVX-512,
 * AVX2+FMA+F16C, baseline SSE2); the best variant the CPU supports is the
 * default, and a caller may force a weaker one by name (for conformance
 * tests and benchmarks).
 *
 * The JS side (src/kernels/fast/binding.ts) validates every argument before
 * calling; the checks here only guard memory safety.
 */
#define NAPI_VERSION 8
#include <node_api.h>

/* x86: the AVX-512 and AVX2 variants and the int8 VNNI kernel are compiled
 * with per-function target pragmas and chosen at run time from CPUID. Any
 * other target (arm64, ...) builds the generic variant only (GCC vector
 * extensions, portable). -DHETMM_NO_X86_SIMD builds that portable addon on
 * x86 too, which is how the guards are tested (docs/INSTALL.md). */
#if (defined(__x86_64__) || defined(__i386__)) && !defined(HETMM_NO_X86_SIMD)
#define HETMM_X86 1
#include <immintrin.h>
#else
#define HETMM_X86 0
#endif

/* The JS-visible surface's version: bump it whenever a function, its
 * arguments or info() change; src/kernels/fast/binding.ts refuses an addon
 * whose `abi` differs (a stale build or prebuild). */
#define HETMM_NATIVE_ABI 6 /* 2: l2NormalizePixels; 3: alignmentOffset; 4: matchLayerHere, matchLayerInt8Here; 5: init(threads); 6: match template indices */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pixel_norm.h"

typedef float v16sf __attribute__((vector_size(64)));
typedef int32_t v16si __attribute__((vector_size(64)));
typedef float v8sf __attribute__((vector_size(32)));
typedef float v4sf __attribute__((vector_size(16)));

/* Lane-wise max of two v16sf by compare-and-select (C has no vector `?:`). */
#define HETMM_VMAX(a, b) \
  ((v16sf)((((v16si)(a)) & ((a) > (b))) | (((v16si)(b)) & ~((a) > (b)))))

/* ---- jobs and scratch ---------------------------------------------------- */

typedef struct Scratch {
  float *tpad;
  size_t tpadCap; /* in floats */
  float *fwd;
  size_t fwdCap;
  float *bwd;
  size_t bwdCap;
  float *gram;
  size_t gramCap;
  int used;   /* took at least one item of the current job */
  int failed; /* an allocation failed during the current job */
} Scratch;

struct MatchJob;
typedef void (*MatchItemFn)(const struct MatchJob *, Scratch *, int t, int y0, int y1);

typedef struct MatchJob {
  int n, c, h, w;
  int rf, rb, r; /* forward / backward radius, r = max of both */
  int f16;
  int f16Scratch; /* convert float16 templates into scratch once per item (see match_item) */
  const float *t32;
  const uint16_t *t16;
  const float *query; /* [C][H][W] */
  float *qpad;        /* [H][C][wq] */
  int wq, padL, wt, wb, padB;
  int bands, bandRows;
  long nItems;
  atomic_long next;
  MatchItemFn item;
  float *fwdOut, *bwdOut;
  /* int8 (matchLayerInt8): c is then the number of 4-channel groups */
  int i8;
  const uint32_t *q8, *t8;
  const float *qScale, *tScale;
  const int32_t *tSum;
  /* when set, work item template t is stored template index[t] (n entries; template preselection) */
  const int32_t *index;
} MatchJob;

struct GramJob;
typedef void (*GramItemFn)(const struct GramJob *, Scratch *, long task);

typedef struct GramJob {
  int n, c, h, w;
  long p0, p1;
  int f16;
  const float *t32;
  const uint16_t *t16;
  float *out;
  long nItems;
  atomic_long next;
  GramItemFn item;
} GramJob;

/* Grow a 64-byte aligned float buffer to at least `want` floats (contents lost). */
static int ensure_floats(float **buf, size_t *cap, size_t want) {
  if (*cap >= want) return 1;
  free(*buf);
  size_t bytes = ((want * sizeof(float)) + 63) & ~(size_t)63;
  *buf = aligned_alloc(64, bytes);
  *cap = *buf ? want : 0;
  return *buf != NULL;
}

static inline float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while (!(mant & 0x400u));
      mant &= 0x3ffu;
      bits = sign | ((uint32_t)(112 - e) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* ---- the three compiled variants ----------------------------------------- */

#if HETMM_X86
#define VARIANT(name) name##_avx512
#define MAX_ACC 28
#define MAX_NDX 8
#define VPART_T v16sf
#define VPARTS 1
#define GRAM_BLOCK 4
#define HETMM_VALIGN 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx2,fma,f16c")
static inline void f16_row_avx512(float *dst, const uint16_t *src, int n) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
  for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}
#define F16_ROW f16_row_avx512
#include "variant_bodies.h"
#pragma GCC pop_options

#define VARIANT(name) name##_avx2
#define MAX_ACC 6
#define MAX_NDX 6
#define VPART_T v8sf
#define VPARTS 2
#define GRAM_BLOCK 2
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
static inline void f16_row_avx2(float *dst, const uint16_t *src, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}
#define F16_ROW f16_row_avx2
#include "variant_bodies.h"
#pragma GCC pop_options
#endif /* HETMM_X86 */

#define VARIANT(name) name##_generic
#define MAX_ACC 2
#define MAX_NDX 2
#define VPART_T v4sf
#define VPARTS 4
#define GRAM_BLOCK 1
static inline void f16_row_generic(float *dst, const uint16_t *src, int n) {
  for (int i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}
#define F16_ROW f16_row_generic
#include "variant_bodies.h"

/* quantizeInt8's arithmetic (the reference is quantizeMap in src/kernels/fast/int8.ts), in double:
 * scale = max|v| / 127, value = round-half-away(v * 127 / max) + offsetBy, four channels of a pixel
 * packed into one word, [ceil(C/4)][hw]. The scalar steps, for pixels [p0, hw);
 * int8_quantize_body.h vectorises whole 16-pixel blocks and finishes with these. */
static void quantize_int8_max(const float *v, int64_t c, int64_t hw, int64_t p0, float *mx) {
  for (int64_t ch = 0; ch < c; ch++) {
    const float *row = v + ch * hw;
    for (int64_t p = p0; p < hw; p++) {
      float a = fabsf(row[p]);
      if (a > mx[p]) mx[p] = a;
    }
  }
}

static void quantize_int8_scales(const float *mx, int64_t hw, float *scale, double *inv, int32_t *sum) {
  for (int64_t p = 0; p < hw; p++) {
    scale[p] = (float)((double)mx[p] / 127.0);
    inv[p] = mx[p] > 0 ? 127.0 / (double)mx[p] : 0.0;
    if (sum) sum[p] = 0;
  }
}

/* Channel group g, pixels [p0, hw): packed words into dst (the group's first word), sums added. */
static void quantize_int8_pixels(const float *v, int64_t c, int64_t hw, int64_t g, int64_t p0, const double *inv,
                                 uint32_t *dst, int32_t *sum, int offsetBy) {
  for (int64_t p = p0; p < hw; p++) {
    uint32_t word = 0;
    for (int k = 0; k < 4; k++) {
      const int64_t ch = 4 * g + k;
      int q = 0; /* channels past C */
      if (ch < c) {
        double x = (double)v[ch * hw + p] * inv[p];
        q = x < 0 ? -(int)floor(0.5 - x) : (int)floor(x + 0.5);
        if (sum) sum[p] += q;
      }
      word |= (uint32_t)(uint8_t)(q + offsetBy) << (8 * k);
    }
    dst[p] = word;
  }
}

#if HETMM_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512vnni,avx2,fma")
#include "int8_body.h"
#include "int8_quantize_body.h"
#pragma GCC pop_options
#endif

/* int8 matching needs AVX-512 VNNI (Zen 4, Ice Lake and later). */
static int g_int8Supported = 0;

typedef struct Variant {
  const char *name;
  MatchItemFn match;
  GramItemFn gram;
  int supported;
} Variant;

/* Best first. */
static Variant g_variants[] = {
#if HETMM_X86
    {"avx512", match_item_avx512, gram_task_avx512, 0},
    {"avx2", match_item_avx2, gram_task_avx2, 0},
#endif
    {"generic", match_item_generic, gram_task_generic, 1},
};
#define N_VARIANTS ((int)(sizeof g_variants / sizeof g_variants[0]))

static void detect_variants(void) {
#if HETMM_X86
  __builtin_cpu_init();
  g_variants[0].supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  g_variants[1].supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  g_int8Supported = g_variants[0].supported && __builtin_cpu_supports("avx512vnni");
  /* F16C is not in __builtin_cpu_supports's list on every GCC; every AVX2 CPU has it. */
#endif
}

/* ---- thread pool --------------------------------------------------------- */

typedef void (*PoolRunFn)(void *job, Scratch *s);

typedef struct Pool {
  pthread_mutex_t jobLock; /* one job on the pool at a time */
  pthread_mutex_t m;
  pthread_cond_t start, done;
  int nthreads;
  Scratch *scratch;
  unsigned long generation;
  int running;
  PoolRunFn run;
  void *job;
  float *qpad; /* shared per-job query buffer, guarded by jobLock */
  size_t qpadCap;
} Pool;

static Pool g_pool;
static pthread_once_t g_detectOnce = PTHREAD_ONCE_INIT;
/* the pool is started by the first init() of any thread of the process; later ones find it running */
static pthread_mutex_t g_poolStart = PTHREAD_MUTEX_INITIALIZER;
static int g_poolStarted = 0;
static int g_poolOk = 0;

typedef struct WorkerArg {
  int id;
} WorkerArg;

static void *worker_main(void *arg) {
  int id = ((WorkerArg *)arg)->id;
  free(arg);
  unsigned long seen = 0;
  for (;;) {
    pthread_mutex_lock(&g_pool.m);
    while (g_pool.generation == seen) pthread_cond_wait(&g_pool.start, &g_pool.m);
    seen = g_pool.generation;
    PoolRunFn run = g_pool.run;
    void *job = g_pool.job;
    pthread_mutex_unlock(&g_pool.m);

    run(job, &g_pool.scratch[id]);

    pthread_mutex_lock(&g_pool.m);
    if (--g_pool.running == 0) pthread_cond_signal(&g_pool.done);
    pthread_mutex_unlock(&g_pool.m);
  }
  return NULL;
}

/* Starts the pool with `requested` threads (0: one per online CPU). Caller holds g_poolStart. */
static void pool_start(int requested) {
  pthread_mutex_init(&g_pool.jobLock, NULL);
  pthread_mutex_init(&g_pool.m, NULL);
  pthread_cond_init(&g_pool.start, NULL);
  pthread_cond_init(&g_pool.done, NULL);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  g_pool.nthreads = requested >= 1 ? requested : (cpus >= 1 ? (int)cpus : 1);
  g_pool.scratch = calloc((size_t)g_pool.nthreads, sizeof(Scratch));
  if (!g_pool.scratch) return;
  int started = 0;
  for (int i = 0; i < g_pool.nthreads; i++) {
    WorkerArg *a = malloc(sizeof *a);
    if (!a) break;
    a->id = i;
    pthread_t tid;
    if (pthread_create(&tid, NULL, worker_main, a) != 0) {
      free(a);
      break;
    }
    pthread_detach(tid);
    started++;
  }
  g_pool.nthreads = started;
  g_poolOk = started > 0;
}

/* Run `run(job, scratch)` on every pool thread and wait for all of them.
 * Caller holds jobLock. */
static void pool_run(PoolRunFn run, void *job) {
  pthread_mutex_lock(&g_pool.m);
  g_pool.run = run;
  g_pool.job = job;
  g_pool.running = g_pool.nthreads;
  g_pool.generation++;
  pthread_cond_broadcast(&g_pool.start);
  while (g_pool.running > 0) pthread_cond_wait(&g_pool.done, &g_pool.m);
  pthread_mutex_unlock(&g_pool.m);
}

/* ---- match job ----------------------------------------------------------- */

static inline int round16(int v) { return (v + 15) & ~15; }

static void match_worker(void *jp, Scratch *s) {
  MatchJob *job = jp;
  for (;;) {
    long i = atomic_fetch_add(&job->next, 1);
    if (i >= job->nItems) break;
    if (!s->used) {
      size_t tRows = (size_t)job->bandRows + 2 * (size_t)job->r;
      if (tRows > (size_t)job->h) tRows = (size_t)job->h;
      size_t fwdN = (size_t)job->h * job->wq, bwdN = (size_t)job->h * job->wb;
      if (!ensure_floats(&s->tpad, &s->tpadCap, job->i8 ? 1 : tRows * job->c * job->wt) ||
          !ensure_floats(&s->fwd, &s->fwdCap, fwdN) || !ensure_floats(&s->bwd, &s->bwdCap, bwdN)) {
        s->failed = 1;
        atomic_store(&job->next, job->nItems); /* stop everyone */
        return;
      }
      for (size_t k = 0; k < fwdN; k++) s->fwd[k] = -INFINITY;
      for (size_t k = 0; k < bwdN; k++) s->bwd[k] = -INFINITY;
      s->used = 1;
    }
    int t = (int)(i / job->bands), b = (int)(i % job->bands);
    if (job->index) t = job->index[t];
    int y0 = b * job->bandRows;
    int y1 = y0 + job->bandRows < job->h ? y0 + job->bandRows : job->h;
    job->item(job, s, t, y0, y1);
  }
}

/* Geometry and work items of a match job for `nthreads` threads. */
static void plan_match(MatchJob *job, int nthreads) {
  const int H = job->h, W = job->w;
  job->r = job->rf > job->rb ? job->rf : job->rb;
  job->wq = round16(W);
  /* >= 16 on both sides: the aligned-load path reads x0 - 16 and x0 + 16 */
  job->padL = round16(job->r > 0 ? job->r : 1);
  job->wt = job->padL + job->wq + job->padL;
  job->padB = round16(job->r);
  /* Measured on Zen 4: converting float16 on every load is as fast for 5x5
   * windows and slower from 7x7 on, where each value is re-read 7+ times. */
  job->f16Scratch = 2 * job->r + 1 >= 7;
  job->wb = job->padB + job->wq + round16(job->r);
  /* Work items: whole templates when there are enough of them to keep every
   * thread busy; otherwise row bands, at the price of converting R extra
   * template rows per band. */
  int bands = (2 * nthreads + job->n - 1) / job->n;
  if (bands < 1) bands = 1;
  if (bands > H) bands = H;
  job->bandRows = (H + bands - 1) / bands;
  job->bands = (H + job->bandRows - 1) / job->bandRows;
  job->nItems = (long)job->n * job->bands;
  atomic_store(&job->next, 0);
}

/* The float kernels read the query as [H][C][Wq] rows (qpad, grown as needed); int8 reads it in place. */
static int fill_qpad(MatchJob *job, float **qpad, size_t *qpadCap) {
  const int C = job->c, H = job->h, W = job->w;
  job->qpad = NULL;
  if (job->i8) return 0;
  if (!ensure_floats(qpad, qpadCap, (size_t)H * C * job->wq)) return -1;
  job->qpad = *qpad;
  for (int y = 0; y < H; y++) {
    for (int c = 0; c < C; c++) {
      float *dst = job->qpad + ((size_t)y * C + c) * job->wq;
      memcpy(dst, job->query + ((size_t)c * H + y) * W, sizeof(float) * W);
      memset(dst + W, 0, sizeof(float) * (size_t)(job->wq - W));
    }
  }
  return 0;
}

/* fwdOut/bwdOut = lane-wise max over the scratches that took work. */
static void merge_match(MatchJob *job, Scratch *scratch, int count) {
  const int H = job->h, W = job->w;
  for (size_t k = 0; k < (size_t)H * W; k++) job->fwdOut[k] = job->bwdOut[k] = -INFINITY;
  for (int i = 0; i < count; i++) {
    Scratch *s = &scratch[i];
    if (!s->used) continue;
    for (int y = 0; y < H; y++) {
      const float *f = s->fwd + (size_t)y * job->wq;
      const float *b = s->bwd + (size_t)y * job->wb + job->padB;
      float *fo = job->fwdOut + (size_t)y * W, *bo = job->bwdOut + (size_t)y * W;
      for (int x = 0; x < W; x++) {
        if (f[x] > fo[x]) fo[x] = f[x];
        if (b[x] > bo[x]) bo[x] = b[x];
      }
    }
  }
}

/* Returns 0 on success, -1 when scratch memory could not be allocated. */
static int run_match(MatchJob *job) {
  plan_match(job, g_pool.nthreads);
  pthread_mutex_lock(&g_pool.jobLock);
  int rc = fill_qpad(job, &g_pool.qpad, &g_pool.qpadCap);
  if (rc == 0) {
    for (int i = 0; i < g_pool.nthreads; i++) g_pool.scratch[i].used = g_pool.scratch[i].failed = 0;
    pool_run(match_worker, job);
    for (int i = 0; i < g_pool.nthreads; i++)
      if (g_pool.scratch[i].failed) rc = -1;
    if (rc == 0) merge_match(job, g_pool.scratch, g_pool.nthreads);
  }
  pthread_mutex_unlock(&g_pool.jobLock);
  return rc;
}

/* ---- single-threaded match on the caller's thread ------------------------
 * matchLayerHere / matchLayerInt8Here: the same kernels and arithmetic on the
 * calling JS thread, synchronously, with that thread's own scratch (a
 * pthread key, freed when the thread ends): no pool, no jobLock, no barrier.
 * For pipelines that each own one core (src/detector/pipelines.ts): N worker
 * threads of one process each match on their own thread, independently. */

typedef struct HereScratch {
  Scratch s;
  float *qpad;
  size_t qpadCap;
} HereScratch;

static pthread_key_t g_hereKey;
static pthread_once_t g_hereOnce = PTHREAD_ONCE_INIT;
static int g_hereKeyOk = 0;

static void here_free(void *p) {
  HereScratch *h = p;
  free(h->s.tpad);
  free(h->s.fwd);
  free(h->s.bwd);
  free(h->s.gram);
  free(h->qpad);
  free(h);
}

static void here_key_init(void) { g_hereKeyOk = pthread_key_create(&g_hereKey, here_free) == 0; }

static HereScratch *here_scratch(void) {
  pthread_once(&g_hereOnce, here_key_init);
  if (!g_hereKeyOk) return NULL;
  HereScratch *h = pthread_getspecific(g_hereKey);
  if (h) return h;
  h = calloc(1, sizeof *h);
  if (h && pthread_setspecific(g_hereKey, h) != 0) {
    free(h);
    return NULL;
  }
  return h;
}

static int run_match_here(MatchJob *job) {
  HereScratch *h = here_scratch();
  if (!h) return -1;
  plan_match(job, 1);
  if (fill_qpad(job, &h->qpad, &h->qpadCap) != 0) return -1;
  h->s.used = h->s.failed = 0;
  match_worker(job, &h->s);
  if (h->s.failed) return -1;
  merge_match(job, &h->s, 1);
  return 0;
}

/* ---- gram job ------------------------------------------------------------ */

static void gram_worker(void *jp, Scratch *s) {
  GramJob *job = jp;
  for (;;) {
    long i = atomic_fetch_add(&job->next, 1);
    if (i >= job->nItems) break;
    if (!s->used) {
      if (!ensure_floats(&s->gram, &s->gramCap, gram_scratch_floats(job))) {
        s->failed = 1;
        atomic_store(&job->next, job->nItems);
        return;
      }
      s->used = 1;
    }
    job->item(job, s, i); /* task i: see gram_body.h */
  }
}

static int run_gram(GramJob *job) {
  job->nItems = gram_tasks(job);
  atomic_store(&job->next, 0);
  pthread_mutex_lock(&g_pool.jobLock);
  for (int i = 0; i < g_pool.nthreads; i++) g_pool.scratch[i].used = g_pool.scratch[i].failed = 0;
  int rc = 0;
  if (job->nItems > 0) pool_run(gram_worker, job);
  for (int i = 0; i < g_pool.nthreads; i++)
    if (g_pool.scratch[i].failed) rc = -1;
  pthread_mutex_unlock(&g_pool.jobLock);
  return rc;
}

/* ---- N-API glue ---------------------------------------------------------- */

#define NAPI_CALL(env, call)                                                                        \
  do {                                                                                              \
    if ((call) != napi_ok) {                                                                        \
      napi_throw_error((env), "E_BACKEND", "hetmm native: N-API call failed: " #call);              \
      return NULL;                                                                                  \
    }                                                                                               \
  } while (0)

static napi_value throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "E_ARGUMENT", msg);
  return NULL;
}

/* A typed array argument: its data pointer, element count and type. */
typedef struct TypedArg {
  void *data;
  size_t length;
  napi_typedarray_type type;
} TypedArg;

static int get_typed(napi_env env, napi_value v, TypedArg *out) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_value ab;
  size_t off;
  return napi_get_typedarray_info(env, v, &out->type, &out->length, &out->data, &ab, &off) == napi_ok;
}

static int get_int(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

/* Resolve a variant name ("" = best supported). Returns NULL if unknown/unsupported. */
static const Variant *find_variant(napi_env env, napi_value v) {
  char name[32];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) return NULL;
  for (int i = 0; i < N_VARIANTS; i++) {
    if (!g_variants[i].supported) continue;
    if (len == 0 || strcmp(name, g_variants[i].name) == 0) return &g_variants[i];
  }
  return NULL;
}

#define MAX_REFS 8
typedef struct AsyncCall {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref refs[MAX_REFS]; /* keep the typed arrays alive until completion */
  int nrefs;
  int kind; /* 0 match, 1 gram */
  int rc;
  MatchJob match;
  GramJob gram;
} AsyncCall;

static void async_execute(napi_env env, void *data) {
  (void)env;
  AsyncCall *call = data;
  call->rc = call->kind == 0 ? run_match(&call->match) : run_gram(&call->gram);
}

static void async_complete(napi_env env, napi_status status, void *data) {
  AsyncCall *call = data;
  for (int i = 0; i < call->nrefs; i++) napi_delete_reference(env, call->refs[i]);
  napi_value result;
  if (status == napi_ok && call->rc == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, call->deferred, result);
  } else {
    napi_value msg, code;
    const char *text = status != napi_ok ? "hetmm native: the async work was cancelled or failed"
                                         : "hetmm native: out of memory allocating kernel scratch";
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, "E_BACKEND", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &result);
    napi_reject_deferred(env, call->deferred, result);
  }
  napi_delete_async_work(env, call->work);
  free(call);
}

static napi_value start_async(napi_env env, AsyncCall *call, napi_value *keep, int nkeep, const char *name) {
  napi_value promise, resource;
  for (int i = 0; i < nkeep; i++) {
    if (napi_create_reference(env, keep[i], 1, &call->refs[i]) != napi_ok) {
      for (int k = 0; k < i; k++) napi_delete_reference(env, call->refs[k]);
      free(call);
      napi_throw_error(env, "E_BACKEND", "hetmm native: napi_create_reference failed");
      return NULL;
    }
    call->nrefs = i + 1;
  }
  if (napi_create_promise(env, &call->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource) != napi_ok ||
      napi_create_async_work(env, NULL, resource, async_execute, async_complete, call, &call->work) != napi_ok ||
      napi_queue_async_work(env, call->work) != napi_ok) {
    for (int k = 0; k < call->nrefs; k++) napi_delete_reference(env, call->refs[k]);
    free(call);
    napi_throw_error(env, "E_BACKEND", "hetmm native: could not start async work");
    return NULL;
  }
  return promise;
}

/* Runs a parsed match call on this thread (here) or queues it on the pool (a Promise). */
static napi_value finish_match(napi_env env, AsyncCall *call, int here, napi_value *keep, int nkeep, const char *name) {
  if (!here) return start_async(env, call, keep, nkeep, name);
  int rc = run_match_here(&call->match);
  free(call);
  if (rc != 0) {
    napi_throw_error(env, "E_BACKEND", "hetmm native: out of memory allocating kernel scratch");
    return NULL;
  }
  napi_value undef;
  NAPI_CALL(env, napi_get_undefined(env, &undef));
  return undef;
}

/* The optional last argument of the match calls: an Int32Array of n template indices, each below
 * `stored` (the templates the arrays hold), or undefined/null (templates 0..n-1). Returns 0 and sets
 * *index (NULL when absent), or -1 when the argument is invalid. */
static int get_indices(napi_env env, napi_value v, int64_t n, uint64_t stored, const int32_t **index) {
  *index = NULL;
  napi_valuetype type;
  if (napi_typeof(env, v, &type) != napi_ok) return -1;
  if (type == napi_undefined || type == napi_null) return 0;
  TypedArg a;
  if (!get_typed(env, v, &a) || a.type != napi_int32_array || a.length != (uint64_t)n) return -1;
  const int32_t *ix = a.data;
  for (int64_t k = 0; k < n; k++)
    if (ix[k] < 0 || (uint64_t)ix[k] >= stored) return -1;
  *index = ix;
  return 0;
}

/* matchLayer(variant, query, templates, n, c, h, w, rf, rb, fwdOut, bwdOut[, indices]): Promise<void>;
 * matchLayerHere(same): void, single-threaded on the calling thread (see run_match_here). */
static napi_value match_layer_entry(napi_env env, napi_callback_info info, int here) {
  size_t argc = 12;
  napi_value argv[12];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 11 && argc != 12) return throw_range(env, "matchLayer expects 11 or 12 arguments");
  if (!g_poolOk) return throw_range(env, "hetmm native: the kernel thread pool is not running (init was not called)");
  const Variant *variant = find_variant(env, argv[0]);
  if (!variant) return throw_range(env, "matchLayer: unknown or unsupported variant");
  TypedArg q, t, fo, bo;
  if (!get_typed(env, argv[1], &q) || q.type != napi_float32_array)
    return throw_range(env, "matchLayer: query must be a Float32Array");
  if (!get_typed(env, argv[2], &t) || (t.type != napi_float32_array && t.type != napi_uint16_array))
    return throw_range(env, "matchLayer: templates must be a Float32Array or Uint16Array");
  if (!get_typed(env, argv[9], &fo) || fo.type != napi_float32_array || !get_typed(env, argv[10], &bo) ||
      bo.type != napi_float32_array)
    return throw_range(env, "matchLayer: outputs must be Float32Arrays");
  int64_t n, c, h, w, rf, rb;
  if (!get_int(env, argv[3], &n) || !get_int(env, argv[4], &c) || !get_int(env, argv[5], &h) ||
      !get_int(env, argv[6], &w) || !get_int(env, argv[7], &rf) || !get_int(env, argv[8], &rb))
    return throw_range(env, "matchLayer: n, c, h, w, rf, rb must be integers");
  if (n < 1 || c < 1 || h < 1 || w < 1 || rf < 0 || rb < 0 || n > INT32_MAX || c > INT32_MAX ||
      h > 65536 || w > 65536 || rf > 4096 || rb > 4096)
    return throw_range(env, "matchLayer: dimensions out of range");
  uint64_t hw = (uint64_t)h * (uint64_t)w;
  const int32_t *index = NULL;
  if (argc == 12 && get_indices(env, argv[11], n, t.length / ((uint64_t)c * hw), &index) != 0)
    return throw_range(env, "matchLayer: indices must be an Int32Array of n template indices the templates array holds");
  if (q.length < (uint64_t)c * hw || (!index && t.length < (uint64_t)n * c * hw) || fo.length < hw || bo.length < hw)
    return throw_range(env, "matchLayer: an array is shorter than its shape");
  AsyncCall *call = calloc(1, sizeof *call);
  if (!call) return throw_range(env, "matchLayer: out of memory");
  call->kind = 0;
  MatchJob *j = &call->match;
  j->n = (int)n, j->c = (int)c, j->h = (int)h, j->w = (int)w, j->rf = (int)rf, j->rb = (int)rb;
  j->f16 = t.type == napi_uint16_array;
  j->t32 = j->f16 ? NULL : t.data;
  j->t16 = j->f16 ? t.data : NULL;
  j->query = q.data;
  j->fwdOut = fo.data;
  j->bwdOut = bo.data;
  j->item = variant->match;
  j->index = index;
  napi_value keep[5] = {argv[1], argv[2], argv[9], argv[10], index ? argv[11] : argv[1]};
  return finish_match(env, call, here, keep, 5, "hetmm.matchLayer");
}

static napi_value js_match_layer(napi_env env, napi_callback_info info) { return match_layer_entry(env, info, 0); }
static napi_value js_match_layer_here(napi_env env, napi_callback_info info) { return match_layer_entry(env, info, 1); }

/* matchLayerInt8(query8, qScale, templates8, tScale, tSum, n, g, h, w, rf, rb, fwdOut, bwdOut[, indices]): Promise<void>
 * query8/templates8: Uint8Array/Int8Array of packed 4-channel words [G][H][W] per map (see int8_body.h). */
static napi_value match_layer_int8_entry(napi_env env, napi_callback_info info, int here) {
  size_t argc = 14;
  napi_value argv[14];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 13 && argc != 14) return throw_range(env, "matchLayerInt8 expects 13 or 14 arguments");
  if (!g_poolOk) return throw_range(env, "hetmm native: the kernel thread pool is not running (init was not called)");
  if (!g_int8Supported) return throw_range(env, "matchLayerInt8: this CPU has no AVX-512 VNNI");
  TypedArg q, qs, t, ts, to, fo, bo;
  if (!get_typed(env, argv[0], &q) || q.type != napi_uint8_array)
    return throw_range(env, "matchLayerInt8: query must be a Uint8Array");
  if (!get_typed(env, argv[2], &t) || t.type != napi_int8_array)
    return throw_range(env, "matchLayerInt8: templates must be an Int8Array");
  if (!get_typed(env, argv[1], &qs) || qs.type != napi_float32_array || !get_typed(env, argv[3], &ts) ||
      ts.type != napi_float32_array)
    return throw_range(env, "matchLayerInt8: scales must be Float32Arrays");
  if (!get_typed(env, argv[4], &to) || to.type != napi_int32_array)
    return throw_range(env, "matchLayerInt8: template sums must be an Int32Array");
  if (!get_typed(env, argv[11], &fo) || fo.type != napi_float32_array || !get_typed(env, argv[12], &bo) ||
      bo.type != napi_float32_array)
    return throw_range(env, "matchLayerInt8: outputs must be Float32Arrays");
  int64_t n, g, h, w, rf, rb;
  if (!get_int(env, argv[5], &n) || !get_int(env, argv[6], &g) || !get_int(env, argv[7], &h) ||
      !get_int(env, argv[8], &w) || !get_int(env, argv[9], &rf) || !get_int(env, argv[10], &rb))
    return throw_range(env, "matchLayerInt8: n, g, h, w, rf, rb must be integers");
  if (n < 1 || g < 1 || h < 1 || w < 16 || w % 16 != 0 || rf < 0 || rb < 0 || rf > 7 || rb > 7 ||
      n > INT32_MAX || g > 16384 || h > 65536 || w > 65536)
    return throw_range(env, "matchLayerInt8: dimensions out of range (needs w % 16 == 0, radii <= 7)");
  uint64_t hw = (uint64_t)h * (uint64_t)w;
  /* with indices, n counts the matched templates; the arrays must hold every indexed one */
  uint64_t stored = t.length / (4 * (uint64_t)g * hw);
  if (ts.length / hw < stored) stored = ts.length / hw;
  if (to.length / hw < stored) stored = to.length / hw;
  const int32_t *index = NULL;
  if (argc == 14 && get_indices(env, argv[13], n, stored, &index) != 0)
    return throw_range(env, "matchLayerInt8: indices must be an Int32Array of n template indices the template arrays hold");
  if (q.length < 4 * (uint64_t)g * hw || (!index && stored < (uint64_t)n) || qs.length < hw || fo.length < hw || bo.length < hw)
    return throw_range(env, "matchLayerInt8: an array is shorter than its shape");
  AsyncCall *call = calloc(1, sizeof *call);
  if (!call) return throw_range(env, "matchLayerInt8: out of memory");
  call->kind = 0;
  MatchJob *j = &call->match;
  j->n = (int)n, j->c = (int)g, j->h = (int)h, j->w = (int)w, j->rf = (int)rf, j->rb = (int)rb;
  j->i8 = 1;
  j->q8 = q.data;
  j->qScale = qs.data;
  j->t8 = t.data;
  j->tScale = ts.data;
  j->tSum = to.data;
  j->index = index;
  j->fwdOut = fo.data;
  j->bwdOut = bo.data;
#if HETMM_X86
  j->item = match_item_int8;
#else
  j->item = NULL; /* unreachable: g_int8Supported is 0 off x86 */
#endif
  napi_value keep[8] = {argv[0], argv[1], argv[2], argv[3], argv[4], argv[11], argv[12], index ? argv[13] : argv[0]};
  return finish_match(env, call, here, keep, 8, "hetmm.matchLayerInt8");
}

static napi_value js_match_layer_int8(napi_env env, napi_callback_info info) { return match_layer_int8_entry(env, info, 0); }
static napi_value js_match_layer_int8_here(napi_env env, napi_callback_info info) {
  return match_layer_int8_entry(env, info, 1);
}

/* quantizeInt8(src, c, hw, out, scale, sums|null, offsetBy): void, synchronous (about 1 ns per value).
 * The same arithmetic as quantizeMap in src/kernels/fast/int8.ts (the reference), in double:
 * scale = max|v| / 127, value = round-half-away(v * 127 / max) + offsetBy, packed [ceil(C/4)][hw][4]. */
static napi_value js_quantize_int8(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 7) return throw_range(env, "quantizeInt8 expects 7 arguments");
  TypedArg src, out, sc, sums = {0};
  if (!get_typed(env, argv[0], &src) || src.type != napi_float32_array)
    return throw_range(env, "quantizeInt8: src must be a Float32Array");
  if (!get_typed(env, argv[3], &out) || (out.type != napi_int8_array && out.type != napi_uint8_array))
    return throw_range(env, "quantizeInt8: out must be an Int8Array or Uint8Array");
  if (!get_typed(env, argv[4], &sc) || sc.type != napi_float32_array)
    return throw_range(env, "quantizeInt8: scale must be a Float32Array");
  napi_valuetype sumsType;
  NAPI_CALL(env, napi_typeof(env, argv[5], &sumsType));
  int haveSums = sumsType != napi_null && sumsType != napi_undefined;
  if (haveSums && (!get_typed(env, argv[5], &sums) || sums.type != napi_int32_array))
    return throw_range(env, "quantizeInt8: sums must be an Int32Array or null");
  int64_t c, hw, offsetBy;
  if (!get_int(env, argv[1], &c) || !get_int(env, argv[2], &hw) || !get_int(env, argv[6], &offsetBy))
    return throw_range(env, "quantizeInt8: c, hw, offsetBy must be integers");
  if (c < 1 || hw < 1 || c > 1 << 20 || hw > 1 << 28 || offsetBy < 0 || offsetBy > 128)
    return throw_range(env, "quantizeInt8: dimensions out of range");
  const int64_t groups = (c + 3) / 4;
  if (src.length < (uint64_t)(c * hw) || out.length < (uint64_t)(groups * 4 * hw) || sc.length < (uint64_t)hw ||
      (haveSums && sums.length < (uint64_t)hw))
    return throw_range(env, "quantizeInt8: an array is shorter than its shape");
  const float *v = src.data;
  uint8_t *o = out.data;
  float *scale = sc.data;
  int32_t *sum = haveSums ? sums.data : NULL;
  double *inv = malloc(sizeof(double) * (size_t)hw);
  float *mx = calloc((size_t)hw, sizeof(float));
  if (!inv || !mx) {
    free(inv);
    free(mx);
    return throw_range(env, "quantizeInt8: out of memory");
  }
#if HETMM_X86
  if (g_int8Supported) {
    quantize_int8_avx512(v, c, hw, o, scale, sum, (int)offsetBy, mx, inv);
  } else
#endif
  {
    quantize_int8_max(v, c, hw, 0, mx);
    quantize_int8_scales(mx, hw, scale, inv, sum);
    for (int64_t g = 0; g < groups; g++) quantize_int8_pixels(v, c, hw, g, 0, inv, (uint32_t *)o + g * hw, sum, (int)offsetBy);
  }
  free(inv);
  free(mx);
  napi_value undef;
  NAPI_CALL(env, napi_get_undefined(env, &undef));
  return undef;
}

/* alignmentOffset(typedArray): bytes from the array's first element to the next 64-byte boundary (0-63).
 * The int8 kernel's loads are 64 bytes wide: on packed maps that start mid cache line (V8 puts large
 * ArrayBuffers 16 bytes into a malloc chunk) every load spans two lines, which cost layer1 40%. */
static napi_value js_alignment_offset(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  TypedArg a;
  if (argc != 1 || !get_typed(env, argv[0], &a)) return throw_range(env, "alignmentOffset expects one typed array");
  napi_value out;
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)((64 - ((uintptr_t)a.data & 63)) & 63), &out));
  return out;
}

/* pixelGram(variant, stack, n, c, h, w, p0, p1, out): Promise<void> */
static napi_value js_pixel_gram(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 9) return throw_range(env, "pixelGram expects 9 arguments");
  if (!g_poolOk) return throw_range(env, "hetmm native: the kernel thread pool is not running (init was not called)");
  const Variant *variant = find_variant(env, argv[0]);
  if (!variant) return throw_range(env, "pixelGram: unknown or unsupported variant");
  TypedArg t, o;
  if (!get_typed(env, argv[1], &t) || (t.type != napi_float32_array && t.type != napi_uint16_array))
    return throw_range(env, "pixelGram: stack must be a Float32Array or Uint16Array");
  if (!get_typed(env, argv[8], &o) || o.type != napi_float32_array)
    return throw_range(env, "pixelGram: out must be a Float32Array");
  int64_t n, c, h, w, p0, p1;
  if (!get_int(env, argv[2], &n) || !get_int(env, argv[3], &c) || !get_int(env, argv[4], &h) ||
      !get_int(env, argv[5], &w) || !get_int(env, argv[6], &p0) || !get_int(env, argv[7], &p1))
    return throw_range(env, "pixelGram: n, c, h, w, p0, p1 must be integers");
  if (n < 1 || c < 1 || h < 1 || w < 1 || n > 65536 || c > INT32_MAX || h > 65536 || w > 65536)
    return throw_range(env, "pixelGram: dimensions out of range");
  int64_t hw = h * w;
  if (p0 < 0 || p1 < p0 || p1 > hw) return throw_range(env, "pixelGram: pixel range out of bounds");
  if (t.length < (uint64_t)n * c * hw || o.length < (uint64_t)(p1 - p0) * n * n)
    return throw_range(env, "pixelGram: an array is shorter than its shape");
  AsyncCall *call = calloc(1, sizeof *call);
  if (!call) return throw_range(env, "pixelGram: out of memory");
  call->kind = 1;
  GramJob *j = &call->gram;
  j->n = (int)n, j->c = (int)c, j->h = (int)h, j->w = (int)w, j->p0 = p0, j->p1 = p1;
  j->f16 = t.type == napi_uint16_array;
  j->t32 = j->f16 ? NULL : t.data;
  j->t16 = j->f16 ? t.data : NULL;
  j->out = o.data;
  j->item = variant->gram;
  napi_value keep[2] = {argv[1], argv[8]};
  return start_async(env, call, keep, 2, "hetmm.pixelGram");
}

/* init(threads): starts the kernel thread pool with `threads` threads (0: one per CPU), once per
 * process; a later call (another worker thread's addon) changes nothing. Returns the pool size. */
static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t threads;
  if (argc != 1 || !get_int(env, argv[0], &threads) || threads < 0 || threads > 1024)
    return throw_range(env, "init expects a thread count from 0 to 1024");
  pthread_mutex_lock(&g_poolStart);
  if (!g_poolStarted) {
    pool_start((int)threads);
    g_poolStarted = 1;
  }
  pthread_mutex_unlock(&g_poolStart);
  if (!g_poolOk) return throw_range(env, "hetmm native: could not start the kernel thread pool");
  napi_value out;
  NAPI_CALL(env, napi_create_int32(env, g_pool.nthreads, &out));
  return out;
}

/* info(): { variant, variants, threads } (threads: 0 before init) */
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, arr, s, num;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_array(env, &arr));
  uint32_t k = 0;
  const char *best = NULL;
  for (int i = 0; i < N_VARIANTS; i++) {
    if (!g_variants[i].supported) continue;
    if (!best) best = g_variants[i].name;
    NAPI_CALL(env, napi_create_string_utf8(env, g_variants[i].name, NAPI_AUTO_LENGTH, &s));
    NAPI_CALL(env, napi_set_element(env, arr, k++, s));
  }
  NAPI_CALL(env, napi_create_string_utf8(env, best, NAPI_AUTO_LENGTH, &s));
  NAPI_CALL(env, napi_set_named_property(env, obj, "variant", s));
  NAPI_CALL(env, napi_set_named_property(env, obj, "variants", arr));
  NAPI_CALL(env, napi_create_int32(env, g_pool.nthreads, &num));
  NAPI_CALL(env, napi_set_named_property(env, obj, "threads", num));
  napi_value int8;
  NAPI_CALL(env, napi_get_boolean(env, g_int8Supported != 0, &int8));
  NAPI_CALL(env, napi_set_named_property(env, obj, "int8", int8));
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  pthread_once(&g_detectOnce, detect_variants);
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"matchLayer", NULL, js_match_layer, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pixelGram", NULL, js_pixel_gram, NULL, NULL, NULL, napi_enumerable, NULL},
      {"matchLayerInt8", NULL, js_match_layer_int8, NULL, NULL, NULL, napi_enumerable, NULL},
      {"matchLayerHere", NULL, js_match_layer_here, NULL, NULL, NULL, napi_enumerable, NULL},
      {"matchLayerInt8Here", NULL, js_match_layer_int8_here, NULL, NULL, NULL, napi_enumerable, NULL},
      {"quantizeInt8", NULL, js_quantize_int8, NULL, NULL, NULL, napi_enumerable, NULL},
      {"alignmentOffset", NULL, js_alignment_offset, NULL, NULL, NULL, napi_enumerable, NULL},
      {"l2NormalizePixels", NULL, hetmm_js_l2_normalize_pixels, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  napi_value abi;
  NAPI_CALL(env, napi_create_int32(env, HETMM_NATIVE_ABI, &abi));
  NAPI_CALL(env, napi_set_named_property(env, exports, "abi", abi));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
