/*
 * rxstream._jsonfast: the incremental JSON document behind parse_json(), in C.
 *
 * A Parser is fed the text fragments of one JSON target and answers each with the reports of
 * rxstream.operators._json_stream (one per top-level value the fragment touched: one change
 * equivalent to everything the fragment changed, the paths that became final, the value once it
 * is complete), building the value as it goes. It reads the fragment's characters once, keeps a
 * string or number still open across fragments (reporting what it has so far), and never
 * re-reads earlier text: linear in the text.
 *
 * It covers the JSON that streams in practice. Anything else (invalid JSON, a surrogate escape,
 * nesting past max_depth, an integer too long for int()) raises Fallback, after which the
 * Python side replays the whole text into the pure-Python parser, which reports the exact error
 * or value: feed() calls on_fallback(parser, text) and returns what it returns; on_fallback sets
 * parser.delegate, and every later feed() goes to delegate.feed(). The parser's own state after
 * Fallback is meaningless. finish() raises Fallback itself (the caller hands over).
 *
 * Values are what json.loads gives: int for integers (arbitrary size), float (correctly rounded)
 * for the rest, str, True/False/None, dict (a repeated key keeps its first place and its last
 * value) and list.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *Fallback;  /* the exception that hands the text over */
static PyObject *S_SET;     /* "set" */
static PyObject *S_APPEND;  /* "append" */
static PyObject *EMPTY_STR;

/* What the grammar expects next, outside a token. */
enum {
    E_VALUE,          /* a value (top level, after ':' or after ',' in an array) */
    E_VALUE_OR_END,   /* after '[' */
    E_KEY_OR_END,     /* after '{' */
    E_KEY,            /* after ',' in an object */
    E_COLON,          /* after a key */
    E_COMMA_OR_END,   /* after a value inside a container */
};

/* The token in progress. */
enum { T_NONE, T_KEY, T_STRING, T_NUMBER, T_LITERAL };

/* Number states (accepting: N_ZERO, N_INT, N_FRAC, N_EXP_DIGITS). */
enum { N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_EXP, N_EXP_SIGN, N_EXP_DIGITS };

typedef struct {
    PyObject *container; /* owned: a dict or a list */
    PyObject *path;      /* owned: a list */
    int is_dict;
} Frame;

typedef struct {
    PyObject_HEAD
    PyObject *report_type; /* a tuple subclass with 7 fields */
    Py_ssize_t max_depth;
    Frame *stack;
    Py_ssize_t depth, stack_cap;
    int expect;
    int tok;
    /* strings: an escape cut by the end of a fragment (0: none, 1: after '\\', 2..5: in \u) */
    int esc;
    Py_UCS4 uacc;
    Py_UCS4 *sbuf; /* decoded text: a key's so far, or a value string's piece in this fragment */
    Py_ssize_t slen, scap;
    PyObject *key;    /* owned: the key awaiting its value, or NULL */
    PyObject *s_path; /* owned: the path of the value string still open, or NULL */
    PyObject *s_parts;/* owned: its pieces (a list), or NULL */
    /* the value last attached (where an open string or number lives) */
    PyObject *slot_parent; /* owned or NULL (top level) */
    PyObject *slot_key;    /* owned or NULL */
    /* numbers */
    char *nbuf;
    Py_ssize_t nlen, ncap, nvalid, nreported;
    int nstate;
    PyObject *n_path; /* owned: path once the number has a value, or NULL */
    PyObject *n_last; /* owned: its last reported value */
    /* literals */
    const char *lit;
    int litpos;
    /* the top-level value */
    PyObject *root;
    Py_ssize_t index, count;
    PyObject *last_path; /* owned: path of the latest change */
    int truncated;
    /* changes of the current fragment for the open top-level value */
    Py_ssize_t nchanges, common;
    PyObject *first_path, *c_path, *c_op, *c_value; /* owned or NULL */
    PyObject *completed; /* owned list or NULL */
    PyObject *reports;   /* owned list or NULL, during feed */
    /* the hand-over */
    PyObject *texts;       /* owned list: every fragment fed, for a replay */
    PyObject *on_fallback; /* owned: called as on_fallback(parser, text) on Fallback */
    PyObject *delegate;    /* owned or NULL: the document that took over (its feed gets the text) */
} Parser;

static int
fallback(const char *why)
{
    PyErr_SetString(Fallback, why);
    return -1;
}

/* -- small helpers ------------------------------------------------------------------------ */

static PyObject *
path_child(PyObject *parent_path, PyObject *key)
{
    Py_ssize_t n = PyList_GET_SIZE(parent_path);
    PyObject *path = PyList_New(n + 1);
    if (path == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(parent_path, i);
        Py_INCREF(item);
        PyList_SET_ITEM(path, i, item);
    }
    Py_INCREF(key);
    PyList_SET_ITEM(path, n, key);
    return path;
}

static int
sbuf_reserve(Parser *self, Py_ssize_t extra)
{
    if (self->slen + extra <= self->scap)
        return 0;
    Py_ssize_t cap = self->scap ? self->scap : 64;
    while (cap < self->slen + extra)
        cap *= 2;
    Py_UCS4 *buf = PyMem_Realloc(self->sbuf, (size_t)cap * sizeof(Py_UCS4));
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->sbuf = buf;
    self->scap = cap;
    return 0;
}

