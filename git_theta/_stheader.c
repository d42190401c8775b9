/* The entries of a safetensors header in the library's spelling (git_theta/checkpoints/safetensors.py).
 *
 * `git add` and every checkout read a file's JSON header; its Python matcher (_matched_entries, the fallback)
 * costs ~5 us an entry in the interpreter, 5 s at 10^6 tensors, against issue 12's budget of 20 us a tensor for a
 * whole checkout. This is the same grammar and the same checks, byte by byte: anything else gives None and the
 * JSON path, which stays the reference and names every error, decodes the header. So nothing here raises for bad
 * input (only MemoryError, as Python would).
 *
 * An entry is `"name":{"dtype":"D","shape":[n,...],"data_offsets":[b,e]}` with its keys in that order, the name
 * raw UTF-8 without backslash, quote or control byte, numbers as JSON writes them (no leading zero, at most 19
 * digits: below 2^64), entries separated by single commas.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_DIMS 64
#define MAX_DIGITS 19
#define MAX_DTYPES 64
#define MAX_DTYPE_LEN 16

typedef struct {
    const char *name; /* the key's UTF-8, alive as long as the dict holds the key */
    Py_ssize_t len;
    PyObject *key; /* borrowed: the caller's dict keeps it (results share dtypes.ITEMSIZE's key objects) */
    uint64_t itemsize, bits;
} Dtype;

typedef struct {
    PyObject *name; /* owned */
    PyObject *dtype; /* borrowed from the dtype table */
    PyObject *shape; /* borrowed from the shape table */
    uint64_t begin, end;
    Py_ssize_t index; /* position in the header: ties in (begin, end) sort last entry first */
} Entry;

/* Shapes seen so far, keyed by their bytes in the header: numbers as JSON writes them have one spelling, so equal
 * bytes are equal tuples and each distinct shape becomes one tuple (most repeat). Open addressing, power of 2. */
typedef struct {
    const char *at;
    Py_ssize_t len;
    uint64_t hash;
    PyObject *tuple; /* owned */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask, used;
} Shapes;

