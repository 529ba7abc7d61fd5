/* Compiled per-row kernels of the L2H first pass and exp cache (contracts and numpy builds: l2h/kernels.py).
 *
 * Every kernel reads a row once, split over interleaved lanes that are combined at the end; this vectorises
 * without fast-math, ties keep the first position as numpy's argmax does, and sums have a fixed order.
 *
 * - first_maxima: per row of the input logits, the first argmax h, the first argmax without column h, and
 *   whether the row holds NaN or inf.
 * - gather_shifted: rows of the input in a given order, minus their maximum (z - max z, exactly as numpy
 *   subtracts), written into the cache.
 * - masked_estimates: per cache row e = exp(z - max z) and a mask of columns, the first masked argmax h^m,
 *   the estimate g^m = e_{h^m} / (sum of the kept e) and whether the row needs the exact definition. The
 *   stored values are >= 0, and for non-negative floats the order of the bit patterns read as signed
 *   integers is the order of the values, so maxima and comparisons run on integers; masked columns are
 *   cleared by AND with a per-column bit mask (0 or all ones). The compact cache stores each e as a 16-bit
 *   code (encode_compact): the bits of the float32 e * 2^-64 from bit CODE_SHIFT = 13 on, rounded to nearest
 *   even, i.e. 6 exponent and 10 mantissa bits; a code shifted left by 13 is that float32 again (in
 *   [0, 2^-64]), so its rows are summed in that scale (the ratio g^m does not depend on it) and compared as
 *   integers.
 * - encode_compact: those codes of a block of e.
 *
 * Layout: each kernel is one function per element type (float32, float64; the compact codes for
 * masked_estimates), named <kernel>_<type>, built from small static inline helpers that hold the per-value
 * and per-row steps; the Python entry points at the end check the buffers and pick the function by itemsize.
 * To step through a kernel in a debugger, build without optimisation and without the target clones, e.g.
 * CFLAGS="-O0 -g -DL2H_NO_CLONES" (docs/algorithm.md).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Each kernel is compiled twice, for AVX2 and for the baseline x86-64, and the loader picks the version the CPU
 * runs (GCC's function multi-versioning). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(L2H_NO_CLONES)
#define L2H_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define L2H_CLONES
#endif

enum {
    LANES = 16,          /* interleaved lanes of masked_estimates: 16 int32 (two AVX2 vectors) or int64 */
    VECTOR_BYTES = 32,   /* first_maxima's vectors: one AVX2 register */
    F32_WIDTH = VECTOR_BYTES / sizeof(float),
    F64_WIDTH = VECTOR_BYTES / sizeof(double),
    CODE_SHIFT = 13,     /* compact code = float32 bits >> 13: 23 - 13 = 10 mantissa bits kept */
    LINE_CODES = 32,     /* compact codes per 64-byte cache line (one prefetch each) */
};
static const float CODE_SCALE = 0x1p-64f;     /* e in [0, 1] is coded as the float32 e * 2^-64 ... */
static const double CODE_UNSCALE = 0x1p64;    /* ... and decoded back to the unit scale of e */

/* GCC/clang vector extensions: 32 bytes of floats, and the integers of the same width (comparison results
 * and positions). */
typedef float vfloat32 __attribute__((vector_size(VECTOR_BYTES)));
typedef int32_t vint32 __attribute__((vector_size(VECTOR_BYTES)));
typedef double vfloat64 __attribute__((vector_size(VECTOR_BYTES)));
typedef int64_t vint64 __attribute__((vector_size(VECTOR_BYTES)));

/* Rows are read in the order of their positions, which are scattered in the cache: while a row is summed,
 * the next one is fetched. */
static inline void
prefetch(const void *address)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 0);
#else
    (void)address;
#endif
}

/* ------------------------------------------------------------------------------------------ first_maxima */

/* Per lane of a row: the top value and its first position, and the largest value at another position (the
 * runner-up) and its first position; position -1 while the lane has seen nothing. Values of either width are
 * held as double, which keeps their order; room for F32_WIDTH lanes, the wider of the two. */
typedef struct {
    double top[F32_WIDTH], runner[F32_WIDTH];
    int64_t at[F32_WIDTH], runner_at[F32_WIDTH];
} maxima_t;

/* One more value v at position j for lane l (the row's last K mod width values, one by one); returns whether
 * v is finite. */
