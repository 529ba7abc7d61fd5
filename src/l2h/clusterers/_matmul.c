/* Thin matrix products of TURTLE on CPU (wrapper and contract: l2h/clusterers/turtle.py, `thin_matmul`).
 *
 * matmul_tn(a_t, m, out, c0, c1): out[k, c] = sum_j a_t[j, k] * m[j, c] for the columns c0 <= c < c1, with
 * a_t (J, K), m (J, C) and out (K, C) C-contiguous float32. K is small (the clusters), J and C are large.
 *
 * Every output is the sequential sum over j = 0, 1, ..., J-1 of one fused multiply-add per term, starting
 * from 0: fmaf(a_t[j, k], m[j, c], acc). The result therefore does not depend on the code path (AVX-512,
 * AVX2, plain C), on the register blocking or on how the columns are split between threads: every machine
 * gives the same bits. The vector paths hold a block of rows x 2 vectors of columns in registers and read
 * m once per row block; the last column block is masked. The fastest path the CPU runs is the default;
 * the others can be asked for by name (to test that they agree).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define L2H_X86 1
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif

typedef struct {
    const float *a_t; /* (J, K) */
    const float *m;   /* (J, C) */
    float *out;       /* (K, C) */
    Py_ssize_t j, k, c;
} operands_t;

/* Plain C: for each j, out[k, :] = fmaf(a_t[j, k], m[j, :], out[k, :]): the same sequence per output. */
static void
matmul_plain(const operands_t *op, Py_ssize_t c0, Py_ssize_t c1)
{
    for (Py_ssize_t k = 0; k < op->k; k++)
        for (Py_ssize_t c = c0; c < c1; c++)
            op->out[k * op->c + c] = 0.0f;
    for (Py_ssize_t j = 0; j < op->j; j++) {
        const float *row = op->m + j * op->c;
        for (Py_ssize_t k = 0; k < op->k; k++) {
            const float w = op->a_t[j * op->k + k];
            float *o = op->out + k * op->c;
            for (Py_ssize_t c = c0; c < c1; c++)
                o[c] = fmaf(w, row[c], o[c]);
        }
    }
}

#ifdef L2H_X86
/* AVX-512: rows k0..k0+KB-1 x 32 columns from c (lanes past `width` masked off); KB is a constant at each
 * call site, so the accumulators stay in registers. */
__attribute__((target("avx512f"))) static ALWAYS_INLINE void
block512(const operands_t *op, Py_ssize_t k0, const int kb, Py_ssize_t c, Py_ssize_t width)
{
    const __mmask16 lo = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    const __mmask16 hi = width >= 32 ? 0xFFFF : width <= 16 ? 0 : (__mmask16)((1u << (width - 16)) - 1);
    __m512 acc0[12], acc1[12];
    for (int k = 0; k < kb; k++)
        acc0[k] = acc1[k] = _mm512_setzero_ps();
    const float *w = op->a_t + k0, *x = op->m + c;
    for (Py_ssize_t j = 0; j < op->j; j++, w += op->k, x += op->c) {
        const __m512 x0 = _mm512_maskz_loadu_ps(lo, x), x1 = _mm512_maskz_loadu_ps(hi, x + 16);
        for (int k = 0; k < kb; k++) {
            const __m512 wk = _mm512_set1_ps(w[k]);
            acc0[k] = _mm512_fmadd_ps(wk, x0, acc0[k]);
            acc1[k] = _mm512_fmadd_ps(wk, x1, acc1[k]);
        }
    }
    for (int k = 0; k < kb; k++) {
        float *o = op->out + (k0 + k) * op->c + c;
        _mm512_mask_storeu_ps(o, lo, acc0[k]);
        _mm512_mask_storeu_ps(o + 16, hi, acc1[k]);
    }
}

__attribute__((target("avx512f"))) static void
matmul_avx512(const operands_t *op, Py_ssize_t c0, Py_ssize_t c1)
{
    for (Py_ssize_t k0 = 0; k0 < op->k; k0 += 12) {
        const Py_ssize_t kb = op->k - k0 < 12 ? op->k - k0 : 12;
        for (Py_ssize_t c = c0; c < c1; c += 32) {
            const Py_ssize_t width = c1 - c;
            switch (kb) { /* one inlined copy per row count */
            case 1: block512(op, k0, 1, c, width); break;
            case 2: block512(op, k0, 2, c, width); break;
            case 3: block512(op, k0, 3, c, width); break;
            case 4: block512(op, k0, 4, c, width); break;
            case 5: block512(op, k0, 5, c, width); break;
            case 6: block512(op, k0, 6, c, width); break;
            case 7: block512(op, k0, 7, c, width); break;
            case 8: block512(op, k0, 8, c, width); break;
            case 9: block512(op, k0, 9, c, width); break;
            case 10: block512(op, k0, 10, c, width); break;
            case 11: block512(op, k0, 11, c, width); break;
            default: block512(op, k0, 12, c, width); break;
            }
        }
    }
}

