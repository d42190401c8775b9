/* The parameter lines of canonical metadata, read and written in C (git_theta/metaparse.py; metadata.py's
 * _parse_compiled and Metadata.serialize use them).
 *
 * Every smudge, clean, status, diff and fsck parses a checkpoint's metadata; at 10^5-10^6 parameters the
 * Python path (json.loads of slices, then per-entry checks and dataclass construction) costs ~14-20 us an entry.
 * This reads only the exact text Metadata.serialize writes and gives None for anything else, valid or not: the
 * Python path then decides, and gives the error. So no error message comes from here, and a check missed here
 * is the only way the two could differ (tests/metaparse_test.py compares them on mutated text). Writing is the
 * same bargain: the lines of plain entries, byte for byte, else None and the Python code writes them.
 *
 * ParamEntry and StoredLink are frozen slots dataclasses; their __init__ costs ~0.5 us a call, most of what is
 * left per entry, so the objects are allocated with tp_alloc and their slots filled at the offsets of the classes'
 * member descriptors, which bind() checks (any other layout: bind fails and the Python path is used).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define ENTRY_FIELDS 4 /* dtype, shape, hash, stored */
#define LINK_FIELDS 5  /* update, object, size, offset, length */
#define NDIM_CAP 64    /* bind refuses a MAX_NDIM above these: the arrays below are on the stack */
#define LINKS_CAP 256
#define DTYPES_CAP 64
#define CACHE_SLOTS 8
#define DIGITS 19 /* at most: any such number fits a uint64 */

/* Set by bind(): the classes, their slot offsets, the limits of metadata.py. */
static PyTypeObject *entry_type, *link_type;
static Py_ssize_t entry_offset[ENTRY_FIELDS], link_offset[LINK_FIELDS];
static Py_ssize_t max_links, max_ndim;
static int64_t max_elements;

/* Recently seen spans of the body and the object each stands for (an interned id, a shared shape tuple). */
typedef struct {
    const char *text[CACHE_SLOTS];
    Py_ssize_t len[CACHE_SLOTS];
    PyObject *value[CACHE_SLOTS];
    int next;
} Cache;

static PyObject *cache_find(Cache *cache, const char *text, Py_ssize_t len)
{
    for (int k = 0, i = cache->next; k < CACHE_SLOTS; k++) {
        i = (i + CACHE_SLOTS - 1) % CACHE_SLOTS; /* newest first: consecutive entries share a pack */
        if (cache->value[i] != NULL && cache->len[i] == len && memcmp(cache->text[i], text, len) == 0)
            return cache->value[i];
    }
    return NULL;
}

/* Takes a new reference to value. */
static void cache_put(Cache *cache, const char *text, Py_ssize_t len, PyObject *value)
{
    int i = cache->next;
    Py_XSETREF(cache->value[i], value);
    cache->text[i] = text;
    cache->len[i] = len;
    cache->next = (i + 1) % CACHE_SLOTS;
}

static void cache_clear(Cache *cache)
{
    for (int i = 0; i < CACHE_SLOTS; i++)
        Py_CLEAR(cache->value[i]);
}

/* Names seen with keep=False, which builds no dict to find a repeat in: open addressing over spans. */
typedef struct {
    const char **text;
    Py_ssize_t *len;
    size_t mask, used;
} NameSet;

/* Python's own (keyed) bytes hash: names a committed file chose cannot all collide, as they could under a fixed
 * hash, making the check quadratic. */
static size_t name_hash(const char *text, Py_ssize_t len)
{
    return (size_t)_Py_HashBytes(text, len);
}