static inline int
maxima_push(maxima_t *m, int l, double v, int64_t j)
{
    if (v > m->top[l]) {
        m->runner[l] = m->top[l], m->runner_at[l] = m->at[l];
        m->top[l] = v, m->at[l] = j;
    }
    else if (v > m->runner[l]) {
        m->runner[l] = v, m->runner_at[l] = j;
    }
    return v * 0 == 0;   /* v * 0 is NaN exactly when v is NaN or infinite */
}

/* The row's first argmax (h) and its first argmax without column h (second), from its first width lanes. */
static inline void
maxima_result(const maxima_t *m, int width, int64_t *h, int64_t *second)
{
    int best = 0;
    for (int l = 1; l < width; l++)
        if (m->at[l] >= 0 && (m->at[best] < 0 || m->top[l] > m->top[best] ||
                              (m->top[l] == m->top[best] && m->at[l] < m->at[best])))
            best = l;
    double next = -INFINITY;
    int64_t next_at = -1;
    for (int l = 0; l < width; l++) {
        double v = l == best ? m->runner[l] : m->top[l];
        int64_t c = l == best ? m->runner_at[l] : m->at[l];
        if (c >= 0 && (next_at < 0 || v > next || (v == next && c < next_at))) {
            next = v;
            next_at = c;
        }
    }
    *h = m->at[best];
    *second = next_at;
}

/* The vector lanes of first_maxima, one type each: top, runner-up, their positions, the positions of the
 * values being read (index) and the sum of v * 0 (check: NaN once a NaN or inf was read). Selects are bit
 * masks: a comparison gives all ones (true) or 0 per lane. */
typedef struct {
    vfloat32 top, runner, check;
    vint32 at, runner_at, index;
} lanes_float32;

typedef struct {
    vfloat64 top, runner, check;
    vint64 at, runner_at, index;
} lanes_float64;

static inline void
lanes_float32_start(lanes_float32 *s)
{
    vfloat32 lowest, zero = {0};
    vint32 none, index;
    for (int l = 0; l < F32_WIDTH; l++) {
        lowest[l] = -INFINITY;
        none[l] = -1;
        index[l] = l;
    }
    *s = (lanes_float32){.top = lowest, .runner = lowest, .check = zero, .at = none, .runner_at = none, .index = index};
}

/* The next F32_WIDTH values of the row. */
static inline void
lanes_float32_step(lanes_float32 *s, const float *values)
{
    vfloat32 v;
    memcpy(&v, values, sizeof v);
    vint32 above = v > s->top, between = v > s->runner;
    vint32 runner = (between & (vint32)v) | (~between & (vint32)s->runner);
    vint32 runner_at = (between & s->index) | (~between & s->runner_at);
    s->runner = (vfloat32)((above & (vint32)s->top) | (~above & runner));
    s->runner_at = (above & s->at) | (~above & runner_at);
    s->top = (vfloat32)((above & (vint32)v) | (~above & (vint32)s->top));
    s->at = (above & s->index) | (~above & s->at);
    s->check += v * 0;
    s->index += F32_WIDTH;
}

/* The lanes as maxima_t; returns whether every value read was finite. */
static inline int
lanes_float32_finish(const lanes_float32 *s, maxima_t *m)
{
    int finite = 1;
    for (int l = 0; l < F32_WIDTH; l++) {
        m->top[l] = s->top[l], m->runner[l] = s->runner[l], m->at[l] = s->at[l], m->runner_at[l] = s->runner_at[l];
        finite &= s->check[l] == 0;
    }
    return finite;
}

static inline void
lanes_float64_start(lanes_float64 *s)
{
    vfloat64 lowest, zero = {0};
    vint64 none, index;
    for (int l = 0; l < F64_WIDTH; l++) {
        lowest[l] = -INFINITY;
        none[l] = -1;
        index[l] = l;
    }
    *s = (lanes_float64){.top = lowest, .runner = lowest, .check = zero, .at = none, .runner_at = none, .index = index};
}

/* The next F64_WIDTH values of the row. */
static inline void
lanes_float64_step(lanes_float64 *s, const double *values)
{
    vfloat64 v;
    memcpy(&v, values, sizeof v);
    vint64 above = v > s->top, between = v > s->runner;
    vint64 runner = (between & (vint64)v) | (~between & (vint64)s->runner);
    vint64 runner_at = (between & s->index) | (~between & s->runner_at);
    s->runner = (vfloat64)((above & (vint64)s->top) | (~above & runner));
    s->runner_at = (above & s->at) | (~above & runner_at);
    s->top = (vfloat64)((above & (vint64)v) | (~above & (vint64)s->top));
    s->at = (above & s->index) | (~above & s->at);
    s->check += v * 0;
    s->index += F64_WIDTH;
}

