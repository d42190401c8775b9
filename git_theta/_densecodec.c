/* Decode of small dense store objects, a batch per call (git_theta/densecodec.py).
 *
 * A checkout of a checkpoint of many small tensors decodes one pack member per tensor: exactly what
 * objects.encode_dense writes (magic, u32 header length, that header's one spelling, one zstd frame). The Python
 * path (objects.decode) runs ~143k instructions per 4 KB fp32 member, of which zstd's own decoding is ~56k; this
 * does the same checks, decompression and byte ungrouping in C in ~63k, for a whole batch at once, with the GIL
 * released while decompressing (the tensor pool rebuilds batches on two threads).
 *
 * It only accepts what it fully checks: any member that is not exactly encode_dense's layout for the expected
 * dtype and shape, whose frame is not one frame declaring and holding exactly the tensor's bytes, or whose
 * decompression fails, is None in the result, and the caller decodes it with objects.decode, which stays the
 * reference and says what is wrong. Decode only: objects are named by their bytes, and the system libzstd may
 * compress differently from python-zstandard's bundled copy, so writing stays in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "_bytegroup.h" /* ungroup_bytes */

/* The header parts of objects.DENSE_HEADER_PARTS: before the chunk size, the dtype, the frame size, the shape,
 * and after it. */
#define PARTS 5
/* As objects._ONE_BUFFER_HEADER: at most 64 dimensions of at most 19 digits; longer headers take the Python path. */
#define MAX_DIMS 64
#define HEADER_ROOM 2048

/* One accepted member, decompressed with the GIL released. */
typedef struct {
    Py_buffer view;      /* the member's bytes (held until the end of the call) */
    int has_view;
    PyObject *output;    /* a bytearray of `size` bytes, or NULL: the member is not fast */
    const unsigned char *frame;
    size_t frame_len;
    size_t size;
    Py_ssize_t itemsize;
} Job;

/* Appends `text` of `len` bytes at *at within [start, start + HEADER_ROOM); 0 when it does not fit. */
static int put(char *start, char **at, const char *text, size_t len)
{
    if ((size_t)(start + HEADER_ROOM - *at) < len)
        return 0;
    memcpy(*at, text, len);
    *at += len;
    return 1;
}

static int put_number(char *start, char **at, unsigned long long n)
{
    char digits[24];
    int len = snprintf(digits, sizeof digits, "%llu", n);
    return put(start, at, digits, (size_t)len);
}

/* The tensor's byte size and codec unit (dtypes.nbytes, dtypes.ITEMSIZE) from its dtype and shape; 0 when it is
 * not a fast case: an unknown dtype, a shape that is not a tuple of small non-negative ints, or a size that is
 * zero, not whole bytes or more than one chunk (objects.chunk_step). */
static int tensor_layout(PyObject *bits_table, PyObject *dtype, PyObject *shape, long long chunk_bytes, size_t *size,
                         Py_ssize_t *itemsize)
{
    if (!PyUnicode_Check(dtype) || !PyTuple_Check(shape))
        return 0;
    PyObject *bits_object = PyDict_GetItemWithError(bits_table, dtype);
    if (bits_object == NULL) {
        PyErr_Clear();
        return 0;
    }
    long long bits = PyLong_AsLongLong(bits_object);
    if (bits <= 0 || bits > 64) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t dims = PyTuple_GET_SIZE(shape);
    if (dims > MAX_DIMS)
        return 0;
    /* elements * bits must stay far below 2^63: chunk_bytes * 8 bounds it once the product is checked stepwise */
    unsigned long long elements = 1, limit = (unsigned long long)chunk_bytes * 8;
    for (Py_ssize_t d = 0; d < dims; d++) {
        PyObject *item = PyTuple_GET_ITEM(shape, d);
        if (!PyLong_CheckExact(item))
            return 0;
        long long n = PyLong_AsLongLong(item);
        if (n < 0) {
            PyErr_Clear();
            return 0;
        }
        if (n != 0 && elements > limit / (unsigned long long)n)
            return 0;
        elements *= (unsigned long long)n;
    }
    unsigned long long total_bits = elements * (unsigned long long)bits;
    if (elements == 0 || total_bits > limit || total_bits % 8 != 0)
        return 0;
    *size = (size_t)(total_bits / 8);
    *itemsize = bits >= 8 ? (Py_ssize_t)(bits / 8) : 1;
    long long step = chunk_bytes - chunk_bytes % *itemsize;
    if (step < *itemsize)
        step = *itemsize;
    if ((long long)*size > step)
        return 0;
    return 1;
}

static size_t le(const unsigned char *p, int bytes)
{
    size_t value = 0;
    for (int k = bytes - 1; k >= 0; k--)
        value = value << 8 | p[k];
    return value;
}