static int
nbuf_push(Parser *self, char c)
{
    if (self->nlen + 2 > self->ncap) {
        Py_ssize_t cap = self->ncap ? self->ncap * 2 : 32;
        char *buf = PyMem_Realloc(self->nbuf, (size_t)cap);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->nbuf = buf;
        self->ncap = cap;
    }
    self->nbuf[self->nlen++] = c;
    return 0;
}

/* The value of the number's longest valid prefix (json.loads types). */
static PyObject *
number_value(Parser *self)
{
    char *s = self->nbuf;
    Py_ssize_t n = self->nvalid;
    char saved = s[n];
    s[n] = '\0';
    int is_float = memchr(s, '.', (size_t)n) || memchr(s, 'e', (size_t)n) || memchr(s, 'E', (size_t)n);
    PyObject *v;
    if (is_float) {
        double d = PyOS_string_to_double(s, NULL, NULL);
        v = (d == -1.0 && PyErr_Occurred()) ? NULL : PyFloat_FromDouble(d);
    }
    else {
        v = PyLong_FromString(s, NULL, 10);
    }
    s[n] = saved;
    if (v == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear(); /* beyond int()'s digit limit: the Python parser says what json.loads says */
        fallback("number beyond the fast path");
    }
    return v;
}

static int
same_number(PyObject *a, PyObject *b)
{
    if (a == NULL || b == NULL || Py_TYPE(a) != Py_TYPE(b))
        return 0;
    int eq = PyObject_RichCompareBool(a, b, Py_EQ);
    if (eq < 0) {
        PyErr_Clear();
        return 0;
    }
    return eq;
}

/* Copy the containers along path[start:] and share everything else. */
static PyObject *
spine_copy(PyObject *value, PyObject *path, Py_ssize_t start)
{
    PyObject *copied;
    if (PyDict_CheckExact(value))
        copied = PyDict_Copy(value);
    else if (PyList_CheckExact(value))
        copied = PyList_GetSlice(value, 0, PyList_GET_SIZE(value));
    else {
        Py_INCREF(value);
        return value;
    }
    if (copied == NULL || start >= PyList_GET_SIZE(path))
        return copied;
    PyObject *key = PyList_GET_ITEM(path, start);
    PyObject *child;
    if (PyDict_CheckExact(copied)) {
        child = PyDict_GetItemWithError(copied, key);
        if (child == NULL)
            goto missing;
        PyObject *inner = spine_copy(child, path, start + 1);
        if (inner == NULL || PyDict_SetItem(copied, key, inner) < 0) {
            Py_XDECREF(inner);
            Py_DECREF(copied);
            return NULL;
        }
        Py_DECREF(inner);
    }
    else {
        Py_ssize_t i = PyLong_AsSsize_t(key);
        if (i < 0 || i >= PyList_GET_SIZE(copied))
            goto missing;
        PyObject *inner = spine_copy(PyList_GET_ITEM(copied, i), path, start + 1);
        if (inner == NULL) {
            Py_DECREF(copied);
            return NULL;
        }
        PyList_SetItem(copied, i, inner); /* steals inner */
    }
    return copied;
missing:
    Py_DECREF(copied);
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "rxstream._jsonfast: a path left the value");
    return NULL;
}

static PyObject *
value_at(PyObject *value, PyObject *path, Py_ssize_t depth)
{
    for (Py_ssize_t i = 0; i < depth; i++) {
        PyObject *key = PyList_GET_ITEM(path, i);
        if (PyDict_CheckExact(value))
            value = PyDict_GetItemWithError(value, key);
        else
            value = PyList_GetItem(value, PyLong_AsSsize_t(key));
        if (value == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "rxstream._jsonfast: a path left the value");
            return NULL;
        }
    }
    return value; /* borrowed */
}

/* Put v where the last attached value lives. */
static int
store(Parser *self, PyObject *v)
{
    PyObject *parent = self->slot_parent;
    if (parent == NULL) {
        Py_INCREF(v);
        Py_XSETREF(self->root, v);
        return 0;
    }
    if (PyDict_CheckExact(parent))
        return PyDict_SetItem(parent, self->slot_key, v);
    Py_INCREF(v);
    return PyList_SetItem(parent, PyLong_AsSsize_t(self->slot_key), v);
}

/* Join an open string's pieces into the value (for a snapshot or a merged change). */
static int
materialize(Parser *self)
{
    if (self->s_path == NULL || self->s_parts == NULL || PyList_GET_SIZE(self->s_parts) < 2)
        return 0;
    PyObject *joined = PyUnicode_Join(EMPTY_STR, self->s_parts);
    if (joined == NULL)
        return -1;
    int rc = store(self, joined);
    if (rc == 0) {
        PyObject *parts = PyList_New(1);
        if (parts == NULL)
            rc = -1;
        else {
            Py_INCREF(joined);
            PyList_SET_ITEM(parts, 0, joined);
            Py_XSETREF(self->s_parts, parts);
        }
    }
    Py_DECREF(joined);
    return rc;
}