static uint64_t hash_bytes(const char *p, Py_ssize_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static void shapes_free(Shapes *s)
{
    if (s->slots == NULL)
        return;
    for (size_t i = 0; i <= s->mask; i++)
        Py_XDECREF(s->slots[i].tuple);
    PyMem_Free(s->slots);
    s->slots = NULL;
}

static int shapes_grow(Shapes *s)
{
    size_t size = s->slots == NULL ? 64 : (s->mask + 1) * 2;
    Slot *slots = PyMem_Calloc(size, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (s->slots != NULL) {
        for (size_t i = 0; i <= s->mask; i++) {
            if (s->slots[i].tuple == NULL)
                continue;
            size_t j = s->slots[i].hash & (size - 1);
            while (slots[j].tuple != NULL)
                j = (j + 1) & (size - 1);
            slots[j] = s->slots[i];
        }
        PyMem_Free(s->slots);
    }
    s->slots = slots;
    s->mask = size - 1;
    return 0;
}

/* The shared tuple of the shape spelled at[0:len] with these dims (borrowed), or NULL with MemoryError set. */
static PyObject *shape_tuple(Shapes *s, const char *at, Py_ssize_t len, const uint64_t *dims, int rank)
{
    if (s->slots == NULL || (s->used + 1) * 2 > s->mask + 1) {
        if (shapes_grow(s) < 0)
            return NULL;
    }
    uint64_t hash = hash_bytes(at, len);
    size_t j = hash & s->mask;
    for (; s->slots[j].tuple != NULL; j = (j + 1) & s->mask) {
        Slot *slot = &s->slots[j];
        if (slot->hash == hash && slot->len == len && memcmp(slot->at, at, len) == 0)
            return slot->tuple;
    }
    PyObject *tuple = PyTuple_New(rank);
    if (tuple == NULL)
        return NULL;
    for (int k = 0; k < rank; k++) {
        PyObject *n = PyLong_FromUnsignedLongLong(dims[k]);
        if (n == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, k, n);
    }
    PyObject_GC_UnTrack(tuple); /* ints only: no cycle, as the collector would find at its first pass */
    s->slots[j] = (Slot){at, len, hash, tuple};
    s->used++;
    return tuple;
}

/* The names so far, to refuse a repeated one: open addressing on the str's hash (which str caches: the caller's
 * lookups by name reuse it), slots holding entry indices. Not a set: the cyclic collector would traverse a set of
 * 10^6 names at each of its passes while the entries are made. */
typedef struct {
    Py_hash_t hash;
    Py_ssize_t index; /* -1: empty */
} NameSlot;

typedef struct {
    NameSlot *slots;
    size_t mask, used;
} Names;

static int names_grow(Names *n)
{
    size_t size = n->slots == NULL ? 1024 : (n->mask + 1) * 2;
    NameSlot *slots = PyMem_Malloc(size * sizeof(NameSlot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < size; i++)
        slots[i].index = -1;
    if (n->slots != NULL) {
        for (size_t i = 0; i <= n->mask; i++) {
            if (n->slots[i].index < 0)
                continue;
            size_t j = (size_t)n->slots[i].hash & (size - 1);
            while (slots[j].index >= 0)
                j = (j + 1) & (size - 1);
            slots[j] = n->slots[i];
        }
        PyMem_Free(n->slots);
    }
    n->slots = slots;
    n->mask = size - 1;
    return 0;
}

/* 1 if name (of entries[index]) repeats an earlier entry's name, else 0 after adding it; -1 with an exception. */
static int names_add(Names *n, const Entry *entries, Py_ssize_t index)
{
    if ((n->used + 1) * 2 > n->mask + 1 || n->slots == NULL) {
        if (names_grow(n) < 0)
            return -1;
    }
    PyObject *name = entries[index].name;
    Py_hash_t hash = PyObject_Hash(name);
    if (hash == -1)
        return -1;
    size_t j = (size_t)hash & n->mask;
    for (; n->slots[j].index >= 0; j = (j + 1) & n->mask) {
        if (n->slots[j].hash == hash && PyUnicode_Compare(entries[n->slots[j].index].name, name) == 0)
            return 1;
    }
    n->slots[j] = (NameSlot){hash, index};
    n->used++;
    return 0;
}

/* p after the literal lit at p (all of it before lim), or NULL */
static const char *literal(const char *p, const char *lim, const char *lit, size_t len)
{
    return (size_t)(lim - p) >= len && memcmp(p, lit, len) == 0 ? p + len : NULL;
}

#define LITERAL(p, lim, lit) literal((p), (lim), (lit), sizeof(lit) - 1)

/* p after a number as JSON writes it (0, or 1 to 19 digits without a leading zero), its value in *value; or NULL.
 * The regex's alternatives come to this: a longer run of digits fails at the delimiter the caller expects. */
static const char *number(const char *p, const char *lim, uint64_t *value)
{
    const char *start = p;
    uint64_t v = 0;
    while (p < lim && *p >= '0' && *p <= '9') {
        if (p - start == MAX_DIGITS)
            return NULL;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == start || (*start == '0' && p - start > 1))
        return NULL;
    *value = v;
    return p;
}

/* a * b, or UINT64_MAX when it overflows (callers compare it against a limit below that) */
static uint64_t saturating_mul(uint64_t a, uint64_t b)
{
    return a != 0 && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

static int entry_order(const void *x, const void *y)
{
    const Entry *a = x, *b = y;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return a->index > b->index ? -1 : (a->index < b->index); /* reversed, then a stable sort */
}

/* The dtype table from {name: (itemsize, bits)}; -1 with an exception when the mapping is not that. */
static int read_dtypes(PyObject *mapping, Dtype *table, int *count)
{
    if (!PyDict_Check(mapping) || PyDict_GET_SIZE(mapping) > MAX_DTYPES) {
        PyErr_SetString(PyExc_TypeError, "dtypes must be a dict of at most 64 names");
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int n = 0;
    while (PyDict_Next(mapping, &pos, &key, &value)) {
        Dtype *d = &table[n];
        if (!PyUnicode_Check(key) || !PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 2) {
            PyErr_SetString(PyExc_TypeError, "dtypes must map names to (itemsize, bits)");
            return -1;
        }
        d->name = PyUnicode_AsUTF8AndSize(key, &d->len);
        if (d->name == NULL)
            return -1;
        d->itemsize = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(value, 0));
        d->bits = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(value, 1));
        if (PyErr_Occurred())
            return -1;
        d->key = key;
        n++;
    }
    *count = n;
    return 0;
}

static PyObject *match_entries(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, stop;
    PyObject *dtype_map;
    Py_ssize_t max_tensors;
    unsigned long long max_bytes;
    if (!PyArg_ParseTuple(args, "y*nnO!nK:match_entries", &view, &start, &stop, &PyDict_Type, &dtype_map,
                          &max_tensors, &max_bytes))
        return NULL;
    if (start < 0 || start > stop || stop > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start and end must satisfy 0 <= start <= end <= len(header)");
        return NULL;
    }
    Dtype table[MAX_DTYPES];
    int dtype_count = 0;
    if (read_dtypes(dtype_map, table, &dtype_count) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const char *p = (const char *)view.buf + start, *lim = (const char *)view.buf + stop;
    Shapes shapes = {NULL, 0, 0};
    Entry *entries = NULL;
    Py_ssize_t count = 0, capacity = 0;
    Names names = {NULL, 0, 0};
    PyObject *result = NULL;
    int last_dtype = 0, failed = 0; /* failed: an exception is set; else a mismatch gives None */
    uint64_t dims[MAX_DIMS];
    while (!failed && p < lim) {
        if (count >= max_tensors)
            goto mismatch;
        /* the name: raw bytes up to the closing quote, none of them a backslash or a control byte */
        if (*p++ != '"')
            goto mismatch;
        const char *name = p;
        unsigned char high = 0; /* the OR of the name's bytes: below 0x80, the name is ASCII */
        while (p < lim && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
            high |= (unsigned char)*p++;
        if (p == lim || *p != '"')
            goto mismatch;
        Py_ssize_t name_len = p - name;
        if (!(p = LITERAL(p, lim, "\":{\"dtype\":\"")))
            goto mismatch;
        const char *dtype = p;
        while (p < lim && p - dtype <= MAX_DTYPE_LEN &&
               ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            p++;
        Py_ssize_t dtype_len = p - dtype;
        if (dtype_len == 0 || dtype_len > MAX_DTYPE_LEN)
            goto mismatch;
        if (!(p = LITERAL(p, lim, "\",\"shape\":[")))
            goto mismatch;
        const char *shape = p;
        int rank = 0;
        if (p < lim && *p != ']') {
            for (;;) {
                if (rank == MAX_DIMS || !(p = number(p, lim, &dims[rank])))
                    goto mismatch;
                rank++;
                if (p < lim && *p == ',')
                    p++;
                else
                    break;
            }
        }
        Py_ssize_t shape_len = p - shape;
        uint64_t begin, end;
        if (!(p = LITERAL(p, lim, "],\"data_offsets\":[")) || !(p = number(p, lim, &begin)) ||
            !(p = LITERAL(p, lim, ",")) || !(p = number(p, lim, &end)) || !(p = LITERAL(p, lim, "]}")))
            goto mismatch;

        /* the checks: a known dtype, a shape within MAX_TENSOR_BYTES whose bits fill whole bytes, offsets its size */
        if (dtype_count == 0)
            goto mismatch;
        if (dtype_len != table[last_dtype].len || memcmp(dtype, table[last_dtype].name, dtype_len) != 0) {
            int k = 0;
            while (k < dtype_count && (table[k].len != dtype_len || memcmp(dtype, table[k].name, dtype_len) != 0))
                k++;
            if (k == dtype_count)
                goto mismatch;
            last_dtype = k;
        }
        const Dtype *d = &table[last_dtype];
        uint64_t numel = 1;
        for (int k = 0; k < rank; k++) {
            if (dims[k] > max_bytes)
                goto mismatch;
            numel = dims[k] == 0 || numel == 0 ? 0 : saturating_mul(numel, dims[k]);
        }
        if (saturating_mul(numel, d->itemsize) > max_bytes)
            goto mismatch;
        /* numel * bits / 8 without overflow (numel <= 2^63 - 1, bits small): whole bytes or dtypes.nbytes refuses */
        if ((numel % 8) * d->bits % 8 != 0)
            goto mismatch;
        uint64_t nbytes = saturating_mul(numel / 8, d->bits);
        uint64_t rest = (numel % 8) * d->bits / 8;
        nbytes = nbytes > UINT64_MAX - rest ? UINT64_MAX : nbytes + rest; /* UINT64_MAX: no span matches it */
        if (end < begin || end - begin != nbytes)
            goto mismatch;
        if (name_len == 12 && memcmp(name, "__metadata__", 12) == 0)
            goto mismatch;

        PyObject *name_str;
        if (high < 0x80) { /* what the strict decoder gives, for most names without its per-call set-up */
            name_str = PyUnicode_New(name_len, 127);
            if (name_str != NULL)
                memcpy(PyUnicode_DATA(name_str), name, (size_t)name_len);
        }
        else
            name_str = PyUnicode_DecodeUTF8(name, name_len, NULL);
        if (name_str == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                failed = 1;
                break;
            }
            PyErr_Clear();
            goto mismatch;
        }
        PyObject *shape_obj = shape_tuple(&shapes, shape, shape_len, dims, rank);
        if (shape_obj == NULL) {
            Py_DECREF(name_str);
            failed = 1;
            break;
        }
        if (count == capacity) {
            Py_ssize_t grown = capacity == 0 ? 256 : capacity * 2;
            Entry *more = PyMem_Realloc(entries, (size_t)grown * sizeof(Entry));
            if (more == NULL) {
                Py_DECREF(name_str);
                PyErr_NoMemory();
                failed = 1;
                break;
            }
            entries = more;
            capacity = grown;
        }
        entries[count] = (Entry){name_str, d->key, shape_obj, begin, end, count};
        count++; /* entries owns the name now */
        int repeated = names_add(&names, entries, count - 1);
        if (repeated != 0) {
            if (repeated > 0)
                goto mismatch;
            failed = 1;
            break;
        }
        if (p < lim) {
            if (*p != ',' || p + 1 == lim)
                goto mismatch; /* not a comma, or a trailing one */
            p++;
        }
    }
    if (failed)
        goto done;

    /* file order, as the JSON path sorts (stably, last entry first among equal offsets); then contiguous offsets */
    for (Py_ssize_t i = 1; i < count; i++) {
        if (entry_order(&entries[i - 1], &entries[i]) > 0) {
            qsort(entries, (size_t)count, sizeof(Entry), entry_order);
            break;
        }
    }
    uint64_t position = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (entries[i].begin != position)
            goto mismatch;
        position = entries[i].end;
    }
    result = PyList_New(count);
    if (result == NULL)
        goto done;
    PyObject *previous_end = NULL; /* contiguous: an entry's begin is the int its predecessor ends at */
    for (Py_ssize_t i = 0; i < count; i++) {
        Entry *e = &entries[i];
        PyObject *begin = previous_end != NULL ? Py_NewRef(previous_end) : PyLong_FromUnsignedLongLong(e->begin);
        PyObject *end = begin == NULL ? NULL : PyLong_FromUnsignedLongLong(e->end);
        PyObject *tuple = end == NULL ? NULL : PyTuple_New(5);
        if (tuple == NULL) {
            Py_XDECREF(begin);
            Py_XDECREF(end);
            Py_CLEAR(result);
            goto done;
        }
        PyTuple_SET_ITEM(tuple, 0, e->name); /* the list owns it now */
        e->name = NULL;
        PyTuple_SET_ITEM(tuple, 1, Py_NewRef(e->dtype));
        PyTuple_SET_ITEM(tuple, 2, Py_NewRef(e->shape));
        PyTuple_SET_ITEM(tuple, 3, begin);
        PyTuple_SET_ITEM(tuple, 4, end);
        /* str, str, a tuple of ints and ints: no cycle. The collector would untrack it at its first pass, after
         * traversing it and the others made so far: 10^6 of them cost ~0.15 s of such passes. */
        PyObject_GC_UnTrack(tuple);
        PyList_SET_ITEM(result, i, tuple);
        previous_end = end;
    }
    goto done;

mismatch:
    result = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < count; i++)
        Py_XDECREF(entries[i].name);
    PyMem_Free(entries);
    shapes_free(&shapes);
    PyMem_Free(names.slots);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"match_entries", match_entries, METH_VARARGS,
     "match_entries(header, start, end, dtypes, max_tensors, max_tensor_bytes): the entries of header[start:end] "
     "as (name, dtype, shape, begin, end) in file order, or None when they are not in the library's spelling or a "
     "check refuses them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "git_theta._stheader", NULL, -1, methods};

PyMODINIT_FUNC PyInit__stheader(void)
{
    return PyModule_Create(&module);
}
