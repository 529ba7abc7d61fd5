/* Thin matrix products of TURTLE on CPU (wrapper and contract: l2h/clusterers/turtle.py, `thin_matmul`).
 *
 * pack(m, panels): a (J, C) matrix m into panels (P, J, 32), P = ceil(C / 32): panels[p, j, :] holds
 *     m[j, 32 p : 32 p + 32], zero-padded past C. TURTLE packs each batch's features once and multiplies them
 *     by new small matrices many times: a panel is then one contiguous read per product.
 * matmul_tn(a_t, panels, out, p0, p1): out[k, c] = sum_j a_t[j, k] * m[j, c] for the columns of the panels
 *     p0 <= p < p1, with a_t (J, K), panels = pack(m) and out (K, C). K is small (the clusters).
 *
 * Every output is the sequential sum over j = 0, 1, ..., J-1 of one fused multiply-add per term, starting
 * from 0: fmaf(a_t[j, k], m[j, c], acc). The result therefore does not depend on the code path (AVX-512,
 * AVX2, plain C), on the register blocking or on how the panels are split between threads: every machine
 * gives the same bits. The vector paths hold a block of rows x 32 columns in registers and read a panel
 * once per row block. The fastest path the CPU runs is the default; the others can be asked for by name
 * (to test that they agree). All arrays are C-contiguous float32.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define L2H_X86 1
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif

#define PANEL 32

typedef struct {
    const float *a_t;    /* (J, K) */
    const float *panels; /* (P, J, PANEL) */
    float *out;          /* (K, C) */
    Py_ssize_t j, k, c;
} operands_t;

/* Columns of panel p that exist in out (the last panel may be partly padding). */
static Py_ssize_t
panel_width(const operands_t *op, Py_ssize_t p)
{
    Py_ssize_t rest = op->c - p * PANEL;
    return rest < PANEL ? rest : PANEL;
}

/* Plain C: for each j, acc[k, :] = fmaf(a_t[j, k], panel[j, :], acc[k, :]): the same sequence per output. */
static void
matmul_plain(const operands_t *op, Py_ssize_t p0, Py_ssize_t p1)
{
    for (Py_ssize_t p = p0; p < p1; p++) {
        const Py_ssize_t width = panel_width(op, p);
        for (Py_ssize_t k = 0; k < op->k; k++) {
            float acc[PANEL] = {0};
            const float *x = op->panels + p * op->j * PANEL;
            for (Py_ssize_t j = 0; j < op->j; j++, x += PANEL) {
                const float w = op->a_t[j * op->k + k];
                for (int c = 0; c < PANEL; c++)
                    acc[c] = fmaf(w, x[c], acc[c]);
            }
            memcpy(op->out + k * op->c + p * PANEL, acc, width * sizeof(float));
        }
    }
}

#ifdef L2H_X86
/* AVX-512: rows k0..k0+kb-1 x one panel (2 vectors); kb is a constant at each call site, so the
 * accumulators stay in registers. */
__attribute__((target("avx512f"))) static ALWAYS_INLINE void
block512(const operands_t *op, Py_ssize_t k0, const int kb, Py_ssize_t p)
{
    const Py_ssize_t width = panel_width(op, p);
    const __mmask16 lo = width >= 16 ? 0xFFFF : (__mmask16)((1u << width) - 1);
    const __mmask16 hi = width >= 32 ? 0xFFFF : width <= 16 ? 0 : (__mmask16)((1u << (width - 16)) - 1);
    __m512 acc0[12], acc1[12];
    for (int k = 0; k < kb; k++)
        acc0[k] = acc1[k] = _mm512_setzero_ps();
    const float *w = op->a_t + k0, *x = op->panels + p * op->j * PANEL;
    for (Py_ssize_t j = 0; j < op->j; j++, w += op->k, x += PANEL) {
        const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        for (int k = 0; k < kb; k++) {
            const __m512 wk = _mm512_set1_ps(w[k]);
            acc0[k] = _mm512_fmadd_ps(wk, x0, acc0[k]);
            acc1[k] = _mm512_fmadd_ps(wk, x1, acc1[k]);
        }
    }
    for (int k = 0; k < kb; k++) {
        float *o = op->out + (k0 + k) * op->c + p * PANEL;
        _mm512_mask_storeu_ps(o, lo, acc0[k]);
        _mm512_mask_storeu_ps(o + 16, hi, acc1[k]);
    }
}

