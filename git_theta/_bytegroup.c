/* Byte grouping of tensor chunks (docs/formats.md): plane k holds byte k of every element.
 *
 * The same transform as git_theta/bytegroup.py's numpy fallback. It exists so that
 * a checkout never imports numpy (~0.1 s of every filter start) and so that grouping,
 * a transposing copy numpy does at 0.2-0.4 GB/s, runs at memory speed. Both
 * functions release the GIL: the chunk pool runs them in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_bytegroup.h"

/* Loops over elements with a fixed itemsize: the compiler turns them into vector shuffles (10-20 GB/s). */
#define GROUP_FIXED(N)                                                     \
    for (Py_ssize_t i = 0; i < count; i++)                                 \
        for (Py_ssize_t k = 0; k < (N); k++)                               \
            planes[k * count + i] = elements[i * (N) + k];

/* planes[k * count + i] = elements[i * itemsize + k] */
static void group_bytes(const unsigned char *elements, unsigned char *planes, Py_ssize_t count, Py_ssize_t itemsize)
{
    switch (itemsize) {
    case 2: GROUP_FIXED(2) break;
    case 4: GROUP_FIXED(4) break;
    case 8: GROUP_FIXED(8) break;
    default:
        for (Py_ssize_t k = 0; k < itemsize; k++) {
            unsigned char *plane = planes + k * count;
            const unsigned char *source = elements + k;
            for (Py_ssize_t i = 0; i < count; i++)
                plane[i] = source[i * itemsize];
        }
    }
}

static int check_sizes(Py_ssize_t source_len, Py_ssize_t target_len, Py_ssize_t itemsize)
{
    if (itemsize < 1) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be at least 1");
        return -1;
    }
    if (source_len != target_len || source_len % itemsize != 0) {
        PyErr_Format(PyExc_ValueError, "sizes do not match: %zd bytes in, %zd bytes out, itemsize %zd", source_len, target_len, itemsize);
        return -1;
    }
    return 0;
}

/* group(elements, itemsize) -> bytes */
static PyObject *group(PyObject *self, PyObject *args)
{
    Py_buffer source;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "y*n:group", &source, &itemsize))
        return NULL;
    PyObject *result = NULL;
    if (check_sizes(source.len, source.len, itemsize) == 0) {
        result = PyBytes_FromStringAndSize(NULL, source.len);
        if (result != NULL) {
            unsigned char *planes = (unsigned char *)PyBytes_AS_STRING(result);
            Py_BEGIN_ALLOW_THREADS
            group_bytes(source.buf, planes, source.len / itemsize, itemsize);
            Py_END_ALLOW_THREADS
        }
    }
    PyBuffer_Release(&source);
    return result;
}

/* ungroup_into(planes, target, itemsize): target is a writable buffer of the same size */
static PyObject *ungroup_into(PyObject *self, PyObject *args)
{
    Py_buffer source, target;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "y*w*n:ungroup_into", &source, &target, &itemsize))
        return NULL;
    int ok = check_sizes(source.len, target.len, itemsize) == 0;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        if (itemsize == 1)
            memcpy(target.buf, source.buf, source.len);
        else
            ungroup_bytes(source.buf, target.buf, source.len / itemsize, itemsize);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&source);
    PyBuffer_Release(&target);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"group", group, METH_VARARGS, "group(elements, itemsize) -> bytes: byte k of every element into plane k."},
    {"ungroup_into", ungroup_into, METH_VARARGS, "ungroup_into(planes, target, itemsize): the inverse of group, written into target."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "git_theta._bytegroup", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bytegroup(void)
{
    return PyModule_Create(&module);
}