/* 1 added, 0 already there, -1 out of memory */
static int names_add(NameSet *set, const char *text, Py_ssize_t len)
{
    if (2 * (set->used + 1) > set->mask + 1) {
        size_t size = set->mask ? 2 * (set->mask + 1) : 1024;
        const char **texts = PyMem_Calloc(size, sizeof(*texts));
        Py_ssize_t *lens = PyMem_Calloc(size, sizeof(*lens));
        if (texts == NULL || lens == NULL) {
            PyMem_Free(texts);
            PyMem_Free(lens);
            return -1;
        }
        for (size_t i = 0; set->mask && i <= set->mask; i++) {
            if (set->text[i] == NULL)
                continue;
            size_t j = name_hash(set->text[i], set->len[i]) & (size - 1);
            while (texts[j] != NULL)
                j = (j + 1) & (size - 1);
            texts[j] = set->text[i];
            lens[j] = set->len[i];
        }
        PyMem_Free(set->text);
        PyMem_Free(set->len);
        set->text = texts;
        set->len = lens;
        set->mask = size - 1;
    }
    size_t j = name_hash(text, len) & set->mask;
    for (; set->text[j] != NULL; j = (j + 1) & set->mask)
        if (set->len[j] == len && memcmp(set->text[j], text, len) == 0)
            return 0;
    set->text[j] = text;
    set->len[j] = len;
    set->used++;
    return 1;
}

typedef struct {
    const char *p, *end;
    int packed_ok, keep;
    PyObject *shapes; /* dict: one tuple per distinct shape */
    Cache shape_cache, oids, updates;
    PyObject *dtype[DTYPES_CAP]; /* the keys of the itemsize dict, and their text */
    const char *dtype_text[DTYPES_CAP];
    Py_ssize_t dtype_len[DTYPES_CAP];
    int dtypes;
} Parser;

/* 1 parsed, 0 not the canonical text (the caller gives None), -1 a Python error is set */
#define EXPECT(ps, lit)                                                                                          \
    do {                                                                                                         \
        if ((ps)->end - (ps)->p < (Py_ssize_t)(sizeof(lit) - 1) || memcmp((ps)->p, lit, sizeof(lit) - 1) != 0) \
            return 0;                                                                                            \
        (ps)->p += sizeof(lit) - 1;                                                                              \
    } while (0)

/* Bytes that may stand unescaped in a string encode_basestring_ascii writes (printable ASCII but `"` and `\`), and
 * lowercase hex digits: 1 in these tables, filled at import. */
static unsigned char plain_byte[256], hex_digit[256];

/* A JSON string's contents as encode_basestring_ascii writes them unescaped. Anything escaped gives 0 (the Python
 * path decodes it); the closing quote is consumed. */
static int string_span(Parser *ps, const char **text, Py_ssize_t *len)
{
    const char *start = ps->p, *quote = memchr(start, '"', ps->end - start);
    if (quote == NULL)
        return 0;
    unsigned char ok = 1;
    for (const unsigned char *q = (const unsigned char *)start; q < (const unsigned char *)quote; q++)
        ok &= plain_byte[*q];
    if (!ok)
        return 0;
    *text = start;
    *len = quote - start;
    ps->p = quote + 1;
    return 1;
}

/* A non-negative integer as str(int) writes it (0, or digits without a leading zero), at most INT64_MAX: then
 * size - offset and the shape's product checks cannot overflow. */
static int number(Parser *ps, int64_t *value)
{
    const char *q = ps->p;
    if (q == ps->end || *q < '0' || *q > '9')
        return 0;
    if (*q == '0') {
        *value = 0;
        ps->p = q + 1;
        return ps->p == ps->end || *ps->p < '0' || *ps->p > '9';
    }
    uint64_t v = 0;
    int digits = 0;
    for (; q < ps->end && *q >= '0' && *q <= '9'; q++) {
        if (++digits > DIGITS)
            return 0;
        v = v * 10 + (uint64_t)(*q - '0'); /* below 10**19 < 2**64 */
    }
    if (v > (uint64_t)INT64_MAX)
        return 0;
    *value = (int64_t)v;
    ps->p = q;
    return 1;
}

/* 64 lowercase hex digits and the closing quote (HASH_PATTERN / store.OID_PATTERN). */
static int hex64(Parser *ps, const char **text)
{
    if (ps->end - ps->p < 65 || ps->p[64] != '"')
        return 0;
    const unsigned char *q = (const unsigned char *)ps->p;
    unsigned char ok = 1;
    for (int i = 0; i < 64; i++)
        ok &= hex_digit[q[i]];
    if (!ok)
        return 0;
    *text = ps->p;
    ps->p += 65;
    return 1;
}

