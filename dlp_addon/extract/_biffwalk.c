/* The BIFF record walk of an xls workbook stream at C speed (see biff.py).
 *
 * A workbook stream is a chain of records, [type u16][size u16][body], hundreds of thousands
 * of them in a large sheet; biff.py reads the text of only a few types. select() walks the
 * chain by the sizes and hands back only those records, as biff.py's pure-Python twin
 * (_select_py, the reference, used when this module is not built and tested equal on generated
 * and malformed streams) does.
 *
 * The input is untrusted: a record's size may point past the end of the stream (its body is
 * then what is left, and the walk stops), and nothing is read outside the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum {
    FORMULA = 0x0006,
    NAME = 0x0018,
    CONTINUE = 0x003C,
    TXO = 0x01B6,
    BOF = 0x0809,
};

/* select(stream) -> [(type, substream, body)]: every FORMULA and NAME record and every
 * CONTINUE that follows a TXO (its text), with the number of BOF records seen so far (the
 * substream: 1 the globals, then each sheet). */
static PyObject *select_records(PyObject *self, PyObject *arg) {
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *s = view.buf;
    const Py_ssize_t n = view.len;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    Py_ssize_t pos = 0;
    long substream = 0;
    unsigned previous = 0;
    while (n - pos >= 4) {
        const unsigned rtype = (unsigned)s[pos] | (unsigned)s[pos + 1] << 8;
        const Py_ssize_t size = (Py_ssize_t)s[pos + 2] | (Py_ssize_t)s[pos + 3] << 8;
        const Py_ssize_t start = pos + 4;
        const Py_ssize_t length = size <= n - start ? size : n - start;
        if (rtype == BOF) {
            substream++;
        } else if (rtype == FORMULA || rtype == NAME || (rtype == CONTINUE && previous == TXO)) {
            PyObject *body = PyBytes_FromStringAndSize((const char *)s + start, length);
            if (body == NULL) goto fail;
            PyObject *item = Py_BuildValue("(IlN)", rtype, substream, body);
            if (item == NULL) goto fail;  /* "N" released body */
            int appended = PyList_Append(out, item);
            Py_DECREF(item);
            if (appended < 0) goto fail;
        }
        if (rtype != CONTINUE) previous = rtype;
        pos = start + size; /* past n when the size overruns: the loop ends */
    }
    PyBuffer_Release(&view);
    return out;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"select", select_records, METH_O,
     "The FORMULA, NAME and TXO text (CONTINUE) records of a BIFF stream, with substreams."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_biffwalk", "The BIFF record walk of an xls at C speed.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__biffwalk(void) { return PyModule_Create(&module); }