/* Attach a new value at the current place; return its path (new reference). */
static PyObject *
attach(Parser *self, PyObject *v)
{
    if (self->depth == 0) {
        Py_INCREF(v);
        Py_XSETREF(self->root, v);
        Py_CLEAR(self->slot_parent);
        Py_CLEAR(self->slot_key);
        self->index = self->count++;
        return PyList_New(0);
    }
    Frame *f = &self->stack[self->depth - 1];
    PyObject *key;
    if (f->is_dict) {
        key = self->key;
        if (key == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "rxstream._jsonfast: a value without its key");
            return NULL;
        }
        if (PyDict_SetItem(f->container, key, v) < 0)
            return NULL;
        Py_INCREF(key);
    }
    else {
        if (PyList_Append(f->container, v) < 0)
            return NULL;
        key = PyLong_FromSsize_t(PyList_GET_SIZE(f->container) - 1);
        if (key == NULL)
            return NULL;
    }
    Py_INCREF(f->container);
    Py_XSETREF(self->slot_parent, f->container);
    Py_XSETREF(self->slot_key, key); /* takes the reference */
    return path_child(f->path, key);
}

/* -- changes and reports -------------------------------------------------------------------- */

/* Record one change (steals nothing; takes new references). */
static int
change(Parser *self, PyObject *path, PyObject *op, PyObject *value)
{
    if (self->nchanges == 0) {
        Py_INCREF(path);
        Py_XSETREF(self->first_path, path);
        self->common = PyList_GET_SIZE(path);
    }
    else {
        PyObject *first = self->first_path;
        Py_ssize_t n = PyList_GET_SIZE(path);
        if (n < self->common)
            self->common = n;
        Py_ssize_t i = 0;
        while (i < self->common) {
            PyObject *a = PyList_GET_ITEM(first, i), *b = PyList_GET_ITEM(path, i);
            if (a != b) {
                int eq = PyObject_RichCompareBool(a, b, Py_EQ);
                if (eq < 0)
                    return -1;
                if (!eq)
                    break;
            }
            i++;
        }
        self->common = i;
    }
    self->nchanges++;
    Py_INCREF(path);
    Py_XSETREF(self->c_path, path);
    Py_INCREF(op);
    Py_XSETREF(self->c_op, op);
    Py_INCREF(value);
    Py_XSETREF(self->c_value, value);
    return 0;
}

static int
complete_path(Parser *self, PyObject *path)
{
    if (self->completed == NULL) {
        self->completed = PyList_New(0);
        if (self->completed == NULL)
            return -1;
    }
    return PyList_Append(self->completed, path);
}

/* Turn the changes and completions so far into one report; reset them. */
static int
emit_report(Parser *self, int complete)
{
    PyObject *path, *op, *value;
    if (self->nchanges == 0) {
        path = Py_None; op = Py_None; value = Py_None;
        Py_INCREF(path); Py_INCREF(op); Py_INCREF(value);
    }
    else if (self->nchanges == 1) {
        path = self->c_path; op = self->c_op; value = self->c_value;
        self->c_path = self->c_op = self->c_value = NULL;
    }
    else {
        if (materialize(self) < 0)
            return -1;
        path = PyList_GetSlice(self->first_path, 0, self->common);
        if (path == NULL)
            return -1;
        PyObject *at = value_at(self->root, path, self->common);
        value = at == NULL ? NULL : spine_copy(at, self->c_path, self->common);
        if (value == NULL) {
            Py_DECREF(path);
            return -1;
        }
        op = S_SET;
        Py_INCREF(op);
    }
    if (self->nchanges > 0) {
        PyObject *last = self->nchanges == 1 ? path : self->c_path;
        Py_INCREF(last);
        Py_XSETREF(self->last_path, last);
    }
    Py_CLEAR(self->c_path);
    Py_CLEAR(self->c_op);
    Py_CLEAR(self->c_value);
    Py_CLEAR(self->first_path);
    self->nchanges = 0;
    PyObject *completed = self->completed;
    self->completed = NULL;
    if (completed == NULL && (completed = PyList_New(0)) == NULL)
        goto fail;
    PyObject *report = ((PyTypeObject *)self->report_type)->tp_alloc((PyTypeObject *)self->report_type, 7);
    if (report == NULL)
        goto fail_completed;
    PyObject *idx = PyLong_FromSsize_t(self->index);
    if (idx == NULL) {
        Py_DECREF(report);
        goto fail_completed;
    }
    PyObject *final = complete ? self->root : Py_None;
    Py_INCREF(final);
    PyObject *flag = complete ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(report, 0, path);
    PyTuple_SET_ITEM(report, 1, op);
    PyTuple_SET_ITEM(report, 2, value);
    PyTuple_SET_ITEM(report, 3, completed);
    PyTuple_SET_ITEM(report, 4, idx);
    PyTuple_SET_ITEM(report, 5, flag);
    PyTuple_SET_ITEM(report, 6, final);
    if (self->reports == NULL && (self->reports = PyList_New(0)) == NULL) {
        Py_DECREF(report);
        return -1;
    }
    int rc = PyList_Append(self->reports, report);
    Py_DECREF(report);
    return rc;
fail_completed:
    Py_DECREF(completed);
fail:
    Py_DECREF(path);
    Py_DECREF(op);
    Py_DECREF(value);
    return -1;
}