static PyObject *ascii_str(const char *text, Py_ssize_t len)
{
    PyObject *s = PyUnicode_New(len, 127);
    if (s != NULL)
        memcpy(PyUnicode_DATA(s), text, len);
    return s;
}

/* An interned string for a span (sys.intern in the Python path), through a cache of recent spans. */
static PyObject *interned(Cache *cache, const char *text, Py_ssize_t len)
{
    PyObject *s = cache_find(cache, text, len);
    if (s != NULL)
        return Py_NewRef(s);
    s = ascii_str(text, len);
    if (s == NULL)
        return NULL;
    PyUnicode_InternInPlace(&s);
    cache_put(cache, text, len, Py_NewRef(s));
    return s;
}

static PyObject *dtype_key(Parser *ps, const char *text, Py_ssize_t len)
{
    for (int i = 0; i < ps->dtypes; i++)
        if (ps->dtype_len[i] == len && memcmp(ps->dtype_text[i], text, len) == 0)
            return ps->dtype[i];
    return NULL;
}

/* The shape `[d,...]` (its opening bracket consumed): at most max_ndim dimensions, at most max_elements elements;
 * *shape gets a new reference to the shared tuple (Py_None with keep=False). */
static int shape(Parser *ps, PyObject **out)
{
    const char *start = ps->p;
    const char *close = memchr(start, ']', ps->end - start);
    if (close == NULL)
        return 0;
    PyObject *known = cache_find(&ps->shape_cache, start, close - start);
    if (known != NULL) {
        ps->p = close + 1;
        *out = Py_NewRef(known);
        return 1;
    }
    int64_t dims[NDIM_CAP];
    Py_ssize_t ndim = 0;
    int zero = 0, over = 0;
    int64_t product = 1;
    while (ps->p < close) {
        if (ndim > 0)
            EXPECT(ps, ",");
        if (ndim == max_ndim || !number(ps, &dims[ndim]))
            return 0;
        int64_t d = dims[ndim++];
        if (d == 0)
            zero = 1;
        else if (product > max_elements / d)
            over = 1; /* math.prod would exceed the limit, unless a later dimension is 0 */
        else
            product *= d;
    }
    if (ps->p != close || (over && !zero))
        return 0;
    ps->p = close + 1;
    PyObject *tuple = Py_None;
    if (ps->keep) {
        PyObject *made = PyTuple_New(ndim);
        if (made == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < ndim; i++) {
            PyObject *n = PyLong_FromLongLong(dims[i]);
            if (n == NULL) {
                Py_DECREF(made);
                return -1;
            }
            PyTuple_SET_ITEM(made, i, n);
        }
        tuple = PyDict_SetDefault(ps->shapes, made, made); /* borrowed: the first tuple of this shape */
        Py_DECREF(made);
        if (tuple == NULL)
            return -1;
    }
    cache_put(&ps->shape_cache, start, close - start, Py_NewRef(tuple));
    *out = Py_NewRef(tuple);
    return 1;
}

static PyObject *instance(PyTypeObject *type, const Py_ssize_t *offsets, PyObject **values, int count)
{
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL)
        return NULL;
    for (int i = 0; i < count; i++)
        *(PyObject **)((char *)obj + offsets[i]) = Py_NewRef(values[i]);
    return obj;
}

