/*
 * xml.c - the XML the S3 head reads and writes (see xml.h).
 *
 * Output: a growable buffer that latches out-of-memory (every later write is a no-op and the
 * caller checks b->oom once, at the end), plus an escaper.  Escaping is byte-oriented but
 * UTF-8 aware: markup characters become entities, control characters become &#xNN; as S3
 * writes them, and bytes that are not well-formed UTF-8 (or code points XML 1.0 forbids)
 * become &#xFFFD;, so a document we send always parses even when an object key is not UTF-8.
 *
 * Input: expat with namespace processing on, so "s3:Delete" with a declared prefix and
 * "Delete" with a default xmlns both arrive as "<S3 namespace>|Delete"; an element is known
 * only in the S3 namespace or in none.  The parsers are small state machines over the element
 * depth.  They keep the invariants the header promises while expat is still running: a count
 * is checked before the element it counts is accepted, and text is accumulated into one fixed
 * buffer with a per-element bound, so no request body makes us allocate more than its limits
 * allow.  A DOCTYPE stops the parser at once - S3 bodies never have one, and refusing it
 * closes off entity expansion (billion laughs) and external entities in one place.  Unknown
 * children of Part, Object and CreateBucketConfiguration are skipped with their subtrees (S3
 * added checksum and conditional-delete fields there over time); anything else unknown is
 * MalformedXML.
 */
#include "cnode/s3/xml.h"

#include <assert.h>
#include <expat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NS_SEP '|' /* cannot occur in a local name, so the last one splits "uri|local" */
#define XBUF_MIN 256u

/* ---- output buffer ---------------------------------------------------------------------- */

void s3_xbuf_init(struct s3_xbuf *b)
{
    memset(b, 0, sizeof(*b));
}

void s3_xbuf_fini(struct s3_xbuf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Make room for extra more bytes plus the NUL; false (and oom latched) if that fails. */
static bool xbuf_reserve(struct s3_xbuf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (b->oom)
        return false;
    if (extra > SIZE_MAX - b->len - 1)
        goto oom;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return true;
    cap = b->cap ? b->cap : XBUF_MIN;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p)
        goto oom;
    b->data = p;
    b->cap = cap;
    return true;

oom:
    b->oom = true;
    return false;
}