/* A scalar or container became final at path. */
static int
value_done(Parser *self, PyObject *path)
{
    if (complete_path(self, path) < 0)
        return -1;
    if (self->depth == 0) {
        self->expect = E_VALUE;
        return emit_report(self, 1);
    }
    self->expect = E_COMMA_OR_END;
    return 0;
}

/* A complete scalar that was not reported before. */
static int
scalar(Parser *self, PyObject *v)
{
    PyObject *path = attach(self, v);
    if (path == NULL)
        return -1;
    int rc = change(self, path, S_SET, v);
    if (rc == 0)
        rc = value_done(self, path);
    Py_DECREF(path);
    return rc;
}

/* -- tokens ----------------------------------------------------------------------------------- */

static int
open_container(Parser *self, int is_dict)
{
    if (self->depth >= self->max_depth)
        return fallback("nesting beyond max_depth");
    PyObject *container = is_dict ? PyDict_New() : PyList_New(0);
    if (container == NULL)
        return -1;
    PyObject *path = attach(self, container);
    if (path == NULL) {
        Py_DECREF(container);
        return -1;
    }
    PyObject *fresh = is_dict ? PyDict_New() : PyList_New(0);
    if (fresh == NULL || change(self, path, S_SET, fresh) < 0) {
        Py_XDECREF(fresh);
        Py_DECREF(container);
        Py_DECREF(path);
        return -1;
    }
    Py_DECREF(fresh);
    if (self->depth == self->stack_cap) {
        Py_ssize_t cap = self->stack_cap ? self->stack_cap * 2 : 16;
        Frame *stack = PyMem_Realloc(self->stack, (size_t)cap * sizeof(Frame));
        if (stack == NULL) {
            Py_DECREF(container);
            Py_DECREF(path);
            PyErr_NoMemory();
            return -1;
        }
        self->stack = stack;
        self->stack_cap = cap;
    }
    Frame *f = &self->stack[self->depth++];
    f->container = container; /* takes the references */
    f->path = path;
    f->is_dict = is_dict;
    self->expect = is_dict ? E_KEY_OR_END : E_VALUE_OR_END;
    Py_CLEAR(self->key);
    return 0;
}

static int
close_container(Parser *self)
{
    Frame *f = &self->stack[--self->depth];
    PyObject *path = f->path;
    int rc = value_done(self, path);
    Py_DECREF(f->container);
    Py_DECREF(path);
    return rc;
}

/* The number ended just before a delimiter. */
static int
number_end(Parser *self)
{
    self->tok = T_NONE;
    if (self->nvalid != self->nlen)
        return fallback("a number cut short");
    int rc;
    if (self->n_path == NULL) {
        PyObject *v = number_value(self);
        if (v == NULL)
            return -1;
        rc = scalar(self, v);
        Py_DECREF(v);
        return rc;
    }
    PyObject *path = self->n_path;
    self->n_path = NULL;
    rc = 0;
    if (self->nreported != self->nvalid) {
        PyObject *v = number_value(self);
        if (v == NULL) {
            Py_DECREF(path);
            return -1;
        }
        if (!same_number(v, self->n_last))
            rc = store(self, v) < 0 || change(self, path, S_SET, v) < 0 ? -1 : 0;
        Py_DECREF(v);
    }
    Py_CLEAR(self->n_last);
    if (rc == 0)
        rc = value_done(self, path);
    Py_DECREF(path);
    return rc;
}

/* The number is still open at the fragment's end: report its value so far when it changed. */
static int
number_open(Parser *self)
{
    if (self->nvalid == 0 || self->nvalid == self->nreported)
        return 0;
    PyObject *v = number_value(self);
    if (v == NULL)
        return -1;
    int rc = 0;
    if (self->n_path == NULL) {
        PyObject *path = attach(self, v);
        if (path == NULL)
            rc = -1;
        else {
            rc = change(self, path, S_SET, v);
            self->n_path = path;
            Py_INCREF(v);
            Py_XSETREF(self->n_last, v);
        }
    }
    else if (!same_number(v, self->n_last)) {
        rc = store(self, v) < 0 || change(self, self->n_path, S_SET, v) < 0 ? -1 : 0;
        Py_INCREF(v);
        Py_XSETREF(self->n_last, v);
    }
    self->nreported = self->nvalid;
    Py_DECREF(v);
    return rc;
}

