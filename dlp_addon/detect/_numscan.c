/* Numbers in UTF-8 text at C speed: the scanner's hot path.
 *
 * Two functions, each the compiled twin of pure Python in numbers.py (which stays the
 * reference, used when this module is not built, and tested equal on generated input):
 *
 *   candidates(data, plan) -> [(token_start, start, end, digits, glued), ...]
 *       Every group-aligned candidate of every number token with at least 7 digits, of a
 *       length the plan asks for, that passes the plan's cheap necessary checks (first three
 *       digits possible for a detector of that length, and its checksum family: ISO 7064
 *       mod 11-2 or Luhn). Whether it is an identifier is decided in Python afterwards.
 *   has_any(data, bitmap) -> bool
 *       Whether any code point whose bit is set in ``bitmap`` occurs in ``data`` (used to tell
 *       whether a text needs folding: full-width digits, zero-width characters, ...).
 *
 * The input is untrusted: every index is checked against the buffer length, nothing is
 * written outside fixed-size local buffers whose bounds are checked, and no state is kept
 * between calls. Plan layout: repeated entries of 127 bytes,
 *   [length u8][check u8][125-byte bitmap of allowed first-three-digit prefixes 000..999].
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define ENTRY_SIZE 127
#define MAX_LENGTH 64
#define MIN_DIGITS 7

enum { CHECK_NONE = 0, CHECK_MOD11_2 = 1, CHECK_LUHN = 2 };

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_sep(unsigned char c) { return c == ' ' || c == '-' || c == '.' || c == '/'; }
static inline int is_x(unsigned char c) { return c == 'X' || c == 'x'; }
static inline int is_letter(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* ISO 7064 MOD 11-2 over digits[0..n-2], check character digits[n-1] ('X' stands for 10). */
static int mod11_2_ok(const unsigned char *d, Py_ssize_t n) {
    int sum = 0, weight = 1;
    for (Py_ssize_t i = n - 2; i >= 0; i--) {
        weight = (weight * 2) % 11;
        if (!is_digit(d[i])) return 0;
        sum += (d[i] - '0') * weight;
    }
    int check = (12 - sum % 11) % 11;
    unsigned char last = d[n - 1];
    return check == 10 ? is_x(last) : (is_digit(last) && last - '0' == check);
}

static int luhn_ok(const unsigned char *d, Py_ssize_t n) {
    int sum = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = d[n - 1 - i];
        if (!is_digit(c)) return 0;
        int v = c - '0';
        if (i % 2) { v *= 2; if (v > 9) v -= 9; }
        sum += v;
    }
    return sum % 10 == 0;
}

static int passes(const unsigned char *plan, Py_ssize_t entries, const unsigned char *d,
                  Py_ssize_t n) {
    int prefix = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    for (Py_ssize_t e = 0; e < entries; e++) {
        const unsigned char *entry = plan + e * ENTRY_SIZE;
        if (entry[0] != n) continue;
        if (!(entry[2 + prefix / 8] & (1u << (prefix % 8)))) continue;
        switch (entry[1]) {
            case CHECK_MOD11_2: if (mod11_2_ok(d, n)) return 1; break;
            case CHECK_LUHN: if (luhn_ok(d, n)) return 1; break;
            default: return 1;
        }
    }
    return 0;
}

/* Length of the digit group starting at ``pos`` (a trailing X belongs to the token's last group). */
static Py_ssize_t group_len(const unsigned char *d, Py_ssize_t pos, Py_ssize_t token_end) {
    Py_ssize_t j = pos;
    while (j < token_end && !is_sep(d[j])) j++;
    return j - pos;
}