static inline int
lanes_float64_finish(const lanes_float64 *s, maxima_t *m)
{
    int finite = 1;
    for (int l = 0; l < F64_WIDTH; l++) {
        m->top[l] = s->top[l], m->runner[l] = s->runner[l], m->at[l] = s->at[l], m->runner_at[l] = s->runner_at[l];
        finite &= s->check[l] == 0;
    }
    return finite;
}

/* Per row of x (n x k): h, second and bad (the row holds NaN or inf). The last K mod width values go to lanes
 * 0.. one by one. */
L2H_CLONES static void
first_maxima_float32(const float *x, Py_ssize_t n, Py_ssize_t k, int64_t *h, int64_t *second, uint8_t *bad)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *row = x + i * k;
        lanes_float32 lanes;
        lanes_float32_start(&lanes);
        Py_ssize_t j = 0;
        for (; j + F32_WIDTH <= k; j += F32_WIDTH)
            lanes_float32_step(&lanes, row + j);
        maxima_t m;
        int finite = lanes_float32_finish(&lanes, &m);
        for (int l = 0; j < k; j++, l++)
            finite &= maxima_push(&m, l, row[j], j);
        maxima_result(&m, F32_WIDTH, &h[i], &second[i]);
        bad[i] = !finite;
    }
}

L2H_CLONES static void
first_maxima_float64(const double *x, Py_ssize_t n, Py_ssize_t k, int64_t *h, int64_t *second, uint8_t *bad)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *row = x + i * k;
        lanes_float64 lanes;
        lanes_float64_start(&lanes);
        Py_ssize_t j = 0;
        for (; j + F64_WIDTH <= k; j += F64_WIDTH)
            lanes_float64_step(&lanes, row + j);
        maxima_t m;
        int finite = lanes_float64_finish(&lanes, &m);
        for (int l = 0; j < k; j++, l++)
            finite &= maxima_push(&m, l, row[j], j);
        maxima_result(&m, F64_WIDTH, &h[i], &second[i]);
        bad[i] = !finite;
    }
}

/* ---------------------------------------------------------------------------------------- gather_shifted */

/* out row i = x row rows[i] minus its value at column top[i]. */
L2H_CLONES static void
gather_shifted_float32(const float *x, Py_ssize_t k, const int64_t *rows, const int64_t *top, Py_ssize_t n,
                       float *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const float *row = x + rows[i] * k;
        float peak = row[top[i]];
        float *to = out + i * k;
        for (Py_ssize_t j = 0; j < k; j++)
            to[j] = row[j] - peak;
    }
}

L2H_CLONES static void
gather_shifted_float64(const double *x, Py_ssize_t k, const int64_t *rows, const int64_t *top, Py_ssize_t n,
                       double *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *row = x + rows[i] * k;
        double peak = row[top[i]];
        double *to = out + i * k;
        for (Py_ssize_t j = 0; j < k; j++)
            to[j] = row[j] - peak;
    }
}

/* -------------------------------------------------------------------------------------- masked_estimates */