void s3_xbuf_put(struct s3_xbuf *b, const char *s, size_t len)
{
    if (!xbuf_reserve(b, len))
        return;
    if (len)
        memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void s3_xbuf_puts(struct s3_xbuf *b, const char *s)
{
    s3_xbuf_put(b, s, strlen(s));
}

void s3_xbuf_printf(struct s3_xbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->oom)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !xbuf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the well-formed UTF-8 sequence at s (at most len bytes) whose code point XML 1.0
 * allows, or 0.  Only called for bytes >= 0x80. */
static size_t utf8_char_len(const unsigned char *s, size_t len)
{
    uint32_t cp;
    size_t n, i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates, beyond U+10FFFF, and U+FFFE/U+FFFF (not XML Chars). */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
        return 0;
    return n;
}

void s3_xbuf_escape(struct s3_xbuf *b, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* u[run..i) is copied verbatim in one put */
    char ref[8];

    while (i < len) {
        const char *rep = NULL;
        size_t n = 1;

        switch (u[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        case '\t':
        case '\n':
            break;
        default:
            if (u[i] < 0x20) { /* includes \r, which a parser would otherwise turn into \n */
                snprintf(ref, sizeof(ref), "&#x%02X;", u[i]);
                rep = ref;
            } else if (u[i] >= 0x80) {
                n = utf8_char_len(u + i, len - i);
                if (!n) {
                    rep = "&#xFFFD;";
                    n = 1;
                }
            }
            break;
        }
        if (rep) {
            s3_xbuf_put(b, s + run, i - run);
            s3_xbuf_puts(b, rep);
            run = i + n;
        }
        i += n;
    }
    s3_xbuf_put(b, s + run, len - run);
}

void s3_xbuf_elem(struct s3_xbuf *b, const char *tag, const char *text)
{
    s3_xbuf_printf(b, "<%s>", tag);
    if (text)
        s3_xbuf_escape(b, text, strlen(text));
    s3_xbuf_printf(b, "</%s>", tag);
}

void s3_xbuf_decl(struct s3_xbuf *b)
{
    s3_xbuf_puts(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
}

void s3_xbuf_start(struct s3_xbuf *b, const char *root)
{
    s3_xbuf_init(b);
    s3_xbuf_decl(b);
    s3_xbuf_printf(b, "<%s xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">", root);
}

void s3_xml_error(struct s3_xbuf *b, enum s3_err e, const char *message, const char *resource,
                  const char *request_id)
{
    const struct s3_err_info *info = s3_err_info(e);

    s3_xbuf_decl(b);
    s3_xbuf_puts(b, "<Error>");
    s3_xbuf_elem(b, "Code", info->code);
    s3_xbuf_elem(b, "Message", message ? message : info->message);
    if (resource)
        s3_xbuf_elem(b, "Resource", resource);
    if (request_id)
        s3_xbuf_elem(b, "RequestId", request_id);
    s3_xbuf_puts(b, "</Error>");
}

/* ---- request parsers: shared machinery -------------------------------------------------- */

enum leaf {
    LEAF_NONE,
    LEAF_PART_NUMBER,
    LEAF_ETAG,
    LEAF_KEY,
    LEAF_QUIET,
    LEAF_LOCATION,
};

/* Raw text bounds (before whitespace/quote trimming where that applies).  An ETag is at most
 * 79 characters once its quotes are gone; the slack is for the quotes and for whitespace a
 * pretty-printer may put around it. */
#define PART_NUMBER_MAX_TEXT 16u
#define ETAG_MAX_TEXT 128u
#define QUIET_MAX_TEXT 16u
#define TEXT_BUF (S3_MAX_KEY_LEN + 1)

struct xctx {
    XML_Parser p;
    enum s3_err err; /* first error; once set, handlers return at once */
    unsigned depth;  /* of the element being processed (root = 1) */
    unsigned skip;   /* nonzero: inside an ignored element that opened at this depth */
    enum leaf leaf;  /* text element being accumulated, at depth leaf_depth */
    unsigned leaf_depth;
    size_t text_len, text_max;
    char text[TEXT_BUF];

    /* CompleteMultipartUpload */
    struct s3_complete *cmp;
    unsigned parts_cap;
    bool part_has_number, part_has_etag, out_of_order;
    struct s3_complete_part part;

    /* Delete */
    struct s3_delete *del;
    unsigned keys_cap;
    bool obj_has_key, seen_quiet;

    /* CreateBucketConfiguration */
    char *region;
    size_t region_cap;
    bool seen_location;
};

static void xfail(struct xctx *x, enum s3_err err)
{
    if (x->err)
        return;
    x->err = err;
    XML_StopParser(x->p, XML_FALSE);
}

/* The local part of an expat name if the element is in the S3 namespace or in none; NULL for
 * any other namespace. */
static const char *s3_local(const XML_Char *name)
{
    const char *sep = strrchr(name, NS_SEP);

    if (!sep)
        return name;
    if ((size_t)(sep - name) != strlen(S3_XML_NS) ||
        memcmp(name, S3_XML_NS, strlen(S3_XML_NS)) != 0)
        return NULL;
    return sep + 1;
}

static bool is_name(const char *local, const char *want)
{
    return local && strcmp(local, want) == 0;
}

static bool is_xml_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void begin_leaf(struct xctx *x, enum leaf leaf, size_t max)
{
    assert(max < TEXT_BUF);
    x->leaf = leaf;
    x->leaf_depth = x->depth;
    x->text_len = 0;
    x->text_max = max;
}

static void begin_skip(struct xctx *x)
{
    x->skip = x->depth;
}

/* Trim XML whitespace from both ends of the accumulated text, in place; NUL-terminates. */
static void trim_text(struct xctx *x)
{
    size_t a = 0, z = x->text_len;

    while (a < z && is_xml_space(x->text[a]))
        a++;
    while (z > a && is_xml_space(x->text[z - 1]))
        z--;
    memmove(x->text, x->text + a, z - a);
    x->text_len = z - a;
    x->text[x->text_len] = '\0';
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct xctx *x = ud;

    if (x->err || x->skip || len <= 0)
        return;
    if (x->leaf == LEAF_NONE) {
        /* Between elements only whitespace is allowed. */
        for (int i = 0; i < len; i++) {
            if (!is_xml_space(s[i])) {
                xfail(x, S3E_MALFORMED_XML);
                return;
            }
        }
        return;
    }
    if ((size_t)len > x->text_max - x->text_len) {
        xfail(x, S3E_MALFORMED_XML);
        return;
    }
    memcpy(x->text + x->text_len, s, (size_t)len);
    x->text_len += (size_t)len;
}

/* S3 bodies never carry a DTD; refusing it is what keeps entity expansion out. */
static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    xfail(ud, S3E_MALFORMED_XML);
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    xfail(ud, S3E_MALFORMED_XML);
}

/* Common prologue of the start handlers: false if the element is not for the caller (an
 * error is latched, or it lies inside a skipped subtree).  Elements inside a text element
 * (mixed content) are malformed. */
static bool start_common(struct xctx *x)
{
    if (x->err)
        return false;
    x->depth++;
    if (x->skip)
        return false;
    if (x->leaf != LEAF_NONE) {
        xfail(x, S3E_MALFORMED_XML);
        return false;
    }
    return true;
}

/* Common prologue of the end handlers: true if the caller should handle this end tag; the
 * caller decrements depth afterwards through end_done(). */
static bool end_common(struct xctx *x)
{
    if (x->err)
        return false;
    if (x->skip) {
        if (x->depth == x->skip)
            x->skip = 0;
        x->depth--;
        return false;
    }
    return true;
}

static void end_done(struct xctx *x)
{
    x->depth--;
}

static enum s3_err run_parser(struct xctx *x, const char *body, size_t len,
                              XML_StartElementHandler start, XML_EndElementHandler end)
{
    XML_Parser p;

    if (len > S3_MAX_XML_BODY)
        return S3E_MALFORMED_XML;
    p = XML_ParserCreateNS(NULL, NS_SEP);
    if (!p)
        return S3E_INTERNAL_ERROR;
    x->p = p;
    XML_SetUserData(p, x);
    XML_SetElementHandler(p, start, end);
    XML_SetCharacterDataHandler(p, on_text);
    XML_SetStartDoctypeDeclHandler(p, on_doctype);
    XML_SetEntityDeclHandler(p, on_entity_decl);
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
    if (XML_Parse(p, body, (int)len, XML_TRUE) != XML_STATUS_OK && !x->err) {
        /* expat reports running out of memory as an error of its own; everything else it
         * reports is the client's document. */
        x->err =
            XML_GetErrorCode(p) == XML_ERROR_NO_MEMORY ? S3E_INTERNAL_ERROR : S3E_MALFORMED_XML;
    }
    XML_ParserFree(p);
    x->p = NULL;
    return x->err;
}

/* ---- CompleteMultipartUpload ------------------------------------------------------------ */

static void XMLCALL complete_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xctx *x = ud;
    const char *local = s3_local(name);

    (void)attrs;
    if (!start_common(x))
        return;
    switch (x->depth) {
    case 1:
        if (!is_name(local, "CompleteMultipartUpload"))
            xfail(x, S3E_MALFORMED_XML);
        break;
    case 2:
        if (!is_name(local, "Part")) {
            xfail(x, S3E_MALFORMED_XML);
        } else if (x->cmp->nparts >= S3_MAX_PARTS) {
            xfail(x, S3E_MALFORMED_XML);
        } else {
            x->part_has_number = x->part_has_etag = false;
            memset(&x->part, 0, sizeof(x->part));
        }
        break;
    default: /* 3: a child of Part */
        if (is_name(local, "PartNumber")) {
            if (x->part_has_number)
                xfail(x, S3E_MALFORMED_XML);
            else
                begin_leaf(x, LEAF_PART_NUMBER, PART_NUMBER_MAX_TEXT);
        } else if (is_name(local, "ETag")) {
            if (x->part_has_etag)
                xfail(x, S3E_MALFORMED_XML);
            else
                begin_leaf(x, LEAF_ETAG, ETAG_MAX_TEXT);
        } else {
            begin_skip(x); /* ChecksumCRC32 and friends */
        }
        break;
    }
}

static void part_number_done(struct xctx *x)
{
    uint32_t n = 0;

    trim_text(x);
    if (x->text_len == 0 || x->text_len > 5) {
        xfail(x, S3E_MALFORMED_XML);
        return;
    }
    for (size_t i = 0; i < x->text_len; i++) {
        if (x->text[i] < '0' || x->text[i] > '9') {
            xfail(x, S3E_MALFORMED_XML);
            return;
        }
        n = n * 10 + (uint32_t)(x->text[i] - '0');
    }
    if (n < 1 || n > S3_MAX_PARTS) {
        xfail(x, S3E_MALFORMED_XML);
        return;
    }
    x->part.number = n;
    x->part_has_number = true;
}

static void etag_done(struct xctx *x)
{
    const char *s;
    size_t n;

    trim_text(x);
    s = x->text;
    n = x->text_len;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(x->part.etag)) {
        xfail(x, S3E_MALFORMED_XML);
        return;
    }
    memcpy(x->part.etag, s, n);
    x->part.etag[n] = '\0';
    x->part_has_etag = true;
}

static void part_done(struct xctx *x)
{
    struct s3_complete *c = x->cmp;

    if (!x->part_has_number || !x->part_has_etag) {
        xfail(x, S3E_MALFORMED_XML);
        return;
    }
    /* Order is reported only if the whole document is otherwise fine: MalformedXML wins. */
    if (c->nparts > 0 && x->part.number <= c->parts[c->nparts - 1].number)
        x->out_of_order = true;
    if (c->nparts == x->parts_cap) {
        unsigned cap = x->parts_cap ? x->parts_cap * 2 : 16;
        struct s3_complete_part *p;

        if (cap > S3_MAX_PARTS)
            cap = S3_MAX_PARTS;
        p = realloc(c->parts, cap * sizeof(*p));
        if (!p) {
            xfail(x, S3E_INTERNAL_ERROR);
            return;
        }
        c->parts = p;
        x->parts_cap = cap;
    }
    c->parts[c->nparts++] = x->part;
}

static void XMLCALL complete_end(void *ud, const XML_Char *name)
{
    struct xctx *x = ud;

    (void)name;
    if (!end_common(x))
        return;
    if (x->leaf != LEAF_NONE && x->depth == x->leaf_depth) {
        if (x->leaf == LEAF_PART_NUMBER)
            part_number_done(x);
        else
            etag_done(x);
        x->leaf = LEAF_NONE;
    } else if (x->depth == 2) {
        part_done(x);
    }
    end_done(x);
}

enum s3_err s3xml_parse_complete(const char *body, size_t len, struct s3_complete *out)
{
    struct xctx *x;
    enum s3_err err;

    memset(out, 0, sizeof(*out));
    x = calloc(1, sizeof(*x));
    if (!x)
        return S3E_INTERNAL_ERROR;
    x->cmp = out;
    err = run_parser(x, body, len, complete_start, complete_end);
    if (!err && out->nparts == 0)
        err = S3E_MALFORMED_XML;
    if (!err && x->out_of_order)
        err = S3E_INVALID_PART_ORDER;
    free(x);
    if (err)
        s3_complete_fini(out);
    return err;
}

void s3_complete_fini(struct s3_complete *c)
{
    if (!c)
        return;
    free(c->parts);
    c->parts = NULL;
    c->nparts = 0;
}

/* ---- Delete ----------------------------------------------------------------------------- */

static void XMLCALL delete_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xctx *x = ud;
    const char *local = s3_local(name);

    (void)attrs;
    if (!start_common(x))
        return;
    switch (x->depth) {
    case 1:
        if (!is_name(local, "Delete"))
            xfail(x, S3E_MALFORMED_XML);
        break;
    case 2:
        if (is_name(local, "Object")) {
            if (x->del->nkeys >= S3_MAX_DELETE_KEYS)
                xfail(x, S3E_MALFORMED_XML);
            else
                x->obj_has_key = false;
        } else if (is_name(local, "Quiet") && !x->seen_quiet) {
            begin_leaf(x, LEAF_QUIET, QUIET_MAX_TEXT);
        } else {
            xfail(x, S3E_MALFORMED_XML);
        }
        break;
    default: /* 3: a child of Object */
        if (is_name(local, "Key")) {
            if (x->obj_has_key)
                xfail(x, S3E_MALFORMED_XML);
            else
                begin_leaf(x, LEAF_KEY, S3_MAX_KEY_LEN);
        } else {
            begin_skip(x); /* VersionId (no versioning here), ETag, Size, ... */
        }
        break;
    }
}