/* One link `{"object":...}` or `{"length":...}`; *out a new StoredLink, or NULL with keep=False. */
static int one_link(Parser *ps, PyObject **out)
{
    const char *oid, *update;
    Py_ssize_t update_len;
    int64_t size, offset = -1, length = -1;
    EXPECT(ps, "{\"");
    if (ps->p < ps->end && *ps->p == 'l') {
        if (!ps->packed_ok)
            return 0; /* pack members only in git-theta/2 metadata */
        EXPECT(ps, "length\":");
        if (!number(ps, &length))
            return 0;
        EXPECT(ps, ",\"object\":\"");
        if (!hex64(ps, &oid))
            return 0;
        EXPECT(ps, ",\"offset\":");
        if (!number(ps, &offset))
            return 0;
        EXPECT(ps, ",\"size\":");
    }
    else {
        EXPECT(ps, "object\":\"");
        if (!hex64(ps, &oid))
            return 0;
        EXPECT(ps, ",\"size\":");
    }
    if (!number(ps, &size))
        return 0;
    EXPECT(ps, ",\"update\":\"");
    if (!string_span(ps, &update, &update_len))
        return 0;
    EXPECT(ps, "}");
    if (length >= 0 && (length == 0 || length > size - offset))
        return 0;
    *out = NULL;
    if (!ps->keep)
        return 1;
    PyObject *values[LINK_FIELDS] = {NULL, NULL, NULL, NULL, NULL};
    int status = -1;
    if ((values[0] = interned(&ps->updates, update, update_len)) == NULL ||
        (values[1] = interned(&ps->oids, oid, 64)) == NULL || (values[2] = PyLong_FromLongLong(size)) == NULL)
        goto done;
    if (length < 0) {
        values[3] = Py_NewRef(Py_None);
        values[4] = Py_NewRef(Py_None);
    }
    else if ((values[3] = PyLong_FromLongLong(offset)) == NULL || (values[4] = PyLong_FromLongLong(length)) == NULL)
        goto done;
    *out = instance(link_type, link_offset, values, LINK_FIELDS);
    status = *out == NULL ? -1 : 1;
done:
    for (int i = 0; i < LINK_FIELDS; i++)
        Py_XDECREF(values[i]);
    return status;
}

/* The stored links `[{...},...]` (opening bracket consumed): 1..max_links of them. */
static int stored_links(Parser *ps, PyObject **out)
{
    PyObject *found[LINKS_CAP];
    Py_ssize_t count = 0;
    int status;
    for (;;) {
        if (count == max_links) {
            status = 0;
            break;
        }
        if ((status = one_link(ps, &found[count])) != 1)
            break;
        count++;
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            break;
        }
        status = 0;
        break;
    }
    *out = NULL;
    if (status == 1 && ps->keep) {
        *out = PyTuple_New(count);
        if (*out == NULL)
            status = -1;
        for (Py_ssize_t i = 0; i < count && *out != NULL; i++)
            PyTuple_SET_ITEM(*out, i, found[i]); /* steals */
        if (*out != NULL)
            count = 0;
    }
    for (Py_ssize_t i = 0; i < count; i++)
        Py_XDECREF(found[i]);
    return status;
}

/* One line `"name":{"dtype":...}`; *name and *entry new references (NULL with keep=False). */
static int param_line(Parser *ps, const char **name, Py_ssize_t *name_len, PyObject **entry)
{
    const char *dtype_text, *digest;
    Py_ssize_t dtype_len;
    PyObject *values[ENTRY_FIELDS] = {NULL, NULL, NULL, NULL};
    int status;
    EXPECT(ps, "\"");
    if (!string_span(ps, name, name_len))
        return 0;
    EXPECT(ps, ":{\"dtype\":\"");
    if (!string_span(ps, &dtype_text, &dtype_len))
        return 0;
    PyObject *dtype = dtype_key(ps, dtype_text, dtype_len);
    if (dtype == NULL)
        return 0;
    EXPECT(ps, ",\"hash\":\"");
    if (!hex64(ps, &digest))
        return 0;
    EXPECT(ps, ",\"shape\":[");
    if ((status = shape(ps, &values[1])) != 1)
        return status;
    if ((ps->end - ps->p < 11 || memcmp(ps->p, ",\"stored\":[", 11) != 0)) {
        Py_DECREF(values[1]);
        return 0;
    }
    ps->p += 11;
    if ((status = stored_links(ps, &values[3])) == 1 && (ps->p == ps->end || *ps->p++ != '}'))
        status = 0;
    if (status == 1 && ps->keep) {
        values[0] = Py_NewRef(dtype);
        if ((values[2] = ascii_str(digest, 64)) == NULL || (*entry = instance(entry_type, entry_offset, values,
                                                                              ENTRY_FIELDS)) == NULL)
            status = -1;
    }
    for (int i = 0; i < ENTRY_FIELDS; i++)
        Py_XDECREF(values[i]);
    return status;
}

