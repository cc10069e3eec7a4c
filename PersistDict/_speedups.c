/* Compiled twins of two record parsers in _records.py: unpack_value and record_expires
 * (and crc32, the checksum they verify with, which _records also uses to checksum writes).
 *
 * Inputs are bytes or byte buffers (what py-lmdb returns: bytes, or a memoryview of LMDB's
 * memory); lengths count bytes.
 *
 * They are the read path's share of Python work that is not a py-lmdb call (checksum,
 * header, payload slice: ~0.4 us of a ~3 us cold read in Python, ~0.15 us here). Same
 * contracts, same errors, same results as the Python versions, which stay the reference
 * (tests/test_speedups.py compares both) and the fallback when this is not built.
 *
 * Record layout (see _records.py), little-endian:
 *   version u8 | kind u8 | pad u16 | seq u64 | ctime f64 | mtime f64 | expires f64
 *   | lookup_len u32 | exact_len u32 | lookup | exact | payload | crc32 u32
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if PY_BIG_ENDIAN
#error "the record layout is little-endian; this file reads it natively"
#endif

#define RECORD_VERSION 1
#define HEADER_SIZE 44
#define OFFSET_KIND 1
#define OFFSET_SEQ 4
#define OFFSET_EXPIRES 28
#define OFFSET_LOOKUP_LEN 36
#define OFFSET_EXACT_LEN 40
#define LARGE 4096 /* _records._LARGE: above it the payload is a memoryview, not a copy */
#define CRC_RESIDUE 0x2144DF1Cu /* CRC-32 of a message followed by its own CRC */
#define FOLD_CRC_MIN 64 /* from here on, the carry-less-multiply CRC below where the CPU has it */
#define TABLE_CRC_MAX 512 /* longer, without it: zlib.crc32, faster per byte than the table below */
#define WRONG_KEY "record belongs to another key (a damaged database key)" /* _records.WRONG_KEY */

static PyObject *corrupted_error; /* PersistDict.exceptions.CorruptedRecordError */
static PyObject *zlib_crc32;      /* zlib.crc32: long records on CPUs without carry-less multiply */

/* CRC-32 (IEEE 802.3, zlib's crc32), eight bytes per step ("slicing by 8"). */
static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int bit = 0; bit < 8; bit++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

/* The CRC register ``c`` (no pre- or post-inversion) carried over the ``n`` bytes at ``p``. */
static uint32_t crc_update(uint32_t c, const unsigned char *p, Py_ssize_t n) {
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF]
            ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF]
            ^ crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
    }
    while (n-- > 0)
        c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_FOLD_CRC 1
static int cpu_has_clmul; /* set at import: the CPU has PCLMULQDQ */

/* CRC-32 by folding: a 2 KB record in ~0.3 us instead of zlib's ~0.7 us here (a 6 KB embedding,
 * ~1.6 us of an ~8 us read, in ~0.5 us). The data is a polynomial over GF(2) and only its remainder
 * mod the CRC polynomial P matters, so 16-byte blocks are folded into one: X * x^d is congruent to
 * lo(X) * (x^(d+32) mod P) + hi(X) * (x^(d-32) mod P) in the bit-reflected order carry-less
 * multiply works in, each product at most 96 bits wide. Four accumulators fold 64 bytes apart
 * (d = 512) to keep the multiplier busy, then merge 16 bytes apart (d = 128). The last 16-byte
 * remainder and the tail go through the table: the register after a block depends only on its
 * remainder. Constants: the 32-bit reflection of x^e mod P, shifted left by one (the product of two
 * reflected numbers lands one bit low); tests/test_speedups.py checks the result against
 * zlib.crc32. */
#define FOLD(x, k) _mm_xor_si128(_mm_clmulepi64_si128((x), (k), 0x00), _mm_clmulepi64_si128((x), (k), 0x11))