static void quiet_done(struct xctx *x)
{
    trim_text(x);
    if (strcasecmp(x->text, "true") == 0)
        x->del->quiet = true;
    else if (strcasecmp(x->text, "false") == 0)
        x->del->quiet = false;
    else
        xfail(x, S3E_MALFORMED_XML);
    x->seen_quiet = true;
}

static void key_done(struct xctx *x)
{
    struct s3_delete *d = x->del;
    char *key;

    /* Keys are taken as sent: whitespace is part of an S3 key. */
    if (x->text_len == 0) {
        xfail(x, S3E_MALFORMED_XML);
        return;
    }
    if (d->nkeys == x->keys_cap) {
        unsigned cap = x->keys_cap ? x->keys_cap * 2 : 16;
        char **k;

        if (cap > S3_MAX_DELETE_KEYS)
            cap = S3_MAX_DELETE_KEYS;
        k = realloc(d->keys, cap * sizeof(*k));
        if (!k) {
            xfail(x, S3E_INTERNAL_ERROR);
            return;
        }
        d->keys = k;
        x->keys_cap = cap;
    }
    key = malloc(x->text_len + 1);
    if (!key) {
        xfail(x, S3E_INTERNAL_ERROR);
        return;
    }
    memcpy(key, x->text, x->text_len);
    key[x->text_len] = '\0';
    d->keys[d->nkeys++] = key;
    x->obj_has_key = true;
}