/* A kept value's float from its bits (float32, float64) or from its compact code (float32 in the scale 2^-64). */
static inline float
float32_of_bits(int32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline double
float64_of_bits(int64_t bits)
{
    double f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float
float32_of_code(int32_t code)
{
    uint32_t bits = (uint32_t)code << CODE_SHIFT;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* One kept value (bits v, float f) at position j for a lane: its sum, its largest bits and their first
 * position, and the largest bits at another position. Written as selects, so the lanes vectorise. */
static inline void
masked_step32(int32_t v, float f, int32_t j, float *sum, int32_t *top, int32_t *runner, int32_t *at)
{
    *sum += f;
    int32_t low = v < *top ? v : *top;
    *runner = low > *runner ? low : *runner;
    *at = v > *top ? j : *at;
    *top = v > *top ? v : *top;
}

static inline void
masked_step64(int64_t v, double f, int64_t j, double *sum, int64_t *top, int64_t *runner, int64_t *at)
{
    *sum += f;
    int64_t low = v < *top ? v : *top;
    *runner = low > *runner ? low : *runner;
    *at = v > *top ? j : *at;
    *top = v > *top ? v : *top;
}

/* The lanes' sums added pairwise (lane l + width into lane l, width = LANES/2, LANES/4, ..., 1). */
static inline float
sum_lanes32(float *sums)
{
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            sums[l] += sums[l + width];
    return sums[0];
}

static inline double
sum_lanes64(double *sums)
{
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            sums[l] += sums[l + width];
    return sums[0];
}

/* Over the lanes: the largest bits (top), their first position (first) and the largest bits at any other
 * position (runner-up; -1 if none). One function per width of the bits. */
static inline void
combine_lanes32(const int32_t *tops, const int32_t *runners, const int32_t *at, int32_t k, int32_t *top,
                int32_t *first, int32_t *runner)
{
    *top = -1, *first = k, *runner = -1;
    for (int l = 0; l < LANES; l++)
        *top = tops[l] > *top ? tops[l] : *top;
    int best_lane = -1;
    for (int l = 0; l < LANES; l++)
        if (tops[l] == *top && at[l] < *first) {
            *first = at[l];
            best_lane = l;
        }
    for (int l = 0; l < LANES; l++) {
        int32_t other = l == best_lane ? runners[l] : tops[l];
        *runner = other > *runner ? other : *runner;
    }
}

static inline void
combine_lanes64(const int64_t *tops, const int64_t *runners, const int64_t *at, int64_t k, int64_t *top,
                int64_t *first, int64_t *runner)
{
    *top = -1, *first = k, *runner = -1;
    for (int l = 0; l < LANES; l++)
        *top = tops[l] > *top ? tops[l] : *top;
    int best_lane = -1;
    for (int l = 0; l < LANES; l++)
        if (tops[l] == *top && at[l] < *first) {
            *first = at[l];
            best_lane = l;
        }
    for (int l = 0; l < LANES; l++) {
        int64_t other = l == best_lane ? runners[l] : tops[l];
        *runner = other > *runner ? other : *runner;
    }
}

/* g^m = top / total (0 if total is 0) and the doubt test in the unit scale of e (top and runner-up times
 * unit): the runner-up within the stored values' relative error alpha (plus tiny) of the top, or the top below
 * floor. */
static inline void
write_estimate(double top, double runner, double total, double unit, double alpha, double tiny, double floor_,
               double *gm, uint8_t *doubt)
{
    *gm = total > 0 ? top / total : 0.0;
    double top1 = top * unit, runner1 = runner * unit;
    *doubt = top1 * (1 - alpha) <= runner1 * (1 + alpha) + tiny || top1 < floor_;
}

/* Per cache row exp[positions[i]] (k values, read as bits) and column mask keep_bits: hm, gm and doubt. */
L2H_CLONES static void
masked_rows_float32(const int32_t *exp, Py_ssize_t k, const int64_t *positions, Py_ssize_t n,
                    const int32_t *keep_bits, double alpha, double tiny, double floor_, int64_t *hm, double *gm,
                    uint8_t *doubt)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const int32_t *row = exp + positions[i] * k;
        const int32_t *next = exp + positions[i + 1 < n ? i + 1 : i] * k;
        float sums[LANES] = {0};
        int32_t tops[LANES], runners[LANES], at[LANES];
        for (int l = 0; l < LANES; l++)
            tops[l] = -1, runners[l] = -1, at[l] = 0;
        Py_ssize_t j = 0;
        for (; j + LANES <= k; j += LANES) {
            prefetch(next + j);
            for (int l = 0; l < LANES; l++) {
                int32_t v = row[j + l] & keep_bits[j + l];
                masked_step32(v, float32_of_bits(v), (int32_t)(j + l), &sums[l], &tops[l], &runners[l], &at[l]);
            }
        }
        for (int l = 0; j < k; j++, l++) {
            int32_t v = row[j] & keep_bits[j];
            masked_step32(v, float32_of_bits(v), (int32_t)j, &sums[l], &tops[l], &runners[l], &at[l]);
        }
        float total = sum_lanes32(sums);
        int32_t top, first, runner;
        combine_lanes32(tops, runners, at, (int32_t)k, &top, &first, &runner);
        hm[i] = first;
        write_estimate(float32_of_bits(top), runner < 0 ? 0.0 : float32_of_bits(runner),
                       total, 1.0, alpha, tiny, floor_, &gm[i], &doubt[i]);
    }
}

L2H_CLONES static void
masked_rows_float64(const int64_t *exp, Py_ssize_t k, const int64_t *positions, Py_ssize_t n,
                    const int64_t *keep_bits, double alpha, double tiny, double floor_, int64_t *hm, double *gm,
                    uint8_t *doubt)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t *row = exp + positions[i] * k;
        const int64_t *next = exp + positions[i + 1 < n ? i + 1 : i] * k;
        double sums[LANES] = {0};
        int64_t tops[LANES], runners[LANES], at[LANES];
        for (int l = 0; l < LANES; l++)
            tops[l] = -1, runners[l] = -1, at[l] = 0;
        Py_ssize_t j = 0;
        for (; j + LANES <= k; j += LANES) {
            prefetch(next + j);
            for (int l = 0; l < LANES; l++) {
                int64_t v = row[j + l] & keep_bits[j + l];
                masked_step64(v, float64_of_bits(v), j + l, &sums[l], &tops[l], &runners[l], &at[l]);
            }
        }
        for (int l = 0; j < k; j++, l++) {
            int64_t v = row[j] & keep_bits[j];
            masked_step64(v, float64_of_bits(v), j, &sums[l], &tops[l], &runners[l], &at[l]);
        }
        double total = sum_lanes64(sums);
        int64_t top, first, runner;
        combine_lanes64(tops, runners, at, k, &top, &first, &runner);
        hm[i] = first;
        write_estimate(float64_of_bits(top), runner < 0 ? 0.0 : float64_of_bits(runner), total, 1.0, alpha, tiny,
                       floor_, &gm[i], &doubt[i]);
    }
}

