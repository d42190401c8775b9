/* View rows of canonical parameter lines (git_theta/display/view.py), for `git diff` and `git log -p`.
 *
 * The text view (git_theta/display/view.py) renders one row per parameter line; at 10^5 groups the Python
 * renderer spends ~8 us a row on matching and formatting, most of `git diff`'s time. A line as view._LINE matches
 * it (one pack member, the commonest by far, or a chain of members and whole objects) is matched and rendered
 * here, byte by byte, with the checks of view._fast_row. Anything else gives None and the Python renderer
 * decides, which also names every error.
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Fixed widths of the view's columns (view.py: NAME_WIDTH, the dtype's 5, SHAPE_WIDTH, CHAIN_WIDTH, SIZE_WIDTH,
 * HASH_CHARS): passed in by the caller so that one place defines them. */
typedef struct {
    Py_ssize_t name, dtype, shape, chain, size, hash;
} Widths;

typedef struct {
    const char *at, *end;
} Cursor;

static int take(Cursor *c, const char *text)
{
    size_t n = strlen(text);
    if ((size_t)(c->end - c->at) < n || memcmp(c->at, text, n) != 0)
        return 0;
    c->at += n;
    return 1;
}

/* view._TEXT: printable ASCII but the quote and the backslash (canonical JSON escapes the rest) */
static int is_text(unsigned char ch) { return ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\'; }

static int is_dtype_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static int is_hex(unsigned char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); }

/* view._COUNT: 0 or 1-18 digits without a leading zero (so it fits an int64 with room for a sum of two) */
static int count(Cursor *c, int64_t *value)
{
    const char *start = c->at;
    if (c->at >= c->end || *c->at < '0' || *c->at > '9')
        return 0;
    if (*c->at == '0') {
        c->at++;
        *value = 0;
        return 1;
    }
    int64_t v = 0;
    while (c->at < c->end && *c->at >= '0' && *c->at <= '9') {
        if (c->at - start >= 18)
            return 0;
        v = v * 10 + (*c->at - '0');
        c->at++;
    }
    *value = v;
    return 1;
}

/* A run of characters of one class; its span. */
static int span(Cursor *c, int (*member)(unsigned char), Py_ssize_t least, Py_ssize_t most, const char **start,
                Py_ssize_t *length)
{
    *start = c->at;
    while (c->at < c->end && member((unsigned char)*c->at))
        c->at++;
    *length = c->at - *start;
    return *length >= least && *length <= most;
}

/* Links a row shows at most: metadata.MAX_LINKS (the caller passes it, and no more than this). */
#define MAX_CHAIN 256

typedef struct {
    const char *name, *dtype, *digest, *shape;
    Py_ssize_t name_len, dtype_len, shape_len;
    int64_t elements;
    int overflow; /* the element count exceeds int64: certainly more than the limit */
    int links;
    const char *updates[MAX_CHAIN];
    Py_ssize_t update_lens[MAX_CHAIN];
    int64_t stored; /* the links' bytes: each member's length, each whole object's size */
    int refused;    /* a check view._fast_row makes refuses the line (an empty member, one past its pack's end) */
} Line;

/* One link as view._ANY_LINK spells it, after its "{": a pack member or a whole object */
static int match_link(Cursor *c, Line *line)
{
    const char *hex;
    Py_ssize_t hex_len;
    int64_t length = 0, offset = 0, size;
    int member = take(c, "\"length\":");
    if (member && (!count(c, &length) || !take(c, ",")))
        return 0;
    if (!take(c, "\"object\":\"") || !span(c, is_hex, 64, 64, &hex, &hex_len) || !take(c, "\","))
        return 0;
    if (member && (!take(c, "\"offset\":") || !count(c, &offset) || !take(c, ",")))
        return 0;
    if (!take(c, "\"size\":") || !count(c, &size) || !take(c, ",\"update\":\""))
        return 0;
    if (line->links == MAX_CHAIN)
        return 0;
    if (!span(c, is_text, 0, PY_SSIZE_T_MAX, &line->updates[line->links], &line->update_lens[line->links]))
        return 0;
    if (!take(c, "\"}"))
        return 0;
    line->links++;
    if (member && (length == 0 || offset + length > size))
        line->refused = 1;
    /* each link's bytes are below 10^18 and their sum below 2^63 (or the row is refused: Python's ints sum it) */
    if (__builtin_add_overflow(line->stored, member ? length : size, &line->stored))
        line->refused = 1;
    return 1;
}

