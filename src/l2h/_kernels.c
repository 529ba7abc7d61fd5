/* Compiled per-row kernel of the exp cache's multi-cluster steps (contract: l2h/kernels.py).
 *
 * For each requested row of the cache e = exp(z - max z) (float32 or float64, C-contiguous N x K) and a
 * mask of columns, in one pass over the row: the first masked argmax h^m, the estimate
 * g^m = e_{h^m} / (sum of the kept e) and whether the row needs the exact definition. The stored values
 * are >= 0, and for non-negative floats the order of the bit patterns read as signed integers is the
 * order of the values, so maxima and comparisons run on integers; masked columns are cleared by AND
 * with a per-column bit mask (0 or all ones). The row is split over LANES interleaved lanes, each with
 * its own sum, largest value (first position) and second largest value; the lanes are combined at the
 * end. This vectorises without fast-math, and the summation order is fixed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define L2H_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define L2H_CLONES
#endif

#define LANES 16

/* ROWS(name, real, bits_t): the kernel for one float type and the signed integer type of its width.
 * Rows are read through bits_t only; floats are formed with memcpy. */
#define ROWS(name, real, bits_t)                                                            \
    L2H_CLONES static void name(const bits_t *exp, Py_ssize_t k, const int64_t *positions, Py_ssize_t n, \
                                const bits_t *keep_bits, double alpha, double tiny, double floor_,       \
                                int64_t *hm, double *gm, uint8_t *doubt)                                \
    {                                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            const bits_t *bits = exp + positions[i] * k;                                                 \
            real acc[LANES] = {0};                                                                       \
            bits_t tops[LANES], seconds[LANES], at[LANES];                                               \
            for (int l = 0; l < LANES; l++) { tops[l] = -1; seconds[l] = -1; at[l] = 0; }                 \
            Py_ssize_t j = 0;                                                                            \
            for (; j + LANES <= k; j += LANES)                                                           \
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

ROWS(rows_float32, float, int32_t)
ROWS(rows_float64, double, int64_t)

static int
get(PyObject *obj, Py_buffer *view, int writable, const char *name, Py_ssize_t itemsize, int ndim)
{
    int flags = PyBUF_ND | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != itemsize || view->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "masked_estimates: %s must be %d-D with %zd-byte items", name,
                     ndim, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
masked_estimates(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *objs[6];
    double alpha, tiny, floor_;
    if (!PyArg_ParseTuple(args, "OOOdddOOO", &objs[0], &objs[1], &objs[2], &alpha, &tiny, &floor_,
                          &objs[3], &objs[4], &objs[5]))
        return NULL;
    Py_buffer exp, positions, keep_bits, hm, gm, doubt;
    if (PyObject_GetBuffer(objs[0], &exp, PyBUF_FORMAT | PyBUF_ND | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    Py_ssize_t size = exp.itemsize;
    const char *format = exp.format ? exp.format : "B";
    char type = format[strlen(format) - 1];
    int native = format[0] != '>' && format[0] != '!';
    if (!native || !((type == 'f' && size == 4) || (type == 'd' && size == 8)) || exp.ndim != 2) {
        PyErr_SetString(PyExc_ValueError, "masked_estimates: exp must be 2-D float32 or float64");
        PyBuffer_Release(&exp);
        return NULL;
    }
    Py_ssize_t k = exp.shape[1];
    PyObject *result = NULL;
    if (get(objs[1], &positions, 0, "positions", 8, 1) < 0)
        goto release_exp;
    if (get(objs[2], &keep_bits, 0, "keep_bits", size, 1) < 0)
        goto release_positions;
    if (get(objs[3], &hm, 1, "hm", 8, 1) < 0)
        goto release_keep;
    if (get(objs[4], &gm, 1, "gm", 8, 1) < 0)
        goto release_hm;
    if (get(objs[5], &doubt, 1, "doubt", 1, 1) < 0)
        goto release_gm;
    Py_ssize_t n = positions.shape[0];
    const int64_t *pos = positions.buf;
    int ok = keep_bits.shape[0] == k && hm.shape[0] == n && gm.shape[0] == n && doubt.shape[0] == n;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = pos[i] >= 0 && pos[i] < exp.shape[0];
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "masked_estimates: inconsistent lengths or positions out of range");
        goto release_doubt;
    }
    Py_BEGIN_ALLOW_THREADS
    if (size == 4)
        rows_float32(exp.buf, k, pos, n, keep_bits.buf, alpha, tiny, floor_, hm.buf, gm.buf, doubt.buf);
    else
        rows_float64(exp.buf, k, pos, n, keep_bits.buf, alpha, tiny, floor_, hm.buf, gm.buf, doubt.buf);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
release_doubt:
    PyBuffer_Release(&doubt);
release_gm:
    PyBuffer_Release(&gm);
release_hm:
    PyBuffer_Release(&hm);
release_keep:
    PyBuffer_Release(&keep_bits);
release_positions:
    PyBuffer_Release(&positions);
release_exp:
    PyBuffer_Release(&exp);
    return result;
}

static PyMethodDef methods[] = {
    {"masked_estimates", masked_estimates, METH_VARARGS,
     "masked_estimates(exp, positions, keep_bits, alpha, tiny, floor, hm, gm, doubt)\n\n"
     "See l2h.kernels.masked_estimates (same contract)."},
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