static int emit(PyObject *out, Py_ssize_t token_start, Py_ssize_t start, Py_ssize_t end,
                const unsigned char *digits, Py_ssize_t n, int glued) {
    PyObject *item = Py_BuildValue("(nnny#O)", token_start, start, end, (const char *)digits, n,
                                   glued ? Py_True : Py_False);
    if (item == NULL) return -1;
    int rc = PyList_Append(out, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *candidates(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, plan;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &plan)) return NULL;
    PyObject *out = NULL;
    if (plan.len % ENTRY_SIZE != 0) {
        PyErr_SetString(PyExc_ValueError, "plan: entries are 127 bytes");
        goto done;
    }
    const unsigned char *d = data.buf, *p = plan.buf;
    const Py_ssize_t n = data.len, entries = plan.len / ENTRY_SIZE;
    int lengths[MAX_LENGTH + 1] = {0};
    Py_ssize_t longest = 0;
    for (Py_ssize_t e = 0; e < entries; e++) {
        int len = p[e * ENTRY_SIZE];
        if (len < MIN_DIGITS || len > MAX_LENGTH) {
            PyErr_SetString(PyExc_ValueError, "plan: lengths are 7 to 64");
            goto done;
        }
        lengths[len] = 1;
        if (len > longest) longest = len;
    }
    out = PyList_New(0);
    if (out == NULL) goto done;
    unsigned char buf[MAX_LENGTH];
    Py_ssize_t i = 0;
    while (i < n) {
        if (!is_digit(d[i])) { i++; continue; }
        /* A token: digit groups joined by single separators, maybe ending in X. */
        Py_ssize_t start = i, j = i, ndigits = 0;
        for (;;) {
            while (j < n && is_digit(d[j])) { j++; ndigits++; }
            if (j + 1 < n && is_sep(d[j]) && is_digit(d[j + 1])) { j++; continue; }
            break;
        }
        Py_ssize_t end = (j < n && is_x(d[j])) ? j + 1 : j;
        i = end;
        if (ndigits < MIN_DIGITS) continue;
        int glued = (start > 0 && is_letter(d[start - 1])) || (end < n && is_letter(d[end]));
        /* Candidates start where a group starts and end where a group ends. */
        for (Py_ssize_t g = start; g < end;) {
            Py_ssize_t total = 0, k = g;
            while (k < end) {
                Py_ssize_t len = group_len(d, k, end);
                if (total + len > longest) break;
                memcpy(buf + total, d + k, (size_t)len);
                total += len;
                if (lengths[total] && passes(p, entries, buf, total) &&
                    emit(out, start, g, k + len, buf, total, glued) < 0) {
                    Py_CLEAR(out);
                    goto done;
                }
                k += len + 1; /* past the separator */
            }
            g += group_len(d, g, end) + 1;
        }
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&plan);
    return out;
}

static PyObject *has_any(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, bitmap;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &bitmap)) return NULL;
    const unsigned char *d = data.buf, *bits = bitmap.buf;
    const Py_ssize_t n = data.len, limit = bitmap.len * 8;
    int found = 0;
    for (Py_ssize_t i = 0; i < n && !found;) {
        unsigned char c = d[i];
        if (c < 0x80) { i++; continue; }
        Py_ssize_t need;
        unsigned long cp;
        if (c >= 0xF0) { need = 3; cp = c & 0x07; }
        else if (c >= 0xE0) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xC0) { need = 1; cp = c & 0x1F; }
        else { i++; continue; } /* a stray continuation byte */
        if (i + need >= n) break; /* a truncated sequence at the end */
        for (Py_ssize_t k = 1; k <= need; k++) cp = (cp << 6) | (d[i + k] & 0x3F);
        i += need + 1;
        if ((Py_ssize_t)cp < limit && (bits[cp / 8] & (1u << (cp % 8)))) found = 1;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&bitmap);
    return PyBool_FromLong(found);
}

static PyMethodDef methods[] = {
    {"candidates", candidates, METH_VARARGS, "Checked candidates of every number token."},
    {"has_any", has_any, METH_VARARGS, "Whether a code point of the bitmap occurs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_numscan", "Numbers in UTF-8 text at C speed.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__numscan(void) { return PyModule_Create(&module); }