/* view._LINE (of which view._ONE_MEMBER_LINE is the commonest case), fully matched */
static int match_line(const char *data, Py_ssize_t size, Line *line)
{
    Cursor c = {data, data + size};
    const char *hex;
    Py_ssize_t hex_len;
    if (!take(&c, "\"") || !span(&c, is_text, 0, PY_SSIZE_T_MAX, &line->name, &line->name_len))
        return 0;
    if (!take(&c, "\":{\"dtype\":\"") || !span(&c, is_dtype_char, 1, 16, &line->dtype, &line->dtype_len))
        return 0;
    if (!take(&c, "\",\"hash\":\"") || !span(&c, is_hex, 64, 64, &hex, &hex_len))
        return 0;
    line->digest = hex;
    if (!take(&c, "\",\"shape\":["))
        return 0;
    line->shape = c.at;
    line->elements = 1;
    line->overflow = 0;
    int zero = 0;
    if (c.at < c.end && *c.at != ']') {
        for (int dims = 0;; dims++) {
            int64_t n;
            if (dims == 64 || !count(&c, &n))
                return 0;
            if (n == 0)
                zero = 1;
            else if (!line->overflow && __builtin_mul_overflow(line->elements, n, &line->elements))
                line->overflow = 1;
            if (!take(&c, ","))
                break;
        }
    }
    if (zero) {
        line->elements = 0;
        line->overflow = 0;
    }
    line->shape_len = c.at - line->shape;
    if (!take(&c, "],\"stored\":["))
        return 0;
    line->links = 0;
    line->stored = 0;
    line->refused = 0;
    do {
        if (!take(&c, "{") || !match_link(&c, line))
            return 0;
    } while (take(&c, ","));
    return take(&c, "]}") && c.at == c.end;
}

/* changes.human_size: bytes in binary units with one decimal. Python divides a float by 1024 (exact in binary)
 * and formats it with "%.1f", which rounds the exact value half to even; below 2**53 bytes (exact as a double)
 * the same rounding is done here on integers, which is several times faster than snprintf's float formatting. */
static int human_size(int64_t size, char *out, size_t room)
{
    if (size < 1024)
        return snprintf(out, room, "%lld B", (long long)size);
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
    int unit = 0;
    int64_t divisor = 1024;
    while (unit < 3 && size / divisor >= 1024) {
        divisor *= 1024;
        unit++;
    }
    if (size >= ((int64_t)1 << 53) / 10) {
        return snprintf(out, room, "%.1f %s", (double)size / (double)divisor, units[unit]);
    }
    int64_t tenths = size * 10 / divisor, rest = size * 10 % divisor;
    if (2 * rest > divisor || (2 * rest == divisor && tenths % 2 == 1))
        tenths++;
    return snprintf(out, room, "%lld.%lld %s", (long long)(tenths / 10), (long long)(tenths % 10), units[unit]);
}

static char *pad(char *at, const char *text, Py_ssize_t length, Py_ssize_t width)
{
    memcpy(at, text, length);
    at += length;
    for (; length < width; length++)
        *at++ = ' ';
    return at;
}

/* The last dtype a check found known (the rows of a version repeat a few): its spelling, NUL-terminated. */
typedef struct {
    char dtype[17];
    Py_ssize_t dtype_len;
} Known;

/* 1 when the checks view._fast_row makes accept the matched line, 0 when they refuse it, -1 with an error set. */
static int accepted(const Line *line, PyObject *bits, int64_t max_elements, int max_links, Known *known)
{
    if (line->refused || line->links > max_links)
        return 0;
    if (line->overflow || line->elements > max_elements)
        return 0;
    if (known->dtype_len == line->dtype_len && memcmp(known->dtype, line->dtype, line->dtype_len) == 0)
        return 1;
    PyObject *dtype = PyUnicode_DecodeASCII(line->dtype, line->dtype_len, NULL);
    if (dtype == NULL)
        return -1;
    int found = PyDict_Contains(bits, dtype);
    Py_DECREF(dtype);
    if (found == 1) { /* dtype_len is 1 to 16 (match_line) */
        memcpy(known->dtype, line->dtype, line->dtype_len);
        known->dtype_len = line->dtype_len;
    }
    return found;
}

