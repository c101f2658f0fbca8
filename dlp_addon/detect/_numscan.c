/* Identifiers in UTF-8 text at C speed: the scanner's hot path.
 *
 * One pass over the bytes does what the pure Python of numbers.py, validators.py and the
 * scanner does (that Python stays the reference, used when this module is not built, and is
 * tested equal on generated input): it tells whether the text needs folding, finds every number
 * token and its group-aligned candidates, checks them against the numeric detectors (plan
 * prefilter, pattern as a DFA, validator twin) and every run of ASCII letters and digits
 * against the token detectors, and returns each identifier found with its keyed hash and mask.
 * See findings() below.
 *
 * The input is untrusted: every index is checked against the buffer length, nothing is
 * written outside fixed-size local buffers whose bounds are checked, and no state is kept
 * between calls. The plan's prefilter entries are 127 bytes each,
 *   [length u8][check u8][125-byte bitmap of allowed first-three-digit prefixes 000..999].
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* SHA256_Init/Update/Final: deprecated in OpenSSL 3 for EVP, kept here because a copied
 * context is the cheap way to reuse the HMAC key schedule; they use the CPU's SHA extensions. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define ENTRY_SIZE 127
#define MAX_LENGTH 64
#define MIN_DIGITS 7
#define MAX_SHAPES 16
#define MAX_SHAPE_GROUPS 8
enum { G_STRICT = 0, G_ANY = 1, G_SHAPES = 2 };
enum { LOW_GLUED = 1, LOW_SHAPE = 2 };

enum { CHECK_NONE = 0, CHECK_MOD11_2 = 1, CHECK_LUHN = 2 };

/* What each byte is, one table lookup instead of several comparisons in the hot loop. */
enum { K_DIGIT = 1, K_LETTER = 2, K_SEP = 4, K_NEWLINE = 8, K_HIGH = 16, K_LOOSE = 32 };
#define K_ALNUM (K_DIGIT | K_LETTER)
static unsigned char KIND[256];
/* Each byte's DFA symbol in the numeric and in the token alphabet (-1: not in it). */
static signed char NUMERIC_SYMBOL[256], TOKEN_SYMBOL[256];
/* 2^k mod 11: the MOD 11-2 weight of the digit k places left of the check character. */
static unsigned char MOD11_WEIGHT[MAX_LENGTH];

static void init_kinds(void) {
    for (int c = '0'; c <= '9'; c++) KIND[c] = K_DIGIT;
    for (int c = 'A'; c <= 'Z'; c++) KIND[c] = KIND[c + 32] = K_LETTER;
    KIND[' '] = KIND['-'] = KIND['.'] = KIND['/'] = K_SEP;
    KIND['\n'] = K_NEWLINE;
    /* Loose separators (tab, comma, ... a line break) may join digit groups too: see loose_run. */
    const char *loose = " \t-./,;_|\r\n";
    for (const char *l = loose; *l; l++) KIND[(unsigned char)*l] |= K_LOOSE;
    for (int c = 0x80; c < 256; c++) KIND[c] = K_HIGH;
    for (int k = 0, w = 1; k < MAX_LENGTH; k++, w = w * 2 % 11) MOD11_WEIGHT[k] = (unsigned char)w;
    for (int c = 0; c < 256; c++) NUMERIC_SYMBOL[c] = TOKEN_SYMBOL[c] = -1;
    for (int c = '0'; c <= '9'; c++) NUMERIC_SYMBOL[c] = TOKEN_SYMBOL[c] = (signed char)(c - '0');
    NUMERIC_SYMBOL['X'] = 10;
    NUMERIC_SYMBOL['x'] = 11;
    for (int c = 'A'; c <= 'Z'; c++) {
        TOKEN_SYMBOL[c] = (signed char)(10 + c - 'A');
        TOKEN_SYMBOL[c + 32] = (signed char)(36 + c - 'A');
    }
}

static inline int is_digit(unsigned char c) { return KIND[c] & K_DIGIT; }
static inline int is_sep(unsigned char c) { return KIND[c] & K_SEP; }
static inline int is_x(unsigned char c) { return c == 'X' || c == 'x'; }
static inline int is_letter(unsigned char c) { return KIND[c] & K_LETTER; }

/* ISO 7064 MOD 11-2 over digits[0..n-2], check character digits[n-1] ('X' stands for 10).
 * Candidates are at most MAX_LENGTH long. */