/* Feed one number character; 1 when c is not part of the number (it ends before c). */
static int
number_char(Parser *self, Py_UCS4 c)
{
    int st = self->nstate;
    int is_digit = c >= '0' && c <= '9';
    switch (st) {
    case N_MINUS:
        if (!is_digit)
            return fallback("a number without digits");
        st = c == '0' ? N_ZERO : N_INT;
        break;
    case N_ZERO:
        if (is_digit || c == '-' || c == '+')
            return fallback("a leading zero or a sign after a number");
        if (c == '.')
            st = N_DOT;
        else if (c == 'e' || c == 'E')
            st = N_EXP;
        else
            return 1;
        break;
    case N_INT:
        if (is_digit)
            break;
        if (c == '-' || c == '+')
            return fallback("a sign after a number");
        if (c == '.')
            st = N_DOT;
        else if (c == 'e' || c == 'E')
            st = N_EXP;
        else
            return 1;
        break;
    case N_DOT:
        if (!is_digit)
            return fallback("a fraction without digits");
        st = N_FRAC;
        break;
    case N_FRAC:
        if (is_digit)
            break;
        if (c == '-' || c == '+' || c == '.')
            return fallback("a sign or a point after a number");
        if (c == 'e' || c == 'E')
            st = N_EXP;
        else
            return 1;
        break;
    case N_EXP:
        if (c == '+' || c == '-')
            st = N_EXP_SIGN;
        else if (is_digit)
            st = N_EXP_DIGITS;
        else
            return fallback("an exponent without digits");
        break;
    case N_EXP_SIGN:
        if (!is_digit)
            return fallback("an exponent without digits");
        st = N_EXP_DIGITS;
        break;
    default: /* N_EXP_DIGITS */
        if (c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E')
            return fallback("a sign, point or exponent after an exponent");
        if (!is_digit)
            return 1;
        break;
    }
    if (nbuf_push(self, (char)c) < 0)
        return -1;
    self->nstate = st;
    if (st == N_ZERO || st == N_INT || st == N_FRAC || st == N_EXP_DIGITS)
        self->nvalid = self->nlen;
    return 0;
}

static int
number_start(Parser *self, Py_UCS4 c)
{
    self->tok = T_NUMBER;
    self->nlen = 0;
    self->nvalid = 0;
    self->nreported = 0;
    Py_CLEAR(self->n_path);
    Py_CLEAR(self->n_last);
    if (nbuf_push(self, (char)c) < 0)
        return -1;
    if (c == '-')
        self->nstate = N_MINUS;
    else {
        self->nstate = c == '0' ? N_ZERO : N_INT;
        self->nvalid = 1;
    }
    return 0;
}

static int
hexval(Py_UCS4 c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/*
 * Scan string text from i; decoded characters go to sbuf (from the first escape on; before it
 * *plain_end marks how far the text is plain). Returns the index of the closing quote, or n
 * when the fragment ends inside the string; -1 on error.
 */
static Py_ssize_t
scan_string(Parser *self, int kind, const void *data, Py_ssize_t i, Py_ssize_t n, int *buffered)
{
    while (i < n) {
        if (self->esc) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (self->esc == 1) {
                Py_UCS4 out;
                switch (c) {
                case '"': out = '"'; break;
                case '\\': out = '\\'; break;
                case '/': out = '/'; break;
                case 'b': out = '\b'; break;
                case 'f': out = '\f'; break;
                case 'n': out = '\n'; break;
                case 'r': out = '\r'; break;
                case 't': out = '\t'; break;
                case 'u':
                    self->esc = 2;
                    self->uacc = 0;
                    i++;
                    continue;
                default:
                    return fallback("an invalid escape");
                }
                if (sbuf_reserve(self, 1) < 0)
                    return -1;
                self->sbuf[self->slen++] = out;
                self->esc = 0;
                i++;
                continue;
            }
            int h = hexval(c);
            if (h < 0)
                return fallback("an invalid \\u escape");
            self->uacc = (self->uacc << 4) | (Py_UCS4)h;
            i++;
            if (++self->esc == 6) {
                self->esc = 0;
                if (self->uacc >= 0xD800 && self->uacc <= 0xDFFF)
                    return fallback("a surrogate escape");
                if (sbuf_reserve(self, 1) < 0)
                    return -1;
                self->sbuf[self->slen++] = self->uacc;
            }
            continue;
        }
        /* a run of plain characters */
        Py_ssize_t j = i;
        Py_UCS4 c = 0;
        if (kind == PyUnicode_1BYTE_KIND) {
            const Py_UCS1 *p = (const Py_UCS1 *)data;
            while (j < n && (c = p[j]) != '"' && c != '\\' && c >= 0x20)
                j++;
        }
        else {
            while (j < n && (c = PyUnicode_READ(kind, data, j)) != '"' && c != '\\' && c >= 0x20)
                j++;
        }
        if (*buffered && j > i) {
            if (sbuf_reserve(self, j - i) < 0)
                return -1;
            for (Py_ssize_t k = i; k < j; k++)
                self->sbuf[self->slen++] = PyUnicode_READ(kind, data, k);
        }
        if (j == n)
            return n;
        if (c == '"')
            return j;
        if (c < 0x20)
            return fallback("a control character in a string");
        /* a backslash: from here on the text is decoded into sbuf */
        if (!*buffered) {
            *buffered = 1;
            return -2 - j; /* the caller copies the plain part [start, j) first */
        }
        self->esc = 1;
        i = j + 1;
    }
    return n;
}

/* Decoded text of a string segment [start, end) of this fragment, as a str. */
static PyObject *
segment(Parser *self, PyObject *text, Py_ssize_t start, Py_ssize_t end, int buffered)
{
    if (!buffered)
        return PyUnicode_Substring(text, start, end);
    return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, self->sbuf, self->slen);
}

/* Scan a string's text from i, switching to the decoding buffer at the first escape. */
static Py_ssize_t
scan(Parser *self, PyObject *text, int kind, const void *data, Py_ssize_t i, Py_ssize_t n, int *buffered)
{
    Py_ssize_t start = i;
    Py_ssize_t r = scan_string(self, kind, data, i, n, buffered);
    if (r <= -2) {
        Py_ssize_t j = -2 - r;
        if (sbuf_reserve(self, j - start) < 0)
            return -1;
        for (Py_ssize_t k = start; k < j; k++)
            self->sbuf[self->slen++] = PyUnicode_READ(kind, data, k);
        self->esc = 1;
        r = scan_string(self, kind, data, j + 1, n, buffered);
    }
    (void)text;
    return r;
}