static int param_lines(Parser *ps, PyObject *params)
{
    NameSet seen = {NULL, NULL, 0, 0};
    int status = 1;
    while (status == 1) {
        const char *name;
        Py_ssize_t name_len;
        PyObject *entry = NULL;
        if ((status = param_line(ps, &name, &name_len, &entry)) != 1)
            break;
        if (ps->keep) {
            Py_ssize_t before = PyDict_GET_SIZE(params);
            PyObject *key = ascii_str(name, name_len);
            if (key == NULL || PyDict_SetItem(params, key, entry) < 0)
                status = -1;
            else if (PyDict_GET_SIZE(params) == before)
                status = 0; /* a name twice */
            Py_XDECREF(key);
            Py_DECREF(entry);
        }
        else
            status = names_add(&seen, name, name_len);
        if (status != 1 || ps->p == ps->end)
            break;
        if (ps->end - ps->p < 3 || ps->p[0] != ',' || ps->p[1] != '\n')
            status = 0; /* a line ends in `,\n`, the last one at the end of the body */
        ps->p += 2;
    }
    if (status == -1 && !PyErr_Occurred())
        PyErr_NoMemory(); /* from names_add */
    PyMem_Free(seen.text);
    PyMem_Free(seen.len);
    return status;
}

/* parse_params(body, itemsize, packed_ok, shapes, keep) */
static PyObject *parse_params(PyObject *self, PyObject *args)
{
    Py_buffer body;
    PyObject *itemsize, *shapes;
    int packed_ok, keep;
    if (!PyArg_ParseTuple(args, "y*O!pO!p:parse_params", &body, &PyDict_Type, &itemsize, &packed_ok, &PyDict_Type,
                          &shapes, &keep))
        return NULL;
    if (entry_type == NULL) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_RuntimeError, "parse_params before bind");
        return NULL;
    }
    Parser ps;
    memset(&ps, 0, sizeof(ps));
    ps.p = body.buf;
    ps.end = ps.p + body.len;
    ps.packed_ok = packed_ok;
    ps.keep = keep;
    ps.shapes = shapes;
    PyObject *key, *value, *params = NULL;
    Py_ssize_t pos = 0;
    int status = 1;
    while (PyDict_Next(itemsize, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_ASCII(key) || ps.dtypes == DTYPES_CAP) {
            status = 0;
            break;
        }
        ps.dtype[ps.dtypes] = Py_NewRef(key);
        ps.dtype_text[ps.dtypes] = PyUnicode_DATA(key);
        ps.dtype_len[ps.dtypes++] = PyUnicode_GET_LENGTH(key);
    }
    if (status == 1 && body.len > 0 && (params = PyDict_New()) == NULL)
        status = -1;
    if (status == 1 && body.len > 0) {
        /* Three tracked objects an entry start a young-generation collection every ~230 entries at the default
         * thresholds, each traversing what is young (~40% of the parse's time at 10^5 entries): paused, the
         * first collection after the parse sees them once. */
        int collecting = PyGC_Disable();
        status = param_lines(&ps, params);
        if (collecting)
            PyGC_Enable();
    }
    else if (status == 1)
        status = 0; /* the caller handles `"params":{` then `}}` */
    for (int i = 0; i < ps.dtypes; i++)
        Py_DECREF(ps.dtype[i]);
    cache_clear(&ps.shape_cache);
    cache_clear(&ps.oids);
    cache_clear(&ps.updates);
    PyBuffer_Release(&body);
    if (status == 1)
        return params;
    Py_XDECREF(params);
    if (status == -1)
        return NULL;
    Py_RETURN_NONE;
}