static int mod11_2_ok(const unsigned char *d, Py_ssize_t n) {
    if (n < 1 || n > MAX_LENGTH) return 0;
    int sum = 0;
    for (Py_ssize_t i = 0; i < n - 1; i++) {
        unsigned v = (unsigned)d[i] - '0';
        if (v > 9) return 0;
        sum += (int)v * MOD11_WEIGHT[n - 1 - i];
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

/* Whether some entry plan[from..to) (those of length n) admits the candidate d[0..n). */
static int passes(const unsigned char *plan, Py_ssize_t from, Py_ssize_t to,
                  const unsigned char *d, Py_ssize_t n) {
    int prefix = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    for (Py_ssize_t e = from; e < to; e++) {
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

/* ---------------------------------------------------------------------------------------- */
/* Findings: numbers (and ASCII letter-and-digit tokens) validated, hashed and masked in C. */
/*                                                                                          */
/*   compile(blob, key, Finding, ("low", "medium", "high")) -> plan                          */
/*       detectors laid out by numbers.compile_findings                                      */
/*   findings(data, plan, location, first_line, near, first_char)                            */
/*       -> (found, records, pending) | None                                                 */
/*       None: the text needs folding first (a code point of the plan's fold bitmap occurs). */
/*       found: [Finding(detector, key, masked, location, line, confidence, start, end)],    */
/*             start and end in characters of the text (the str the bytes were encoded from) */
/*         - numeric detectors checked here (pattern as a DFA, validator one of the C twins  */
/*           below), a number inside a longer one of the same detector in one token dropped; */
/*         - token detectors: a regex (?<![0-9A-Za-z])BODY(?![0-9A-Za-z]) full-matches BODY  */
/*           against a whole run of ASCII letters and digits, so each run is checked once.   */
/*       A context word of the detector within the window raises the confidence one level;  */
/*       a keyword-gated token detector's findings count only within the window of one of   */
/*       its keywords (``near`` holds both, from the scanner's keyword pass).                 */
/*       records: [(line, start, end, start in characters)] of the lines holding a personal */
/*             identifier.                                                                   */
/*   char_offsets(data, positions) -> [int]: each byte offset (ascending) in characters.    */
/*       pending: [(token_start, start, end, digits, glued, detector, shape, loose)] for     */
/*             numeric detectors left to Python (no DFA or no C twin of the validator);     */
/*             shape: the candidate's group lengths as bytes; loose: joined across a loose  */
/*             separator.                                                                    */
/* Detector numbers count numeric detectors first, then token detectors. The key is an      */
/* HMAC-SHA256 (OpenSSL's SHA-256) of "id:value", its first 12 bytes in hex. Every byte of   */
/* the blob is checked when it is compiled; a bad blob is a ValueError.                     */
/* ---------------------------------------------------------------------------------------- */

static PyObject *sha256_hex(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    unsigned char out[SHA256_DIGEST_LENGTH];
    char hex[64];
    SHA256(data.buf, (size_t)data.len, out);
    PyBuffer_Release(&data);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = "0123456789abcdef"[out[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(hex, 64);
}

/* A DFA. Numeric: '0'..'9' are symbols 0..9, 'X' 10, 'x' 11. Token: '0'..'9' 0..9, 'A'..'Z'
 * 10..35, 'a'..'z' 36..61. */
#define NUMERIC_SYMBOLS 12
#define TOKEN_SYMBOLS 62
typedef struct {
    int32_t states, symbols;
    int32_t *next; /* states * symbols, -1: no move */
    unsigned char *accept;
} Dfa;

enum { V_PYTHON = 0, V_GB11643, V_GB11643_15, V_LUHN, V_LUHN_CARD, V_MOD11_2, V_CN_MOBILE,
       V_CN_LANDLINE, V_AS_IS, V_UPPER, V_GB32100, V_COUNT };

typedef struct {
    int32_t validator;
    int32_t mask_start, mask_end; /* mask_start -1: shown as is */
    int32_t level; /* base confidence: 0 low, 1 medium, 2 high */
    int32_t personal; /* its findings make a line a record */
    unsigned char lengths[MAX_LENGTH + 1];
    char *id;
    int32_t id_len;
    Dfa pattern, accepts; /* accepts: the validator's own pattern (mobile, fixed line) */
    PyObject *name; /* the id as a str, for the Finding */
    /* How its numbers may be grouped: G_STRICT (single separators only), G_ANY (any grouping,
     * also across loose separators), G_SHAPES (shapes[0..nshapes): [count][lengths...] at
     * base confidence, loose ones too; other groupings low, or not at all across loose ones). */
    int32_t gmode, nshapes;
    unsigned char shapes[MAX_SHAPES][MAX_SHAPE_GROUPS + 1];
} Det;

typedef struct {
    unsigned char *entries; /* the candidate plan, as for candidates() */
    Py_ssize_t n_entries;
    unsigned char lengths[MAX_LENGTH + 1];
    Py_ssize_t entry_from[MAX_LENGTH + 1], entry_to[MAX_LENGTH + 1]; /* entries by length */
    Py_ssize_t longest;
    unsigned char provinces[13]; /* bits 0..99 */
    unsigned char *fold; /* code-point bitmap of what needs folding */
    Py_ssize_t fold_bits;
    unsigned char lead_folds[256]; /* a UTF-8 lead byte some code point of the bitmap has */
    unsigned char skip[256]; /* bytes to step over from a byte that needs no look (0: look) */
    int32_t n_numeric, n_tokens; /* dets[0..n_numeric), then the token detectors */
    int loose; /* some numeric detector takes candidates across loose separators */
    int cjk_plain; /* no CJK ideograph (UTF-8 leads E4..E9) needs folding: skipped 16 at a time */
    int32_t edit_det; /* the 18-character resident ID detector (gb11643): edits; -1: none */
    unsigned char token_lengths[MAX_LENGTH + 1];
    Det *dets;
    int32_t window; /* bytes either side within which a context word raises confidence */
    PyObject *finding; /* the Finding type (a tuple subclass) */
    PyObject *levels[3]; /* "low", "medium", "high" */
    SHA256_CTX inner, outer; /* HMAC: the key's ipad and opad blocks, hashed once */
} NumPlan;

static void dfa_free(Dfa *d) { free(d->next); free(d->accept); d->next = NULL; d->accept = NULL; }

static void plan_free(NumPlan *p) {
    if (p == NULL) return;
    if (p->dets != NULL) {
        for (int32_t i = 0; i < p->n_numeric + p->n_tokens; i++) {
            free(p->dets[i].id); dfa_free(&p->dets[i].pattern); dfa_free(&p->dets[i].accepts);
            Py_XDECREF(p->dets[i].name);
        }
        free(p->dets);
    }
    free(p->entries);
    free(p->fold);
    Py_XDECREF(p->finding);
    for (int i = 0; i < 3; i++) Py_XDECREF(p->levels[i]);
    OPENSSL_cleanse(p, sizeof *p); /* the key schedule */
    free(p);
}

static void plan_capsule_free(PyObject *capsule) {
    plan_free(PyCapsule_GetPointer(capsule, "dlp_numscan.plan"));
}

typedef struct { const unsigned char *p; Py_ssize_t left; } Reader;

static int take(Reader *r, void *out, Py_ssize_t n) {
    if (n < 0 || r->left < n) { PyErr_SetString(PyExc_ValueError, "plan: truncated"); return -1; }
    memcpy(out, r->p, (size_t)n);
    r->p += n; r->left -= n;
    return 0;
}

static int take_i32(Reader *r, int32_t *out) { return take(r, out, 4); }

static int bad(const char *why) { PyErr_SetString(PyExc_ValueError, why); return -1; }

static int read_dfa(Reader *r, Dfa *d, int32_t symbols) {
    if (take_i32(r, &d->states) < 0) return -1;
    if (d->states < 0 || d->states > 1 << 16) return bad("plan: DFA size");
    d->symbols = symbols;
    if (d->states == 0) return 0;
    size_t cells = (size_t)d->states * (size_t)symbols;
    d->next = malloc(cells * sizeof(int32_t));
    d->accept = malloc((size_t)d->states);
    if (d->next == NULL || d->accept == NULL) { PyErr_NoMemory(); return -1; }
    if (take(r, d->next, (Py_ssize_t)(cells * sizeof(int32_t))) < 0) return -1;
    if (take(r, d->accept, d->states) < 0) return -1;
    for (size_t i = 0; i < cells; i++)
        if (d->next[i] < -1 || d->next[i] >= d->states) return bad("plan: DFA move out of range");
    return 0;
}

static int read_det(Reader *r, Det *d, int token) {
    if (take_i32(r, &d->validator) < 0 || take_i32(r, &d->mask_start) < 0 ||
        take_i32(r, &d->mask_end) < 0 || take_i32(r, &d->level) < 0 ||
        take_i32(r, &d->personal) < 0 || take(r, d->lengths, MAX_LENGTH + 1) < 0 ||
        take_i32(r, &d->id_len) < 0)
        return -1;
    if (d->level < 0 || d->level > 2 || d->personal < 0 || d->personal > 1)
        return bad("plan: confidence or record flag");
    if (d->validator < 0 || d->validator >= V_COUNT) return bad("plan: validator");
    if (token != (d->validator >= V_AS_IS)) return bad("plan: validator of the wrong kind");
    if (d->mask_start < -1 || d->mask_start > 64 || d->mask_end < 0 || d->mask_end > 64)
        return bad("plan: mask");
    if (d->id_len < 0 || d->id_len > 256) return bad("plan: id");
    d->id = malloc((size_t)d->id_len + 1);
    if (d->id == NULL) { PyErr_NoMemory(); return -1; }
    if (take(r, d->id, d->id_len) < 0) return -1;
    d->name = PyUnicode_DecodeUTF8(d->id, d->id_len, "strict");
    if (d->name == NULL) return -1;
    int32_t symbols = token ? TOKEN_SYMBOLS : NUMERIC_SYMBOLS;
    if (read_dfa(r, &d->pattern, symbols) < 0 || read_dfa(r, &d->accepts, NUMERIC_SYMBOLS) < 0)
        return -1;
    if (d->validator != V_PYTHON && d->pattern.states == 0) return bad("plan: no DFA");
    if ((d->validator == V_CN_MOBILE || d->validator == V_CN_LANDLINE) && d->accepts.states == 0)
        return bad("plan: validator without its pattern");
    if (take_i32(r, &d->gmode) < 0 || take_i32(r, &d->nshapes) < 0) return -1;
    if (d->gmode < G_STRICT || d->gmode > G_SHAPES || d->nshapes < 0 || d->nshapes > MAX_SHAPES ||
        (d->gmode != G_SHAPES && d->nshapes != 0) || (token && d->gmode != G_STRICT))
        return bad("plan: groupings");
    for (int32_t k = 0; k < d->nshapes; k++) {
        if (take(r, d->shapes[k], MAX_SHAPE_GROUPS + 1) < 0) return -1;
        if (d->shapes[k][0] < 2 || d->shapes[k][0] > MAX_SHAPE_GROUPS) return bad("plan: shape");
    }
    return 0;
}

static PyObject *compile_plan(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer blob, key;
    PyObject *finding, *levels;
    if (!PyArg_ParseTuple(args, "y*y*OO", &blob, &key, &finding, &levels)) return NULL;
    NumPlan *p = calloc(1, sizeof(NumPlan));
    PyObject *capsule = NULL;
    Reader r = {blob.buf, blob.len};
    char magic[4];
    int32_t n_entries, fold_len;
    if (p == NULL) { PyErr_NoMemory(); goto done; }
    if (take(&r, magic, 4) < 0) goto done;
    if (memcmp(magic, "DLN4", 4) != 0) { bad("plan: not a DLN4 plan"); goto done; }
    if (!PyType_Check(finding) || !PyType_IsSubtype((PyTypeObject *)finding, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "plan: the Finding type must be a tuple subclass");
        goto done;
    }
    if (!PyTuple_Check(levels) || PyTuple_GET_SIZE(levels) != 3) {
        PyErr_SetString(PyExc_TypeError, "plan: three confidence names");
        goto done;
    }
    p->finding = Py_NewRef(finding);
    for (int i = 0; i < 3; i++) p->levels[i] = Py_NewRef(PyTuple_GET_ITEM(levels, i));
    if (take_i32(&r, &n_entries) < 0) goto done;
    if (n_entries < 0 || n_entries > 4096) { bad("plan: entries"); goto done; }
    p->n_entries = n_entries;
    p->entries = malloc((size_t)n_entries * ENTRY_SIZE + 1);
    if (p->entries == NULL) { PyErr_NoMemory(); goto done; }
    if (take(&r, p->entries, (Py_ssize_t)n_entries * ENTRY_SIZE) < 0) goto done;
    for (int32_t e = 0; e < n_entries; e++) {
        int len = p->entries[e * ENTRY_SIZE];
        if (len < MIN_DIGITS || len > MAX_LENGTH) { bad("plan: lengths are 7 to 64"); goto done; }
        if (p->entries[e * ENTRY_SIZE + 1] > CHECK_LUHN) { bad("plan: check"); goto done; }
        if (!p->lengths[len]) p->entry_from[len] = e;
        else if (p->entry_to[len] != e) { bad("plan: entries not grouped by length"); goto done; }
        p->entry_to[len] = e + 1;
        p->lengths[len] = 1;
        if (len > p->longest) p->longest = len;
    }
    if (take(&r, p->provinces, 13) < 0) goto done;
    if (take_i32(&r, &fold_len) < 0) goto done;
    if (fold_len < 0 || fold_len > (1 << 18)) { bad("plan: fold bitmap"); goto done; }
    p->fold = malloc((size_t)fold_len + 1);
    if (p->fold == NULL) { PyErr_NoMemory(); goto done; }
    if (take(&r, p->fold, fold_len) < 0) goto done;
    p->fold_bits = (Py_ssize_t)fold_len * 8;
    if (take_i32(&r, &p->window) < 0) goto done;
    if (p->window < 0) { bad("plan: window"); goto done; }
    for (Py_ssize_t cp = 0x80; cp < p->fold_bits; cp++) {
        if (!(p->fold[cp / 8] & (1u << (cp % 8)))) continue;
        unsigned char lead = cp < 0x800 ? 0xC0 | (cp >> 6)
                             : cp < 0x10000 ? 0xE0 | (cp >> 12) : 0xF0 | (cp >> 18);
        p->lead_folds[lead] = 1;
    }
    p->cjk_plain = 1;
    for (int lead = 0xE4; lead <= 0xE9; lead++) p->cjk_plain &= !p->lead_folds[lead];
    for (int c = 0; c < 256; c++) {
        int len = c < 0x80 ? 1 : c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 1;
        int look = c < 0x80 ? (KIND[c] & ~(K_SEP | K_LOOSE)) != 0 : p->lead_folds[c];
        p->skip[c] = look ? 0 : (unsigned char)len;
    }
    if (take_i32(&r, &p->n_numeric) < 0 || take_i32(&r, &p->n_tokens) < 0) goto done;
    if (p->n_numeric < 0 || p->n_numeric > 1024 || p->n_tokens < 0 || p->n_tokens > 1024) {
        bad("plan: detectors"); goto done;
    }
    p->dets = calloc((size_t)(p->n_numeric + p->n_tokens) + 1, sizeof(Det));
    if (p->dets == NULL) { PyErr_NoMemory(); goto done; }
    for (int32_t i = 0; i < p->n_numeric + p->n_tokens; i++) {
        int token = i >= p->n_numeric;
        if (read_det(&r, &p->dets[i], token) < 0) goto done;
        if (token)
            for (int len = 0; len <= MAX_LENGTH; len++)
                p->token_lengths[len] |= p->dets[i].lengths[len];
        else if (p->dets[i].gmode != G_STRICT)
            p->loose = 1;
    }
    p->edit_det = -1;
    for (int32_t i = 0; i < p->n_numeric; i++) {
        if (p->dets[i].validator == V_GB11643 && p->dets[i].lengths[18]) { p->edit_det = i; break; }
    }
    if (r.left != 0) { bad("plan: trailing bytes"); goto done; }
    /* HMAC (RFC 2104): the key padded to a block, XORed with ipad and opad. */
    unsigned char k0[64] = {0}, pad[64];
    if (key.len > 64) SHA256(key.buf, (size_t)key.len, k0);
    else memcpy(k0, key.buf, (size_t)key.len);
    for (int i = 0; i < 64; i++) pad[i] = k0[i] ^ 0x36;
    SHA256_Init(&p->inner); SHA256_Update(&p->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = k0[i] ^ 0x5c;
    SHA256_Init(&p->outer); SHA256_Update(&p->outer, pad, 64);
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(pad, sizeof pad);
    capsule = PyCapsule_New(p, "dlp_numscan.plan", plan_capsule_free);
    if (capsule != NULL) p = NULL; /* the capsule owns it now */
done:
    plan_free(p);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&key);
    return capsule;
}

static inline int is_alnum(unsigned char c) { return KIND[c] & K_ALNUM; }

static int dfa_match(const Dfa *d, const unsigned char *s, Py_ssize_t n) {
    const signed char *symbol = d->symbols == NUMERIC_SYMBOLS ? NUMERIC_SYMBOL : TOKEN_SYMBOL;
    const int32_t *next = d->next;
    const int32_t width = d->symbols;
    int32_t state = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int sym = symbol[s[i]];
        if (sym < 0) return 0;
        state = next[state * width + sym];
        if (state < 0) return 0;
    }
    return d->accept[state];
}

static int all_digits(const unsigned char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) if (!is_digit(s[i])) return 0;
    return 1;
}

static int num(const unsigned char *s, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    return v;
}

static int province_ok(const NumPlan *p, const unsigned char *s) {
    int code = num(s, 2);
    return (p->provinces[code / 8] >> (code % 8)) & 1;
}

/* A real date, not before 1880 and not after today (local time, as Python's date.today()). */
static int birth_date_ok(int y, int m, int d, long today) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1880 || m < 1 || m > 12 || d < 1) return 0;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int dim = days[m - 1] + (m == 2 && leap);
    if (d > dim) return 0;
    return (long)y * 10000 + m * 100 + d <= today;
}

static int id_date_ok(const unsigned char *v, long today) { /* yyyymmdd at v[6..13] */
    return birth_date_ok(num(v + 6, 4), num(v + 10, 2), num(v + 12, 2), today);
}

static const char GB32100_CHARS[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
static const int GB32100_WEIGHTS[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};

static int gb32100_ok(const unsigned char *v, Py_ssize_t n) {
    if (n != 18) return 0;
    int codes[18], sum = 0;
    for (int i = 0; i < 18; i++) {
        const char *at = v[i] ? strchr(GB32100_CHARS, v[i]) : NULL;
        if (at == NULL) return 0;
        codes[i] = (int)(at - GB32100_CHARS);
    }
    for (int i = 0; i < 17; i++) sum += codes[i] * GB32100_WEIGHTS[i];
    return (31 - sum % 31) % 31 == codes[17];
}

/* The twins of validators.py: the canonical value into out (up to 64 bytes), its length, or 0. */
static Py_ssize_t validate(const NumPlan *p, const Det *det, const unsigned char *d, Py_ssize_t n,
                           unsigned char *out, long today) {
    Py_ssize_t i;
    switch (det->validator) {
        case V_GB11643:
            for (i = 0; i < n; i++) out[i] = d[i] == 'x' ? 'X' : d[i];
            if (n != 18 || !all_digits(out, 17) || !province_ok(p, out)) return 0;
            if (!mod11_2_ok(out, 18) || !id_date_ok(out, today)) return 0;
            return 18;
        case V_GB11643_15:
            if (n != 15 || !all_digits(d, 15) || !province_ok(p, d)) return 0;
            if (!birth_date_ok(1900 + num(d + 6, 2), num(d + 8, 2), num(d + 10, 2), today)) return 0;
            memcpy(out, d, 15);
            return 15;
        case V_LUHN:
        case V_LUHN_CARD:
            if (n < 2 || !all_digits(d, n) || !luhn_ok(d, n)) return 0;
            if (det->validator == V_LUHN_CARD) {
                if (n < 16 || n > 19) return 0;
                if (n == 18 && province_ok(p, d) && id_date_ok(d, today)) return 0;
            }
            memcpy(out, d, (size_t)n);
            return n;
        case V_MOD11_2:
            for (i = 0; i < n; i++) out[i] = d[i] == 'x' ? 'X' : d[i];
            if (n < 2 || !all_digits(out, n - 1) || !mod11_2_ok(out, n)) return 0;
            return n;
        case V_CN_MOBILE: { /* the last 11, in an allocated mobile block */
            if (n < 11) return 0;
            const unsigned char *tail = d + n - 11;
            if (!dfa_match(&det->accepts, tail, 11)) return 0;
            memcpy(out, tail, 11);
            return 11;
        }
        case V_CN_LANDLINE: { /* trunk 0 + a fixed-line national number */
            Py_ssize_t len = n;
            for (i = 0; i < n; i++) out[i] = d[i] == 'x' ? 'X' : d[i];
            if (len >= 4 && memcmp(out, "0086", 4) == 0) {
                memmove(out + 1, out + 4, (size_t)(len - 4)); out[0] = '0'; len -= 3;
            } else if (len > 11 && memcmp(out, "86", 2) == 0) {
                memmove(out + 1, out + 2, (size_t)(len - 2)); out[0] = '0'; len -= 1;
            }
            if (len < 1 || out[0] != '0' || (len >= 2 && out[1] == '0')) return 0;
            return dfa_match(&det->accepts, out + 1, len - 1) ? len : 0;
        }
        case V_AS_IS:
            memcpy(out, d, (size_t)n);
            return n;
        case V_UPPER:
        case V_GB32100:
            for (i = 0; i < n; i++) out[i] = (d[i] >= 'a' && d[i] <= 'z') ? d[i] - 32 : d[i];
            if (det->validator == V_GB32100 && !gb32100_ok(out, n)) return 0;
            return n;
        default:
            return 0;
    }
}

typedef struct {
    Py_ssize_t start, end;   /* bytes */
    Py_ssize_t cstart, cend; /* characters: where it is in the text as Python sees it */
    int32_t det;
    int32_t len;
    unsigned char value[MAX_LENGTH];
    int dropped;
    /* LOW_GLUED: glued to a letter (or an edit), low unless context raises it; LOW_SHAPE: a
     * grouping its detector does not list, low whatever words stand near it. */
    int low;
    Py_ssize_t line, line_start, line_start_char; /* its line (as Scan's), where that starts */
} Valid;

typedef struct { Valid *items; Py_ssize_t n, cap; } Valids;

static int valids_push(Valids *v, const Valid *item) {
    if (v->n == v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 16;
        Valid *grown = realloc(v->items, (size_t)cap * sizeof(Valid));
        if (grown == NULL) { PyErr_NoMemory(); return -1; }
        v->items = grown; v->cap = cap;
    }
    v->items[v->n++] = *item;
    return 0;
}

typedef struct { Py_ssize_t start, end, index; int32_t det; } SortKey;

static int by_det_start_longest(const void *a, const void *b) {
    const SortKey *x = a, *y = b;
    if (x->det != y->det) return x->det < y->det ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->end != y->end) return x->end > y->end ? -1 : 1;
    return 0;
}

/* Drop each number inside a longer one of the same detector (same token): O(n log n). */
static int outermost(Valids *v) {
    if (v->n < 2) return 0;
    SortKey *order = malloc((size_t)v->n * sizeof(SortKey));
    if (order == NULL) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < v->n; i++) {
        SortKey key = {v->items[i].start, v->items[i].end, i, v->items[i].det};
        order[i] = key;
    }
    qsort(order, (size_t)v->n, sizeof(SortKey), by_det_start_longest);
    int32_t det = -1;
    Py_ssize_t reach = -1; /* the furthest end of this detector's numbers seen so far */
    for (Py_ssize_t k = 0; k < v->n; k++) {
        Valid *it = &v->items[order[k].index];
        if (it->det != det) { det = it->det; reach = -1; }
        if (reach >= it->end) it->dropped = 1;
        if (it->end > reach) reach = it->end;
    }
    free(order);
    return 0;
}

/* Where some position of the sorted ``at[0..n)`` lies within ``window`` of ``pos``. */
typedef struct { Py_ssize_t *at; Py_ssize_t n; int present; } Positions;

static int near(const Positions *ps, Py_ssize_t pos, Py_ssize_t window) {
    Py_ssize_t lo = 0, hi = ps->n;
    while (lo < hi) { /* the first position >= pos - window */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (ps->at[mid] < pos - window) lo = mid + 1; else hi = mid;
    }
    return lo < ps->n && ps->at[lo] <= pos + window;
}

/* One call's state: the text, where its lines are, and what has been found. */
typedef struct {
    const NumPlan *p;
    const unsigned char *d;
    Py_ssize_t n;
    PyObject *location, *found, *records, *pending;
    Py_ssize_t first_line, line, line_start; /* line of the byte being looked at, its start */
    Py_ssize_t line_start_char;              /* the same start, in characters */
    Py_ssize_t first_char;                   /* added to every character offset reported */
    Py_ssize_t recorded_line;                /* the last line put in records */
    Positions *context, *gates;              /* per detector, from the keyword pass */
} Scan;

/* The Finding (detector, key, masked, location, line, confidence) of one valid value. */
static int emit(Scan *sc, const Valid *v) {
    const NumPlan *p = sc->p;
    const Det *det = &p->dets[v->det];
    const Positions *gate = &sc->gates[v->det];
    if (gate->present && !near(gate, v->start, p->window)) return 0; /* not near its keyword */
    SHA256_CTX c = p->inner;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char hex[24], masked[MAX_LENGTH];
    SHA256_Update(&c, det->id, (size_t)det->id_len);
    SHA256_Update(&c, ":", 1);
    SHA256_Update(&c, v->value, (size_t)v->len);
    SHA256_Final(digest, &c);
    c = p->outer;
    SHA256_Update(&c, digest, sizeof digest);
    SHA256_Final(digest, &c);
    for (int i = 0; i < 12; i++) {
        hex[2 * i] = "0123456789abcdef"[digest[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[digest[i] & 15];
    }
    memcpy(masked, v->value, (size_t)v->len);
    if (det->mask_start >= 0) {
        if (v->len <= det->mask_start + det->mask_end)
            memset(masked, '*', (size_t)v->len);
        else
            memset(masked + det->mask_start, '*', (size_t)(v->len - det->mask_start - det->mask_end));
    }
    int level = v->low ? 0 : det->level;
    if (v->low != LOW_SHAPE && sc->context[v->det].present &&
        near(&sc->context[v->det], v->start, p->window) && level < 2)
        level++;
    Py_ssize_t line = sc->first_line + v->line;
    PyObject *key = PyUnicode_FromStringAndSize(hex, 24);
    PyObject *shown = PyUnicode_FromStringAndSize(masked, v->len);
    PyObject *lineno = PyLong_FromSsize_t(line);
    PyObject *cstart = PyLong_FromSsize_t(sc->first_char + v->cstart);
    PyObject *cend = PyLong_FromSsize_t(sc->first_char + v->cend);
    PyObject *f = ((PyTypeObject *)p->finding)->tp_alloc((PyTypeObject *)p->finding, 8);
    if (key == NULL || shown == NULL || lineno == NULL || cstart == NULL || cend == NULL ||
        f == NULL) {
        Py_XDECREF(key); Py_XDECREF(shown); Py_XDECREF(lineno); Py_XDECREF(f);
        Py_XDECREF(cstart); Py_XDECREF(cend);
        return -1;
    }
#if PY_VERSION_HEX >= 0x030E0000
    /* CPython 3.14 caches a tuple's hash in ob_hash, -1 meaning "not computed yet". tp_alloc
     * zeroes the object, which would read as a cached hash of 0 for every finding: reset it
     * as CPython's own tuple_alloc and tuple_subtype_new do (_PyTuple_RESET_HASH_CACHE). */
    ((PyTupleObject *)f)->ob_hash = -1;
#endif
    PyTuple_SET_ITEM(f, 0, Py_NewRef(det->name));
    PyTuple_SET_ITEM(f, 1, key);
    PyTuple_SET_ITEM(f, 2, shown);
    PyTuple_SET_ITEM(f, 3, Py_NewRef(sc->location));
    PyTuple_SET_ITEM(f, 4, lineno);
    PyTuple_SET_ITEM(f, 5, Py_NewRef(p->levels[level]));
    PyTuple_SET_ITEM(f, 6, cstart);
    PyTuple_SET_ITEM(f, 7, cend);
    /* Only strings and an int inside: it can never be part of a cycle, so the garbage
     * collector need not visit it (CPython untracks such tuples itself, later). */
    PyObject_GC_UnTrack(f);
    int rc = PyList_Append(sc->found, f);
    Py_DECREF(f);
    if (rc < 0) return -1;
    if (det->personal && sc->recorded_line != v->line) { /* (line, start, end) of a record */
        const unsigned char *nl = memchr(sc->d + v->line_start, '\n', (size_t)(sc->n - v->line_start));
        Py_ssize_t end = nl ? nl - sc->d : sc->n;
        PyObject *rec = Py_BuildValue("(nnnn)", line, v->line_start, end,
                                      sc->first_char + v->line_start_char);
        if (rec == NULL) return -1;
        PyObject_GC_UnTrack(rec); /* four ints */
        rc = PyList_Append(sc->records, rec);
        Py_DECREF(rec);
        if (rc < 0) return -1;
        sc->recorded_line = v->line;
    }
    return 0;
}

static int flush_token(Scan *sc, Valids *v) {
    if (outermost(v) < 0) return -1;
    for (Py_ssize_t i = 0; i < v->n; i++)
        if (!v->items[i].dropped && emit(sc, &v->items[i]) < 0) return -1;
    v->n = 0;
    return 0;
}

/* The run of ASCII letters and digits d[at..end) (character ``c_at`` onwards) against every
 * token detector. */
static int check_span(Scan *sc, Py_ssize_t at, Py_ssize_t end, Py_ssize_t c_at) {
    const NumPlan *p = sc->p;
    Py_ssize_t len = end - at;
    if (len > MAX_LENGTH || !p->token_lengths[len]) return 0;
    for (int32_t x = p->n_numeric; x < p->n_numeric + p->n_tokens; x++) {
        const Det *det = &p->dets[x];
        const Positions *gate = &sc->gates[x];
        Valid v;
        if (!det->lengths[len]) continue;
        /* emit() would drop it: no keyword of its within the window (most 18-digit runs are
         * no credit code); cheaper to ask before the DFA and the checksum */
        if (gate->present && !near(gate, at, p->window)) continue;
        if (!dfa_match(&det->pattern, sc->d + at, len)) continue;
        v.len = (int32_t)validate(p, det, sc->d + at, len, v.value, 0);
        if (v.len <= 0) continue;
        v.start = at; v.end = end; v.det = x; v.dropped = 0; v.low = 0;
        v.cstart = c_at; v.cend = c_at + len;
        v.line = sc->line; v.line_start = sc->line_start; v.line_start_char = sc->line_start_char;
        if (emit(sc, &v) < 0) return -1;
    }
    return 0;
}

/* The same for the run starting at ``at`` (looked at up to 65 characters: longer never match). */
static int check_run(Scan *sc, Py_ssize_t at, Py_ssize_t c_at) {
    Py_ssize_t j = at;
    while (j < sc->n && is_alnum(sc->d[j]) && j - at <= MAX_LENGTH) j++;
    return check_span(sc, at, j, c_at);
}

static long today_local(void) {
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm) == NULL) return 0; /* no date: no birth date is valid */
    return (long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
}

/* Whether the UTF-8 sequence at d[i] is a code point in the fold bitmap; *step its length. */
static int folds_at(const NumPlan *p, const unsigned char *d, Py_ssize_t n, Py_ssize_t i,
                    Py_ssize_t *step) {
    unsigned char c = d[i];
    Py_ssize_t need;
    unsigned long cp;
    if (c >= 0xF0) { need = 3; cp = c & 0x07; }
    else if (c >= 0xE0) { need = 2; cp = c & 0x0F; }
    else if (c >= 0xC0) { need = 1; cp = c & 0x1F; }
    else { *step = 1; return 0; }
    if (i + need >= n) { *step = n - i; return 0; }
    *step = need + 1;
    if (!p->lead_folds[c]) return 0; /* e.g. every Chinese character: nothing to decode */
    for (Py_ssize_t k = 1; k <= need; k++) cp = (cp << 6) | (d[i + k] & 0x3F);
    return (Py_ssize_t)cp < p->fold_bits && (p->fold[cp / 8] & (1u << (cp % 8)));
}

/* ``near``: for each detector, its context words' positions then its keywords' positions
 * (sorted lists of byte offsets; None: none occurred, or for keywords: not keyword-gated). */
static int read_positions(PyObject *near, Py_ssize_t dets, Positions *context, Positions *gates) {
    if (!PyList_Check(near) || PyList_GET_SIZE(near) != 2 * dets) {
        PyErr_SetString(PyExc_TypeError, "near: a list of two entries per detector");
        return -1;
    }
    for (Py_ssize_t k = 0; k < 2 * dets; k++) {
        PyObject *item = PyList_GET_ITEM(near, k);
        Positions *ps = k % 2 ? &gates[k / 2] : &context[k / 2];
        if (item == Py_None) continue;
        if (!PyList_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "near: None or a list of positions");
            return -1;
        }
        ps->present = 1;
        ps->n = PyList_GET_SIZE(item);
        ps->at = malloc((size_t)ps->n * sizeof(Py_ssize_t) + 1);
        if (ps->at == NULL) { PyErr_NoMemory(); return -1; }
        for (Py_ssize_t i = 0; i < ps->n; i++) {
            ps->at[i] = PyLong_AsSsize_t(PyList_GET_ITEM(item, i));
            if (ps->at[i] == -1 && PyErr_Occurred()) return -1;
            if (i && ps->at[i] < ps->at[i - 1]) {
                PyErr_SetString(PyExc_ValueError, "near: positions must be sorted");
                return -1;
            }
        }
    }
    return 0;
}

/* One digit group of a number token. */
typedef struct {
    Py_ssize_t start, end, cstart; /* bytes (its digits, or its X), its start in characters */
    int32_t run;                   /* which run of single-separator joins it belongs to */
    int32_t loose;                 /* the separator before it is loose */
    Py_ssize_t line, line_start, line_start_char; /* its line (as Scan's), where that starts */
} Group;

/* A loose separator at d[j]: 1 to 3 characters of space, tab, - . / , ; _ | \r \n, 、, ，
 * or ；, at most one of them a line break, the whole run of such characters (a longer run
 * joins nothing). Its length in bytes (0: none), in characters, and where its line break
 * is (-1: none). */
static Py_ssize_t loose_run(const unsigned char *d, Py_ssize_t n, Py_ssize_t j, Py_ssize_t *chars,
                            Py_ssize_t *nl) {
    Py_ssize_t k = j, c = 0;
    *nl = -1;
    *chars = 0;
    while (k < n && c < 4) {
        const unsigned char b = d[k];
        Py_ssize_t w;
        if (KIND[b] & K_LOOSE) w = 1;
        else if (b == 0xE3 && k + 2 < n && d[k + 1] == 0x80 && d[k + 2] == 0x81) w = 3; /* 、 */
        else if (b == 0xEF && k + 2 < n && d[k + 1] == 0xBC && (d[k + 2] == 0x8C || d[k + 2] == 0x9B))
            w = 3; /* ， ； */
        else break;
        if (b == '\n') {
            if (*nl >= 0) return 0;
            *nl = k;
        }
        k += w;
        c++;
    }
    if (c == 0 || c > 3) return 0;
    *chars = c;
    return k - j;
}

/* Characters in d[from..to). */
static Py_ssize_t chars_before(const unsigned char *d, Py_ssize_t from, Py_ssize_t to) {
    Py_ssize_t c = 0;
    for (Py_ssize_t k = from; k < to; k++) c += (d[k] & 0xC0) != 0x80;
    return c;
}

/* Whether the lengths of the ``count`` groups at ``g`` are one of the detector's shapes. */
static int shape_listed(const Det *det, const Group *g, Py_ssize_t count) {
    for (int32_t s = 0; s < det->nshapes; s++) {
        const unsigned char *shape = det->shapes[s];
        if (shape[0] != count) continue;
        Py_ssize_t k = 0;
        while (k < count && shape[k + 1] == g[k].end - g[k].start) k++;
        if (k == count) return 1;
    }
    return 0;
}

/* The GB 11643 check character of the 17 digits at d. */
static unsigned char id_check(const unsigned char *d) {
    static const int weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int k = 0; k < 17; k++) sum += (d[k] - '0') * weights[k];
    return (unsigned char)"10X98765432"[sum % 11];
}