/* The row's length and its size column (in size_text), or -1 when the size cannot be spelled. */
static Py_ssize_t row_length(const Line *line, const Widths *w, char *size_text, int *size_len)
{
    *size_len = human_size(line->stored, size_text, 64);
    if (*size_len < 0 || *size_len >= 64)
        return -1;
    Py_ssize_t shape_len = line->shape_len + 2, chain_len = line->links - 1;
    for (int i = 0; i < line->links; i++)
        chain_len += line->update_lens[i];
#define WIDTH(n, width) ((n) > (width) ? (n) : (width))
    return WIDTH(line->name_len, w->name) + 1 + WIDTH(line->dtype_len, w->dtype) + 1 + WIDTH(shape_len, w->shape) +
           1 + WIDTH(chain_len, w->chain) + 1 + WIDTH((Py_ssize_t)*size_len, w->size) + 2 + w->hash;
#undef WIDTH
}

/* Writes the row (row_length bytes) at `at`: view._row's columns. */
static void write_row(const Line *line, const Widths *w, const char *size_text, int size_len, char *at)
{
    at = pad(at, line->name, line->name_len, w->name);
    *at++ = ' ';
    at = pad(at, line->dtype, line->dtype_len, w->dtype);
    *at++ = ' ';
    char *start = at;
    *at++ = '[';
    memcpy(at, line->shape, line->shape_len);
    at += line->shape_len;
    *at++ = ']';
    for (Py_ssize_t n = at - start; n < w->shape; n++)
        *at++ = ' ';
    *at++ = ' ';
    start = at;
    for (int i = 0; i < line->links; i++) { /* the chain: update types joined by "+" */
        if (i > 0)
            *at++ = '+';
        memcpy(at, line->updates[i], line->update_lens[i]);
        at += line->update_lens[i];
    }
    for (Py_ssize_t n = at - start; n < w->chain; n++)
        *at++ = ' ';
    *at++ = ' ';
    for (Py_ssize_t n = size_len; n < w->size; n++)
        *at++ = ' ';
    memcpy(at, size_text, size_len);
    at += size_len;
    *at++ = ' ';
    *at++ = ' ';
    memcpy(at, line->digest, w->hash);
}

/* (name, row, elements, stored bytes) for a matched line, or None when a check refuses it */
static PyObject *render(const Line *line, PyObject *bits, int64_t max_elements, int max_links, const Widths *w,
                        Known *known)
{
    int ok = accepted(line, bits, max_elements, max_links, known);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    char size_text[64];
    int size_len;
    Py_ssize_t total = row_length(line, w, size_text, &size_len);
    if (total < 0)
        Py_RETURN_NONE;
    PyObject *row = PyUnicode_New(total, 127);
    PyObject *name = PyUnicode_FromStringAndSize(line->name, line->name_len);
    if (row == NULL || name == NULL) {
        Py_XDECREF(row);
        Py_XDECREF(name);
        return NULL;
    }
    write_row(line, w, size_text, size_len, (char *)PyUnicode_1BYTE_DATA(row));
    return Py_BuildValue("(NNLL)", name, row, (long long)line->elements, (long long)line->stored);
}

static int check_limits(int max_links, const Widths *w)
{
    if (max_links < 1 || max_links > MAX_CHAIN || w->hash > 64 || w->name < 0 || w->dtype < 0 || w->shape < 0 ||
        w->chain < 0 || w->size < 0 || w->hash < 0) {
        PyErr_SetString(PyExc_ValueError, "column widths or link limit out of range");
        return 0;
    }
    return 1;
}

static PyObject *member_rows(PyObject *self, PyObject *args)
{
    PyObject *lines, *bits;
    long long max_elements;
    int max_links;
    Widths w;
    if (!PyArg_ParseTuple(args, "O!O!Li(nnnnnn):member_rows", &PyList_Type, &lines, &PyDict_Type, &bits,
                          &max_elements, &max_links, &w.name, &w.dtype, &w.shape, &w.chain, &w.size, &w.hash))
        return NULL;
    if (!check_limits(max_links, &w))
        return NULL;
    Known known = {{0}, 0};
    Py_ssize_t n = PyList_GET_SIZE(lines);
    PyObject *result = PyList_New(n);
    if (result == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(lines, i);
        PyObject *row;
        Line line;
        if (!PyBytes_Check(item)) {
            Py_DECREF(result);
            PyErr_SetString(PyExc_TypeError, "member_rows: lines must be bytes");
            return NULL;
        }
        if (match_line(PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item), &line))
            row = render(&line, bits, max_elements, max_links, &w, &known);
        else
            row = Py_NewRef(Py_None);
        if (row == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, row);
    }
    return result;
}