/* The slot offsets of a class with exactly these fields as slots and nothing else (no __dict__, no __weakref__,
 * no other slots), allocated by PyType_GenericAlloc: filling its slots is all its dataclass __init__ does. */
static int slot_offsets(PyObject *cls, PyObject *names, Py_ssize_t *offsets, Py_ssize_t count)
{
    if (!PyType_Check(cls) || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) != count)
        return 0;
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_base != &PyBaseObject_Type || type->tp_itemsize != 0 || type->tp_dictoffset != 0 ||
        type->tp_weaklistoffset != 0 || type->tp_alloc != PyType_GenericAlloc ||
        type->tp_basicsize != (Py_ssize_t)(sizeof(PyObject) + count * sizeof(PyObject *)))
        return 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *descr = PyDict_GetItemWithError(type->tp_dict, PyTuple_GET_ITEM(names, i));
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type))
            return 0;
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (((PyDescrObject *)descr)->d_type != type || member->type != T_OBJECT_EX || (member->flags & READONLY) ||
            member->offset < (Py_ssize_t)sizeof(PyObject) || member->offset >= type->tp_basicsize)
            return 0;
        offsets[i] = member->offset;
        for (Py_ssize_t j = 0; j < i; j++)
            if (offsets[j] == offsets[i])
                return 0;
    }
    return 1;
}

/* bind(entry_cls, entry_fields, link_cls, link_fields, max_links, max_ndim, max_elements) -> bool */
static PyObject *bind(PyObject *self, PyObject *args)
{
    PyObject *entry_cls, *entry_fields, *link_cls, *link_fields;
    Py_ssize_t links_limit, ndim_limit;
    long long elements_limit;
    if (!PyArg_ParseTuple(args, "OOOOnnL:bind", &entry_cls, &entry_fields, &link_cls, &link_fields, &links_limit,
                          &ndim_limit, &elements_limit))
        return NULL;
    Py_ssize_t entry[ENTRY_FIELDS], link[LINK_FIELDS];
    int ok = slot_offsets(entry_cls, entry_fields, entry, ENTRY_FIELDS) &&
             slot_offsets(link_cls, link_fields, link, LINK_FIELDS) && links_limit > 0 &&
             links_limit <= LINKS_CAP && ndim_limit >= 0 && ndim_limit <= NDIM_CAP && elements_limit > 0;
    if (PyErr_Occurred())
        return NULL;
    if (!ok)
        Py_RETURN_FALSE;
    Py_INCREF(entry_cls);
    Py_INCREF(link_cls);
    Py_XSETREF(entry_type, (PyTypeObject *)entry_cls);
    Py_XSETREF(link_type, (PyTypeObject *)link_cls);
    memcpy(entry_offset, entry, sizeof(entry));
    memcpy(link_offset, link, sizeof(link));
    max_links = links_limit;
    max_ndim = ndim_limit;
    max_elements = elements_limit;
    Py_RETURN_TRUE;
}

/* ---- Writing: Metadata.serialize's parameter lines, byte for byte (tests/metadata_test.py locks them). ---- */

/* The text being written: a bytes object grown as needed, cut to size at the end. */
typedef struct {
    PyObject *bytes;
    char *out;
    Py_ssize_t len, cap;
} Writer;

static int reserve(Writer *w, Py_ssize_t more)
{
    if (w->len + more <= w->cap)
        return 0;
    Py_ssize_t cap = w->cap;
    /* by a quarter: a large block grows in place (realloc remaps it), so the text costs ~1.25x its size at most,
     * where serialize's slices and their join cost 2x */
    if (cap > (PY_SSIZE_T_MAX >> 1) - more)
        return PyErr_NoMemory(), -1;
    cap += cap / 4 + more;
    if (_PyBytes_Resize(&w->bytes, cap) < 0)
        return -1;
    w->out = PyBytes_AS_STRING(w->bytes);
    w->cap = cap;
    return 0;
}

#define WRITE_LIT(w, lit) put(w, lit, sizeof(lit) - 1)

static int put(Writer *w, const char *text, Py_ssize_t len)
{
    if (reserve(w, len) < 0)
        return -1;
    memcpy(w->out + w->len, text, len);
    w->len += len;
    return 0;
}