__attribute__((target("pclmul,sse2")))
static uint32_t crc_fold(const unsigned char *p, Py_ssize_t n) {
    const __m128i k512 = _mm_set_epi64x(0x1c6e41596LL, 0x154442bd4LL); /* hi: x^480, lo: x^544 */
    const __m128i k128 = _mm_set_epi64x(0x0ccaa009eLL, 0x1751997d0LL); /* hi: x^96,  lo: x^160 */
    __m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)0xFFFFFFFFu));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64) {
        x0 = _mm_xor_si128(FOLD(x0, k512), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(FOLD(x1, k512), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(FOLD(x2, k512), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(FOLD(x3, k512), _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    x0 = _mm_xor_si128(FOLD(x0, k128), x1);
    x0 = _mm_xor_si128(FOLD(x0, k128), x2);
    x0 = _mm_xor_si128(FOLD(x0, k128), x3);
    for (; n >= 16; p += 16, n -= 16)
        x0 = _mm_xor_si128(FOLD(x0, k128), _mm_loadu_si128((const __m128i *)p));
    unsigned char rest[16];
    _mm_storeu_si128((__m128i *)rest, x0);
    return crc_update(crc_update(0, rest, 16), p, n) ^ 0xFFFFFFFFu;
}
#endif

/* CRC-32 of the ``n`` bytes at ``p``, or of ``data`` through zlib (-1 on error). */
static int64_t crc32_of(PyObject *data, const unsigned char *p, Py_ssize_t n) {
#ifdef HAVE_FOLD_CRC
    if (n >= FOLD_CRC_MIN && cpu_has_clmul)
        return crc_fold(p, n);
#endif
    if (n <= TABLE_CRC_MAX) /* short: calling zlib.crc32 costs more than the sum itself */
        return crc_update(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
    PyObject *crc = PyObject_CallOneArg(zlib_crc32, data);
    if (crc == NULL)
        return -1;
    unsigned long value = PyLong_AsUnsignedLong(crc);
    Py_DECREF(crc);
    if (value == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    return (int64_t)value;
}

/* 1 if the record in ``view`` (the buffer of ``data``) carries its own valid CRC, 0 if not, -1 on error. */
static int checksum_ok(PyObject *data, const Py_buffer *view) {
    int64_t crc = crc32_of(data, view->buf, view->len);
    return crc < 0 ? -1 : crc == CRC_RESIDUE;
}

/* crc32(data) -> int: zlib.crc32(data), computed as unpack_value does (tests compare the two). */
static PyObject *crc32(PyObject *module, PyObject *data) {
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int64_t crc = crc32_of(data, view.buf, view.len);
    PyBuffer_Release(&view);
    return crc < 0 ? NULL : PyLong_FromUnsignedLong((unsigned long)crc);
}

/* The two arguments (data, lookup) of a parser, or -1 with TypeError set. */
static int parser_args(PyObject *const *args, Py_ssize_t nargs, const char *name) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (data, lookup), %zd given", name, nargs);
        return -1;
    }
    if (!PyBytes_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "%s(): lookup must be bytes", name);
        return -1;
    }
    return 0;
}

/* 1 if the record of ``n`` bytes at ``p`` holds ``lookup`` as its own lookup key, else 0 (as
 * _records._holds_key): the bytes compared, nothing decoded. */
static int holds_key(const unsigned char *p, Py_ssize_t n, PyObject *lookup) {
    uint32_t lookup_len;
    memcpy(&lookup_len, p + OFFSET_LOOKUP_LEN, 4);
    Py_ssize_t len = PyBytes_GET_SIZE(lookup);
    return (Py_ssize_t)lookup_len == len && HEADER_SIZE + len <= n
        && memcmp(p + HEADER_SIZE, PyBytes_AS_STRING(lookup), (size_t)len) == 0;
}

/* unpack_value(data, lookup) -> (seq, expires, kind, payload). ``payload`` is a slice of ``data``
 * (a bytes copy for bytes) up to LARGE bytes, and a slice of memoryview(data) above. A record
 * whose own lookup key is not ``lookup`` (a damaged database key led here) is refused. */
static PyObject *unpack_value(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (parser_args(args, nargs, "unpack_value") < 0)
        return NULL;
    PyObject *data = args[0];
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t n = view.len;
    PyObject *payload = NULL;
    int valid = n < HEADER_SIZE + 4 ? 0 : checksum_ok(data, &view);
    if (valid < 0)
        goto done;
    if (!valid) {
        PyErr_SetString(corrupted_error, "record checksum mismatch");
        goto done;
    }
    if (p[0] != RECORD_VERSION) {
        PyErr_Format(corrupted_error, "unknown record version %d", (int)p[0]);
        goto done;
    }
    if (!holds_key(p, n, args[1])) {
        PyErr_SetString(corrupted_error, WRONG_KEY);
        goto done;
    }
    uint64_t seq;
    double expires;
    uint32_t lookup_len, exact_len;
    memcpy(&seq, p + OFFSET_SEQ, 8);
    memcpy(&expires, p + OFFSET_EXPIRES, 8);
    memcpy(&lookup_len, p + OFFSET_LOOKUP_LEN, 4);
    memcpy(&exact_len, p + OFFSET_EXACT_LEN, 4);
    Py_ssize_t end = n - 4;
    /* as Python's data[start:-4]: lengths past the end give an empty payload */
    uint64_t start = (uint64_t)HEADER_SIZE + lookup_len + exact_len;
    Py_ssize_t from = start < (uint64_t)end ? (Py_ssize_t)start : end;
    if (PyBytes_CheckExact(data) && n <= LARGE) {
        payload = PyBytes_FromStringAndSize((const char *)p + from, end - from);
    } else { /* as Python: (memoryview(data) if large else data)[start:-4] */
        PyObject *sliceable = n > LARGE ? PyMemoryView_FromObject(data) : Py_NewRef(data);
        if (sliceable != NULL) {
            payload = PySequence_GetSlice(sliceable, from, end);
            Py_DECREF(sliceable);
        }
    }
    if (payload == NULL)
        goto done;
    PyObject *result = Py_BuildValue("(KdiN)", (unsigned long long)seq, expires, (int)p[OFFSET_KIND], payload);
    PyBuffer_Release(&view);
    return result;
done:
    PyBuffer_Release(&view);
    return NULL;
}

/* record_expires(data, lookup) -> expires, without verifying the checksum (for ``in``); a record
 * whose own lookup key is not ``lookup`` is refused. */
static PyObject *record_expires(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (parser_args(args, nargs, "record_expires") < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = NULL;
    if (view.len < HEADER_SIZE + 4) {
        PyErr_SetString(corrupted_error, "record shorter than its header");
    } else if (!holds_key(view.buf, view.len, args[1])) {
        PyErr_SetString(corrupted_error, WRONG_KEY);
    } else {
        double expires;
        memcpy(&expires, (const unsigned char *)view.buf + OFFSET_EXPIRES, 8);
        result = PyFloat_FromDouble(expires);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"unpack_value", (PyCFunction)(void (*)(void))unpack_value, METH_FASTCALL,
     "Verify a record and its key and return (seq, expires, kind, payload)."},
    {"record_expires", (PyCFunction)(void (*)(void))record_expires, METH_FASTCALL,
     "The expiry time of a record, its key verified, its checksum not."},
    {"crc32", crc32, METH_O, "zlib.crc32(data), computed as unpack_value checks records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "PersistDict._speedups", "Compiled twins of _records' read-path parsers.", -1, methods,
};

static PyObject *attribute_of(const char *module_name, const char *name) {
    PyObject *module = PyImport_ImportModule(module_name);
    if (module == NULL)
        return NULL;
    PyObject *attribute = PyObject_GetAttrString(module, name);
    Py_DECREF(module);
    return attribute;
}

PyMODINIT_FUNC PyInit__speedups(void) {
    if (corrupted_error == NULL)
        corrupted_error = attribute_of("PersistDict.exceptions", "CorruptedRecordError");
    if (zlib_crc32 == NULL)
        zlib_crc32 = attribute_of("zlib", "crc32");
    if (corrupted_error == NULL || zlib_crc32 == NULL)
        return NULL;
    crc_init();
    int folding = 0;
#ifdef HAVE_FOLD_CRC
    __builtin_cpu_init();
    /* PERSISTDICT_NO_CRC_FOLDING: the table and zlib paths, as on other CPUs (the tests use it) */
    const char *no_folding = getenv("PERSISTDICT_NO_CRC_FOLDING");
    folding = cpu_has_clmul = __builtin_cpu_supports("pclmul") && !(no_folding && *no_folding);
#endif
    PyObject *module = PyModule_Create(&module_def);
    if (module != NULL && PyModule_AddObjectRef(module, "CRC_FOLDING", folding ? Py_True : Py_False) < 0)
        Py_CLEAR(module);
    return module;
}