static void XMLCALL delete_end(void *ud, const XML_Char *name)
{
    struct xctx *x = ud;

    (void)name;
    if (!end_common(x))
        return;
    if (x->leaf != LEAF_NONE && x->depth == x->leaf_depth) {
        if (x->leaf == LEAF_QUIET)
            quiet_done(x);
        else
            key_done(x);
        x->leaf = LEAF_NONE;
    } else if (x->depth == 2 && !x->obj_has_key) {
        xfail(x, S3E_MALFORMED_XML); /* an Object without a Key */
    }
    end_done(x);
}

enum s3_err s3xml_parse_delete(const char *body, size_t len, struct s3_delete *out)
{
    struct xctx *x;
    enum s3_err err;

    memset(out, 0, sizeof(*out));
    x = calloc(1, sizeof(*x));
    if (!x)
        return S3E_INTERNAL_ERROR;
    x->del = out;
    err = run_parser(x, body, len, delete_start, delete_end);
    if (!err && out->nkeys == 0)
        err = S3E_MALFORMED_XML;
    free(x);
    if (err)
        s3_delete_fini(out);
    return err;
}

void s3_delete_fini(struct s3_delete *d)
{
    if (!d)
        return;
    for (unsigned i = 0; i < d->nkeys; i++)
        free(d->keys[i]);
    free(d->keys);
    d->keys = NULL;
    d->nkeys = 0;
    d->quiet = false;
}