static int
is_ws(Py_UCS4 c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* A value begins with c at i (the grammar expects one). Returns the next index or -1. */
static Py_ssize_t
value_start(Parser *self, PyObject *text, int kind, const void *data, Py_ssize_t i, Py_ssize_t n)
{
    Py_UCS4 c = PyUnicode_READ(kind, data, i);
    switch (c) {
    case '{':
        return open_container(self, 1) < 0 ? -1 : i + 1;
    case '[':
        return open_container(self, 0) < 0 ? -1 : i + 1;
    case '"': {
        /* a value string */
        i++;
        self->esc = 0;
        self->slen = 0;
        int buffered = 0;
        Py_ssize_t start = i;
        Py_ssize_t r = scan(self, text, kind, data, i, n, &buffered);
        if (r < 0)
            return -1;
        PyObject *piece = segment(self, text, start, r, buffered);
        if (piece == NULL)
            return -1;
        PyObject *path = attach(self, piece);
        if (path == NULL || change(self, path, S_SET, piece) < 0) {
            Py_XDECREF(path);
            Py_DECREF(piece);
            return -1;
        }
        if (r < n) { /* closed in this fragment */
            int rc = value_done(self, path);
            Py_DECREF(path);
            Py_DECREF(piece);
            return rc < 0 ? -1 : r + 1;
        }
        self->tok = T_STRING;
        Py_XSETREF(self->s_path, path);
        PyObject *parts = PyList_New(1);
        if (parts == NULL) {
            Py_DECREF(piece);
            return -1;
        }
        PyList_SET_ITEM(parts, 0, piece);
        Py_XSETREF(self->s_parts, parts);
        return n;
    }
    case 't':
        self->lit = "true";
        break;
    case 'f':
        self->lit = "false";
        break;
    case 'n':
        self->lit = "null";
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return number_start(self, c) < 0 ? -1 : i + 1;
        fallback("not a value");
        return -1;
    }
    self->tok = T_LITERAL;
    self->litpos = 1;
    return i + 1;
}

/* Continue the literal; returns the next index or -1. */
static Py_ssize_t
literal_chars(Parser *self, int kind, const void *data, Py_ssize_t i, Py_ssize_t n)
{
    const char *lit = self->lit;
    while (i < n && lit[self->litpos]) {
        if (PyUnicode_READ(kind, data, i) != (Py_UCS4)lit[self->litpos])
            return fallback("a misspelled literal");
        self->litpos++;
        i++;
    }
    if (lit[self->litpos] == '\0') {
        self->tok = T_NONE;
        PyObject *v = lit[0] == 't' ? Py_True : lit[0] == 'f' ? Py_False : Py_None;
        if (scalar(self, v) < 0)
            return -1;
    }
    return i;
}

/* The string still open from earlier fragments goes on at the start of this one. */
static Py_ssize_t
string_goes_on(Parser *self, PyObject *text, int kind, const void *data, Py_ssize_t n)
{
    int buffered = self->esc != 0;
    self->slen = 0;
    Py_ssize_t r = scan(self, text, kind, data, 0, n, &buffered);
    if (r < 0)
        return -1;
    PyObject *piece = segment(self, text, 0, r, buffered);
    if (piece == NULL)
        return -1;
    int rc = 0;
    if (PyUnicode_GET_LENGTH(piece) > 0) {
        rc = PyList_Append(self->s_parts, piece);
        if (rc == 0)
            rc = change(self, self->s_path, S_APPEND, piece);
    }
    Py_DECREF(piece);
    if (rc < 0)
        return -1;
    if (r == n)
        return n;
    /* closed: the value is the pieces joined */
    self->tok = T_NONE;
    PyObject *joined = PyList_GET_SIZE(self->s_parts) == 1 ? PyList_GET_ITEM(self->s_parts, 0) : NULL;
    if (joined != NULL)
        Py_INCREF(joined);
    else if ((joined = PyUnicode_Join(EMPTY_STR, self->s_parts)) == NULL)
        return -1;
    rc = store(self, joined);
    Py_DECREF(joined);
    Py_CLEAR(self->s_parts);
    PyObject *path = self->s_path;
    self->s_path = NULL;
    if (rc == 0)
        rc = value_done(self, path);
    Py_DECREF(path);
    return rc < 0 ? -1 : r + 1;
}

/* A key's text from i (the key may have begun in an earlier fragment). */
static Py_ssize_t
key_chars(Parser *self, PyObject *text, int kind, const void *data, Py_ssize_t i, Py_ssize_t n)
{
    int buffered = 1; /* keys always collect in sbuf: they may span fragments */
    Py_ssize_t r = scan(self, text, kind, data, i, n, &buffered);
    if (r < 0 || r == n)
        return r;
    PyObject *key = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, self->sbuf, self->slen);
    if (key == NULL)
        return -1;
    Py_XSETREF(self->key, key);
    self->tok = T_NONE;
    self->expect = E_COLON;
    return r + 1;
}

/* -- the parser ------------------------------------------------------------------------------- */

static PyObject *parse(Parser *self, PyObject *text);