/* The parameter lines of a canonical metadata blob are data[start:stop], separated by ",\n". When each is a line
 * member_rows renders and their names strictly increase: (rows joined by "\n", count, elements, stored bytes);
 * else None, and the caller splits the lines and renders them one by one, which decides every other case. One
 * pass, no Python object per line: at 10^5 groups the split and the per-row tuples were most of a textconv. */
static PyObject *block_view(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, stop;
    PyObject *bits;
    long long max_elements;
    int max_links;
    Widths w;
    if (!PyArg_ParseTuple(args, "y*nnO!Li(nnnnnn):block_view", &view, &start, &stop, &PyDict_Type, &bits,
                          &max_elements, &max_links, &w.name, &w.dtype, &w.shape, &w.chain, &w.size, &w.hash))
        return NULL;
    PyObject *result = NULL;
    char *text = NULL;
    if (start < 0 || start > stop || stop > view.len) {
        PyErr_SetString(PyExc_ValueError, "block_view: start and stop must satisfy 0 <= start <= stop <= len(data)");
        goto done;
    }
    if (!check_limits(max_links, &w))
        goto done;
    const char *data = view.buf;
    /* a row is ~0.4 of its line (a 64-digit object id and the JSON keys shrink to columns): grown when short */
    Py_ssize_t room = (stop - start) / 2 + 4096, used = 0, count = 0;
    int64_t elements = 0, stored = 0;
    text = PyMem_Malloc(room);
    if (text == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Known known = {{0}, 0};
    const char *previous = NULL;
    Py_ssize_t previous_len = 0;
    for (Py_ssize_t at = start; start < stop;) { /* no lines when start == stop; else until the last */
        const char *sep = memmem(data + at, stop - at, ",\n", 2);
        Py_ssize_t end = sep != NULL ? sep - data : stop;
        Line line;
        if (!match_line(data + at, end - at, &line))
            goto none;
        int ok = accepted(&line, bits, max_elements, max_links, &known);
        if (ok < 0)
            goto done;
        if (ok == 0)
            goto none;
        if (previous != NULL) { /* names are printable ASCII here: bytes compare as Python's str does */
            int order = memcmp(previous, line.name, previous_len < line.name_len ? previous_len : line.name_len);
            if (order > 0 || (order == 0 && previous_len >= line.name_len))
                goto none;
        }
        previous = line.name;
        previous_len = line.name_len;
        char size_text[64];
        int size_len;
        Py_ssize_t length = row_length(&line, &w, size_text, &size_len);
        if (length < 0 || __builtin_add_overflow(elements, line.elements, &elements) ||
            __builtin_add_overflow(stored, line.stored, &stored))
            goto none; /* Python's ints spell it */
        if (used + length + 1 > room) {
            room = (used + length + 1) * 2;
            char *grown = PyMem_Realloc(text, room);
            if (grown == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            text = grown;
        }
        if (count > 0)
            text[used++] = '\n';
        write_row(&line, &w, size_text, size_len, text + used);
        used += length;
        count++;
        if (sep == NULL)
            break;
        at = end + 2; /* a ",\n" that ends the block leaves an empty line, which match_line refuses */
    }
    PyObject *rows = PyUnicode_New(used, 127);
    if (rows == NULL)
        goto done;
    memcpy(PyUnicode_1BYTE_DATA(rows), text, used);
    result = Py_BuildValue("(NnLL)", rows, count, (long long)elements, (long long)stored);
    goto done;
none:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(text);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"block_view", block_view, METH_VARARGS,
     "block_view(data, start, stop, bits, max_elements, max_links, widths) -> (rows, count, elements, stored) or "
     "None"},
    {"member_rows", member_rows, METH_VARARGS,
     "member_rows(lines, bits, max_elements, max_links, widths) -> [(name, row, elements, stored) or None per line]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_viewrows", NULL, -1, methods};

PyMODINIT_FUNC PyInit__viewrows(void) { return PyModule_Create(&module); }