/* ---- CreateBucketConfiguration ---------------------------------------------------------- */

static void XMLCALL bucket_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct xctx *x = ud;
    const char *local = s3_local(name);

    (void)attrs;
    if (!start_common(x))
        return;
    if (x->depth == 1) {
        if (!is_name(local, "CreateBucketConfiguration"))
            xfail(x, S3E_MALFORMED_XML);
    } else if (is_name(local, "LocationConstraint")) {
        if (x->seen_location)
            xfail(x, S3E_MALFORMED_XML);
        else
            begin_leaf(x, LEAF_LOCATION, S3_MAX_KEY_LEN);
    } else {
        begin_skip(x); /* Location, Bucket (directory buckets), Tags */
    }
}

static void XMLCALL bucket_end(void *ud, const XML_Char *name)
{
    struct xctx *x = ud;

    (void)name;
    if (!end_common(x))
        return;
    if (x->leaf == LEAF_LOCATION && x->depth == x->leaf_depth) {
        trim_text(x);
        if (x->text_len >= x->region_cap) {
            xfail(x, S3E_MALFORMED_XML);
        } else {
            memcpy(x->region, x->text, x->text_len + 1);
            x->seen_location = true;
        }
        x->leaf = LEAF_NONE;
    }
    end_done(x);
}