/* Whether every reserved bit of the frame's compressed blocks is zero (RFC 8878: "Reserved, must be zero" of a
 * sequences section's Symbol_Compression_Modes byte): python-zstandard's bundled zstd (1.5.7) refuses a frame with
 * one set as corrupt, an older system libzstd (1.5.4) decodes it, to the same bytes. Checked here so that whatever
 * objects.decode refuses, this refuses too. The walk reads only block and section headers; anything it does not
 * follow (a malformed size, a header it cannot place) is refused as well: the Python path then decides. */
static int reserved_bits_clear(const unsigned char *frame, size_t len)
{
    if (len < 5)
        return 0;
    unsigned char descriptor = frame[4];
    int single_segment = descriptor >> 5 & 1;
    static const int dict_id_bytes[4] = {0, 1, 2, 4};
    static const int content_size_bytes[4] = {0, 2, 4, 8};
    size_t at = 5 + (single_segment ? 0 : 1) + dict_id_bytes[descriptor & 3] + content_size_bytes[descriptor >> 6];
    if (descriptor >> 6 == 0 && single_segment)
        at += 1;
    for (;;) {
        if (at + 3 > len)
            return 0;
        size_t block = le(frame + at, 3);
        int last = block & 1, type = block >> 1 & 3;
        size_t size = block >> 3;
        at += 3;
        size_t stored = type == 1 ? 1 : size; /* an RLE block holds one byte */
        if (type == 3 || stored > len - at)
            return 0;
        if (type == 2) {
            const unsigned char *body = frame + at;
            size_t literals;
            if (size < 1)
                return 0;
            int literal_type = body[0] & 3, size_format = body[0] >> 2 & 3;
            if (literal_type < 2) { /* raw or RLE literals: a 1, 2 or 3 byte header, then the bytes or one byte */
                int header = size_format == 1 ? 2 : size_format == 3 ? 3 : 1;
                if ((size_t)header > size)
                    return 0;
                size_t regenerated = le(body, header) >> (header == 1 ? 3 : 4);
                literals = header + (literal_type == 0 ? regenerated : 1);
            } else { /* compressed or treeless: a 3, 4 or 5 byte header holding the compressed size */
                int header = size_format < 2 ? 3 : size_format + 2;
                if ((size_t)header > size)
                    return 0;
                size_t compressed = header == 3 ? le(body, 3) >> 14 & 0x3FF
                                    : header == 4 ? le(body, 4) >> 18
                                                  : le(body, 4) >> 22 | le(body + 4, 1) << 10;
                literals = header + compressed;
            }
            if (literals >= size) /* no room for the sequences section every compressed block has */
                return 0;
            const unsigned char *sequences = body + literals;
            size_t room = size - literals;
            size_t count_bytes = sequences[0] < 128 ? 1 : sequences[0] < 255 ? 2 : 3;
            if (sequences[0] != 0) {
                if (count_bytes + 1 > room)
                    return 0;
                if (sequences[count_bytes] & 3)
                    return 0;
            }
        }
        at += stored;
        if (last)
            return at + (descriptor & 4 ? 4 : 0) == len; /* then the content checksum, if the frame has one */
    }
}

/* The member's expected header (as objects.encode_dense spells it) compared with its real one, then its frame's
 * sizes. 1: fast, `job` filled in; 0: not fast. */