/* Reversible edits of a resident ID in one digit group G (its digits, maybe an X at its end,
 * with no ASCII letter or digit after it), whose recipient simply undoes them: one letter or
 * digit glued in front (19 characters), the check character dropped (17 digits), the old
 * 15-digit form, the characters reversed (18, or 17 after an X). Each valid one is pushed as
 * a low-confidence ID of the plan's edit detector: the scanner raises it when records are
 * clearly present. */
static int edits(const Scan *sc, Valids *vs, const Group *G, long today) {
    const NumPlan *p = sc->p;
    const unsigned char *d = sc->d;
    const Py_ssize_t start = G->start, end = G->end, len = end - start;
    if (len < 15 || len > 19 || len == 16 || (end < sc->n && is_alnum(d[end]))) return 0;
    const Det *det = &p->dets[p->edit_det];
    const unsigned char *s = d + start;
    const int xend = is_x(s[len - 1]);
    const int free_before = start == 0 || !is_alnum(d[start - 1]);
    unsigned char cand[18], value[MAX_LENGTH];
    Py_ssize_t from = G->start, cfrom = G->cstart;
    if (len == 19 && free_before) { /* prefixed */
        memcpy(cand, s + 1, 18);
        from++; cfrom++;
    } else if (len == 17 && !xend && free_before) { /* no check character */
        memcpy(cand, s, 17);
        cand[17] = id_check(cand);
    } else if (len == 17 && !xend && start >= 1 && is_x(d[start - 1]) &&
               (start == 1 || !is_alnum(d[start - 2]))) { /* reversed, its X first */
        for (int k = 0; k < 17; k++) cand[k] = s[16 - k];
        cand[17] = 'X';
        from--; cfrom--;
    } else if (len == 18 && !xend && free_before) { /* reversed, unless ID-shaped as it is */
        if (all_digits(s, 14) && province_ok(p, s) && id_date_ok(s, today)) return 0;
        for (int k = 0; k < 18; k++) cand[k] = s[17 - k];
    } else if (len == 15 && !xend && free_before) { /* the old 15-digit form */
        memcpy(cand, s, 6);
        cand[6] = '1'; cand[7] = '9';
        memcpy(cand + 8, s + 6, 9);
        cand[17] = id_check(cand);
    } else {
        return 0;
    }
    if (!all_digits(cand, 17) || !dfa_match(&det->pattern, cand, 18)) return 0;
    Py_ssize_t vlen = validate(p, det, cand, 18, value, today);
    if (vlen <= 0) return 0;
    Valid v = {from, G->end, cfrom, G->cstart + len, p->edit_det, (int32_t)vlen, {0}, 0, 1,
               G->line, G->line_start, G->line_start_char};
    memcpy(v.value, value, (size_t)vlen);
    return valids_push(vs, &v);
}