enum s3_err s3xml_parse_create_bucket(const char *body, size_t len, char *region, size_t cap)
{
    struct xctx *x;
    enum s3_err err;
    size_t i;

    assert(region && cap > 0);
    region[0] = '\0';
    for (i = 0; i < len && is_xml_space(body[i]); i++)
        ;
    if (i == len)
        return S3E_OK; /* no body: the default region */
    x = calloc(1, sizeof(*x));
    if (!x)
        return S3E_INTERNAL_ERROR;
    x->region = region;
    x->region_cap = cap;
    err = run_parser(x, body, len, bucket_start, bucket_end);
    free(x);
    if (err)
        region[0] = '\0';
    return err;
}

/* ---- time ------------------------------------------------------------------------------- */

static const char *const wday_short[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wday_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                         "Thursday", "Friday", "Saturday"};
static const char *const month_short[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

#define NS_PER_SEC 1000000000LL

/* Split unix ns into broken-down UTC time and the nanoseconds within the second (floor, so
 * times before 1970 work too).  Out-of-range input yields the epoch. */
static long split_time(int64_t unix_ns, struct tm *tm)
{
    int64_t sec = unix_ns / NS_PER_SEC, frac = unix_ns % NS_PER_SEC;
    time_t t;

    if (frac < 0) {
        frac += NS_PER_SEC;
        sec--;
    }
    t = (time_t)sec;
    if (!gmtime_r(&t, tm)) {
        t = 0;
        frac = 0;
        gmtime_r(&t, tm);
    }
    return (long)frac;
}

/* Both formats are 24..29 characters for every int64 nanosecond time (years 1677..2262); the
 * compiler cannot know the struct tm ranges, so format into room for any int and copy. */
static void copy_out(char *buf, const char *tmp)
{
    size_t n = strnlen(tmp, 31);

    memcpy(buf, tmp, n);
    buf[n] = '\0';
}

void s3_time_iso8601(int64_t unix_ns, char *buf)
{
    struct tm tm;
    long frac = split_time(unix_ns, &tm);
    char tmp[96];

    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac / 1000000);
    copy_out(buf, tmp);
}