/* f"{n}" of an exact int: 1 written, 0 not an exact int in int64 (the caller gives None), -1 an error. */
static int put_int(Writer *w, PyObject *value)
{
    if (value == NULL || !PyLong_CheckExact(value))
        return 0;
    int overflow;
    long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow)
        return 0;
    if (n == -1 && PyErr_Occurred())
        return -1;
    char digits[24], *end = digits + sizeof(digits), *q = end;
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do
        *--q = (char)('0' + u % 10);
    while (u /= 10);
    if (n < 0)
        *--q = '-';
    return put(w, q, end - q) < 0 ? -1 : 1;
}

/* f'"{s}"' of an exact ASCII str (an id or hash, written unescaped as _entry_json does). */
static int put_raw(Writer *w, PyObject *value)
{
    if (value == NULL || !PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value))
        return 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(value);
    if (reserve(w, len + 2) < 0)
        return -1;
    w->out[w->len] = '"';
    memcpy(w->out + w->len + 1, PyUnicode_DATA(value), len);
    w->out[w->len + len + 1] = '"';
    w->len += len + 2;
    return 1;
}

/* _quote(s): a plain string is copied between quotes, one with anything to escape goes through `quote`
 * (json's encode_basestring_ascii itself, so the escapes cannot differ). */
static int put_quoted(Writer *w, PyObject *value, PyObject *quote)
{
    if (value == NULL || !PyUnicode_CheckExact(value))
        return 0;
    if (PyUnicode_IS_ASCII(value)) {
        const unsigned char *text = PyUnicode_DATA(value);
        Py_ssize_t len = PyUnicode_GET_LENGTH(value), i = 0;
        unsigned char ok = 1;
        for (; i < len; i++)
            ok &= plain_byte[text[i]];
        if (ok)
            return put_raw(w, value);
    }
    PyObject *quoted = PyObject_CallOneArg(quote, value);
    if (quoted == NULL)
        return -1;
    int status = PyUnicode_CheckExact(quoted) && PyUnicode_IS_ASCII(quoted) ? 1 : 0;
    if (status == 1 && put(w, PyUnicode_DATA(quoted), PyUnicode_GET_LENGTH(quoted)) < 0)
        status = -1;
    Py_DECREF(quoted);
    return status;
}

static PyObject *slot(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

#define TRY(call)                                                                                                \
    do {                                                                                                         \
        int status_ = (call);                                                                                    \
        if (status_ != 1)                                                                                        \
            return status_;                                                                                      \
    } while (0)
#define TRY_LIT(w, lit) TRY(WRITE_LIT(w, lit) < 0 ? -1 : 1)

/* _link_json(link) */
static int write_link(Writer *w, PyObject *one, PyObject *quote)
{
    if (!Py_IS_TYPE(one, link_type))
        return 0;
    PyObject *offset = slot(one, link_offset[3]);
    if (offset == NULL)
        return 0;
    if (offset == Py_None) {
        TRY_LIT(w, "{\"object\":");
    }
    else {
        TRY_LIT(w, "{\"length\":");
        TRY(put_int(w, slot(one, link_offset[4])));
        TRY_LIT(w, ",\"object\":");
    }
    TRY(put_raw(w, slot(one, link_offset[1])));
    if (offset != Py_None) {
        TRY_LIT(w, ",\"offset\":");
        TRY(put_int(w, offset));
    }
    TRY_LIT(w, ",\"size\":");
    TRY(put_int(w, slot(one, link_offset[2])));
    TRY_LIT(w, ",\"update\":");
    TRY(put_quoted(w, slot(one, link_offset[0]), quote));
    TRY_LIT(w, "}");
    return 1;
}

/* _quote(name) + ":" + _entry_json(entry) */
static int write_line(Writer *w, PyObject *name, PyObject *entry, PyObject *quote)
{
    if (!Py_IS_TYPE(entry, entry_type))
        return 0;
    PyObject *shape = slot(entry, entry_offset[1]), *stored = slot(entry, entry_offset[3]);
    if (shape == NULL || !PyTuple_CheckExact(shape) || stored == NULL || !PyTuple_CheckExact(stored))
        return 0; /* a list or a plugin's odd dimension: serialize's own code writes it as it does */
    TRY(put_quoted(w, name, quote));
    TRY_LIT(w, ":{\"dtype\":");
    TRY(put_quoted(w, slot(entry, entry_offset[0]), quote));
    TRY_LIT(w, ",\"hash\":");
    TRY(put_raw(w, slot(entry, entry_offset[2])));
    TRY_LIT(w, ",\"shape\":[");
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(shape); i++) {
        if (i > 0)
            TRY_LIT(w, ",");
        TRY(put_int(w, PyTuple_GET_ITEM(shape, i)));
    }
    TRY_LIT(w, "],\"stored\":[");
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(stored); i++) {
        if (i > 0)
            TRY_LIT(w, ",");
        TRY(write_link(w, PyTuple_GET_ITEM(stored, i), quote));
    }
    TRY_LIT(w, "]}");
    return 1;
}

