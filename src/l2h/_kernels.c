/* Compiled per-row kernels of the L2H first pass and exp cache (contracts and numpy builds: l2h/kernels.py).
 *
 * Every kernel reads a row once, split over LANES interleaved lanes that are combined at the end; this
 * vectorises without fast-math, ties keep the first position as numpy's argmax does, and sums have a fixed
 * order.
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
 *   code (encode_compact): the bits of the float32 e * 2^-64 from bit 13 on, rounded to nearest even, i.e.
 *   6 exponent and 10 mantissa bits; a code shifted left by 13 is that float32 again (in [0, 2^-64]), so
 *   its rows are summed in that scale (the ratio g^m does not depend on it) and compared as integers.
 * - encode_compact: those codes of a block of e.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define L2H_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define L2H_CLONES
#endif

#define LANES 16

/* Rows are read in the order of their positions, which are scattered in the cache: while a row is summed,
 * the next one is fetched (one prefetch per 64-byte line). */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(address) __builtin_prefetch((address), 0, 0)
#else
#define PREFETCH(address) ((void)0)
#endif

/* FIRST_MAXIMA(name, real, bits_t): per lane of a 32-byte vector, the top value, its first position, and
 * the largest value at another position (first such position); selects are bit masks (GCC/clang vector
 * extensions). v * 0 is NaN exactly when v is NaN or infinite. The lanes are combined at the end, and
 * the last K mod W values go to lanes 0.. one by one. */
#define FIRST_MAXIMA(name, real, bits_t)                                                               \
    L2H_CLONES static void name(const real *x, Py_ssize_t n, Py_ssize_t k, int64_t *h, int64_t *second,  \
                                uint8_t *bad)                                                            \
    {                                                                                                    \
        typedef real vreal __attribute__((vector_size(32)));                                             \
        typedef bits_t vbits __attribute__((vector_size(32)));                                           \
        enum { W = 32 / sizeof(real) };                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            const real *row = x + i * k;                                                                 \
            vreal vtop, vsec, vcheck = {0};                                                              \
            vbits vat, vsec_at, index;                                                                   \
            for (int l = 0; l < W; l++) {                                                                \
                vtop[l] = vsec[l] = -(real)INFINITY;                                                     \
                vat[l] = vsec_at[l] = -1;                                                                \
                index[l] = l;                                                                            \
            }                                                                                            \
            Py_ssize_t j = 0;                                                                            \
            for (; j + W <= k; j += W) {                                                                 \
                vreal v;                                                                                 \
                memcpy(&v, row + j, sizeof v);                                                           \
                vbits above = v > vtop, between = v > vsec;                                              \
                vbits s = (between & (vbits)v) | (~between & (vbits)vsec);                               \
                vbits s_at = (between & index) | (~between & vsec_at);                                   \
                vsec = (vreal)((above & (vbits)vtop) | (~above & s));                                    \
                vsec_at = (above & vat) | (~above & s_at);                                               \
                vtop = (vreal)((above & (vbits)v) | (~above & (vbits)vtop));                             \
                vat = (above & index) | (~above & vat);                                                  \
                vcheck += v * 0;                                                                         \
                index += W;                                                                              \
            }                                                                                            \
            real top[W], sec[W];                                                                         \
            bits_t at[W], sec_at[W];                                                                     \
            int finite = 1;                                                                              \
            for (int l = 0; l < W; l++) {                                                                \
                top[l] = vtop[l], sec[l] = vsec[l], at[l] = vat[l], sec_at[l] = vsec_at[l];              \
                finite &= vcheck[l] == 0;                                                                \
            }                                                                                            \
            for (int l = 0; j < k; j++, l++) {                                                           \
                real v = row[j];                                                                         \
                finite &= v * 0 == 0;                                                                    \
                if (v > top[l]) {                                                                        \
                    sec[l] = top[l], sec_at[l] = at[l], top[l] = v, at[l] = (bits_t)j;                   \
                }                                                                                        \
                else if (v > sec[l]) {                                                                   \
                    sec[l] = v, sec_at[l] = (bits_t)j;                                                   \
                }                                                                                        \
            }                                                                                            \
            int best = 0;                                                                                \
            for (int l = 1; l < W; l++)                                                                  \
                if (at[l] >= 0 && (at[best] < 0 || top[l] > top[best] ||                                 \
                                   (top[l] == top[best] && at[l] < at[best])))                           \
                    best = l;                                                                            \
            real next = -(real)INFINITY;                                                                 \
            bits_t next_at = -1;                                                                         \
            for (int l = 0; l < W; l++) {                                                                \
                real v = l == best ? sec[l] : top[l];                                                    \
                bits_t c = l == best ? sec_at[l] : at[l];                                                \
                if (c >= 0 && (next_at < 0 || v > next || (v == next && c < next_at))) {                 \
                    next = v;                                                                            \
                    next_at = c;                                                                         \
                }                                                                                        \
            }                                                                                            \
            h[i] = at[best];                                                                             \
            second[i] = next_at;                                                                         \
            bad[i] = !finite;                                                                            \
        }                                                                                                \
    }