__attribute__((target("avx512f"))) static void
matmul_avx512(const operands_t *op, Py_ssize_t p0, Py_ssize_t p1)
{
    for (Py_ssize_t k0 = 0; k0 < op->k; k0 += 12) {
        const Py_ssize_t kb = op->k - k0 < 12 ? op->k - k0 : 12;
        for (Py_ssize_t p = p0; p < p1; p++) {
            switch (kb) { /* one inlined copy per row count */
            case 1: block512(op, k0, 1, p); break;
            case 2: block512(op, k0, 2, p); break;
            case 3: block512(op, k0, 3, p); break;
            case 4: block512(op, k0, 4, p); break;
            case 5: block512(op, k0, 5, p); break;
            case 6: block512(op, k0, 6, p); break;
            case 7: block512(op, k0, 7, p); break;
            case 8: block512(op, k0, 8, p); break;
            case 9: block512(op, k0, 9, p); break;
            case 10: block512(op, k0, 10, p); break;
            case 11: block512(op, k0, 11, p); break;
            default: block512(op, k0, 12, p); break;
            }
        }
    }
}

/* AVX2 + FMA: rows k0..k0+kb-1 x half a panel (h = 0, 1: 2 vectors of 8), kb <= 6 (16 registers). */
__attribute__((target("avx2,fma"))) static ALWAYS_INLINE void
block256(const operands_t *op, Py_ssize_t k0, const int kb, Py_ssize_t p, int h)
{
    const Py_ssize_t width = panel_width(op, p) - 16 * h;
    if (width <= 0)
        return;
    int lanes[16];
    for (int l = 0; l < 16; l++)
        lanes[l] = l < width ? -1 : 0;
    const __m256i lo = _mm256_loadu_si256((const __m256i *)lanes);
    const __m256i hi = _mm256_loadu_si256((const __m256i *)(lanes + 8));
    __m256 acc0[6], acc1[6];
    for (int k = 0; k < kb; k++)
        acc0[k] = acc1[k] = _mm256_setzero_ps();
    const float *w = op->a_t + k0, *x = op->panels + p * op->j * PANEL + 16 * h;
    for (Py_ssize_t j = 0; j < op->j; j++, w += op->k, x += PANEL) {
        const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        for (int k = 0; k < kb; k++) {
            const __m256 wk = _mm256_broadcast_ss(w + k);
            acc0[k] = _mm256_fmadd_ps(wk, x0, acc0[k]);
            acc1[k] = _mm256_fmadd_ps(wk, x1, acc1[k]);
        }
    }
    for (int k = 0; k < kb; k++) {
        float *o = op->out + (k0 + k) * op->c + p * PANEL + 16 * h;
        _mm256_maskstore_ps(o, lo, acc0[k]);
        _mm256_maskstore_ps(o + 8, hi, acc1[k]);
    }
}