static PyObject *
Parser_feed(Parser *self, PyObject *text)
{
    if (self->delegate != NULL)
        return PyObject_CallMethod(self->delegate, "feed", "O", text);
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "feed() expected str, got %.100s", Py_TYPE(text)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    if (PyUnicode_GET_LENGTH(text) == 0)
        Py_RETURN_NONE;
    if (PyList_Append(self->texts, text) < 0)
        return NULL;
    PyObject *reports = parse(self, text);
    if (reports == NULL && PyErr_ExceptionMatches(Fallback)) {
        PyErr_Clear();
        return PyObject_CallFunctionObjArgs(self->on_fallback, (PyObject *)self, text, NULL);
    }
    return reports;
}

static PyObject *
parse(Parser *self, PyObject *text)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t i = 0;
    Py_CLEAR(self->reports);

    switch (self->tok) {
    case T_STRING:
        if ((i = string_goes_on(self, text, kind, data, n)) < 0)
            goto error;
        break;
    case T_KEY:
        if ((i = key_chars(self, text, kind, data, 0, n)) < 0)
            goto error;
        break;
    case T_LITERAL:
        if ((i = literal_chars(self, kind, data, 0, n)) < 0)
            goto error;
        break;
    default:
        break;
    }

    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (self->tok == T_NUMBER) {
            int r = number_char(self, c);
            if (r < 0)
                goto error;
            if (r == 0) {
                i++;
                continue;
            }
            if (number_end(self) < 0)
                goto error;
            /* c is looked at again below, after the number */
        }
        if (is_ws(c)) {
            i++;
            continue;
        }
        switch (self->expect) {
        case E_VALUE:
            if ((i = value_start(self, text, kind, data, i, n)) < 0)
                goto error;
            break;
        case E_VALUE_OR_END:
            if (c == ']') {
                if (close_container(self) < 0)
                    goto error;
                i++;
            }
            else if ((i = value_start(self, text, kind, data, i, n)) < 0)
                goto error;
            break;
        case E_KEY_OR_END:
        case E_KEY:
            if (c == '"') {
                self->tok = T_KEY;
                self->esc = 0;
                self->slen = 0;
                if ((i = key_chars(self, text, kind, data, i + 1, n)) < 0)
                    goto error;
            }
            else if (c == '}' && self->expect == E_KEY_OR_END) {
                if (close_container(self) < 0)
                    goto error;
                i++;
            }
            else {
                fallback("expected a key");
                goto error;
            }
            break;
        case E_COLON:
            if (c != ':') {
                fallback("expected ':'");
                goto error;
            }
            self->expect = E_VALUE;
            i++;
            break;
        default: /* E_COMMA_OR_END */
        {
            Frame *f = &self->stack[self->depth - 1];
            if (c == ',') {
                self->expect = f->is_dict ? E_KEY : E_VALUE;
                i++;
            }
            else if (c == (f->is_dict ? '}' : ']')) {
                if (close_container(self) < 0)
                    goto error;
                i++;
            }
            else {
                fallback("expected ',' or the end of the container");
                goto error;
            }
            break;
        }
        }
        if (self->tok == T_LITERAL && i < n) {
            if ((i = literal_chars(self, kind, data, i, n)) < 0)
                goto error;
        }
    }
    if (self->tok == T_NUMBER && number_open(self) < 0)
        goto error;
    if (self->nchanges > 0 || self->completed != NULL) {
        if (emit_report(self, 0) < 0)
            goto error;
    }
    if (self->reports == NULL)
        Py_RETURN_NONE;
    PyObject *reports = self->reports;
    self->reports = NULL;
    return reports;
error:
    Py_CLEAR(self->reports);
    return NULL;
}

static PyObject *
Parser_finish(Parser *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(self->reports);
    if (self->tok == T_STRING || self->tok == T_KEY) {
        /* The Python parser decides (a key out of place, a string cut short). */
        fallback("the text ends inside a string");
        return NULL;
    }
    if (self->depth > 0) {
        self->truncated = 1;
        Py_RETURN_NONE;
    }
    if (self->tok == T_LITERAL) {
        fallback("the text ends inside a literal");
        return NULL;
    }
    if (self->tok == T_NUMBER && number_end(self) < 0) {
        Py_CLEAR(self->reports);
        return NULL;
    }
    if (self->reports == NULL)
        Py_RETURN_NONE;
    PyObject *reports = self->reports;
    self->reports = NULL;
    return reports;
}

static PyObject *
Parser_value(Parser *self, void *Py_UNUSED(closure))
{
    if (materialize(self) < 0)
        return NULL;
    PyObject *root = self->root ? self->root : Py_None;
    Py_INCREF(root);
    return root;
}

static PyObject *
Parser_snapshot(Parser *self, PyObject *Py_UNUSED(ignored))
{
    if (materialize(self) < 0)
        return NULL;
    if (self->root == NULL)
        Py_RETURN_NONE;
    return spine_copy(self->root, self->last_path, 0);
}

static PyObject *
Parser_count(Parser *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->count);
}

static PyObject *
Parser_truncated(Parser *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->truncated);
}

static PyObject *
Parser_texts(Parser *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self->texts);
    return self->texts;
}

static PyObject *
Parser_max_depth(Parser *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->max_depth);
}