/* As masked_rows_float32 on the compact cache's codes: values are summed as float32 in the scale 2^-64, and the
 * top two are returned to the unit scale for the doubt test. */
L2H_CLONES static void
masked_rows_compact(const uint16_t *codes, Py_ssize_t k, const int64_t *positions, Py_ssize_t n,
                    const uint16_t *keep_bits, double alpha, double tiny, double floor_, int64_t *hm, double *gm,
                    uint8_t *doubt)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint16_t *row = codes + positions[i] * k;
        const uint16_t *next = codes + positions[i + 1 < n ? i + 1 : i] * k;
        float sums[LANES] = {0};
        int32_t tops[LANES], runners[LANES], at[LANES];
        for (int l = 0; l < LANES; l++)
            tops[l] = -1, runners[l] = -1, at[l] = 0;
        Py_ssize_t j = 0;
        for (; j + LANES <= k; j += LANES) {
            if (j % LINE_CODES == 0)
                prefetch(next + j);
            for (int l = 0; l < LANES; l++) {
                int32_t v = row[j + l] & keep_bits[j + l];
                masked_step32(v, float32_of_code(v), (int32_t)(j + l), &sums[l], &tops[l], &runners[l], &at[l]);
            }
        }
        for (int l = 0; j < k; j++, l++) {
            int32_t v = row[j] & keep_bits[j];
            masked_step32(v, float32_of_code(v), (int32_t)j, &sums[l], &tops[l], &runners[l], &at[l]);
        }
        float total = sum_lanes32(sums);
        int32_t top, first, runner;
        combine_lanes32(tops, runners, at, (int32_t)k, &top, &first, &runner);
        hm[i] = first;
        write_estimate(float32_of_code(top), runner < 0 ? 0.0 : float32_of_code(runner), total,
                       CODE_UNSCALE, alpha, tiny, floor_, &gm[i], &doubt[i]);
    }
}

/* ---------------------------------------------------------------------------------------- encode_compact */

/* The compact code of t = e * 2^-64 (a float32 in [0, 2^-64]): its bits from bit CODE_SHIFT on, rounded to
 * nearest, ties to even (adding 2^(CODE_SHIFT-1) - 1 plus the lowest kept bit carries exactly when the dropped
 * bits are above half, or at half with an odd kept part). */
static inline uint16_t
compact_code(float t)
{
    uint32_t b;
    memcpy(&b, &t, sizeof b);
    uint32_t half_down = (1u << (CODE_SHIFT - 1)) - 1;
    return (uint16_t)((b + half_down + ((b >> CODE_SHIFT) & 1u)) >> CODE_SHIFT);
}