/* GATHER_SHIFTED(name, real): out row i = x row rows[i] minus its value at column top[i]. */
#define GATHER_SHIFTED(name, real)                                                                      \
    L2H_CLONES static void name(const real *x, Py_ssize_t k, const int64_t *rows, const int64_t *top,    \
                                Py_ssize_t n, real *out)                                                 \
    {                                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            const real *row = x + rows[i] * k;                                                           \
            real peak = row[top[i]];                                                                     \
            real *to = out + i * k;                                                                      \
            for (Py_ssize_t j = 0; j < k; j++)                                                           \
                to[j] = row[j] - peak;                                                                   \
        }                                                                                                \
    }

/* MASKED_ROWS(name, real, bits_t): bits_t is the signed integer type of real's width. Rows are read
 * through bits_t only; floats are formed with memcpy. */
#define MASKED_ROWS(name, real, bits_t)                                                            \
    L2H_CLONES static void name(const bits_t *exp, Py_ssize_t k, const int64_t *positions, Py_ssize_t n, \
                                const bits_t *keep_bits, double alpha, double tiny, double floor_,       \
                                int64_t *hm, double *gm, uint8_t *doubt)                                \
    {                                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            const bits_t *bits = exp + positions[i] * k;                                                 \
            const bits_t *next = exp + positions[i + 1 < n ? i + 1 : i] * k;                             \
            real acc[LANES] = {0};                                                                       \
            bits_t tops[LANES], seconds[LANES], at[LANES];                                               \
            for (int l = 0; l < LANES; l++) { tops[l] = -1; seconds[l] = -1; at[l] = 0; }                 \
            Py_ssize_t j = 0;                                                                            \
            for (; j + LANES <= k; j += LANES) {                                                         \
                PREFETCH(next + j);                                                                      \
                for (int l = 0; l < LANES; l++) {                                                        \
                    bits_t v = bits[j + l] & keep_bits[j + l];                                           \
                    real f;                                                                              \
                    memcpy(&f, &v, sizeof f);                                                            \
                    acc[l] += f;                                                                         \
                    bits_t low = v < tops[l] ? v : tops[l];                                              \
                    seconds[l] = low > seconds[l] ? low : seconds[l];                                    \
                    at[l] = v > tops[l] ? (bits_t)(j + l) : at[l];                                       \
                    tops[l] = v > tops[l] ? v : tops[l];                                                 \
                }                                                                                        \
            }                                                                                            \
            for (int l = 0; j < k; j++, l++) {                                                           \
                bits_t v = bits[j] & keep_bits[j];                                                       \
                real f;                                                                                  \
                memcpy(&f, &v, sizeof f);                                                                \
                acc[l] += f;                                                                             \
                bits_t low = v < tops[l] ? v : tops[l];                                                  \
                seconds[l] = low > seconds[l] ? low : seconds[l];                                        \
                at[l] = v > tops[l] ? (bits_t)j : at[l];                                                 \
                tops[l] = v > tops[l] ? v : tops[l];                                                     \
            }                                                                                            \
            for (int width = LANES / 2; width > 0; width /= 2)                                           \
                for (int l = 0; l < width; l++)                                                          \
                    acc[l] += acc[l + width];                                                            \
            bits_t top = -1, first = (bits_t)k, second = -1;                                             \
            for (int l = 0; l < LANES; l++)                                                              \
                top = tops[l] > top ? tops[l] : top;                                                     \
            int best_lane = -1;                                                                          \
            for (int l = 0; l < LANES; l++)                                                              \
                if (tops[l] == top && at[l] < first) { first = at[l]; best_lane = l; }                   \
            for (int l = 0; l < LANES; l++) {                                                            \
                bits_t other = l == best_lane ? seconds[l] : tops[l];                                    \
                second = other > second ? other : second;                                                \
            }                                                                                            \
            real top_value, second_value;                                                                \
            memcpy(&top_value, &top, sizeof top_value);                                                  \
            memcpy(&second_value, &second, sizeof second_value);                                         \
            double top64 = (double)top_value;                                                            \
            double second64 = second < 0 ? 0.0 : (double)second_value;                                   \
            hm[i] = (int64_t)first;                                                                      \
            gm[i] = acc[0] > 0 ? top64 / (double)acc[0] : 0.0;                                           \
            doubt[i] = top64 * (1 - alpha) <= second64 * (1 + alpha) + tiny || top64 < floor_;           \
        }                                                                                                \
    }