static PyObject *
Parser_get_delegate(Parser *self, void *Py_UNUSED(closure))
{
    PyObject *d = self->delegate ? self->delegate : Py_None;
    Py_INCREF(d);
    return d;
}

static int
Parser_set_delegate(Parser *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || value == Py_None) {
        Py_CLEAR(self->delegate);
        return 0;
    }
    Py_INCREF(value);
    Py_XSETREF(self->delegate, value);
    /* the text is the delegate's now */
    return PyList_SetSlice(self->texts, 0, PyList_GET_SIZE(self->texts), NULL);
}

static int
Parser_init(Parser *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"report_type", "max_depth", "on_fallback", NULL};
    PyObject *report_type, *on_fallback;
    Py_ssize_t max_depth;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnO", kwlist, &report_type, &max_depth, &on_fallback))
        return -1;
    if (!PyCallable_Check(on_fallback)) {
        PyErr_SetString(PyExc_TypeError, "Parser() expected a callable on_fallback");
        return -1;
    }
    PyObject *texts = PyList_New(0);
    if (texts == NULL)
        return -1;
    Py_XSETREF(self->texts, texts);
    Py_INCREF(on_fallback);
    Py_XSETREF(self->on_fallback, on_fallback);
    if (!PyType_Check(report_type) || !PyType_IsSubtype((PyTypeObject *)report_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Parser() expected a tuple subclass for report_type");
        return -1;
    }
    Py_INCREF(report_type);
    Py_XSETREF(self->report_type, report_type);
    self->max_depth = max_depth;
    PyObject *empty = PyList_New(0);
    if (empty == NULL)
        return -1;
    Py_XSETREF(self->last_path, empty);
    self->expect = E_VALUE;
    self->tok = T_NONE;
    return 0;
}

static void
Parser_dealloc(Parser *self)
{
    for (Py_ssize_t i = 0; i < self->depth; i++) {
        Py_DECREF(self->stack[i].container);
        Py_DECREF(self->stack[i].path);
    }
    PyMem_Free(self->stack);
    PyMem_Free(self->sbuf);
    PyMem_Free(self->nbuf);
    Py_XDECREF(self->report_type);
    Py_XDECREF(self->key);
    Py_XDECREF(self->s_path);
    Py_XDECREF(self->s_parts);
    Py_XDECREF(self->slot_parent);
    Py_XDECREF(self->slot_key);
    Py_XDECREF(self->n_path);
    Py_XDECREF(self->n_last);
    Py_XDECREF(self->root);
    Py_XDECREF(self->last_path);
    Py_XDECREF(self->first_path);
    Py_XDECREF(self->c_path);
    Py_XDECREF(self->c_op);
    Py_XDECREF(self->c_value);
    Py_XDECREF(self->completed);
    Py_XDECREF(self->reports);
    Py_XDECREF(self->texts);
    Py_XDECREF(self->on_fallback);
    Py_XDECREF(self->delegate);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Parser_methods[] = {
    {"feed", (PyCFunction)Parser_feed, METH_O,
     "feed(text) -> list of reports or None; raises Fallback for what the fast path does not take."},
    {"finish", (PyCFunction)Parser_finish, METH_NOARGS, "finish() -> list of reports or None."},
    {"snapshot", (PyCFunction)Parser_snapshot, METH_NOARGS,
     "A copy of the value so far, sharing the parts that can no longer change."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Parser_getset[] = {
    {"value", (getter)Parser_value, NULL, "The current top-level value (live).", NULL},
    {"count", (getter)Parser_count, NULL, "Top-level values started.", NULL},
    {"truncated", (getter)Parser_truncated, NULL, "Whether the text ended inside a value.", NULL},
    {"texts", (getter)Parser_texts, NULL, "Every fragment fed so far (for a hand-over).", NULL},
    {"max_depth", (getter)Parser_max_depth, NULL, "The nesting limit.", NULL},
    {"delegate", (getter)Parser_get_delegate, (setter)Parser_set_delegate,
     "The document that took over after a Fallback: feed() goes to it.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ParserType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "rxstream._jsonfast.Parser",
    .tp_basicsize = sizeof(Parser),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Parser(report_type, max_depth, on_fallback): an incremental JSON document (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Parser_init,
    .tp_dealloc = (destructor)Parser_dealloc,
    .tp_methods = Parser_methods,
    .tp_getset = Parser_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rxstream._jsonfast",
    "The incremental JSON document behind parse_json(), in C (see _json_stream.NativeDocument).",
    -1, NULL,
};

PyMODINIT_FUNC
PyInit__jsonfast(void)
{
    if (PyType_Ready(&ParserType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Fallback = PyErr_NewException("rxstream._jsonfast.Fallback", NULL, NULL);
    S_SET = PyUnicode_InternFromString("set");
    S_APPEND = PyUnicode_InternFromString("append");
    EMPTY_STR = PyUnicode_FromString("");
    if (Fallback == NULL || S_SET == NULL || S_APPEND == NULL || EMPTY_STR == NULL)
        goto fail;
    Py_INCREF(Fallback);
    if (PyModule_AddObject(m, "Fallback", Fallback) < 0)
        goto fail;
    Py_INCREF(&ParserType);
    if (PyModule_AddObject(m, "Parser", (PyObject *)&ParserType) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