/* out[i] = the compact code of e[i] (0 <= e <= 1). */
L2H_CLONES static void
encode_float32(const float *e, Py_ssize_t count, uint16_t *out)
{
    for (Py_ssize_t i = 0; i < count; i++)
        out[i] = compact_code(e[i] * CODE_SCALE);
}

L2H_CLONES static void
encode_float64(const double *e, Py_ssize_t count, uint16_t *out)
{
    for (Py_ssize_t i = 0; i < count; i++)
        out[i] = compact_code((float)(e[i] * (double)CODE_SCALE));
}

/* ------------------------------------------------------------------------------------- Python entry points */

/* A C-contiguous buffer of ndim dimensions; itemsize 0: native float32/float64, -2: native float32/float64 or
 * uint16 (compact codes), -1: any itemsize. */
static int
get(PyObject *obj, Py_buffer *view, int writable, const char *name, Py_ssize_t itemsize, int ndim)
{
    int flags = PyBUF_FORMAT | PyBUF_ND | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    int ok = view->ndim == ndim;
    if (itemsize == 0 || itemsize == -2) {
        const char *format = view->format ? view->format : "B";
        char type = format[strlen(format) - 1];
        ok = ok && format[0] != '>' && format[0] != '!' &&
             ((type == 'f' && view->itemsize == 4) || (type == 'd' && view->itemsize == 8) ||
              (itemsize == -2 && type == 'H' && view->itemsize == 2));
    }
    else if (itemsize > 0)
        ok = ok && view->itemsize == itemsize;
    if (!ok) {
        if (itemsize == 0 || itemsize == -2)
            PyErr_Format(PyExc_ValueError, "%s must be %d-D float32 or float64%s (native byte order)", name,
                         ndim, itemsize == -2 ? " or uint16" : "");
        else
            PyErr_Format(PyExc_ValueError, "%s must be %d-D with %zd-byte items", name, ndim, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Acquire the buffers of objs (specs in the same order); on failure release those acquired. */
typedef struct {
    const char *name;
    int writable;
    Py_ssize_t itemsize;
    int ndim;
} spec_t;

static int
get_all(PyObject **objs, Py_buffer *views, const spec_t *specs, int count)
{
    for (int i = 0; i < count; i++)
        if (get(objs[i], &views[i], specs[i].writable, specs[i].name, specs[i].itemsize, specs[i].ndim) < 0) {
            while (i-- > 0)
                PyBuffer_Release(&views[i]);
            return -1;
        }
    return 0;
}

static void
release_all(Py_buffer *views, int count)
{
    for (int i = 0; i < count; i++)
        PyBuffer_Release(&views[i]);
}

static PyObject *
fail(Py_buffer *views, int count, const char *message)
{
    release_all(views, count);
    PyErr_SetString(PyExc_ValueError, message);
    return NULL;
}

static int
in_range(const int64_t *values, Py_ssize_t n, Py_ssize_t end)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (values[i] < 0 || values[i] >= end)
            return 0;
    return 1;
}

static PyObject *
first_maxima(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objs[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &objs[3]))
        return NULL;
    static const spec_t specs[] = {{"x", 0, 0, 2}, {"h", 1, 8, 1}, {"second", 1, 8, 1}, {"bad", 1, 1, 1}};
    Py_buffer v[4];
    if (get_all(objs, v, specs, 4) < 0)
        return NULL;
    Py_ssize_t n = v[0].shape[0], k = v[0].shape[1];
    if (k < 2 || k > INT32_MAX || v[1].shape[0] != n || v[2].shape[0] != n || v[3].shape[0] != n)
        return fail(v, 4, "first_maxima: inconsistent lengths, or K < 2");
    Py_BEGIN_ALLOW_THREADS
    if (v[0].itemsize == 4)
        first_maxima_float32(v[0].buf, n, k, v[1].buf, v[2].buf, v[3].buf);
    else
        first_maxima_float64(v[0].buf, n, k, v[1].buf, v[2].buf, v[3].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 4);
    Py_RETURN_NONE;
}

static PyObject *
gather_shifted(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objs[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &objs[3]))
        return NULL;
    static const spec_t specs[] = {{"x", 0, 0, 2}, {"rows", 0, 8, 1}, {"top", 0, 8, 1}, {"out", 1, 0, 2}};
    Py_buffer v[4];
    if (get_all(objs, v, specs, 4) < 0)
        return NULL;
    Py_ssize_t n = v[1].shape[0], k = v[0].shape[1];
    if (v[3].itemsize != v[0].itemsize || v[3].shape[0] != n || v[3].shape[1] != k || v[2].shape[0] != n ||
        !in_range(v[1].buf, n, v[0].shape[0]) || !in_range(v[2].buf, n, k))
        return fail(v, 4, "gather_shifted: inconsistent shapes or dtypes, or indices out of range");
    Py_BEGIN_ALLOW_THREADS
    if (v[0].itemsize == 4)
        gather_shifted_float32(v[0].buf, k, v[1].buf, v[2].buf, n, v[3].buf);
    else
        gather_shifted_float64(v[0].buf, k, v[1].buf, v[2].buf, n, v[3].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 4);
    Py_RETURN_NONE;
}