/* Bits set in a 16-bit mask (no libgcc call: the build does not assume POPCNT). */
static inline int pop16(unsigned x) {
    x = x - ((x >> 1) & 0x5555u);
    x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
    x = (x + (x >> 4)) & 0x0F0Fu;
    return (int)((x + (x >> 8)) & 0x1Fu);
}

/* Past spaces, punctuation and Chinese characters (``skip``: each byte's character length,
 * 0 for one to look at); ``*ci`` counts the characters. With SSE2, sixteen bytes at a time
 * while they are all plain: ASCII other than digits, letters and line feeds, and the bytes of
 * CJK ideographs (leads E4..E9, when no code point there needs folding: ``cjk_plain``); the
 * characters are the bytes that do not continue one (the text is UTF-8: Python encoded it). */
static Py_ssize_t skip_plain(const NumPlan *p, const unsigned char *d, Py_ssize_t i, Py_ssize_t n,
                             Py_ssize_t *ci) {
    Py_ssize_t c = *ci;
#ifdef __SSE2__
    if (p->cjk_plain && i + 16 <= n && p->skip[d[i]]) {
        const __m128i zero = _mm_setzero_si128(), cont_end = _mm_set1_epi8((char)0xC0);
        const __m128i before_0 = _mm_set1_epi8('0' - 1), after_9 = _mm_set1_epi8('9' + 1);
        const __m128i before_a = _mm_set1_epi8('a' - 1), after_z = _mm_set1_epi8('z' + 1);
        const __m128i case_bit = _mm_set1_epi8(0x20), line_feed = _mm_set1_epi8('\n');
        const __m128i before_e4 = _mm_set1_epi8((char)0xE3), after_e9 = _mm_set1_epi8((char)0xEA);
        while (i + 16 <= n) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(d + i));
            const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, before_0), _mm_cmplt_epi8(v, after_9));
            const __m128i lower = _mm_or_si128(v, case_bit);
            const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(lower, before_a),
                                                 _mm_cmplt_epi8(lower, after_z));
            const __m128i high = _mm_cmplt_epi8(v, zero); /* signed: 0x80..0xFF */
            const __m128i cont = _mm_cmplt_epi8(v, cont_end); /* 0x80..0xBF (and none of ASCII) */
            const __m128i cjk = _mm_and_si128(_mm_cmpgt_epi8(v, before_e4), _mm_cmplt_epi8(v, after_e9));
            const __m128i odd_high = _mm_andnot_si128(_mm_or_si128(_mm_and_si128(cont, high), cjk), high);
            const __m128i look = _mm_or_si128(_mm_or_si128(digit, letter),
                                              _mm_or_si128(_mm_cmpeq_epi8(v, line_feed), odd_high));
            const unsigned look_mask = (unsigned)_mm_movemask_epi8(look);
            const unsigned cont_mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(cont, high));
            if (look_mask == 0) {
                c += 16 - pop16(cont_mask);
                i += 16;
                continue;
            }
            const unsigned first = (unsigned)__builtin_ctz(look_mask);
            const unsigned before = (1u << first) - 1;
            c += (Py_ssize_t)first - pop16(cont_mask & before);
            i += first;
            if (d[i] >= 0xC0) { /* a lead the vector cannot vouch for: ，。 or one to fold? */
                Py_ssize_t step;
                if (folds_at(p, d, n, i, &step)) break;
                i += step;
                c++;
                continue;
            }
            *ci = c;
            return i; /* d[i] starts a character to look at */
        }
        while (i < n && (d[i] & 0xC0) == 0x80) i++; /* the rest of a character counted above */
    }
