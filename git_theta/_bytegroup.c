/* Byte grouping of tensor chunks (docs/formats.md): plane k holds byte k of every element.
 *
 * The same transform as git_theta/bytegroup.py's numpy fallback. It exists so that
 * a checkout never imports numpy (~0.1 s of every filter start) and so that grouping,
 * a transposing copy numpy does at 0.2-0.4 GB/s, runs at memory speed. Both
 * functions release the GIL on large buffers (GIL_RELEASE_BYTES): the chunk pool runs those in parallel.
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

/* Buffers of at least this many bytes are grouped without the GIL (the chunk pool runs those in parallel). A
 * smaller one (a pack member's 4 KB) keeps it: dropping and taking it back costs more than the work, and each
 * drop hands it to another thread that wants it, which this one then waits for (a clean compressing a pack on
 * a worker while the reader hashes made ~1 futex call per member so). */
#define GIL_RELEASE_BYTES (64 << 10)

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
            if (source.len >= GIL_RELEASE_BYTES) {
                Py_BEGIN_ALLOW_THREADS
                group_bytes(source.buf, planes, source.len / itemsize, itemsize);
                Py_END_ALLOW_THREADS
            } else {
                group_bytes(source.buf, planes, source.len / itemsize, itemsize);
            }
        }
    }
    PyBuffer_Release(&source);
    return result;
}

/* group_many(members) -> bytes: the planes of each (elements, itemsize) member, the members back to back. One
 * output for a pack's ~2,000 small members: one allocation, where 2,000 group() results made a worker thread's
 * malloc arena grow and shrink (~1 mprotect call per member). */
static PyObject *group_many(PyObject *self, PyObject *arg)
{
    PyObject *members = PySequence_Fast(arg, "group_many takes a sequence of (elements, itemsize) pairs");
    if (members == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(members), held = 0, total = 0;
    Py_buffer *views = PyMem_Calloc(count > 0 ? count : 1, sizeof(Py_buffer));
    Py_ssize_t *itemsizes = PyMem_Calloc(count > 0 ? count : 1, sizeof(Py_ssize_t));
    PyObject *result = NULL;
    if (views == NULL || itemsizes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(members, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "group_many takes a sequence of (elements, itemsize) pairs");
            goto done;
        }
        itemsizes[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1));
        if (itemsizes[i] == -1 && PyErr_Occurred())
            goto done;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(pair, 0), &views[i], PyBUF_SIMPLE) < 0)
            goto done;
        held = i + 1;
        if (check_sizes(views[i].len, views[i].len, itemsizes[i]) < 0)
            goto done;
        if (views[i].len > PY_SSIZE_T_MAX - total) {
            PyErr_SetString(PyExc_OverflowError, "group_many: the members' sizes overflow");
            goto done;
        }
        total += views[i].len;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result != NULL) {
        unsigned char *planes = (unsigned char *)PyBytes_AS_STRING(result);
        PyThreadState *saved = total >= GIL_RELEASE_BYTES ? PyEval_SaveThread() : NULL;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (itemsizes[i] == 1)
                memcpy(planes, views[i].buf, views[i].len);
            else
                group_bytes(views[i].buf, planes, views[i].len / itemsizes[i], itemsizes[i]);
            planes += views[i].len;
        }
        if (saved != NULL)
            PyEval_RestoreThread(saved);
    }
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(itemsizes);
    Py_DECREF(members);
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
        PyThreadState *saved = source.len >= GIL_RELEASE_BYTES ? PyEval_SaveThread() : NULL;
        if (itemsize == 1)
            memcpy(target.buf, source.buf, source.len);
        else
            ungroup_bytes(source.buf, target.buf, source.len / itemsize, itemsize);
        if (saved != NULL)
            PyEval_RestoreThread(saved);
    }
    PyBuffer_Release(&source);
    PyBuffer_Release(&target);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* empty(size): a bytearray of size bytes left as malloc gives them. bytearray(size) zeroes them first, which for
   an output buffer about to be overwritten costs ~30 us per MB (git_theta/buffer_pool.py). */
static PyObject *empty(PyObject *self, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, size);
}

static PyMethodDef methods[] = {
    {"empty", empty, METH_O, "empty(size) -> bytearray of size bytes, not zeroed: for a buffer about to be overwritten."},
    {"group", group, METH_VARARGS, "group(elements, itemsize) -> bytes: byte k of every element into plane k."},
    {"group_many", group_many, METH_O, "group_many(members) -> bytes: group() of each (elements, itemsize), back to back."},
    {"ungroup_into", ungroup_into, METH_VARARGS, "ungroup_into(planes, target, itemsize): the inverse of group, written into target."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "git_theta._bytegroup", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bytegroup(void)
{
    return PyModule_Create(&module);
}