static PyObject *
masked_estimates(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objs[6];
    double alpha, tiny, floor_;
    if (!PyArg_ParseTuple(args, "OOOdddOOO", &objs[0], &objs[1], &objs[2], &alpha, &tiny, &floor_,
                          &objs[3], &objs[4], &objs[5]))
        return NULL;
    static const spec_t specs[] = {{"exp", 0, -2, 2}, {"positions", 0, 8, 1}, {"keep_bits", 0, -1, 1},
                                   {"hm", 1, 8, 1},  {"gm", 1, 8, 1},        {"doubt", 1, 1, 1}};
    Py_buffer v[6];
    if (get_all(objs, v, specs, 6) < 0)
        return NULL;
    Py_ssize_t n = v[1].shape[0], k = v[0].shape[1];
    if (v[2].itemsize != v[0].itemsize)             /* keep_bits: integers of the cache's width */
        return fail(v, 6, "masked_estimates: keep_bits must have the itemsize of exp");
    if (v[2].shape[0] != k || v[3].shape[0] != n || v[4].shape[0] != n || v[5].shape[0] != n ||
        !in_range(v[1].buf, n, v[0].shape[0]))
        return fail(v, 6, "masked_estimates: inconsistent lengths or positions out of range");
    Py_BEGIN_ALLOW_THREADS
    if (v[0].itemsize == 2)
        masked_rows_compact(v[0].buf, k, v[1].buf, n, v[2].buf, alpha, tiny, floor_, v[3].buf, v[4].buf,
                            v[5].buf);
    else if (v[0].itemsize == 4)
        masked_rows_float32(v[0].buf, k, v[1].buf, n, v[2].buf, alpha, tiny, floor_, v[3].buf, v[4].buf,
                            v[5].buf);
    else
        masked_rows_float64(v[0].buf, k, v[1].buf, n, v[2].buf, alpha, tiny, floor_, v[3].buf, v[4].buf,
                            v[5].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 6);
    Py_RETURN_NONE;
}

static PyObject *
encode_compact(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "OO", &objs[0], &objs[1]))
        return NULL;
    static const spec_t specs[] = {{"e", 0, 0, 2}, {"out", 1, 2, 2}};
    Py_buffer v[2];
    if (get_all(objs, v, specs, 2) < 0)
        return NULL;
    if (v[1].shape[0] != v[0].shape[0] || v[1].shape[1] != v[0].shape[1])
        return fail(v, 2, "encode_compact: e and out must have the same shape");
    Py_ssize_t count = v[0].shape[0] * v[0].shape[1];
    Py_BEGIN_ALLOW_THREADS
    if (v[0].itemsize == 4)
        encode_float32(v[0].buf, count, v[1].buf);
    else
        encode_float64(v[0].buf, count, v[1].buf);
    Py_END_ALLOW_THREADS
    release_all(v, 2);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"first_maxima", first_maxima, METH_VARARGS,
     "first_maxima(x, h, second, bad): see l2h.kernels.first_maxima."},
    {"gather_shifted", gather_shifted, METH_VARARGS,
     "gather_shifted(x, rows, top, out): see l2h.kernels.gather_shifted."},
    {"masked_estimates", masked_estimates, METH_VARARGS,
     "masked_estimates(exp, positions, keep_bits, alpha, tiny, floor, hm, gm, doubt): see "
     "l2h.kernels.masked_estimates."},
    {"encode_compact", encode_compact, METH_VARARGS, "encode_compact(e, out): see l2h.kernels.encode_compact."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_kernels", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