#endif
    unsigned char step;
    while (i < n && (step = p->skip[d[i]]) != 0) {
        i += step;
        c++;
    }
    *ci = c;
    return i;
}

static PyObject *findings(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    PyObject *capsule, *location, *near_words;
    Py_ssize_t first_line, first_char;
    if (!PyArg_ParseTuple(args, "y*OUnOn", &data, &capsule, &location, &first_line, &near_words,
                          &first_char))
        return NULL;
    NumPlan *p = PyCapsule_GetPointer(capsule, "dlp_numscan.plan");
    PyObject *result = NULL;
    Valids valids = {NULL, 0, 0};
    /* Offsets added to every line and character reported: bounded so sums cannot overflow. */
    const Py_ssize_t limit = PY_SSIZE_T_MAX / 4;
    if (p != NULL && (first_line < 0 || first_line > limit || first_char < 0 || first_char > limit ||
                      data.len > limit)) {
        PyErr_SetString(PyExc_ValueError, "first_line, first_char: 0 to PY_SSIZE_T_MAX / 4");
        p = NULL;
    }
    Group *grp = NULL; /* the groups of a number token */
    Py_ssize_t group_cap = 0;
    Scan sc = {p,    data.buf, data.len, location, NULL, NULL, NULL, first_line, 0, 0, 0,
               first_char, -1, NULL, NULL};
    Py_ssize_t dets = 0;
    if (p == NULL) goto out;
    dets = p->n_numeric + p->n_tokens;
    sc.context = calloc((size_t)dets + 1, sizeof(Positions));
    sc.gates = calloc((size_t)dets + 1, sizeof(Positions));
    if (sc.context == NULL || sc.gates == NULL) { PyErr_NoMemory(); goto out; }
    if (read_positions(near_words, dets, sc.context, sc.gates) < 0) goto out;
    sc.found = PyList_New(0);
    sc.records = PyList_New(0);
    sc.pending = PyList_New(0);
    if (sc.found == NULL || sc.records == NULL || sc.pending == NULL) goto out;
    const unsigned char *d = sc.d;
    const Py_ssize_t n = sc.n;
    const long today = today_local();
    const int tokens = p->n_tokens > 0;
    unsigned char buf[MAX_LENGTH], value[MAX_LENGTH];
    Py_ssize_t i = 0, ci = 0; /* a byte, and how many characters come before it */
    while (i < n) {
        /* Spaces, punctuation, Chinese characters: nothing to look at, a character at a time. */
        i = skip_plain(p, d, i, n, &ci);
        if (i >= n) break;
        unsigned char c = d[i];
        const unsigned char kind = KIND[c];
        if (kind & (K_HIGH | K_NEWLINE)) {
            if (kind & K_HIGH) {
                Py_ssize_t step;
                if (folds_at(p, d, n, i, &step)) { result = Py_NewRef(Py_None); goto out; }
                i += step;
                ci++;
                continue;
            }
            if (kind & K_NEWLINE) { sc.line++; sc.line_start = i + 1; sc.line_start_char = ci + 1; }
            i++;
            ci++;
            continue;
        }
        const int run_start = i == 0 || !is_alnum(d[i - 1]);
        if (!is_digit(c)) {
            if (run_start) { /* a run of letters and digits: checked whole, skipped if no digit */
                Py_ssize_t j = i;
                int digits = 0;
                while (j < n && is_alnum(d[j])) digits |= is_digit(d[j++]);
                if (tokens && check_span(&sc, i, j, ci) < 0) goto out;
                if (!digits) { ci += j - i; i = j; continue; }
            }
            i++;
            ci++;
            continue;
        }
        /* A number token: digit groups joined by separators (single ones, or loose runs when
         * some detector takes them), maybe ending in X, directly or after a separator. Each
         * group after a separator (and the first, at a run's start) also starts a run of
         * letters and digits for the token detectors. A loose separator may hold a line break:
         * the line is then followed into the token (each group knows its own). */
        Py_ssize_t start = i, j = i, cj = ci, ndigits = 0, groups = 0;
        int32_t run = 0, joint_loose = 0;
        for (;;) {
            if (groups == group_cap) {
                Py_ssize_t cap = group_cap ? group_cap * 2 : 64;
                Group *grown = realloc(grp, (size_t)cap * sizeof(Group));
                if (grown == NULL) { PyErr_NoMemory(); goto out; }
                grp = grown; group_cap = cap;
            }
            Group *G = &grp[groups++];
            G->start = j; G->cstart = cj; G->run = run; G->loose = joint_loose;
            G->line = sc.line; G->line_start = sc.line_start; G->line_start_char = sc.line_start_char;
            while (j < n && is_digit(d[j])) { j++; cj++; ndigits++; }
            G->end = j;
            if (tokens && (groups > 1 || run_start)) {
                int rc = j < n && is_alnum(d[j]) ? check_run(&sc, G->start, G->cstart) /* letters on */
                                                 : check_span(&sc, G->start, j, G->cstart);
                if (rc < 0) goto out;
            }
            if (j + 1 < n && is_sep(d[j]) && is_digit(d[j + 1])) {
                j++; cj++; joint_loose = 0;
                continue;
            }
            Py_ssize_t chars, nl, len = p->loose ? loose_run(d, n, j, &chars, &nl) : 0;
            if (len && j + len < n && is_digit(d[j + len])) {
                if (nl >= 0) {
                    sc.line++;
                    sc.line_start = nl + 1;
                    sc.line_start_char = cj + chars_before(d, j, nl) + 1;
                }
                j += len; cj += chars; joint_loose = 1; run++;
                continue;
            }
            break;
        }
        Py_ssize_t end = j;
        int sep_x = 0;
        if (j < n && is_x(d[j])) { /* X right after the digits: part of the last group */
            end = grp[groups - 1].end = j + 1;
            cj++;
        } else if (ndigits >= 17) { /* X after one separator ending an ID's digits: a group of
                                      * its own, that no candidate may leave behind */
            Py_ssize_t chars = 1, nl = -1;
            Py_ssize_t len = j < n && is_sep(d[j]) ? 1 : 0;
            int loose_x = 0;
            if (!(len && j + 1 < n && is_x(d[j + 1]))) {
                len = p->loose ? loose_run(d, n, j, &chars, &nl) : 0;
                loose_x = 1;
            }
            if (len && j + len < n && is_x(d[j + len]) &&
                (j + len + 1 >= n || !is_alnum(d[j + len + 1]))) {
                if (groups == group_cap) {
                    Py_ssize_t cap = group_cap * 2;
                    Group *grown = realloc(grp, (size_t)cap * sizeof(Group));
                    if (grown == NULL) { PyErr_NoMemory(); goto out; }
                    grp = grown; group_cap = cap;
                }
                if (nl >= 0) {
                    sc.line++;
                    sc.line_start = nl + 1;
                    sc.line_start_char = cj + chars_before(d, j, nl) + 1;
                }
                Group *G = &grp[groups++];
                G->start = j + len; G->end = end = j + len + 1; G->cstart = cj + chars;
                G->run = run + loose_x; G->loose = loose_x;
                G->line = sc.line; G->line_start = sc.line_start;
                G->line_start_char = sc.line_start_char;
                cj += chars + 1;
                sep_x = 1;
            }
        }
        const int32_t last_run = grp[groups - 1].run;
        /* With a separated X, the digit group before it is never a candidate's last. */
        const Py_ssize_t x_before = sep_x ? groups - 2 : -1;
        i = end;
        ci = cj;
        if (ndigits < MIN_DIGITS) continue;
        int glued_before = start > 0 && is_letter(d[start - 1]);
        int glued_after = end < n && is_letter(d[end]);
        /* Candidates start where a group starts and end where a group ends. One joined across
         * a loose separator is a candidate only for a detector with groupings. */
        for (Py_ssize_t gi = 0; gi < groups; gi++) {
            Py_ssize_t total = 0;
            int loose = 0;
            const Group *first = &grp[gi];
            for (Py_ssize_t ki = gi; ki < groups; ki++) {
                const Group *G = &grp[ki];
                Py_ssize_t len = G->end - G->start;
                if (total + len > p->longest) break;
                memcpy(buf + total, d + G->start, (size_t)len);
                total += len;
                if (ki > gi) loose |= G->loose;
                if (ki == x_before || !p->lengths[total] ||
                    !passes(p->entries, p->entry_from[total], p->entry_to[total], buf, total))
                    continue;
                const int glued = (first->run == 0 && glued_before) || (G->run == last_run && glued_after);
                for (int32_t x = 0; x < p->n_numeric; x++) {
                    const Det *det = &p->dets[x];
                    if (!det->lengths[total] || (loose && det->gmode == G_STRICT)) continue;
                    if (det->validator == V_PYTHON) {
                        unsigned char shape[MAX_LENGTH];
                        for (Py_ssize_t k = gi; k <= ki && k - gi < MAX_LENGTH; k++)
                            shape[k - gi] = (unsigned char)(grp[k].end - grp[k].start);
                        PyObject *item = Py_BuildValue(
                            "(nnny#Oiy#O)", start, first->start, G->end, (const char *)buf, total,
                            glued ? Py_True : Py_False, (int)x, (const char *)shape,
                            (Py_ssize_t)(ki - gi + 1 < MAX_LENGTH ? ki - gi + 1 : MAX_LENGTH),
                            loose ? Py_True : Py_False);
                        if (item == NULL) goto out;
                        int rc = PyList_Append(sc.pending, item);
                        Py_DECREF(item);
                        if (rc < 0) goto out;
                        continue;
                    }
                    int low = glued ? LOW_GLUED : 0;
                    if (det->gmode == G_SHAPES && ki > gi && !shape_listed(det, grp + gi, ki - gi + 1)) {
                        if (loose) continue;
                        low = LOW_SHAPE;
                    }
                    if (!dfa_match(&det->pattern, buf, total)) continue;
                    Py_ssize_t vlen = validate(p, det, buf, total, value, today);
                    if (vlen <= 0) continue;
                    Valid v = {first->start, G->end, first->cstart, G->cstart + len,
                               x, (int32_t)vlen, {0}, 0, low,
                               first->line, first->line_start, first->line_start_char};
                    memcpy(v.value, value, (size_t)vlen);
                    if (valids_push(&valids, &v) < 0) goto out;
                }
            }
        }
        if (p->edit_det >= 0)
            for (Py_ssize_t k = 0; k < groups; k++)
                if (edits(&sc, &valids, &grp[k], today) < 0) goto out;
        if (valids.n && flush_token(&sc, &valids) < 0) goto out;
    }
    result = PyTuple_Pack(3, sc.found, sc.records, sc.pending);
out:
    free(valids.items);
    free(grp);
    if (sc.context != NULL)
        for (Py_ssize_t k = 0; k < dets; k++) free(sc.context[k].at);
    if (sc.gates != NULL)
        for (Py_ssize_t k = 0; k < dets; k++) free(sc.gates[k].at);
    free(sc.context);
    free(sc.gates);
    Py_XDECREF(sc.found);
    Py_XDECREF(sc.records);
    Py_XDECREF(sc.pending);
    PyBuffer_Release(&data);
    return result;
}