static int check_member(Job *job, PyObject *bits_table, PyObject *dtype, PyObject *shape, long long chunk_bytes,
                        const char *magic, Py_ssize_t magic_len, PyObject *parts)
{
    size_t size;
    Py_ssize_t itemsize;
    if (!tensor_layout(bits_table, dtype, shape, chunk_bytes, &size, &itemsize))
        return 0;
    const unsigned char *data = job->view.buf;
    size_t len = (size_t)job->view.len, start = (size_t)magic_len + 4;
    if (len < start || memcmp(data, magic, (size_t)magic_len) != 0)
        return 0;
    const unsigned char *length = data + magic_len;
    size_t header_len = (size_t)length[0] | (size_t)length[1] << 8 | (size_t)length[2] << 16 | (size_t)length[3] << 24;
    if (header_len > len - start || header_len > HEADER_ROOM)
        return 0;
    size_t frame_len = len - start - header_len;
    if (frame_len == 0)
        return 0;
    Py_ssize_t dtype_len;
    const char *dtype_text = PyUnicode_AsUTF8AndSize(dtype, &dtype_len);
    if (dtype_text == NULL) {
        PyErr_Clear();
        return 0;
    }
    char header[HEADER_ROOM];
    char *at = header;
    const char *part[PARTS];
    Py_ssize_t part_len[PARTS];
    for (int p = 0; p < PARTS; p++) {
        PyObject *item = PyTuple_GET_ITEM(parts, p);
        part[p] = PyBytes_AS_STRING(item);
        part_len[p] = PyBytes_GET_SIZE(item);
    }
    if (!put(header, &at, part[0], (size_t)part_len[0]) || !put_number(header, &at, size)
        || !put(header, &at, part[1], (size_t)part_len[1]) || !put(header, &at, dtype_text, (size_t)dtype_len)
        || !put(header, &at, part[2], (size_t)part_len[2]) || !put_number(header, &at, frame_len)
        || !put(header, &at, part[3], (size_t)part_len[3]))
        return 0;
    Py_ssize_t dims = PyTuple_GET_SIZE(shape);
    for (Py_ssize_t d = 0; d < dims; d++) {
        /* tensor_layout has checked every dimension is a non-negative int that fits */
        unsigned long long n = (unsigned long long)PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
        if ((d > 0 && !put(header, &at, ",", 1)) || !put_number(header, &at, n))
            return 0;
    }
    if (!put(header, &at, part[4], (size_t)part_len[4]))
        return 0;
    if ((size_t)(at - header) != header_len || memcmp(header, data + start, header_len) != 0)
        return 0;
    const unsigned char *frame = data + start + header_len;
    /* zstd would allocate nothing here, but the output is allocated from these sizes: check them first */
    if (ZSTD_getFrameContentSize(frame, frame_len) != (unsigned long long)size)
        return 0;
    size_t compressed = ZSTD_findFrameCompressedSize(frame, frame_len);
    if (ZSTD_isError(compressed) || compressed != frame_len || !reserved_bits_clear(frame, frame_len))
        return 0;
    job->frame = frame;
    job->frame_len = frame_len;
    job->size = size;
    job->itemsize = itemsize;
    return 1;
}

/* A tensor's output buffer: take(size) when given and size >= take_min (a pool of reused buffers: a fresh one of
 * a megabyte costs a page fault per 4 KiB), else a fresh bytearray. NULL with an exception set on failure. */
static PyObject *new_output(PyObject *take, Py_ssize_t take_min, Py_ssize_t size)
{
    if (take == NULL || take == Py_None || size < take_min)
        return PyByteArray_FromStringAndSize(NULL, size);
    PyObject *output = PyObject_CallFunction(take, "n", size);
    if (output != NULL && (!PyByteArray_Check(output) || PyByteArray_GET_SIZE(output) != size)) {
        PyErr_Format(PyExc_TypeError, "take(%zd) must return a bytearray of that size", size);
        Py_CLEAR(output);
    }
    return output;
}

/* This thread's decompression context, made at its first use and kept for the thread's life (NULL when out of
 * memory): making one (~10 us, zeroing its tables) costs as much as decoding a 4 KB member. One-shot decoding
 * starts afresh each time, so reuse changes no result. */
static ZSTD_DCtx *thread_context(void)
{
    static _Thread_local ZSTD_DCtx *context = NULL;
    if (context == NULL)
        context = ZSTD_createDCtx();
    return context;
}

/* decompress_into(frame, target, itemsize, scratch) -> bool */
static PyObject *decompress_into(PyObject *self, PyObject *args)
{
    Py_buffer frame, target, scratch;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "y*w*nw*:decompress_into", &frame, &target, &itemsize, &scratch))
        return NULL;
    int ok = 0;
    size_t size = (size_t)target.len;
    if (itemsize >= 1 && target.len % itemsize == 0 && (itemsize == 1 || scratch.len >= target.len)) {
        Py_BEGIN_ALLOW_THREADS
        ZSTD_DCtx *context = thread_context();
        unsigned char *planes = itemsize == 1 ? target.buf : scratch.buf;
        /* exactly one frame, all of `frame`, declaring exactly the target's size: then zstd writes it in place */
        if (context != NULL && ZSTD_getFrameContentSize(frame.buf, (size_t)frame.len) == (unsigned long long)size
            && ZSTD_findFrameCompressedSize(frame.buf, (size_t)frame.len) == (size_t)frame.len
            && reserved_bits_clear(frame.buf, (size_t)frame.len)) {
            size_t got = ZSTD_decompressDCtx(context, planes, size, frame.buf, (size_t)frame.len);
            ok = !ZSTD_isError(got) && got == size;
            if (ok && itemsize > 1)
                ungroup_bytes(planes, target.buf, target.len / itemsize, itemsize);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&frame);
    PyBuffer_Release(&target);
    PyBuffer_Release(&scratch);
    return PyBool_FromLong(ok);
}

/* decode_dense(members, dtypes, shapes, bits, magic, parts, chunk_bytes, take=None, take_min=0)
 * -> list[bytearray | None] */