/* serialize_params(head, names, params, tail, quote): head, the lines of params[name] for each name joined by
 * ",\n" and ended by "\n" (none: nothing), then tail; None for anything serialize writes some other way or
 * refuses (an object of another class, a non-str, a non-ASCII id, an int past int64): it then does the work. */
static PyObject *serialize_params(PyObject *self, PyObject *args)
{
    PyObject *head, *names, *params, *tail, *quote;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O:serialize_params", &PyBytes_Type, &head, &PyList_Type, &names,
                          &PyDict_Type, &params, &PyBytes_Type, &tail, &quote))
        return NULL;
    if (entry_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "serialize_params before bind");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(names);
    Writer w = {NULL, NULL, 0, PyBytes_GET_SIZE(head) + PyBytes_GET_SIZE(tail) + 128 * count + 1};
    if ((w.bytes = PyBytes_FromStringAndSize(NULL, w.cap)) == NULL)
        return NULL;
    w.out = PyBytes_AS_STRING(w.bytes);
    int status = put(&w, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head)) < 0 ? -1 : 1;
    for (Py_ssize_t i = 0; i < count && status == 1; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        PyObject *entry = PyDict_GetItemWithError(params, name); /* borrowed: params holds it */
        if (entry == NULL) {
            status = PyErr_Occurred() ? -1 : 0;
            break;
        }
        Py_INCREF(name);
        Py_INCREF(entry); /* quote is Python code only in name: json's C function, but hold them anyway */
        status = write_line(&w, name, entry, quote);
        Py_DECREF(entry);
        Py_DECREF(name);
        if (status == 1)
            status = put(&w, i + 1 < count ? ",\n" : "\n", i + 1 < count ? 2 : 1) < 0 ? -1 : 1;
    }
    if (status == 1)
        status = put(&w, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail)) < 0 ? -1 : 1;
    if (status == 1 && _PyBytes_Resize(&w.bytes, w.len) < 0)
        return NULL; /* w.bytes is freed */
    if (status == 1)
        return w.bytes;
    Py_XDECREF(w.bytes);
    if (status == -1)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(entry_cls, entry_fields, link_cls, link_fields, max_links, max_ndim, max_elements): True when the "
     "classes are laid out as parse_params builds them (then it builds them), else False."},
    {"parse_params", parse_params, METH_VARARGS,
     "parse_params(body, itemsize, packed_ok, shapes, keep): the parameter lines as serialize writes them, as a "
     "dict of entries (empty with keep False), or None for any other text."},
    {"serialize_params", serialize_params, METH_VARARGS,
     "serialize_params(head, names, params, tail, quote): the text Metadata.serialize writes, or None when it "
     "would write it some other way."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "git_theta._metaparse", NULL, -1, methods};

PyMODINIT_FUNC PyInit__metaparse(void)
{
    for (int c = 0; c < 256; c++) {
        plain_byte[c] = c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
        hex_digit[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    return PyModule_Create(&module);
}