void s3_time_http(int64_t unix_ns, char *buf)
{
    struct tm tm;
    char tmp[96];

    split_time(unix_ns, &tm);
    /* Names from our own tables: strftime's %a/%b follow the locale, HTTP dates do not. */
    snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d GMT", wday_short[tm.tm_wday],
             tm.tm_mday, month_short[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    copy_out(buf, tmp);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : dim[m - 1];
}

/* Match one of names[0..n) at *p (case-insensitively), advance past it; index or -1. */
static int scan_name(const char **p, const char *const *names, int n)
{
    for (int i = 0; i < n; i++) {
        size_t l = strlen(names[i]);

        if (strncasecmp(*p, names[i], l) == 0) {
            *p += l;
            return i;
        }
    }
    return -1;
}

static bool scan_char(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

/* Between min and max decimal digits at *p. */
static bool scan_num(const char **p, int min, int max, unsigned *out)
{
    unsigned v = 0;
    int n = 0;

    while (n < max && **p >= '0' && **p <= '9') {
        v = v * 10 + (unsigned)(**p - '0');
        (*p)++;
        n++;
    }
    *out = v;
    return n >= min;
}

static bool scan_hms(const char **p, unsigned *h, unsigned *mi, unsigned *s)
{
    return scan_num(p, 2, 2, h) && scan_char(p, ':') && scan_num(p, 2, 2, mi) &&
           scan_char(p, ':') && scan_num(p, 2, 2, s);
}

int64_t s3_time_parse_http(const char *s)
{
    const char *p = s;
    unsigned d, y, h, mi, sec;
    int mon;
    int64_t year, secs;

    if (!s)
        return -1;
    while (*p == ' ' || *p == '\t')
        p++;
    if (scan_name(&p, wday_long, 7) >= 0) {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        if (!scan_char(&p, ',') || !scan_char(&p, ' ') || !scan_num(&p, 2, 2, &d) ||
            !scan_char(&p, '-') || (mon = scan_name(&p, month_short, 12)) < 0 ||
            !scan_char(&p, '-') || !scan_num(&p, 2, 2, &y) || !scan_char(&p, ' ') ||
            !scan_hms(&p, &h, &mi, &sec) || !scan_char(&p, ' ') || strncmp(p, "GMT", 3) != 0)
            return -1;
        p += 3;
        /* Two-digit years: RFC 9110 wants "more than 50 years in the future is the past"; a
         * fixed pivot at 1970 is the same for every date this format is still sent with. */
        year = y < 70 ? 2000 + y : 1900 + y;
    } else if (scan_name(&p, wday_short, 7) >= 0) {
        if (scan_char(&p, ',')) {
            /* RFC 1123 / IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
            if (!scan_char(&p, ' ') || !scan_num(&p, 2, 2, &d) || !scan_char(&p, ' ') ||
                (mon = scan_name(&p, month_short, 12)) < 0 || !scan_char(&p, ' ') ||
                !scan_num(&p, 4, 4, &y) || !scan_char(&p, ' ') || !scan_hms(&p, &h, &mi, &sec) ||
                !scan_char(&p, ' ') || strncmp(p, "GMT", 3) != 0)
                return -1;
            p += 3;
        } else {
            /* asctime: "Sun Nov  6 08:49:37 1994" */
            if (!scan_char(&p, ' ') || (mon = scan_name(&p, month_short, 12)) < 0 ||
                !scan_char(&p, ' '))
                return -1;
            if (*p == ' ')
                p++;
            if (!scan_num(&p, 1, 2, &d) || !scan_char(&p, ' ') || !scan_hms(&p, &h, &mi, &sec) ||
                !scan_char(&p, ' ') || !scan_num(&p, 4, 4, &y))
                return -1;
        }
        year = y;
    } else {
        return -1;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0')
        return -1;
    if (d < 1 || d > days_in_month(year, (unsigned)mon + 1) || h > 23 || mi > 59 || sec > 60)
        return -1;
    secs = days_from_civil(year, (unsigned)mon + 1, d) * 86400 + h * 3600 + mi * 60 + sec;
    /* Representable as int64 nanoseconds (1677..2262). */
    if (secs > INT64_MAX / NS_PER_SEC || secs < INT64_MIN / NS_PER_SEC)
        return -1;
    return secs * NS_PER_SEC;
}