static PyObject *decode_dense(PyObject *self, PyObject *args)
{
    PyObject *members, *dtypes, *shapes, *bits_table, *parts, *take = NULL;
    const char *magic;
    Py_ssize_t magic_len, take_min = 0;
    long long chunk_bytes;
    if (!PyArg_ParseTuple(args, "OOOO!y#O!L|On:decode_dense", &members, &dtypes, &shapes, &PyDict_Type, &bits_table,
                          &magic, &magic_len, &PyTuple_Type, &parts, &chunk_bytes, &take, &take_min))
        return NULL;
    if (!PyList_Check(members) || !PyList_Check(dtypes) || !PyList_Check(shapes)) {
        PyErr_SetString(PyExc_TypeError, "members, dtypes and shapes must be lists");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(members);
    if (PyList_GET_SIZE(dtypes) != count || PyList_GET_SIZE(shapes) != count) {
        PyErr_SetString(PyExc_ValueError, "members, dtypes and shapes differ in length");
        return NULL;
    }
    if (PyTuple_GET_SIZE(parts) != PARTS || chunk_bytes < 1 || magic_len < 1) {
        PyErr_SetString(PyExc_ValueError, "bad header layout");
        return NULL;
    }
    for (int p = 0; p < PARTS; p++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(parts, p))) {
            PyErr_SetString(PyExc_TypeError, "header parts must be bytes");
            return NULL;
        }
    Job *jobs = PyMem_Calloc(count > 0 ? (size_t)count : 1, sizeof(Job));
    if (jobs == NULL)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    size_t scratch_size = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Job *job = &jobs[i];
        /* every list item is held by the list, which the caller holds, for the whole call */
        if (PyObject_GetBuffer(PyList_GET_ITEM(members, i), &job->view, PyBUF_SIMPLE) < 0)
            goto done;
        job->has_view = 1;
        if (!check_member(job, bits_table, PyList_GET_ITEM(dtypes, i), PyList_GET_ITEM(shapes, i), chunk_bytes, magic,
                          magic_len, parts))
            continue;
        job->output = new_output(take, take_min, (Py_ssize_t)job->size);
        if (job->output == NULL)
            goto done;
        if (job->itemsize > 1 && job->size > scratch_size)
            scratch_size = job->size;
    }
    int out_of_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    /* one plane buffer per call, and one context per thread for its life: a call is a few dozen members, and
       making a context (~10 us, zeroing its tables) cost as much as decoding one of them */
    ZSTD_DCtx *context = thread_context();
    unsigned char *scratch = scratch_size > 0 ? malloc(scratch_size) : NULL;
    if (context == NULL || (scratch_size > 0 && scratch == NULL))
        out_of_memory = 1;
    for (Py_ssize_t i = 0; i < count && !out_of_memory; i++) {
        Job *job = &jobs[i];
        if (job->output == NULL)
            continue;
        unsigned char *target = (unsigned char *)PyByteArray_AS_STRING(job->output);
        unsigned char *planes = job->itemsize == 1 ? target : scratch;
        size_t got = ZSTD_decompressDCtx(context, planes, job->size, job->frame, job->frame_len);
        if (ZSTD_isError(got) || got != job->size) {
            job->size = 0; /* marks the member not fast; its bytearray is dropped below */
            continue;
        }
        if (job->itemsize > 1)
            ungroup_bytes(planes, target, (Py_ssize_t)job->size / job->itemsize, job->itemsize);
    }
    free(scratch);
    Py_END_ALLOW_THREADS
    if (out_of_memory) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        Job *job = &jobs[i];
        PyObject *item = Py_None;
        if (job->output != NULL && job->size > 0) {
            item = job->output;
            job->output = NULL; /* the list owns it now */
        } else {
            Py_INCREF(item);
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_XDECREF(jobs[i].output);
        if (jobs[i].has_view)
            PyBuffer_Release(&jobs[i].view);
    }
    PyMem_Free(jobs);
    return result;
}

static PyMethodDef methods[] = {
    {"decompress_into", decompress_into, METH_VARARGS,
     "decompress_into(frame, target, itemsize, scratch) -> bool: True when frame is one zstd frame declaring and "
     "holding exactly len(target) bytes, decompressed (into scratch, then its byte planes ungrouped into target; "
     "straight into target when itemsize is 1); False, target undefined, otherwise."},
    {"decode_dense", decode_dense, METH_VARARGS,
     "decode_dense(members, dtypes, shapes, bits, magic, parts, chunk_bytes, take=None, take_min=0) -> list of "
     "bytearray or None: each member's tensor bytes when it is exactly encode_dense's object of one chunk for that "
     "dtype and shape; a tensor of at least take_min bytes goes into take(size)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "git_theta._densecodec", NULL, -1, methods};

PyMODINIT_FUNC PyInit__densecodec(void)
{
    return PyModule_Create(&module);
}
