/* In-place steps of an update chain (git_theta/chainops.py): xor a delta into a tensor, scatter sparse values.
 *
 * Checkout applies sparse and xor links into the chain's own buffer. numpy does the same work (the fallback),
 * but importing it costs ~0.1 s of CPU per filter start, about what git-lfs spends on a whole 100 MB checkout,
 * and a dense checkout never needs it. Both functions release the GIL: tensors rebuild two at a time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* target ^= delta, bytewise; the buffers have the same length */
static PyObject *xor_into(PyObject *self, PyObject *args)
{
    Py_buffer target, delta;
    if (!PyArg_ParseTuple(args, "w*y*:xor_into", &target, &delta))
        return NULL;
    int ok = target.len == delta.len;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        unsigned char *out = target.buf;
        const unsigned char *in = delta.buf;
        Py_ssize_t i = 0;
        for (; i + 8 <= target.len; i += 8) {
            uint64_t a, b;
            memcpy(&a, out + i, 8);
            memcpy(&b, in + i, 8);
            a ^= b;
            memcpy(out + i, &a, 8);
        }
        for (; i < target.len; i++)
            out[i] ^= in[i];
        Py_END_ALLOW_THREADS
    }
    Py_ssize_t target_len = target.len, delta_len = delta.len;
    PyBuffer_Release(&target);
    PyBuffer_Release(&delta);
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "xor of %zd bytes into %zd bytes", delta_len, target_len);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The little-endian unsigned gap at position i (4 or 8 bytes each): the stored byte order on every host. */
static uint64_t gap_at(const unsigned char *gaps, Py_ssize_t i, Py_ssize_t gap_size)
{
    const unsigned char *p = gaps + i * gap_size;
    uint64_t value = 0;
    for (Py_ssize_t k = gap_size - 1; k >= 0; k--)
        value = (value << 8) | p[k];
    return value;
}

/* scatter_into(target, gaps, gap_size, values, itemsize): element sum(gaps[:i+1]) of target = values[i].
 * Every index is checked (inside target, strictly increasing) before anything is written. */
static PyObject *scatter_into(PyObject *self, PyObject *args)
{
    Py_buffer target, gaps, values;
    Py_ssize_t gap_size, itemsize;
    if (!PyArg_ParseTuple(args, "w*y*ny*n:scatter_into", &target, &gaps, &gap_size, &values, &itemsize))
        return NULL;
    const char *error = NULL;
    if ((gap_size != 4 && gap_size != 8) || itemsize < 1 || target.len % itemsize != 0)
        error = "bad gap size or itemsize";
    else if (gaps.len % gap_size != 0 || values.len != (gaps.len / gap_size) * itemsize)
        error = "gaps and values differ in count";
    if (error == NULL) {
        Py_ssize_t count = gaps.len / gap_size;
        uint64_t elements = (uint64_t)(target.len / itemsize);
        Py_BEGIN_ALLOW_THREADS
        uint64_t index = 0;
        for (Py_ssize_t i = 0; i < count && error == NULL; i++) {
            uint64_t gap = gap_at(gaps.buf, i, gap_size);
            if (i > 0 && gap == 0)
                error = "indices repeat";
            else if (gap >= elements - index) /* index < elements holds here, so no overflow */
                error = "indices out of range";
            index += gap;
        }
        if (error == NULL) {
            unsigned char *out = target.buf;
            const unsigned char *in = values.buf;
            index = 0;
            for (Py_ssize_t i = 0; i < count; i++) {
                index += gap_at(gaps.buf, i, gap_size);
                memcpy(out + index * itemsize, in + i * itemsize, itemsize);
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&target);
    PyBuffer_Release(&gaps);
    PyBuffer_Release(&values);
    if (error != NULL) {
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"xor_into", xor_into, METH_VARARGS, "xor_into(target, delta): target ^= delta, bytewise, in place."},
    {"scatter_into", scatter_into, METH_VARARGS,
     "scatter_into(target, gaps, gap_size, values, itemsize): set the elements at the gaps' running sums."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "git_theta._chainops", NULL, -1, methods};

PyMODINIT_FUNC PyInit__chainops(void)
{
    return PyModule_Create(&module);
}