/* MASKED_COMPACT: as MASKED_ROWS on the compact cache's codes; values are summed as floats in the scale
 * 2^-64 (code << 13 read as float32) and the top two are returned to the unit scale for the doubt test. */
L2H_CLONES static void masked_rows_compact(const uint16_t *codes, Py_ssize_t k, const int64_t *positions,
                                           Py_ssize_t n, const uint16_t *keep_bits, double alpha, double tiny,
                                           double floor_, int64_t *hm, double *gm, uint8_t *doubt)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint16_t *row = codes + positions[i] * k;
        const uint16_t *next = codes + positions[i + 1 < n ? i + 1 : i] * k;
        float acc[LANES] = {0};
        int32_t tops[LANES], seconds[LANES], at[LANES];
        for (int l = 0; l < LANES; l++) { tops[l] = -1; seconds[l] = -1; at[l] = 0; }
        Py_ssize_t j = 0;
        for (; j + LANES <= k; j += LANES) {
            if ((j & 31) == 0)
                PREFETCH(next + j);
            for (int l = 0; l < LANES; l++) {
                int32_t v = row[j + l] & keep_bits[j + l];
                uint32_t b = (uint32_t)v << 13;
                float f;
                memcpy(&f, &b, sizeof f);
                acc[l] += f;
                int32_t low = v < tops[l] ? v : tops[l];
                seconds[l] = low > seconds[l] ? low : seconds[l];
                at[l] = v > tops[l] ? (int32_t)(j + l) : at[l];
                tops[l] = v > tops[l] ? v : tops[l];
            }
        }
        for (int l = 0; j < k; j++, l++) {
            int32_t v = row[j] & keep_bits[j];
            uint32_t b = (uint32_t)v << 13;
            float f;
            memcpy(&f, &b, sizeof f);
            acc[l] += f;
            int32_t low = v < tops[l] ? v : tops[l];
            seconds[l] = low > seconds[l] ? low : seconds[l];
            at[l] = v > tops[l] ? (int32_t)j : at[l];
            tops[l] = v > tops[l] ? v : tops[l];
        }
        for (int width = LANES / 2; width > 0; width /= 2)
            for (int l = 0; l < width; l++)
                acc[l] += acc[l + width];
        int32_t top = -1, first = (int32_t)k, second = -1;
        for (int l = 0; l < LANES; l++)
            top = tops[l] > top ? tops[l] : top;
        int best_lane = -1;
        for (int l = 0; l < LANES; l++)
            if (tops[l] == top && at[l] < first) { first = at[l]; best_lane = l; }
        for (int l = 0; l < LANES; l++) {
            int32_t other = l == best_lane ? seconds[l] : tops[l];
            second = other > second ? other : second;
        }
        uint32_t top_bits = (uint32_t)top << 13, second_bits = second < 0 ? 0 : (uint32_t)second << 13;
        float top_value, second_value;
        memcpy(&top_value, &top_bits, sizeof top_value);
        memcpy(&second_value, &second_bits, sizeof second_value);
        double top64 = (double)top_value * 0x1p64, second64 = (double)second_value * 0x1p64;
        hm[i] = (int64_t)first;
        gm[i] = acc[0] > 0 ? (double)top_value / (double)acc[0] : 0.0;
        doubt[i] = top64 * (1 - alpha) <= second64 * (1 + alpha) + tiny || top64 < floor_;
    }
}

/* ENCODE(name, real): the compact code of each value of e (0 <= e <= 1). */
#define ENCODE(name, real)                                                                               \
    L2H_CLONES static void name(const real *e, Py_ssize_t count, uint16_t *out)                          \
    {                                                                                                    \
        for (Py_ssize_t i = 0; i < count; i++) {                                                         \
            float t = (float)(e[i] * (real)0x1p-64);                                                     \
            uint32_t b;                                                                                  \
            memcpy(&b, &t, sizeof b);                                                                    \
            out[i] = (uint16_t)((b + 0xFFFu + ((b >> 13) & 1u)) >> 13);                                  \
        }                                                                                                \
    }


FIRST_MAXIMA(first_maxima_float32, float, int32_t)
FIRST_MAXIMA(first_maxima_float64, double, int64_t)
GATHER_SHIFTED(gather_shifted_float32, float)
GATHER_SHIFTED(gather_shifted_float64, double)
MASKED_ROWS(masked_rows_float32, float, int32_t)
MASKED_ROWS(masked_rows_float64, double, int64_t)
ENCODE(encode_float32, float)
ENCODE(encode_float64, double)

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