/* AVX2 + FMA: rows k0..k0+KB-1 x 16 columns from c, KB <= 6 (16 registers). */
__attribute__((target("avx2,fma"))) static ALWAYS_INLINE void
block256(const operands_t *op, Py_ssize_t k0, const int kb, Py_ssize_t c, Py_ssize_t width)
{
    int lanes[16];
    for (int l = 0; l < 16; l++)
        lanes[l] = l < width ? -1 : 0;
    const __m256i lo = _mm256_loadu_si256((const __m256i *)lanes);
    const __m256i hi = _mm256_loadu_si256((const __m256i *)(lanes + 8));
    __m256 acc0[6], acc1[6];
    for (int k = 0; k < kb; k++)
        acc0[k] = acc1[k] = _mm256_setzero_ps();
    const float *w = op->a_t + k0, *x = op->m + c;
    for (Py_ssize_t j = 0; j < op->j; j++, w += op->k, x += op->c) {
        const __m256 x0 = _mm256_maskload_ps(x, lo), x1 = _mm256_maskload_ps(x + 8, hi);
        for (int k = 0; k < kb; k++) {
            const __m256 wk = _mm256_broadcast_ss(w + k);
            acc0[k] = _mm256_fmadd_ps(wk, x0, acc0[k]);
            acc1[k] = _mm256_fmadd_ps(wk, x1, acc1[k]);
        }
    }
    for (int k = 0; k < kb; k++) {
        float *o = op->out + (k0 + k) * op->c + c;
        _mm256_maskstore_ps(o, lo, acc0[k]);
        _mm256_maskstore_ps(o + 8, hi, acc1[k]);
    }
}

__attribute__((target("avx2,fma"))) static void
matmul_avx2(const operands_t *op, Py_ssize_t c0, Py_ssize_t c1)
{
    for (Py_ssize_t k0 = 0; k0 < op->k; k0 += 6) {
        const Py_ssize_t kb = op->k - k0 < 6 ? op->k - k0 : 6;
        for (Py_ssize_t c = c0; c < c1; c += 16) {
            const Py_ssize_t width = c1 - c;
            switch (kb) {
            case 1: block256(op, k0, 1, c, width); break;
            case 2: block256(op, k0, 2, c, width); break;
            case 3: block256(op, k0, 3, c, width); break;
            case 4: block256(op, k0, 4, c, width); break;
            case 5: block256(op, k0, 5, c, width); break;
            default: block256(op, k0, 6, c, width); break;
            }
        }
    }
}
#endif

typedef void (*matmul_fn)(const operands_t *, Py_ssize_t, Py_ssize_t);

typedef struct {
    const char *name;
    matmul_fn fn;
} path_t;

/* The code paths this CPU runs, fastest first (set at import); the first is the default. */
static path_t paths[3];
static int n_paths = 0;

static void
find_paths(void)
{
#ifdef L2H_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        paths[n_paths++] = (path_t){"avx512", matmul_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        paths[n_paths++] = (path_t){"avx2", matmul_avx2};
#endif
    paths[n_paths++] = (path_t){"plain", matmul_plain};
}

/* A C-contiguous 2-D float32 buffer of `obj` (writable when asked) into `view`; 0, or -1 with an error. */
static int
get_matrix(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != 2 || view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "matmul_tn: %s must be a C-contiguous 2-D float32 array", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
matmul_tn(PyObject *self, PyObject *args)
{
    PyObject *objs[3];
    Py_ssize_t c0, c1;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "OOOnn|z", &objs[0], &objs[1], &objs[2], &c0, &c1, &name))
        return NULL;
    matmul_fn kernel = NULL;
    for (int i = 0; i < n_paths && kernel == NULL; i++)
        if (name == NULL || strcmp(name, paths[i].name) == 0)
            kernel = paths[i].fn;
    if (kernel == NULL) {
        PyErr_Format(PyExc_ValueError, "matmul_tn: code path %s not available on this CPU", name);
        return NULL;
    }
    static const char *names[3] = {"a_t", "m", "out"};
    Py_buffer v[3];
    for (int i = 0; i < 3; i++) {
        if (get_matrix(objs[i], &v[i], i == 2, names[i]) < 0) {
            for (int r = 0; r < i; r++)
                PyBuffer_Release(&v[r]);
            return NULL;
        }
    }
    operands_t op = {v[0].buf, v[1].buf, v[2].buf, v[0].shape[0], v[0].shape[1], v[1].shape[1]};
    const char *error = NULL;
    if (v[1].shape[0] != op.j || v[2].shape[0] != op.k || v[2].shape[1] != op.c)
        error = "matmul_tn: shapes do not match: a_t (J, K), m (J, C), out (K, C)";
    else if (c0 < 0 || c1 < c0 || c1 > op.c)
        error = "matmul_tn: need 0 <= c0 <= c1 <= C";
    if (error == NULL) {
        Py_BEGIN_ALLOW_THREADS
        kernel(&op, c0, c1);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < 3; i++)
        PyBuffer_Release(&v[i]);
    if (error != NULL) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
available(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_New(n_paths);
    for (int i = 0; out != NULL && i < n_paths; i++)
        PyList_SET_ITEM(out, i, PyUnicode_FromString(paths[i].name));
    return out;
}

static PyMethodDef methods[] = {
    {"matmul_tn", matmul_tn, METH_VARARGS,
     "matmul_tn(a_t, m, out, c0, c1, path=None): out[:, c0:c1] = a_t.T @ m[:, c0:c1], each output a "
     "sequential fused multiply-add sum over j; path: one of paths() (default: the first)."},
    {"paths", available, METH_NOARGS, "paths(): the code paths this CPU runs, default first."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_matmul", .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__matmul(void)
{
    find_paths();
    PyObject *mod = PyModule_Create(&module);
#ifdef L2H_X86
    const long x86 = 1;
#else
    const long x86 = 0;
#endif
    if (mod != NULL && PyModule_AddIntConstant(mod, "X86", x86) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