/* Each of the ascending byte offsets ``positions`` of UTF-8 ``data`` as a character offset:
 * the bytes before it that do not continue a character. */
static PyObject *char_offsets(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data;
    PyObject *positions, *out = NULL;
    if (!PyArg_ParseTuple(args, "y*O!", &data, &PyList_Type, &positions)) return NULL;
    const unsigned char *d = data.buf;
    Py_ssize_t at = 0, chars = 0, count = PyList_GET_SIZE(positions);
    out = PyList_New(count);
    if (out == NULL) goto done;
    for (Py_ssize_t k = 0; k < count; k++) {
        Py_ssize_t pos = PyLong_AsSsize_t(PyList_GET_ITEM(positions, k));
        if (pos == -1 && PyErr_Occurred()) { Py_CLEAR(out); goto done; }
        if (pos < at || pos > data.len) {
            PyErr_SetString(PyExc_ValueError, "positions: ascending offsets into the data");
            Py_CLEAR(out);
            goto done;
        }
        for (; at < pos; at++) chars += (d[at] & 0xC0) != 0x80;
        PyObject *n = PyLong_FromSsize_t(chars);
        if (n == NULL) { Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(out, k, n);
    }
done:
    PyBuffer_Release(&data);
    return out;
}

/* digit_hint(data, numerals, separators, prefixes) -> bool: whether one of
 * normalize.DIGIT_HINTS occurs in the UTF-8 ``data`` (valid, as the scanner encodes it; the
 * answer on malformed bytes is only safe): an ASCII digit next to O, o, l or I; or a
 * chain of four digits or numerals, 0 to 3 separators between neighbours, whose first or last
 * is a numeral. The bitmaps (bit cp) name the numerals (none of them ASCII) and the
 * separators, ``prefixes`` (bit b0 << 8 | b1) the first two bytes of each numeral. Numerals are
 * rare: the text is skipped sixteen bytes at a time up to a letter O/o/l/I or a non-ASCII
 * character, and only a numeral's neighbours are looked at. (As hyperscan patterns the hints
 * cost ~3 ms a MB of digit-heavy text: every digit may start a chain.) */
typedef struct {
    const unsigned char *d;
    Py_ssize_t n;
    const Py_buffer *numerals, *separators, *prefixes;
} Hint;

static int has_bit(const Py_buffer *bits, unsigned long cp) {
    const unsigned char *b = bits->buf;
    return cp / 8 < (unsigned long)bits->len && ((b[cp / 8] >> (cp % 8)) & 1);
}

static inline int is_olI(unsigned char c) { return c == 'O' || c == 'o' || c == 'l' || c == 'I'; }

/* The code point starting at d[i] and its length; ~0 for anything malformed (length 1). */
static unsigned long code_point(const Hint *h, Py_ssize_t i, Py_ssize_t *len) {
    const unsigned char c = h->d[i];
    *len = 1;
    if (c < 0x80) return c;
    Py_ssize_t need = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 && c < 0xF0 ? 2
                      : c >= 0xC2 && c < 0xE0 ? 1 : 0;
    if (need == 0 || i + need >= h->n) return ~0ul;
    unsigned long cp = need == 3 ? c & 0x07u : need == 2 ? c & 0x0Fu : c & 0x1Fu;
    for (Py_ssize_t k = 1; k <= need; k++) {
        if ((h->d[i + k] & 0xC0) != 0x80) return ~0ul;
        cp = (cp << 6) | (h->d[i + k] & 0x3Fu);
    }
    *len = need + 1;
    return cp;
}

static int digitish(const Hint *h, unsigned long cp) {
    return (cp >= '0' && cp <= '9') || has_bit(h->numerals, cp);
}

/* Three more digits or numerals after d[i] (forward) or before it (backward), 0 to 3
 * separators before each. */
static int chain_of_three(const Hint *h, Py_ssize_t i, int forward) {
    int found = 0, gap = 0;
    while (found < 3) {
        Py_ssize_t len, at = i;
        unsigned long cp;
        if (forward) {
            if (i >= h->n) return 0;
            cp = code_point(h, i, &len);
            i += len;
        } else {
            if (i <= 0) return 0;
            at = i - 1; /* the character ending just before i */
            while (at > 0 && i - at < 4 && (h->d[at] & 0xC0) == 0x80) at--;
            cp = code_point(h, at, &len);
            if (at + len != i) { at = i - 1; cp = ~0ul; } /* not a whole character: other */
            i = at;
        }
        if (digitish(h, cp)) { found++; gap = 0; }
        else if (has_bit(h->separators, cp) && ++gap <= 3) continue;
        else return 0;
    }
    return 1;
}

/* The character at d[*i] (an O/o/l/I, or a non-ASCII byte): whether it makes the hint; *i moves
 * past it. A non-ASCII character whose first two bytes begin no numeral is stepped over with
 * its continuation bytes (never ASCII: nothing else is skipped). */
static int hint_at(const Hint *h, Py_ssize_t *i) {
    const unsigned char *d = h->d;
    const Py_ssize_t n = h->n, at = *i;
    const unsigned char c = d[at];
    if (c < 0x80) {
        *i = at + 1;
        return is_olI(c) && ((at > 0 && is_digit(d[at - 1])) || (at + 1 < n && is_digit(d[at + 1])));
    }
    if (at + 1 >= n || !has_bit(h->prefixes, ((unsigned long)c << 8) | d[at + 1])) {
        Py_ssize_t j = at + 1;
        while (j < n && j - at < 4 && (d[j] & 0xC0) == 0x80) j++;
        *i = j;
        return 0;
    }
    Py_ssize_t len;
    unsigned long cp = code_point(h, at, &len);
    *i = at + len;
    return has_bit(h->numerals, cp) && (chain_of_three(h, at + len, 1) || chain_of_three(h, at, 0));
}

static PyObject *digit_hint(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, numerals, separators, prefixes;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &data, &numerals, &separators, &prefixes)) return NULL;
    const Hint h = {data.buf, data.len, &numerals, &separators, &prefixes};
    const unsigned char *d = h.d;
    const Py_ssize_t n = h.n;
    int hint = 0;
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    /* Sixteen bytes at a time: only the first byte of a non-ASCII character and the letters O, o,
     * l, I are looked at (a continuation byte is never a numeral's first). */
    while (!hint && i + 16 <= n) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(d + i));
        const __m128i o = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('O')),
                                       _mm_cmpeq_epi8(v, _mm_set1_epi8('o')));
        const __m128i l = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('l')),
                                       _mm_cmpeq_epi8(v, _mm_set1_epi8('I')));
        const __m128i tail = _mm_cmpeq_epi8(_mm_and_si128(v, _mm_set1_epi8((char)0xC0)),
                                            _mm_set1_epi8((char)0x80)); /* continuation bytes */
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(v, _mm_or_si128(o, l))) &
                        ~(unsigned)_mm_movemask_epi8(tail);
        const Py_ssize_t base = i;
        while (mask && !hint) {
            const Py_ssize_t at = base + __builtin_ctz(mask);
            mask &= mask - 1;
            if (at < i) continue; /* inside a character already looked at */
            i = at;
            hint = hint_at(&h, &i);
        }
        if (i < base + 16) i = base + 16;
    }
#endif
    while (!hint && i < n) {
        if (d[i] < 0x80 && !is_olI(d[i])) { i++; continue; }
        hint = hint_at(&h, &i);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&numerals);
    PyBuffer_Release(&separators);
    PyBuffer_Release(&prefixes);
    return PyBool_FromLong(hint);
}

static PyMethodDef methods[] = {
    {"compile", compile_plan, METH_VARARGS, "A findings plan from its blob and the HMAC key."},
    {"findings", findings, METH_VARARGS, "Findings of numbers and tokens; None: fold first."},
    {"char_offsets", char_offsets, METH_VARARGS, "Byte offsets as character offsets."},
    {"digit_hint", digit_hint, METH_VARARGS, "Whether numerals or letters may stand for digits."},
    {"sha256_hex", sha256_hex, METH_VARARGS, "SHA-256 of bytes, hex (tests the hash twin)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_numscan", "Numbers in UTF-8 text at C speed.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__numscan(void) {
    init_kinds();
    return PyModule_Create(&module);
}
