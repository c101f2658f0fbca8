/* Where base64, base32 and hex runs can be in a long text's UTF-8 bytes, in one pass.

   windows(data) -> (base64, hex, base32): (start, end) byte ranges, ascending. base64: each
   maximal row of 24 or more of A-Za-z0-9+/_-; base32: each maximal row of 16 or more of
   A-Z2-7; hex: each maximal stretch of hex digits, x, X, ':', '\\' and spaces that holds 16 or
   more hex digits. The runs' regexes then run only there (runs.py, whose translate-and-find
   pass is the pure-Python twin, tested equal). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static unsigned char K[256];  /* 1 base64, 2 base32, 4 hex stretch, 8 hex digit */

static void mark(unsigned bit, const char *chars) { for (; *chars; chars++) K[(unsigned char)*chars] |= bit; }

static int add(PyObject *list, Py_ssize_t a, Py_ssize_t b) {
    PyObject *t = Py_BuildValue("(nn)", a, b);
    if (!t) return -1;
    int r = PyList_Append(list, t);
    Py_DECREF(t);
    return r;
}

static PyObject *windows(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    const unsigned char *p = buf.buf;
    Py_ssize_t n = buf.len, s64 = 0, s32 = 0, shx = 0, digits = 0;
    PyObject *b64 = PyList_New(0), *hx = PyList_New(0), *b32 = PyList_New(0);
    if (!b64 || !hx || !b32) goto fail;
#define FLUSH64(e) if ((e) - s64 >= 24 && add(b64, s64, (e)) < 0) goto fail
#define FLUSH32(e) if ((e) - s32 >= 16 && add(b32, s32, (e)) < 0) goto fail
#define FLUSHHX(e) if (digits >= 16 && add(hx, shx, (e)) < 0) goto fail
    Py_ssize_t quiet = 0;  /* no run has begun at or after this position */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned k = K[p[i]];
        if (k == 0) {
            if (quiet < i) {
                FLUSH64(i); FLUSH32(i); FLUSHHX(i);
            }
            s64 = s32 = shx = quiet = i + 1;
            digits = 0;
            continue;
        }
        if (!(k & 1)) { FLUSH64(i); s64 = i + 1; }
        if (!(k & 2)) { FLUSH32(i); s32 = i + 1; }
        if (!(k & 4)) { FLUSHHX(i); shx = i + 1; digits = 0; } else digits += (k >> 3) & 1;
    }
    FLUSH64(n); FLUSH32(n); FLUSHHX(n);
    PyBuffer_Release(&buf);
    return Py_BuildValue("(NNN)", b64, hx, b32);
fail:
    PyBuffer_Release(&buf);
    Py_XDECREF(b64); Py_XDECREF(hx); Py_XDECREF(b32);
    return NULL;
}

static PyMethodDef methods[] = {
    {"windows", windows, METH_VARARGS, "Byte ranges where base64, hex and base32 runs can be."},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_runscan", "Where encoded runs can be, at C speed.", -1, methods,
    NULL, NULL, NULL, NULL,
};
PyMODINIT_FUNC PyInit__runscan(void) {
    mark(1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-");
    mark(2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    mark(4, "0123456789ABCDEFabcdefxX:\\ ");
    mark(8, "0123456789ABCDEFabcdef");
    return PyModule_Create(&module);
}