__attribute__((target("avx2,fma"))) static void
matmul_avx2(const operands_t *op, Py_ssize_t p0, Py_ssize_t p1)
{
    for (Py_ssize_t k0 = 0; k0 < op->k; k0 += 6) {
        const Py_ssize_t kb = op->k - k0 < 6 ? op->k - k0 : 6;
        for (Py_ssize_t p = p0; p < p1; p++) {
            for (int h = 0; h < 2; h++) {
                switch (kb) {
                case 1: block256(op, k0, 1, p, h); break;
                case 2: block256(op, k0, 2, p, h); break;
                case 3: block256(op, k0, 3, p, h); break;
                case 4: block256(op, k0, 4, p, h); break;
                case 5: block256(op, k0, 5, p, h); break;
                default: block256(op, k0, 6, p, h); break;
                }
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

/* A C-contiguous float32 buffer of `obj` with `ndim` dimensions (writable when asked) into `view`; 0, or
 * -1 with an exception set. */
static int
get_array(PyObject *obj, Py_buffer *view, int ndim, int writable, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->ndim != ndim || view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %d-D float32 array", name, ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The buffers of `count` arrays (name, ndim, writable); 0, or -1 with all of them released. */
static int
get_arrays(PyObject **objs, Py_buffer *views, const char **names, const int *ndims, int writable_last, int count)
{
    for (int i = 0; i < count; i++) {
        if (get_array(objs[i], &views[i], ndims[i], writable_last && i == count - 1, names[i]) < 0) {
            for (int r = 0; r < i; r++)
                PyBuffer_Release(&views[r]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
pack(PyObject *self, PyObject *args)
{
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "OO", &objs[0], &objs[1]))
        return NULL;
    static const char *names[2] = {"pack: m", "pack: panels"};
    static const int ndims[2] = {2, 3};
    Py_buffer v[2];
    if (get_arrays(objs, v, names, ndims, 1, 2) < 0)
        return NULL;
    const Py_ssize_t j = v[0].shape[0], c = v[0].shape[1], n_panels = (c + PANEL - 1) / PANEL;
    const int ok = v[1].shape[0] == n_panels && v[1].shape[1] == j && v[1].shape[2] == PANEL;
    if (ok) {
        const float *m = v[0].buf;
        float *panels = v[1].buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t p = 0; p < n_panels; p++) {
            const Py_ssize_t width = c - p * PANEL < PANEL ? c - p * PANEL : PANEL;
            for (Py_ssize_t r = 0; r < j; r++) {
                float *dst = panels + (p * j + r) * PANEL;
                memcpy(dst, m + r * c + p * PANEL, width * sizeof(float));
                memset(dst + width, 0, (PANEL - width) * sizeof(float));
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&v[0]);
    PyBuffer_Release(&v[1]);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "pack: panels must have shape (ceil(C / 32), J, 32) for m (J, C)");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
matmul_tn(PyObject *self, PyObject *args)
{
    PyObject *objs[3];
    Py_ssize_t p0, p1;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "OOOnn|z", &objs[0], &objs[1], &objs[2], &p0, &p1, &name))
        return NULL;
    matmul_fn kernel = NULL;
    for (int i = 0; i < n_paths && kernel == NULL; i++)
        if (name == NULL || strcmp(name, paths[i].name) == 0)
            kernel = paths[i].fn;
    if (kernel == NULL) {
        PyErr_Format(PyExc_ValueError, "matmul_tn: code path %s not available on this CPU", name);
        return NULL;
    }
    static const char *names[3] = {"matmul_tn: a_t", "matmul_tn: panels", "matmul_tn: out"};
    static const int ndims[3] = {2, 3, 2};
    Py_buffer v[3];
    if (get_arrays(objs, v, names, ndims, 1, 3) < 0)
        return NULL;
    operands_t op = {v[0].buf, v[1].buf, v[2].buf, v[0].shape[0], v[0].shape[1], v[2].shape[1]};
    const Py_ssize_t n_panels = v[1].shape[0];
    const char *error = NULL;
    if (v[1].shape[1] != op.j || v[1].shape[2] != PANEL || v[2].shape[0] != op.k
        || n_panels != (op.c + PANEL - 1) / PANEL)
        error = "matmul_tn: shapes do not match: a_t (J, K), panels (ceil(C / 32), J, 32), out (K, C)";
    else if (p0 < 0 || p1 < p0 || p1 > n_panels)
        error = "matmul_tn: need 0 <= p0 <= p1 <= number of panels";
    if (error == NULL) {
        Py_BEGIN_ALLOW_THREADS
        kernel(&op, p0, p1);
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
    {"pack", pack, METH_VARARGS,
     "pack(m, panels): m (J, C) into panels (ceil(C / 32), J, 32), zero-padded (see the module comment)."},
    {"matmul_tn", matmul_tn, METH_VARARGS,
     "matmul_tn(a_t, panels, out, p0, p1, path=None): the columns of panels p0..p1-1 of out = a_t.T @ m, "
     "panels = pack(m); each output a sequential fused multiply-add sum over j; path: one of paths()."},
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
    if (mod != NULL && (PyModule_AddIntConstant(mod, "X86", x86) < 0
                        || PyModule_AddIntConstant(mod, "PANEL", PANEL) < 0)) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
