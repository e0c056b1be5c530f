/*
 * s3.c - the S3 head (see s3.h).
 *
 * A request runs on one worker thread from start to end: authenticate (SigV4; the secret
 * comes from the user record on the D-nodes), resolve bucket and key to the namespace, move
 * the body between the socket and the D-nodes in segments of CN_SEGMENT_STRIPES stripes, and
 * commit metadata last.  Durability order for a PUT: every stripe is acknowledged (durable on
 * its D-node) -> the inode record is written on m + 1 D-nodes -> the directory entry is switched
 * to it by a conditional put -> 200.  An object is therefore visible whole or not at all, and a
 * C-node killed at any point leaves at worst unreferenced stripes and inodes (garbage), never
 * a half-visible object.  Overwrites are last-writer-wins: the entry is switched with a
 * compare-and-set loop, and the replaced inode's stripes are freed after the switch.
 *
 * Paths: path-style requests only (/bucket/key); the key is percent-decoded once.  A key is a
 * path: it must not have empty, "." or ".." components (S3 allows them; a file system cannot
 * name them), and a key ending in '/' is a directory marker (an explicit directory).
 */
#include "cnode/s3/s3.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "cnode/fs/file.h"
#include "cnode/http/http.h"
#include "cnode/s3/err.h"
#include "cnode/s3/xml.h"
#include "cnode/s3/sigv4.h"
#include "common/cairn.h"
#include "common/log.h"
#include "meta/ns.h"
#include "client/placement.h"

#define TAG "s3"
#define XML_TYPE "application/xml"
#define MAX_RESP_HEADERS 64
#define DEFAULT_CONTENT_TYPE "binary/octet-stream"
#define LIST_MAX_KEYS 1000u

struct s3_app {
    struct s3_config cfg;
    char region[64];
};

struct s3_worker {
    struct cl_cluster *cl;
    struct cn_fileio fio; /* segment buffer, deferred frees */
};

struct param {
    char *name; /* decoded, owned */
    char *value;
};

/* One request in flight. */
struct s3_req {
    struct s3_app *app;
    struct s3_worker *w;
    struct cl_cluster *cl;
    struct http_req *r;
    const struct http_request *h;
    char request_id[33];
    char bucket[64];
    char key[S3_MAX_KEY_LEN + 1];
    size_t key_len;
    bool has_bucket, has_key;
    struct param params[S3_MAX_QUERY_PARAMS];
    unsigned nparams;
    struct sigv4_auth auth;
    Cairn__User *user; /* NULL for anonymous */
    /* body source */
    struct sigv4_chunked *chunked;
    char *raw;          /* aws-chunked staging buffer */
    size_t raw_len, raw_off;
    bool raw_eof;
    int64_t body_len;   /* decoded length, -1 unknown */
    bool responded;
};

/* ---- small helpers ---- */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *param(const struct s3_req *q, const char *name)
{
    for (unsigned i = 0; i < q->nparams; i++)
        if (!strcmp(q->params[i].name, name))
            return q->params[i].value;
    return NULL;
}

static const char *hdr(const struct s3_req *q, const char *name)
{
    const struct http_header *h = http_header_find(q->h, name);

    return h ? h->value : NULL;
}

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

static void free_params(struct s3_req *q)
{
    for (unsigned i = 0; i < q->nparams; i++) {
        free(q->params[i].name);
        free(q->params[i].value);
    }
    q->nparams = 0;
}

/* The S3 error for a project error; failures of the cluster are logged (they are ours). */
static enum s3_err s3e(int rc)
{
    enum s3_err e = s3_err_from_cairn(rc);

    if (s3_err_info(e)->status >= 500)
        log_warn(TAG, "request failed: %s", cairn_strerror(rc));
    return e;
}

/* ---- responses ---- */

struct hdrs {
    struct http_header h[MAX_RESP_HEADERS];
    char *owned[MAX_RESP_HEADERS];
    unsigned n, nowned;
};

static void hdrs_add(struct hdrs *hs, const char *name, const char *value)
{
    if (hs->n >= MAX_RESP_HEADERS)
        return;
    hs->h[hs->n].name = name;
    hs->h[hs->n].name_len = strlen(name);
    hs->h[hs->n].value = value;
    hs->h[hs->n].value_len = strlen(value);
    hs->n++;
}

/* Add a header whose name and value are copied. */
static void hdrs_addf(struct hdrs *hs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void hdrs_addf(struct hdrs *hs, const char *name, const char *fmt, ...)
{
    char *v, *n;
    va_list ap;

    if (hs->n >= MAX_RESP_HEADERS || hs->nowned + 2 > MAX_RESP_HEADERS)
        return;
    va_start(ap, fmt);
    if (vasprintf(&v, fmt, ap) < 0)
        v = NULL;
    va_end(ap);
    n = strdup(name);
    if (!v || !n) {
        free(v);
        free(n);
        return;
    }
    hs->owned[hs->nowned++] = v;
    hs->owned[hs->nowned++] = n;
    hdrs_add(hs, n, v);
}

static void hdrs_fini(struct hdrs *hs)
{
    for (unsigned i = 0; i < hs->nowned; i++)
        free(hs->owned[i]);
}

static void std_headers(struct s3_req *q, struct hdrs *hs)
{
    hdrs_add(hs, "x-amz-request-id", q->request_id);
}

static void reply_error_msg(struct s3_req *q, enum s3_err e, const char *message)
{
    const struct s3_err_info *info = s3_err_info(e);
    struct hdrs hs = {0};
    struct s3_xbuf b;
    char resource[S3_MAX_KEY_LEN + 80];

    if (q->responded)
        return;
    q->responded = true;
    std_headers(q, &hs);
    if (q->h->method == HTTP_HEAD || info->status == 304) {
        http_req_reply(q->r, info->status, hs.h, hs.n, NULL, 0);
        return;
    }
    snprintf(resource, sizeof(resource), "/%s%s%s", q->bucket, q->has_key ? "/" : "",
             q->has_key ? q->key : "");
    s3_xbuf_init(&b);
    s3_xml_error(&b, e, message, resource, q->request_id);
    hdrs_add(&hs, "Content-Type", XML_TYPE);
    if (info->status >= 500 || info->status == 400)
        log_debug(TAG, "%s %s: %s", q->h->method_name, q->h->target, info->code);
    http_req_reply(q->r, info->status, hs.h, hs.n, b.oom ? "" : b.data, b.oom ? 0 : b.len);
    s3_xbuf_fini(&b);
}

static void reply_error(struct s3_req *q, enum s3_err e)
{
    reply_error_msg(q, e, NULL);
}

static void reply_cairn(struct s3_req *q, int rc)
{
    if (rc != CAIRN_ENOENT && rc != CAIRN_ECONFLICT)
        log_warn(TAG, "%s %s: %s", q->h->method_name, q->h->target, cairn_strerror(rc));
    reply_error(q, s3e(rc));
}

static void reply_xml(struct s3_req *q, int status, struct s3_xbuf *b)
{
    struct hdrs hs = {0};

    q->responded = true;
    if (b->oom) {
        q->responded = false;
        reply_error(q, S3E_INTERNAL_ERROR);
        return;
    }
    std_headers(q, &hs);
    hdrs_add(&hs, "Content-Type", XML_TYPE);
    http_req_reply(q->r, status, hs.h, hs.n, b->data, b->len);
}

static void reply_empty(struct s3_req *q, int status, struct hdrs *extra)
{
    struct hdrs hs = {0};

    q->responded = true;
    std_headers(q, &hs);
    for (unsigned i = 0; extra && i < extra->n; i++)
        hdrs_add(&hs, extra->h[i].name, extra->h[i].value);
    http_req_reply(q->r, status, hs.h, hs.n, NULL, 0);
}

/* ---- request parsing ---- */

static bool bucket_name_valid(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '-' ||
              b[i] == '.'))
            return false;
    return isalnum((unsigned char)b[0]) && isalnum((unsigned char)b[n - 1]);
}

/* Every component of a key must be a valid name; a trailing '/' marks a directory. */
static bool key_valid(const char *k, size_t n)
{
    size_t start = 0;

    if (n == 0 || n > S3_MAX_KEY_LEN || memchr(k, 0, n))
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || k[i] == '/') {
            if (i == n && start == n && n > 0 && k[n - 1] == '/')
                break; /* directory marker */
            if (!meta_name_valid(k + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

static enum s3_err parse_target(struct s3_req *q)
{
    const char *p = q->h->path;
    char *dec;
    long n;
    const char *slash;

    if (p[0] != '/')
        return S3E_INVALID_URI;
    dec = malloc(q->h->path_len + 1);
    if (!dec)
        return S3E_INTERNAL_ERROR;
    n = http_pct_decode(p + 1, q->h->path_len - 1, dec, q->h->path_len + 1);
    if (n < 0) {
        free(dec);
        return S3E_INVALID_URI;
    }
    slash = memchr(dec, '/', (size_t)n);
    if (n > 0) {
        size_t bl = slash ? (size_t)(slash - dec) : (size_t)n;

        if (bl >= sizeof(q->bucket) || !bucket_name_valid(dec, bl)) {
            free(dec);
            return S3E_INVALID_BUCKET_NAME;
        }
        memcpy(q->bucket, dec, bl);
        q->bucket[bl] = 0;
        q->has_bucket = true;
        if (slash && (size_t)(slash - dec) + 1 < (size_t)n) {
            size_t kl = (size_t)n - bl - 1;

            if (kl > S3_MAX_KEY_LEN) {
                free(dec);
                return S3E_KEY_TOO_LONG;
            }
            memcpy(q->key, slash + 1, kl);
            q->key[kl] = 0;
            q->key_len = kl;
            q->has_key = true;
        }
    }
    free(dec);
    return S3E_OK;
}

static enum s3_err parse_query(struct s3_req *q)
{
    const char *s = q->h->query, *end = s + q->h->query_len;

    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        size_t nl = (size_t)((eq ? eq : e) - s), vl = eq ? (size_t)(e - eq - 1) : 0;
        struct param *pp;

        if (nl == 0) {
            s = e + 1;
            continue;
        }
        if (q->nparams >= S3_MAX_QUERY_PARAMS)
            return S3E_INVALID_ARGUMENT;
        pp = &q->params[q->nparams];
        pp->name = malloc(nl + 1);
        pp->value = malloc(vl + 1);
        if (!pp->name || !pp->value) {
            free(pp->name);
            free(pp->value);
            return S3E_INTERNAL_ERROR;
        }
        q->nparams++;
        if (http_pct_decode(s, nl, pp->name, nl + 1) < 0 ||
            http_pct_decode(eq ? eq + 1 : "", vl, pp->value, vl + 1) < 0)
            return S3E_INVALID_ARGUMENT;
        s = e + 1;
    }
    return S3E_OK;
}

static enum s3_err authenticate(struct s3_req *q)
{
    enum s3_err e = sigv4_parse(q->h, time(NULL), &q->auth);
    int rc;

    if (e)
        return e;
    if (q->auth.anonymous)
        return S3E_OK;
    rc = meta_user_get(q->cl, q->auth.access_key, &q->user);
    if (rc == CAIRN_ENOENT || rc == CAIRN_EINVAL)
        return S3E_INVALID_ACCESS_KEY_ID;
    if (rc)
        return s3e(rc);
    return sigv4_verify(q->h, &q->auth, q->user->secret_key);
}

/* ---- request bodies ---- */

#define RAW_CAP (256u << 10)

/* Set up the body source: plain, or aws-chunked decoded and signature-checked. */
static enum s3_err body_open(struct s3_req *q)
{
    const char *dl = hdr(q, "x-amz-decoded-content-length");
    enum sigv4_payload p = q->auth.anonymous ? SIGV4_PAYLOAD_UNSIGNED : q->auth.payload;

    q->body_len = q->h->content_length;
    if (p == SIGV4_PAYLOAD_STREAMING || p == SIGV4_PAYLOAD_STREAMING_TRAILER ||
        p == SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER) {
        const char *tr = hdr(q, "x-amz-trailer");
        char *end;
        long long v;

        if (!dl)
            return S3E_MISSING_CONTENT_LENGTH;
        v = strtoll(dl, &end, 10);
        if (*end || v < 0)
            return S3E_INVALID_ARGUMENT;
        q->body_len = v;
        q->chunked = sigv4_chunked_create(&q->auth, tr ? s3_cksum_alg_from_header(tr) : S3_CK_NONE,
                                          v);
        q->raw = malloc(RAW_CAP);
        if (!q->chunked || !q->raw)
            return S3E_INTERNAL_ERROR;
    } else if (q->body_len < 0 && q->h->chunked) {
        if (!dl)
            return S3E_MISSING_CONTENT_LENGTH;
        q->body_len = strtoll(dl, NULL, 10);
    }
    return S3E_OK;
}

/* Read up to len decoded body bytes.  Returns bytes, 0 at the end, or a negative s3_err. */
static ssize_t body_read(struct s3_req *q, uint8_t *buf, size_t len)
{
    if (!q->chunked) {
        ssize_t n = http_req_read(q->r, buf, len);

        return n < 0 ? -(ssize_t)S3E_INCOMPLETE_BODY : n;
    }
    for (;;) {
        const char *data;
        size_t dlen, used;
        enum sigv4_chunk_event ev;

        if (q->raw_off == q->raw_len && !q->raw_eof) {
            ssize_t n = http_req_read(q->r, q->raw, RAW_CAP);

            if (n < 0)
                return -(ssize_t)S3E_INCOMPLETE_BODY;
            q->raw_off = 0;
            q->raw_len = (size_t)n;
            if (n == 0)
                q->raw_eof = true;
        }
        ev = sigv4_chunked_feed(q->chunked, q->raw + q->raw_off,
                                CAIRN_MIN(q->raw_len - q->raw_off, len), &used, &data, &dlen);
        q->raw_off += used;
        switch (ev) {
        case SIGV4_CH_DATA:
            memcpy(buf, data, dlen); /* decoded chunk data is a span of raw: one copy */
            return (ssize_t)dlen;
        case SIGV4_CH_DONE:
            return 0;
        case SIGV4_CH_ERROR:
            return -(ssize_t)sigv4_chunked_error(q->chunked);
        case SIGV4_CH_NEED_MORE:
            if (q->raw_eof)
                return -(ssize_t)S3E_INCOMPLETE_BODY;
            break;
        }
    }
}

/* Read exactly len bytes (or fail). */
static enum s3_err body_read_full(struct s3_req *q, uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = body_read(q, buf + got, len - got);

        if (n < 0)
            return (enum s3_err)(-n);
        if (n == 0)
            return S3E_INCOMPLETE_BODY;
        got += (size_t)n;
    }
    return S3E_OK;
}

/* After the declared length: the body must end here (and, for aws-chunked, verify). */
static enum s3_err body_close(struct s3_req *q)
{
    uint8_t b[16];
    ssize_t n = body_read(q, b, sizeof(b));

    if (n < 0)
        return (enum s3_err)(-n);
    return n == 0 ? S3E_OK : S3E_INCOMPLETE_BODY;
}

static void body_fini(struct s3_req *q)
{
    sigv4_chunked_destroy(q->chunked);
    free(q->raw);
}

/* ---- data ---- */

static uint64_t stripe_bytes(const struct ec_layout *l)
{
    return (uint64_t)l->k * l->frag_size;
}

static void free_extents(struct cl_cluster *cl, Cairn__Extent **ex, size_t n)
{
    cn_extents_free(cl, ex, n);
}

/* Delete an unlinked inode: drop the link (the record goes at the last one) and free its
 * stripes CN_FREE_DELAY_MS later, so GETs that resolved it just before can still read it. */
static void inode_free(struct s3_worker *w, uint64_t ino)
{
    int rc = cn_file_unlink(&w->fio, ino, NULL);

    if (rc && rc != CAIRN_ENOENT)
        log_warn(TAG, "unlinking inode %016" PRIx64 ": %s", ino, cairn_strerror(rc));
}

/* What a body upload produced. */
struct upload_result {
    Cairn__Extent ext; /* length 0 and object_id 0 for inline data */
    uint8_t *inline_data; /* owned, for small bodies */
    size_t inline_len;
    uint8_t md5[16];
    char etag[33];
    char cksum_name[32];
    char cksum_value[64];
};

static bool is_b64_digest(const char *s, size_t want_bytes)
{
    uint8_t out[64];

    return s && s3_base64_decode(s, strlen(s), out, sizeof(out)) == (long)want_bytes;
}

/* Stream the request body (len bytes) to the D-nodes, computing the checksums the request
 * asks to verify; on any failure nothing stays behind. */
static enum s3_err upload_body(struct s3_req *q, uint64_t len, bool allow_inline,
                               struct upload_result *res)
{
    const struct ec_layout *l = cl_cluster_layout(q->cl);
    const char *cmd5 = hdr(q, "content-md5");
    enum s3_cksum_alg alg = S3_CK_NONE;
    const char *alg_value = NULL;
    bool want_sha = !q->auth.anonymous && q->auth.payload == SIGV4_PAYLOAD_HASH;
    struct s3_cksum *ck;
    uint8_t sha[32];
    char algb64[64];
    uint64_t done = 0, first_stripe = 0;
    enum s3_err e = S3E_OK;
    size_t cap;
    int rc;

    memset(res, 0, sizeof(*res));
    cairn__extent__init(&res->ext);
    if (cmd5 && !is_b64_digest(cmd5, 16))
        return S3E_INVALID_DIGEST;
    for (unsigned i = 0; i < q->h->nheaders; i++) {
        enum s3_cksum_alg a = s3_cksum_alg_from_header(q->h->headers[i].name);

        if (a != S3_CK_NONE) {
            alg = a;
            alg_value = q->h->headers[i].value;
        }
    }
    if (len > S3_MAX_PUT_SIZE)
        return S3E_ENTITY_TOO_LARGE;
    ck = s3_cksum_create(want_sha, alg);
    if (!ck)
        return S3E_INTERNAL_ERROR;
    if (allow_inline && len <= META_INLINE_MAX) {
        res->inline_data = malloc(len ? len : 1);
        if (!res->inline_data) {
            e = S3E_INTERNAL_ERROR;
            goto out;
        }
        e = body_read_full(q, res->inline_data, len);
        if (e)
            goto out;
        res->inline_len = len;
        s3_cksum_update(ck, res->inline_data, len);
    } else {
        rc = cn_fileio_seg(&q->w->fio, l, &cap);
        if (rc) {
            e = S3E_INTERNAL_ERROR;
            goto out;
        }
        res->ext.object_id = meta_new_ino();
        res->ext.gen = 1;
        res->ext.k = l->k;
        res->ext.m = l->m;
        res->ext.frag_size = l->frag_size;
        while (done < len) {
            size_t n = (size_t)CAIRN_MIN((uint64_t)cap, len - done);

            e = body_read_full(q, q->w->fio.seg, n);
            if (e)
                goto out;
            s3_cksum_update(ck, q->w->fio.seg, n);
            rc = cl_stripe_write_at(q->cl, res->ext.object_id, 1, first_stripe, q->w->fio.seg, n,
                                    NULL);
            done += n;
            res->ext.length = done; /* what to free if a later step fails */
            if (rc) {
                log_warn(TAG, "stripe write: %s", cairn_strerror(rc));
                e = s3e(rc);
                goto out;
            }
            first_stripe += n / stripe_bytes(l);
        }
    }
    e = body_close(q);
    if (e)
        goto out;
    s3_cksum_final(ck, res->md5, sha, algb64);
    hex(res->md5, 16, res->etag);
    if (cmd5) {
        uint8_t want[16];

        s3_base64_decode(cmd5, strlen(cmd5), want, sizeof(want));
        if (memcmp(want, res->md5, 16)) {
            e = S3E_BAD_DIGEST;
            goto out;
        }
    }
    if (want_sha) {
        char shahex[65];

        hex(sha, 32, shahex);
        if (strcmp(shahex, q->auth.payload_sha256)) {
            e = S3E_XAMZ_CONTENT_SHA256_MISMATCH;
            goto out;
        }
    }
    if (alg != S3_CK_NONE) {
        if (strcmp(alg_value, algb64)) {
            e = S3E_BAD_DIGEST;
            goto out;
        }
        snprintf(res->cksum_name, sizeof(res->cksum_name), "%s", s3_cksum_header_name(alg));
        snprintf(res->cksum_value, sizeof(res->cksum_value), "%s", algb64);
    }
out:
    s3_cksum_destroy(ck);
    if (e) {
        if (res->ext.length)
            free_extents(q->cl, (Cairn__Extent *[]){&res->ext}, 1);
        free(res->inline_data);
        res->inline_data = NULL;
    }
    return e;
}

static int sink_client(void *arg, const uint8_t *data, size_t len)
{
    return http_req_write(arg, data, len);
}

/* Read bytes [off, off + len) of a file and hand them to sink. */
static int read_range(struct s3_req *q, const Cairn__Inode *in, uint64_t off, uint64_t len,
                      cn_sink sink, void *arg)
{
    return cn_file_read(&q->w->fio, in, off, len, sink, arg);
}

/* ---- namespace resolution ---- */

/* The bucket's directory inode.  Errors: NoSuchBucket or from the cluster. */
static enum s3_err bucket_ino(struct s3_req *q, uint64_t *ino, Cairn__Inode **bin)
{
    Cairn__Dirent *d;
    int rc = meta_dirent_get(q->cl, META_ROOT_INO, q->bucket, strlen(q->bucket), true, &d, NULL);

    if (rc == CAIRN_ENOENT)
        return S3E_NO_SUCH_BUCKET;
    if (rc)
        return s3e(rc);
    *ino = d->ino;
    cairn__dirent__free_unpacked(d, NULL);
    if (bin) {
        rc = meta_inode_get(q->cl, *ino, bin, NULL);
        if (rc == CAIRN_ENOENT)
            return S3E_NO_SUCH_BUCKET;
        if (rc)
            return s3e(rc);
    }
    return S3E_OK;
}

/* Anonymous requests pass only on public buckets, and only to read. */
static enum s3_err check_access(struct s3_req *q, const Cairn__Inode *bucket, bool write)
{
    if (q->user)
        return S3E_OK;
    if (!write && bucket && bucket->public_read)
        return S3E_OK;
    return S3E_ACCESS_DENIED;
}

/* Walk the directories of key (all components but the last) from dir.  create: make missing
 * ones (implied directories).  *last / *last_len: the final name ("" for "dir/" keys). */
static int walk_dirs(struct s3_req *q, uint64_t dir, const char *key, size_t klen, bool create,
                     uint64_t *out, const char **last, size_t *last_len)
{
    size_t start = 0;

    for (size_t i = 0; i < klen; i++) {
        if (key[i] != '/')
            continue;
        if (create) {
            int rc = meta_mkdir(q->cl, dir, key + start, i - start, false, 0, &dir);

            if (rc)
                return rc;
        } else {
            Cairn__Dirent *d;
            int rc = meta_dirent_get(q->cl, dir, key + start, i - start, true, &d, NULL);

            if (rc)
                return rc;
            dir = d->ino;
            cairn__dirent__free_unpacked(d, NULL);
        }
        start = i + 1;
    }
    *out = dir;
    *last = key + start;
    *last_len = klen - start;
    return 0;
}

/* The inode an object key names.  A "dir/" key names an explicit directory. */
static int resolve(struct s3_req *q, uint64_t bucket, const char *key, size_t klen, uint64_t *ino,
                   Cairn__Inode **in, uint64_t *version)
{
    const char *last;
    size_t ll;
    uint64_t dir;
    Cairn__Dirent *d;
    int rc = walk_dirs(q, bucket, key, klen, false, &dir, &last, &ll);

    if (rc)
        return rc;
    if (ll == 0) {
        rc = meta_inode_get(q->cl, dir, in, version);
        if (rc)
            return rc;
        if (!(*in)->explicit_dir || dir == bucket) {
            cairn__inode__free_unpacked(*in, NULL);
            *in = NULL;
            return CAIRN_ENOENT;
        }
        *ino = dir;
        return 0;
    }
    rc = meta_dirent_get(q->cl, dir, last, ll, false, &d, NULL);
    if (rc)
        return rc;
    *ino = d->ino;
    cairn__dirent__free_unpacked(d, NULL);
    rc = meta_inode_get(q->cl, *ino, in, version);
    return rc;
}

/* Make dir's entry name point at the new file inode (last writer wins); free what it replaced. */
static int link_file(struct s3_req *q, uint64_t dir, const char *name, size_t nl, uint64_t ino,
                     const Cairn__Inode *in)
{
    Cairn__Dirent nd = CAIRN__DIRENT__INIT, *od = NULL;
    int rc;

    nd.ino = ino;
    nd.type = CAIRN__FILE_TYPE__FT_FILE;
    nd.size = in->size;
    nd.etag = in->etag;
    nd.mtime_ns = in->mtime_ns;
    /* A directory of that name excludes the file. */
    rc = meta_dirent_get(q->cl, dir, name, nl, true, &od, NULL);
    if (rc == 0) {
        cairn__dirent__free_unpacked(od, NULL);
        return CAIRN_EEXIST;
    }
    if (rc != CAIRN_ENOENT)
        return rc;
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t ver = 0, old = 0;

        od = NULL;
        rc = meta_dirent_get(q->cl, dir, name, nl, false, &od, &ver);
        if (rc && rc != CAIRN_ENOENT)
            return rc;
        if (od) {
            old = od->ino;
            cairn__dirent__free_unpacked(od, NULL);
        }
        rc = meta_dirent_put(q->cl, dir, name, nl, &nd, ver, NULL);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc)
            return rc;
        if (old && old != ino)
            inode_free(q->w, old);
        return 0;
    }
    return CAIRN_ECONFLICT;
}

/* ---- stored headers and metadata ---- */

static const char *const stored_headers[] = {"cache-control", "content-disposition",
                                             "content-encoding", "content-language", "expires",
                                             "x-amz-website-redirect-location"};

static enum s3_err collect_meta(struct s3_req *q, Cairn__Inode *in, Cairn__Pair *pairs,
                                Cairn__Pair **ptrs, size_t max)
{
    size_t np = 0, meta_bytes = 0, nh = 0, nm = 0;
    const char *ct = hdr(q, "content-type");

    in->content_type = (char *)(ct ? ct : DEFAULT_CONTENT_TYPE);
    for (unsigned i = 0; i < q->h->nheaders; i++) {
        const struct http_header *h = &q->h->headers[i];
        bool stored = false;

        for (size_t j = 0; j < CAIRN_ARRAY_SIZE(stored_headers); j++)
            stored |= !strcmp(h->name, stored_headers[j]);
        if (stored && np < max) {
            cairn__pair__init(&pairs[np]);
            pairs[np].name = (char *)h->name;
            pairs[np].value = (char *)h->value;
            ptrs[np] = &pairs[np];
            np++;
            nh++;
        }
    }
    in->headers = ptrs;
    in->n_headers = nh;
    for (unsigned i = 0; i < q->h->nheaders; i++) {
        const struct http_header *h = &q->h->headers[i];

        if (strncmp(h->name, "x-amz-meta-", 11))
            continue;
        meta_bytes += h->name_len - 11 + h->value_len;
        if (meta_bytes > S3_MAX_USER_META)
            return S3E_METADATA_TOO_LARGE;
        if (np >= max)
            return S3E_METADATA_TOO_LARGE;
        cairn__pair__init(&pairs[np]);
        pairs[np].name = (char *)h->name + 11;
        pairs[np].value = (char *)h->value;
        ptrs[np] = &pairs[np];
        np++;
        nm++;
    }
    in->user_meta = ptrs + nh;
    in->n_user_meta = nm;
    return S3E_OK;
}

static void object_headers(const Cairn__Inode *in, struct hdrs *hs)
{
    char t[40];

    hdrs_addf(hs, "ETag", "\"%s\"", in->etag);
    s3_time_http(in->mtime_ns, t);
    hdrs_addf(hs, "Last-Modified", "%s", t);
    hdrs_add(hs, "Content-Type", in->content_type && *in->content_type ? in->content_type
                                                                       : DEFAULT_CONTENT_TYPE);
    hdrs_add(hs, "Accept-Ranges", "bytes");
    for (size_t i = 0; i < in->n_headers; i++)
        hdrs_add(hs, in->headers[i]->name, in->headers[i]->value);
    for (size_t i = 0; i < in->n_user_meta; i++) {
        char name[300];

        snprintf(name, sizeof(name), "x-amz-meta-%s", in->user_meta[i]->name);
        hdrs_addf(hs, name, "%s", in->user_meta[i]->value);
    }
    if (in->parts)
        hdrs_addf(hs, "x-amz-mp-parts-count", "%u", in->parts);
}

/* ---- objects ---- */

static void fill_file_inode(Cairn__Inode *in, struct upload_result *res, Cairn__Extent **xp,
                            uint64_t size)
{
    int64_t t = now_ns();

    in->type = CAIRN__FILE_TYPE__FT_FILE;
    in->mode = META_S3_FILE_MODE;
    in->nlink = 1;
    in->size = size;
    in->mtime_ns = in->ctime_ns = in->btime_ns = t;
    if (res->inline_data) {
        in->inline_data.data = res->inline_data;
        in->inline_data.len = res->inline_len;
    } else if (size) {
        xp[0] = &res->ext;
        in->extents = xp;
        in->n_extents = 1;
    }
    if (res->cksum_name[0]) {
        in->checksum_name = res->cksum_name;
        in->checksum_value = res->cksum_value;
    }
}

/* Create the file inode and link it under key; on failure free what was written. */
static enum s3_err commit_file(struct s3_req *q, uint64_t bucket, Cairn__Inode *in,
                               Cairn__Extent **ex, size_t nex)
{
    const char *last;
    size_t ll;
    uint64_t dir, ino;
    int rc = walk_dirs(q, bucket, q->key, q->key_len, true, &dir, &last, &ll);

    char name[META_NAME_MAX + 1];

    in->parent = dir;
    if (!rc) {
        memcpy(name, last, CAIRN_MIN(ll, (size_t)META_NAME_MAX));
        name[CAIRN_MIN(ll, (size_t)META_NAME_MAX)] = 0;
        in->name = name;
        rc = meta_inode_create(q->cl, in, &ino);
    }
    if (rc) {
        free_extents(q->cl, ex, nex);
        return rc == CAIRN_EEXIST ? S3E_PATH_CONFLICT : s3e(rc);
    }
    rc = link_file(q, dir, last, ll, ino, in);
    if (rc) {
        meta_inode_del(q->cl, ino, META_ANY);
        free_extents(q->cl, ex, nex);
        return rc == CAIRN_EEXIST ? S3E_PATH_CONFLICT : s3e(rc);
    }
    return S3E_OK;
}

static void put_dir_marker(struct s3_req *q, uint64_t bucket)
{
    const char *last;
    size_t ll;
    uint64_t dir, ino;
    int rc;

    if (q->body_len > 0) {
        reply_error_msg(q, S3E_INVALID_ARGUMENT, "A key ending in '/' names a directory and "
                                                 "cannot have data");
        return;
    }
    /* The last component is the directory itself: make the parents, then it, explicit. */
    rc = walk_dirs(q, bucket, q->key, q->key_len - 1, true, &dir, &last, &ll);
    if (!rc)
        rc = meta_mkdir(q->cl, dir, last, ll, true, META_S3_DIR_MODE, &ino);
    if (rc) {
        reply_error(q, rc == CAIRN_EEXIST ? S3E_PATH_CONFLICT : s3e(rc));
        return;
    }
    {
        struct hdrs hs = {0};

        hdrs_add(&hs, "ETag", "\"d41d8cd98f00b204e9800998ecf8427e\"");
        reply_empty(q, 200, &hs);
    }
}

static void copy_object(struct s3_req *q, uint64_t bucket, const char *src);

static void put_object(struct s3_req *q)
{
    Cairn__Inode in = CAIRN__INODE__INIT, *bin = NULL;
    Cairn__Pair pairs[64], *ptrs[64];
    Cairn__Extent *xp[1];
    struct upload_result res;
    struct hdrs hs = {0};
    uint64_t bucket;
    enum s3_err e;
    const char *src = hdr(q, "x-amz-copy-source");

    e = bucket_ino(q, &bucket, &bin);
    if (!e)
        e = check_access(q, bin, true);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e)
        goto fail;
    if (src) {
        copy_object(q, bucket, src);
        return;
    }
    e = body_open(q);
    if (e)
        goto fail;
    if (q->body_len < 0) {
        e = S3E_MISSING_CONTENT_LENGTH;
        goto fail;
    }
    if (q->key[q->key_len - 1] == '/') {
        put_dir_marker(q, bucket);
        return;
    }
    e = collect_meta(q, &in, pairs, ptrs, CAIRN_ARRAY_SIZE(pairs));
    if (e)
        goto fail;
    e = upload_body(q, (uint64_t)q->body_len, true, &res);
    if (e)
        goto fail;
    fill_file_inode(&in, &res, xp, (uint64_t)q->body_len);
    in.etag = res.etag;
    e = commit_file(q, bucket, &in, res.inline_data ? NULL : xp, res.inline_data || !in.n_extents ? 0 : 1);
    free(res.inline_data);
    if (e)
        goto fail;
    hdrs_addf(&hs, "ETag", "\"%s\"", res.etag);
    if (res.cksum_name[0])
        hdrs_addf(&hs, res.cksum_name, "%s", res.cksum_value);
    reply_empty(q, 200, &hs);
    hdrs_fini(&hs);
    return;
fail:
    reply_error(q, e);
}

/* Evaluate If-Match & co.  Returns S3E_OK, S3E_PRECONDITION_FAILED or S3E_NOT_MODIFIED. */
static enum s3_err preconditions(struct s3_req *q, const Cairn__Inode *in, const char *prefix)
{
    char name[64];
    const char *im, *inm, *ims, *ius;
    char quoted[80];

    snprintf(quoted, sizeof(quoted), "\"%s\"", in->etag);
#define H(n) (snprintf(name, sizeof(name), "%s%s", prefix, n), hdr(q, name))
    im = H("if-match");
    inm = H("if-none-match");
    ims = H("if-modified-since");
    ius = H("if-unmodified-since");
#undef H
    if (im && strcmp(im, "*") && strcmp(im, quoted) && strcmp(im, in->etag))
        return S3E_PRECONDITION_FAILED;
    if (!im && ius) {
        int64_t t = s3_time_parse_http(ius);

        if (t >= 0 && in->mtime_ns / 1000000000 > t / 1000000000)
            return S3E_PRECONDITION_FAILED;
    }
    if (inm && (!strcmp(inm, "*") || !strcmp(inm, quoted) || !strcmp(inm, in->etag)))
        return q->h->method == HTTP_GET || q->h->method == HTTP_HEAD ? S3E_NOT_MODIFIED
                                                                    : S3E_PRECONDITION_FAILED;
    if (!inm && ims) {
        int64_t t = s3_time_parse_http(ims);

        if (t >= 0 && in->mtime_ns / 1000000000 <= t / 1000000000)
            return S3E_NOT_MODIFIED;
    }
    return S3E_OK;
}

/* Parse "bytes=a-b", "bytes=a-", "bytes=-n".  Returns 1 with the range, 0 to ignore the
 * header (serve everything, as S3 does for unparsable ranges), -1 for InvalidRange. */
static int parse_range(const char *r, uint64_t size, uint64_t *off, uint64_t *len)
{
    unsigned long long a, b;
    char *end;

    if (strncmp(r, "bytes=", 6) || strchr(r, ','))
        return 0;
    r += 6;
    if (*r == '-') {
        b = strtoull(r + 1, &end, 10);
        if (*end || end == r + 1)
            return 0;
        if (b == 0)
            return -1;
        if (size == 0)
            return -1;
        *len = CAIRN_MIN(b, size);
        *off = size - *len;
        return 1;
    }
    if (!isdigit((unsigned char)*r))
        return 0;
    a = strtoull(r, &end, 10);
    if (*end != '-')
        return 0;
    r = end + 1;
    if (*r == 0) {
        b = size ? size - 1 : 0;
    } else {
        b = strtoull(r, &end, 10);
        if (*end || b < a)
            return 0;
    }
    if (a >= size)
        return -1;
    if (b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

static void get_object(struct s3_req *q)
{
    Cairn__Inode *in = NULL, *bin = NULL;
    struct hdrs hs = {0};
    uint64_t bucket, ino, off = 0, len;
    const char *range = hdr(q, "range");
    int status = 200, rc;
    enum s3_err e;
    static char empty_md5[] = "d41d8cd98f00b204e9800998ecf8427e";
    char *orig_etag = NULL;

    e = bucket_ino(q, &bucket, &bin);
    if (!e)
        e = check_access(q, bin, false);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    rc = resolve(q, bucket, q->key, q->key_len, &ino, &in, NULL);
    if (rc) {
        reply_error(q, rc == CAIRN_ENOENT || rc == CAIRN_EINVAL ? S3E_NO_SUCH_KEY
                                                                : s3e(rc));
        return;
    }
    /* An explicit directory reads as an empty object.  in->etag may point at a static string
     * for this request only: the unpacked original is put back before the inode is freed. */
    orig_etag = in->etag;
    if (in->type == CAIRN__FILE_TYPE__FT_DIR)
        in->size = 0;
    if (in->size == 0 && (in->type == CAIRN__FILE_TYPE__FT_DIR || !in->etag || !*in->etag))
        in->etag = empty_md5;
    e = preconditions(q, in, "");
    if (e) {
        object_headers(in, &hs);
        if (e == S3E_NOT_MODIFIED) {
            q->responded = true;
            std_headers(q, &hs);
            http_req_reply(q->r, 304, hs.h, hs.n, NULL, 0);
        } else {
            reply_error(q, e);
        }
        goto out;
    }
    len = in->size;
    if (range) {
        int pr = parse_range(range, in->size, &off, &len);

        if (pr < 0) {
            hdrs_addf(&hs, "Content-Range", "bytes */%" PRIu64, in->size);
            reply_error(q, S3E_INVALID_RANGE);
            goto out;
        }
        if (pr > 0) {
            status = 206;
            hdrs_addf(&hs, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off,
                      off + len - 1, in->size);
        }
    }
    object_headers(in, &hs);
    std_headers(q, &hs);
    q->responded = true;
    if (http_req_respond(q->r, status, hs.h, hs.n, (int64_t)len))
        goto out;
    if (q->h->method != HTTP_HEAD && len) {
        rc = read_range(q, in, off, len, sink_client, q->r);
        if (rc) {
            /* Headers are out: the only honest signal left is to cut the connection. */
            log_warn(TAG, "GET %s/%s: %s after the headers; closing", q->bucket, q->key,
                     cairn_strerror(rc));
            http_req_close_after(q->r);
        }
    }
    http_req_finish(q->r);
out:
    hdrs_fini(&hs);
    in->etag = orig_etag;
    cairn__inode__free_unpacked(in, NULL);
}

/* Unlink key (a file, or an empty explicit directory for "dir/").  Missing is not an error. */
static int delete_key(struct s3_req *q, uint64_t bucket, const char *key, size_t klen)
{
    const char *last;
    size_t ll;
    uint64_t dir;
    int rc;

    if (!key_valid(key, klen))
        return 0;
    rc = walk_dirs(q, bucket, key, klen, false, &dir, &last, &ll);
    if (rc == CAIRN_ENOENT)
        return 0;
    if (rc)
        return rc;
    if (ll == 0) {
        /* "dir/": drop the explicit mark; remove the directory if it is empty. */
        Cairn__Inode *in;
        uint64_t ver;
        bool empty;

        if (dir == bucket)
            return 0;
        rc = meta_inode_get(q->cl, dir, &in, &ver);
        if (rc)
            return rc == CAIRN_ENOENT ? 0 : rc;
        if (in->explicit_dir) {
            in->explicit_dir = false;
            rc = meta_inode_put(q->cl, dir, in, ver, NULL);
        }
        cairn__inode__free_unpacked(in, NULL);
        if (!rc && !meta_dir_empty(q->cl, dir, &empty) && empty) {
            /* Its entry lives in the parent: find the parent by walking again. */
            const char *pl;
            size_t pll;
            uint64_t parent;
            size_t plen = klen - 1;

            while (plen && key[plen - 1] != '/')
                plen--;
            if (!walk_dirs(q, bucket, key, plen, false, &parent, &pl, &pll) &&
                !meta_dirent_del(q->cl, parent, key + plen, klen - 1 - plen, true, META_ANY))
                meta_inode_del(q->cl, dir, META_ANY);
        }
        return rc == CAIRN_ECONFLICT ? 0 : rc;
    }
    for (int attempt = 0; attempt < 8; attempt++) {
        Cairn__Dirent *d;
        uint64_t ver, ino;

        rc = meta_dirent_get(q->cl, dir, last, ll, false, &d, &ver);
        if (rc == CAIRN_ENOENT)
            return 0;
        if (rc)
            return rc;
        ino = d->ino;
        cairn__dirent__free_unpacked(d, NULL);
        rc = meta_dirent_del(q->cl, dir, last, ll, false, ver);
        if (rc == CAIRN_ECONFLICT)
            continue;
        if (rc)
            return rc;
        inode_free(q->w, ino);
        return 0;
    }
    return CAIRN_ECONFLICT;
}

static void delete_object(struct s3_req *q)
{
    Cairn__Inode *bin = NULL;
    uint64_t bucket;
    enum s3_err e = bucket_ino(q, &bucket, &bin);
    int rc;

    if (!e)
        e = check_access(q, bin, true);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    rc = delete_key(q, bucket, q->key, q->key_len);
    if (rc) {
        reply_cairn(q, rc);
        return;
    }
    reply_empty(q, 204, NULL);
}

/* Parse "x-amz-copy-source: /bucket/key" (or without the leading '/'). */
static enum s3_err copy_source(struct s3_req *q, const char *src, uint64_t *bucket, char *key,
                               size_t *klen)
{
    char dec[S3_MAX_KEY_LEN + 80], b[64];
    long n = http_pct_decode(src, strlen(src), dec, sizeof(dec));
    char *p = dec, *slash, *qm;
    Cairn__Dirent *d;
    int rc;

    if (n < 0)
        return S3E_INVALID_ARGUMENT;
    qm = strstr(dec, "?versionId=");
    if (qm)
        *qm = 0;
    if (*p == '/')
        p++;
    slash = strchr(p, '/');
    if (!slash || (size_t)(slash - p) >= sizeof(b) || !bucket_name_valid(p, (size_t)(slash - p)))
        return S3E_INVALID_ARGUMENT;
    memcpy(b, p, (size_t)(slash - p));
    b[slash - p] = 0;
    *klen = strlen(slash + 1);
    if (!key_valid(slash + 1, *klen))
        return S3E_NO_SUCH_KEY;
    memcpy(key, slash + 1, *klen + 1);
    rc = meta_dirent_get(q->cl, META_ROOT_INO, b, strlen(b), true, &d, NULL);
    if (rc == CAIRN_ENOENT)
        return S3E_NO_SUCH_BUCKET;
    if (rc)
        return s3e(rc);
    *bucket = d->ino;
    cairn__dirent__free_unpacked(d, NULL);
    return S3E_OK;
}

/* Copy bytes [off, off + len) of src into a new object's stripes (or inline buffer), computing
 * their MD5 (res->md5, res->etag) on the way. */
static int copy_data(struct s3_req *q, const Cairn__Inode *src, uint64_t off, uint64_t len,
                     bool allow_inline, struct upload_result *res)
{
    const struct ec_layout *l = cl_cluster_layout(q->cl);
    size_t cap = (size_t)stripe_bytes(l) * CN_SEGMENT_STRIPES;
    uint64_t done = 0, first = 0;
    struct s3_cksum *ck;
    uint8_t *buf = NULL, *pos;
    int rc = 0;

    memset(res, 0, sizeof(*res));
    cairn__extent__init(&res->ext);
    ck = s3_cksum_create(false, S3_CK_NONE);
    if (!ck)
        return CAIRN_ENOMEM;
    if (allow_inline && len <= META_INLINE_MAX) {
        res->inline_data = malloc(len ? len : 1);
        if (!res->inline_data) {
            rc = CAIRN_ENOMEM;
            goto out;
        }
        res->inline_len = len;
        pos = res->inline_data;
        rc = read_range(q, src, off, len, cn_sink_buffer, &pos);
        if (!rc)
            s3_cksum_update(ck, res->inline_data, len);
        goto out;
    }
    res->ext.object_id = meta_new_ino();
    res->ext.gen = 1;
    res->ext.k = l->k;
    res->ext.m = l->m;
    res->ext.frag_size = l->frag_size;
    buf = aligned_alloc(CAIRN_BLOCK, cap);
    if (!buf) {
        rc = CAIRN_ENOMEM;
        goto out;
    }
    while (done < len) {
        size_t n = (size_t)CAIRN_MIN((uint64_t)cap, len - done);

        pos = buf;
        rc = read_range(q, src, off + done, n, cn_sink_buffer, &pos);
        if (rc)
            goto out;
        s3_cksum_update(ck, buf, n);
        rc = cl_stripe_write_at(q->cl, res->ext.object_id, 1, first, buf, n, NULL);
        res->ext.length = done + n;
        if (rc)
            goto out;
        first += n / stripe_bytes(l);
        done += n;
    }
out:
    if (!rc) {
        s3_cksum_final(ck, res->md5, NULL, NULL);
        hex(res->md5, 16, res->etag);
    } else {
        free(res->inline_data);
        res->inline_data = NULL;
        if (res->ext.length)
            free_extents(q->cl, (Cairn__Extent *[]){&res->ext}, 1);
    }
    s3_cksum_destroy(ck);
    free(buf);
    return rc;
}

static void copy_object(struct s3_req *q, uint64_t bucket, const char *srcspec)
{
    char skey[S3_MAX_KEY_LEN + 1], t[40];
    size_t sklen;
    uint64_t sbucket, sino;
    Cairn__Inode *src = NULL, in = CAIRN__INODE__INIT;
    Cairn__Pair pairs[64], *ptrs[64];
    Cairn__Extent *xp[1];
    struct upload_result res;
    struct s3_xbuf b;
    const char *directive = hdr(q, "x-amz-metadata-directive");
    bool replace = directive && !strcasecmp(directive, "REPLACE");
    enum s3_err e = copy_source(q, srcspec, &sbucket, skey, &sklen);
    int rc;

    if (e)
        goto fail;
    if (directive && !replace && strcasecmp(directive, "COPY")) {
        e = S3E_INVALID_ARGUMENT;
        goto fail;
    }
    rc = resolve(q, sbucket, skey, sklen, &sino, &src, NULL);
    if (rc) {
        e = rc == CAIRN_ENOENT ? S3E_NO_SUCH_KEY : s3e(rc);
        goto fail;
    }
    e = preconditions(q, src, "x-amz-copy-source-");
    if (e == S3E_NOT_MODIFIED)
        e = S3E_PRECONDITION_FAILED;
    if (e)
        goto fail;
    if (sbucket == bucket && sklen == q->key_len && !memcmp(skey, q->key, sklen) && !replace) {
        reply_error_msg(q, S3E_INVALID_REQUEST, "This copy request is illegal because it is "
                        "trying to copy an object to itself without changing the object's "
                        "metadata.");
        goto out;
    }
    rc = copy_data(q, src, 0, src->size, true, &res);
    if (rc) {
        e = s3e(rc);
        goto fail;
    }
    if (replace) {
        e = collect_meta(q, &in, pairs, ptrs, CAIRN_ARRAY_SIZE(pairs));
        if (e) {
            free(res.inline_data);
            if (res.ext.length)
                free_extents(q->cl, (Cairn__Extent *[]){&res.ext}, 1);
            goto fail;
        }
    } else {
        in.content_type = src->content_type;
        in.headers = src->headers;
        in.n_headers = src->n_headers;
        in.user_meta = src->user_meta;
        in.n_user_meta = src->n_user_meta;
    }
    fill_file_inode(&in, &res, xp, src->size);
    in.etag = src->etag; /* same bytes, same ETag (multipart ETags too) */
    in.parts = src->parts;
    e = commit_file(q, bucket, &in, res.inline_data || !in.n_extents ? NULL : xp,
                    res.inline_data || !in.n_extents ? 0 : 1);
    free(res.inline_data);
    if (e)
        goto fail;
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<CopyObjectResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s3_time_iso8601(in.mtime_ns, t);
    s3_xbuf_elem(&b, "LastModified", t);
    s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag></CopyObjectResult>", src->etag);
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    goto out;
fail:
    reply_error(q, e);
out:
    if (src)
        cairn__inode__free_unpacked(src, NULL);
}

/* ---- buckets ---- */

static void list_buckets(struct s3_req *q)
{
    struct s3_xbuf b;
    struct meta_scan s;
    char *start = NULL;
    size_t slen = 0;
    int rc;

    if (!q->user) {
        reply_error(q, S3E_ACCESS_DENIED);
        return;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                     "<Owner><ID>");
    s3_xbuf_escape(&b, q->user->access_key, strlen(q->user->access_key));
    s3_xbuf_puts(&b, "</ID><DisplayName>");
    s3_xbuf_escape(&b, q->user->name, strlen(q->user->name));
    s3_xbuf_puts(&b, "</DisplayName></Owner><Buckets>");
    for (;;) {
        rc = meta_dir_scan(q->cl, META_ROOT_INO, start, slen, 1000, &s);
        free(start);
        start = NULL;
        if (rc) {
            s3_xbuf_fini(&b);
            reply_cairn(q, rc);
            return;
        }
        for (unsigned i = 0; i < s.n; i++) {
            uint32_t nl;
            const char *name = meta_dirent_name(s.entries[i].key, s.entries[i].klen, &nl);
            Cairn__Inode *in;
            Cairn__Dirent *d;
            char t[40];

            if (nl < 2 || name[nl - 1] != '/')
                continue;
            d = cairn__dirent__unpack(NULL, s.entries[i].len, s.entries[i].val);
            if (!d)
                continue;
            if (meta_inode_get(q->cl, d->ino, &in, NULL)) {
                cairn__dirent__free_unpacked(d, NULL);
                continue;
            }
            s3_time_iso8601(in->btime_ns, t);
            s3_xbuf_puts(&b, "<Bucket><Name>");
            s3_xbuf_escape(&b, name, nl - 1);
            s3_xbuf_puts(&b, "</Name>");
            s3_xbuf_elem(&b, "CreationDate", t);
            s3_xbuf_puts(&b, "</Bucket>");
            cairn__inode__free_unpacked(in, NULL);
            cairn__dirent__free_unpacked(d, NULL);
        }
        if (!s.more) {
            meta_scan_fini(&s);
            break;
        }
        slen = s.next_len - 9;
        start = malloc(slen);
        if (start)
            memcpy(start, s.next + 9, slen);
        meta_scan_fini(&s);
        if (!start) {
            s3_xbuf_fini(&b);
            reply_error(q, S3E_INTERNAL_ERROR);
            return;
        }
    }
    s3_xbuf_puts(&b, "</Buckets></ListAllMyBucketsResult>");
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

static void create_bucket(struct s3_req *q)
{
    Cairn__Inode in = CAIRN__INODE__INIT;
    Cairn__Dirent nd = CAIRN__DIRENT__INIT, *d;
    char region[64], body[4096];
    struct hdrs hs = {0};
    uint64_t ver = 0, ino;
    size_t blen = 0;
    enum s3_err e;
    int rc;

    if (!q->user) {
        reply_error(q, S3E_ACCESS_DENIED);
        return;
    }
    /* CreateBucketConfiguration: small; anything larger is not one. */
    if (q->h->content_length > (int64_t)sizeof(body)) {
        reply_error(q, S3E_MALFORMED_XML);
        return;
    }
    e = body_open(q);
    if (!e && q->body_len > 0) {
        blen = (size_t)q->body_len;
        if (blen > sizeof(body))
            e = S3E_MALFORMED_XML;
        else
            e = body_read_full(q, (uint8_t *)body, blen);
    }
    if (!e)
        e = body_close(q);
    if (!e && blen)
        e = s3xml_parse_create_bucket(body, blen, region, sizeof(region));
    if (e) {
        reply_error(q, e);
        return;
    }
    rc = meta_dirent_get(q->cl, META_ROOT_INO, q->bucket, strlen(q->bucket), true, &d, &ver);
    if (rc == 0) {
        Cairn__Inode *cur = NULL;
        bool mine = !meta_inode_get(q->cl, d->ino, &cur, NULL) && cur->owner &&
                    !strcmp(cur->owner, q->user->access_key);

        if (cur)
            cairn__inode__free_unpacked(cur, NULL);
        cairn__dirent__free_unpacked(d, NULL);
        reply_error(q, mine ? S3E_BUCKET_ALREADY_OWNED_BY_YOU : S3E_BUCKET_ALREADY_EXISTS);
        return;
    }
    if (rc != CAIRN_ENOENT) {
        reply_cairn(q, rc);
        return;
    }
    in.type = CAIRN__FILE_TYPE__FT_DIR;
    in.mode = META_S3_DIR_MODE;
    in.nlink = 2;
    in.mtime_ns = in.ctime_ns = in.btime_ns = now_ns();
    in.explicit_dir = true;
    in.parent = META_ROOT_INO;
    in.owner = q->user->access_key;
    rc = meta_inode_create(q->cl, &in, &ino);
    if (rc) {
        reply_cairn(q, rc);
        return;
    }
    nd.ino = ino;
    nd.type = CAIRN__FILE_TYPE__FT_DIR;
    nd.mtime_ns = in.btime_ns;
    rc = meta_dirent_put(q->cl, META_ROOT_INO, q->bucket, strlen(q->bucket), &nd, ver, NULL);
    if (rc) {
        meta_inode_del(q->cl, ino, META_ANY);
        reply_error(q, rc == CAIRN_ECONFLICT ? S3E_BUCKET_ALREADY_EXISTS : s3e(rc));
        return;
    }
    hdrs_addf(&hs, "Location", "/%s", q->bucket);
    reply_empty(q, 200, &hs);
    hdrs_fini(&hs);
}

/* Whether the subtree of dir holds any file or explicit directory (a key S3 would list). */
static int subtree_has_keys(struct s3_req *q, uint64_t dir, unsigned depth, bool *has)
{
    struct meta_scan s;
    char *start = NULL;
    size_t slen = 0;
    int rc;

    *has = false;
    if (depth > S3_MAX_KEY_LEN / 2)
        return CAIRN_ETOOBIG;
    for (;;) {
        rc = meta_dir_scan(q->cl, dir, start, slen, 256, &s);
        free(start);
        start = NULL;
        if (rc)
            return rc;
        for (unsigned i = 0; i < s.n && !*has && !rc; i++) {
            uint32_t nl;
            const char *name = meta_dirent_name(s.entries[i].key, s.entries[i].klen, &nl);
            Cairn__Dirent *d;
            Cairn__Inode *in;

            if (!nl || name[nl - 1] != '/') {
                *has = true;
                break;
            }
            d = cairn__dirent__unpack(NULL, s.entries[i].len, s.entries[i].val);
            if (!d)
                continue;
            if (meta_inode_get(q->cl, d->ino, &in, NULL) == 0) {
                *has = in->explicit_dir;
                cairn__inode__free_unpacked(in, NULL);
            }
            if (!*has)
                rc = subtree_has_keys(q, d->ino, depth + 1, has);
            cairn__dirent__free_unpacked(d, NULL);
        }
        if (rc || *has || !s.more) {
            meta_scan_fini(&s);
            return rc;
        }
        slen = s.next_len - 9;
        start = malloc(slen);
        if (start)
            memcpy(start, s.next + 9, slen);
        meta_scan_fini(&s);
        if (!start)
            return CAIRN_ENOMEM;
    }
}

/* Remove the (key-less) directories below dir, deepest first. */
static int remove_empty_dirs(struct s3_req *q, uint64_t dir, unsigned depth)
{
    struct meta_scan s;
    int rc;

    if (depth > S3_MAX_KEY_LEN / 2)
        return CAIRN_ETOOBIG;
    for (;;) {
        rc = meta_dir_scan(q->cl, dir, NULL, 0, 256, &s);
        if (rc)
            return rc;
        if (s.n == 0) { /* the end: meta_dir_scan skips pages of deleted entries */
            meta_scan_fini(&s);
            return 0;
        }
        for (unsigned i = 0; i < s.n && !rc; i++) {
            uint32_t nl;
            const char *name = meta_dirent_name(s.entries[i].key, s.entries[i].klen, &nl);
            Cairn__Dirent *d = cairn__dirent__unpack(NULL, s.entries[i].len, s.entries[i].val);

            if (!d || !nl || name[nl - 1] != '/') {
                rc = CAIRN_EEXIST; /* a file appeared: not empty */
            } else {
                rc = remove_empty_dirs(q, d->ino, depth + 1);
                if (!rc)
                    rc = meta_dirent_del(q->cl, dir, name, nl - 1, true, META_ANY);
                if (!rc)
                    meta_inode_del(q->cl, d->ino, META_ANY);
                if (rc == CAIRN_ENOENT)
                    rc = 0;
            }
            if (d)
                cairn__dirent__free_unpacked(d, NULL);
        }
        meta_scan_fini(&s);
        if (rc)
            return rc;
    }
}

static void delete_bucket(struct s3_req *q)
{
    Cairn__Inode *bin = NULL;
    uint64_t bucket;
    bool has;
    enum s3_err e = bucket_ino(q, &bucket, &bin);
    int rc;

    if (!e && (!q->user || (bin->owner && strcmp(bin->owner, q->user->access_key) &&
                            !q->user->admin)))
        e = S3E_ACCESS_DENIED;
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    rc = subtree_has_keys(q, bucket, 0, &has);
    if (!rc && has) {
        reply_error(q, S3E_BUCKET_NOT_EMPTY);
        return;
    }
    if (!rc)
        rc = remove_empty_dirs(q, bucket, 0);
    if (rc == CAIRN_EEXIST) {
        reply_error(q, S3E_BUCKET_NOT_EMPTY);
        return;
    }
    if (!rc)
        rc = meta_dirent_del(q->cl, META_ROOT_INO, q->bucket, strlen(q->bucket), true, META_ANY);
    if (rc && rc != CAIRN_ENOENT) {
        reply_cairn(q, rc);
        return;
    }
    meta_inode_del(q->cl, bucket, META_ANY);
    reply_empty(q, 204, NULL);
}

static void head_bucket(struct s3_req *q)
{
    Cairn__Inode *bin = NULL;
    uint64_t bucket;
    enum s3_err e = bucket_ino(q, &bucket, &bin);

    if (!e)
        e = check_access(q, bin, false);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    if (q->h->method == HTTP_HEAD) {
        struct hdrs hs = {0};

        hdrs_add(&hs, "x-amz-bucket-region", q->app->region);
        reply_empty(q, 200, &hs);
        return;
    }
    {
        struct s3_xbuf b;

        s3_xbuf_init(&b);
        s3_xbuf_decl(&b);
        s3_xbuf_puts(&b, "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        if (strcmp(q->app->region, "us-east-1"))
            s3_xbuf_escape(&b, q->app->region, strlen(q->app->region));
        s3_xbuf_puts(&b, "</LocationConstraint>");
        reply_xml(q, 200, &b);
        s3_xbuf_fini(&b);
    }
}

/* ---- listing ---- */

/* A listing walks the bucket's tree depth first.  Directory entries sort as "name/", so the
 * walk meets keys in S3 order; subtrees that roll up into one common prefix are not entered,
 * and subtrees that cannot match the prefix are skipped. */
struct lister {
    struct s3_req *q;
    const char *prefix;
    size_t plen;
    const char *delim;
    size_t dlen;
    char after[S3_MAX_KEY_LEN + 2]; /* list keys > after */
    size_t alen;
    unsigned max;
    unsigned count;
    bool truncated, stop, url;
    char last[S3_MAX_KEY_LEN + 2]; /* the last item listed (a common prefix ends in 0xff) */
    size_t last_len;
    char lastcp[S3_MAX_KEY_LEN + 1];
    size_t lastcp_len;
    struct s3_xbuf contents, prefixes;
    int err;
};

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, CAIRN_MIN(al, bl));

    return c ? c : (al < bl ? -1 : al > bl);
}

static bool starts(const char *s, size_t sl, const char *p, size_t pl)
{
    return sl >= pl && !memcmp(s, p, pl);
}

static void put_key_text(struct lister *ls, struct s3_xbuf *b, const char *k, size_t kl)
{
    if (!ls->url) {
        s3_xbuf_escape(b, k, kl);
        return;
    }
    for (size_t i = 0; i < kl; i++) {
        unsigned char c = (unsigned char)k[i];

        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/')
            s3_xbuf_put(b, (const char *)&k[i], 1);
        else
            s3_xbuf_printf(b, "%%%02X", c);
    }
}

/* Count one more item; false (and truncated) if the page is already full. */
static bool take(struct lister *ls)
{
    if (ls->count >= ls->max) {
        ls->truncated = true;
        ls->stop = true;
        return false;
    }
    ls->count++;
    return true;
}

static void emit_cp(struct lister *ls, const char *cp, size_t cl)
{
    if (cl == ls->lastcp_len && !memcmp(cp, ls->lastcp, cl))
        return;
    if (bytes_cmp(cp, cl, ls->after, ls->alen) <= 0 && ls->alen && starts(ls->after, ls->alen, cp, cl))
        return; /* the previous page ended inside this prefix */
    if (!take(ls))
        return;
    memcpy(ls->lastcp, cp, cl);
    ls->lastcp_len = cl;
    memcpy(ls->last, cp, cl);
    ls->last[cl] = (char)0xff;
    ls->last_len = cl + 1;
    s3_xbuf_puts(&ls->prefixes, "<CommonPrefixes><Prefix>");
    put_key_text(ls, &ls->prefixes, cp, cl);
    s3_xbuf_puts(&ls->prefixes, "</Prefix></CommonPrefixes>");
}

/* Where key rolls up with the delimiter: the common prefix length, or 0. */
static size_t cp_len(const struct lister *ls, const char *key, size_t kl)
{
    const char *d;

    if (!ls->dlen || kl <= ls->plen)
        return 0;
    d = memmem(key + ls->plen, kl - ls->plen, ls->delim, ls->dlen);
    return d ? (size_t)(d - key) + ls->dlen : 0;
}

static void emit_key(struct lister *ls, const char *key, size_t kl, uint64_t size,
                     const char *etag, int64_t mtime)
{
    size_t cl;
    char t[40];

    if (bytes_cmp(key, kl, ls->after, ls->alen) <= 0 || !starts(key, kl, ls->prefix, ls->plen))
        return;
    cl = cp_len(ls, key, kl);
    if (cl) {
        emit_cp(ls, key, cl);
        return;
    }
    if (!take(ls))
        return;
    memcpy(ls->last, key, kl);
    ls->last_len = kl;
    s3_time_iso8601(mtime, t);
    s3_xbuf_puts(&ls->contents, "<Contents><Key>");
    put_key_text(ls, &ls->contents, key, kl);
    s3_xbuf_puts(&ls->contents, "</Key>");
    s3_xbuf_elem(&ls->contents, "LastModified", t);
    s3_xbuf_printf(&ls->contents,
                   "<ETag>&quot;%s&quot;</ETag><Size>%" PRIu64 "</Size>"
                   "<StorageClass>STANDARD</StorageClass></Contents>",
                   etag && *etag ? etag : "d41d8cd98f00b204e9800998ecf8427e", size);
}

static void walk(struct lister *ls, uint64_t dir, char *path, size_t plen, unsigned depth)
{
    struct meta_scan s;
    char start[META_NAME_MAX + 2];
    size_t slen = 0;

    if (depth > S3_MAX_KEY_LEN / 2) {
        ls->err = CAIRN_ETOOBIG;
        return;
    }
    /* Start at the component of `after` (or of the prefix) that lies in this directory. */
    if (ls->alen > plen && starts(ls->after, ls->alen, path, plen)) {
        const char *c = ls->after + plen, *sl = memchr(c, '/', ls->alen - plen);
        size_t n = sl ? (size_t)(sl - c) + 1 : ls->alen - plen;

        if (n <= META_NAME_MAX + 1) {
            memcpy(start, c, n);
            slen = n;
        }
    }
    if (ls->plen > plen && starts(ls->prefix, ls->plen, path, plen)) {
        const char *c = ls->prefix + plen, *sl = memchr(c, '/', ls->plen - plen);
        size_t n = sl ? (size_t)(sl - c) + 1 : ls->plen - plen;

        /* Names from here on are >= the prefix's component: start there if later. */
        if (n <= META_NAME_MAX + 1 && bytes_cmp(c, n, start, slen) > 0) {
            memcpy(start, c, n);
            slen = n;
            if (!sl) {
                /* a partial name: entries start with it, but may be files or directories */
            }
        }
    }
    for (;;) {
        int rc = meta_dir_scan(ls->q->cl, dir, start, slen, 256, &s);

        if (rc) {
            ls->err = rc;
            return;
        }
        for (unsigned i = 0; i < s.n && !ls->stop && !ls->err; i++) {
            uint32_t nl;
            const char *name = meta_dirent_name(s.entries[i].key, s.entries[i].klen, &nl);
            Cairn__Dirent *d;
            size_t kl = plen + nl;

            if (kl > S3_MAX_KEY_LEN)
                continue;
            memcpy(path + plen, name, nl);
            /* Past every key with the prefix: nothing later in this directory matches. */
            if (bytes_cmp(path, kl, ls->prefix, ls->plen) > 0 &&
                !starts(path, kl, ls->prefix, ls->plen) && !starts(ls->prefix, ls->plen, path, kl)) {
                ls->stop = ls->stop || depth == 0;
                meta_scan_fini(&s);
                return;
            }
            d = cairn__dirent__unpack(NULL, s.entries[i].len, s.entries[i].val);
            if (!d)
                continue;
            if (nl && name[nl - 1] == '/') {
                size_t cl = starts(path, kl, ls->prefix, ls->plen) ? cp_len(ls, path, kl) : 0;
                Cairn__Inode *in = NULL;
                bool has = false;

                if (bytes_cmp(path, kl, ls->after, ls->alen) <= 0 &&
                    !starts(ls->after, ls->alen, path, kl)) {
                    cairn__dirent__free_unpacked(d, NULL);
                    continue; /* the whole subtree sorts before `after` */
                }
                if (cl) {
                    /* Every key below rolls up into one common prefix. */
                    if (meta_inode_get(ls->q->cl, d->ino, &in, NULL) == 0)
                        has = in->explicit_dir;
                    if (!has)
                        ls->err = subtree_has_keys(ls->q, d->ino, 0, &has);
                    if (has && !ls->err)
                        emit_cp(ls, path, cl);
                } else if (starts(path, kl, ls->prefix, ls->plen) ||
                           starts(ls->prefix, ls->plen, path, kl)) {
                    if (meta_inode_get(ls->q->cl, d->ino, &in, NULL) == 0 && in->explicit_dir)
                        emit_key(ls, path, kl, 0, NULL, in->mtime_ns);
                    if (!ls->stop)
                        walk(ls, d->ino, path, kl, depth + 1);
                }
                if (in)
                    cairn__inode__free_unpacked(in, NULL);
            } else {
                emit_key(ls, path, kl, d->size, d->etag, d->mtime_ns);
            }
            cairn__dirent__free_unpacked(d, NULL);
        }
        if (ls->stop || ls->err || !s.more) {
            meta_scan_fini(&s);
            return;
        }
        slen = CAIRN_MIN((size_t)s.next_len - 9, sizeof(start));
        memcpy(start, s.next + 9, slen);
        meta_scan_fini(&s);
    }
}

static void list_objects(struct s3_req *q, bool v2)
{
    struct lister *ls = calloc(1, sizeof(*ls));
    const char *prefix = param(q, "prefix"), *delim = param(q, "delimiter");
    const char *mk = param(q, "max-keys"), *enc = param(q, "encoding-type");
    const char *token = v2 ? param(q, "continuation-token") : NULL;
    const char *after = v2 ? param(q, "start-after") : param(q, "marker");
    Cairn__Inode *bin = NULL;
    char *path = NULL, *tok = NULL;
    uint64_t bucket;
    unsigned listed; /* items on this page */
    struct s3_xbuf b;
    enum s3_err e;

    if (!ls) {
        reply_error(q, S3E_INTERNAL_ERROR);
        return;
    }
    e = bucket_ino(q, &bucket, &bin);
    if (!e)
        e = check_access(q, bin, false);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e)
        goto fail;
    ls->q = q;
    ls->prefix = prefix ? prefix : "";
    ls->plen = strlen(ls->prefix);
    ls->delim = delim ? delim : "";
    ls->dlen = strlen(ls->delim);
    ls->max = LIST_MAX_KEYS;
    ls->url = enc && !strcmp(enc, "url");
    if (enc && !ls->url) {
        e = S3E_INVALID_ARGUMENT;
        goto fail;
    }
    if (mk) {
        char *end;
        long v = strtol(mk, &end, 10);

        if (*end || v < 0) {
            e = S3E_INVALID_ARGUMENT;
            goto fail;
        }
        ls->max = (unsigned)CAIRN_MIN((unsigned long)v, LIST_MAX_KEYS);
    }
    if (ls->plen > S3_MAX_KEY_LEN) {
        e = S3E_KEY_TOO_LONG;
        goto fail;
    }
    if (token) {
        uint8_t raw[S3_MAX_KEY_LEN + 2];
        long n = s3_base64_decode(token, strlen(token), raw, sizeof(raw));

        if (n < 0) {
            reply_error_msg(q, S3E_INVALID_ARGUMENT, "The continuation token provided is "
                                                     "incorrect");
            goto out;
        }
        memcpy(ls->after, raw, (size_t)n);
        ls->alen = (size_t)n;
    } else if (after) {
        ls->alen = CAIRN_MIN(strlen(after), (size_t)S3_MAX_KEY_LEN);
        memcpy(ls->after, after, ls->alen);
    }
    s3_xbuf_init(&ls->contents);
    s3_xbuf_init(&ls->prefixes);
    path = malloc(S3_MAX_KEY_LEN + META_NAME_MAX + 4);
    if (!path) {
        e = S3E_INTERNAL_ERROR;
        goto fail_bufs;
    }
    if (ls->max == 0)
        ls->stop = true;
    else
        walk(ls, bucket, path, 0, 0);
    if (ls->err) {
        e = s3e(ls->err);
        goto fail_bufs;
    }
    /* A full page: it is truncated only if another item exists. */
    listed = ls->count;
    if (!ls->truncated && ls->max && ls->count == ls->max) {
        memcpy(ls->after, ls->last, ls->last_len);
        ls->alen = ls->last_len;
        ls->stop = false;
        ls->count = 0;
        ls->max = 0; /* take() now reports truncation on the first item */
        walk(ls, bucket, path, 0, 0);
        ls->count = ls->max = 0;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s3_xbuf_elem(&b, "Name", q->bucket);
    s3_xbuf_puts(&b, "<Prefix>");
    put_key_text(ls, &b, ls->prefix, ls->plen);
    s3_xbuf_puts(&b, "</Prefix>");
    if (delim) {
        s3_xbuf_puts(&b, "<Delimiter>");
        put_key_text(ls, &b, ls->delim, ls->dlen);
        s3_xbuf_puts(&b, "</Delimiter>");
    }
    s3_xbuf_printf(&b, "<MaxKeys>%s</MaxKeys>", mk ? mk : "1000");
    if (ls->url)
        s3_xbuf_puts(&b, "<EncodingType>url</EncodingType>");
    s3_xbuf_printf(&b, "<IsTruncated>%s</IsTruncated>", ls->truncated ? "true" : "false");
    if (v2) {
        s3_xbuf_printf(&b, "<KeyCount>%u</KeyCount>", listed);
        if (token)
            s3_xbuf_elem(&b, "ContinuationToken", token);
        if (after) {
            s3_xbuf_puts(&b, "<StartAfter>");
            put_key_text(ls, &b, after, strlen(after));
            s3_xbuf_puts(&b, "</StartAfter>");
        }
        if (ls->truncated) {
            tok = malloc(2 * ls->last_len + 8);
            if (tok && s3_base64_encode((const uint8_t *)ls->last, ls->last_len, tok,
                                        2 * ls->last_len + 8) >= 0)
                s3_xbuf_elem(&b, "NextContinuationToken", tok);
        }
    } else {
        s3_xbuf_puts(&b, "<Marker>");
        if (after)
            put_key_text(ls, &b, after, strlen(after));
        s3_xbuf_puts(&b, "</Marker>");
        if (ls->truncated && delim) {
            size_t ml = ls->last_len;

            if (ml && (unsigned char)ls->last[ml - 1] == 0xff)
                ml--; /* a common prefix: clients pass it back as the marker */
            s3_xbuf_puts(&b, "<NextMarker>");
            put_key_text(ls, &b, ls->last, ml);
            s3_xbuf_puts(&b, "</NextMarker>");
        }
    }
    if (ls->contents.len)
        s3_xbuf_put(&b, ls->contents.data, ls->contents.len);
    if (ls->prefixes.len)
        s3_xbuf_put(&b, ls->prefixes.data, ls->prefixes.len);
    s3_xbuf_puts(&b, "</ListBucketResult>");
    if (ls->contents.oom || ls->prefixes.oom)
        b.oom = true;
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    s3_xbuf_fini(&ls->contents);
    s3_xbuf_fini(&ls->prefixes);
    goto out;
fail_bufs:
    s3_xbuf_fini(&ls->contents);
    s3_xbuf_fini(&ls->prefixes);
fail:
    reply_error(q, e);
out:
    free(tok);
    free(path);
    free(ls);
}

/* ---- multipart uploads ---- */

/* The upload named by ?uploadId, checked against the request's bucket and key. */
static enum s3_err load_upload(struct s3_req *q, uint64_t bucket, Cairn__Upload **u,
                               uint64_t *ver)
{
    const char *id = param(q, "uploadId");
    int rc;

    if (!id || strlen(id) != 32)
        return S3E_NO_SUCH_UPLOAD;
    rc = meta_upload_get(q->cl, id, u, ver);
    if (rc == CAIRN_ENOENT)
        return S3E_NO_SUCH_UPLOAD;
    if (rc)
        return s3e(rc);
    if ((*u)->bucket != bucket || strcmp((*u)->key, q->key)) {
        cairn__upload__free_unpacked(*u, NULL);
        *u = NULL;
        return S3E_NO_SUCH_UPLOAD;
    }
    return S3E_OK;
}

static void create_upload(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload u = CAIRN__UPLOAD__INIT;
    Cairn__Inode meta = CAIRN__INODE__INIT;
    Cairn__Pair pairs[64], *ptrs[64];
    char id[33];
    struct s3_xbuf b;
    enum s3_err e;
    int rc;

    if (q->key[q->key_len - 1] == '/') {
        reply_error(q, S3E_INVALID_ARGUMENT);
        return;
    }
    e = collect_meta(q, &meta, pairs, ptrs, CAIRN_ARRAY_SIZE(pairs));
    if (e) {
        reply_error(q, e);
        return;
    }
    meta_random_hex(id);
    u.bucket = bucket;
    u.bucket_name = q->bucket;
    u.key = q->key;
    u.initiated_ns = now_ns();
    u.meta = &meta;
    u.owner = q->user ? q->user->access_key : "";
    rc = meta_upload_create(q->cl, id, &u);
    if (rc) {
        reply_cairn(q, rc);
        return;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<InitiateMultipartUploadResult "
                     "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s3_xbuf_elem(&b, "Bucket", q->bucket);
    s3_xbuf_elem(&b, "Key", q->key);
    s3_xbuf_elem(&b, "UploadId", id);
    s3_xbuf_puts(&b, "</InitiateMultipartUploadResult>");
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

static bool part_number(struct s3_req *q, uint32_t *n)
{
    const char *pn = param(q, "partNumber");
    char *end;
    long v;

    if (!pn)
        return false;
    v = strtol(pn, &end, 10);
    if (*end || v < 1 || v > (long)S3_MAX_PARTS)
        return false;
    *n = (uint32_t)v;
    return true;
}

static void upload_part(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    Cairn__Part p = CAIRN__PART__INIT, *old = NULL;
    struct upload_result res;
    const char *src = hdr(q, "x-amz-copy-source");
    uint64_t ver;
    uint32_t num;
    enum s3_err e;
    int rc;

    if (!part_number(q, &num)) {
        reply_error_msg(q, S3E_INVALID_ARGUMENT, "Part number must be an integer between 1 and "
                                                 "10000, inclusive");
        return;
    }
    e = load_upload(q, bucket, &u, &ver);
    if (e)
        goto fail;
    if (src) {
        char skey[S3_MAX_KEY_LEN + 1];
        size_t sklen;
        uint64_t sbucket, sino, off = 0, len;
        Cairn__Inode *sin = NULL;
        const char *range = hdr(q, "x-amz-copy-source-range");

        e = copy_source(q, src, &sbucket, skey, &sklen);
        if (e)
            goto fail;
        rc = resolve(q, sbucket, skey, sklen, &sino, &sin, NULL);
        if (rc) {
            e = rc == CAIRN_ENOENT ? S3E_NO_SUCH_KEY : s3e(rc);
            goto fail;
        }
        len = sin->size;
        if (range && parse_range(range, sin->size, &off, &len) != 1) {
            cairn__inode__free_unpacked(sin, NULL);
            e = S3E_INVALID_RANGE;
            goto fail;
        }
        rc = copy_data(q, sin, off, len, false, &res);
        cairn__inode__free_unpacked(sin, NULL);
        if (rc) {
            e = s3e(rc);
            goto fail;
        }
        res.ext.offset = 0;
    } else {
        e = body_open(q);
        if (e)
            goto fail;
        if (q->body_len < 0) {
            e = S3E_MISSING_CONTENT_LENGTH;
            goto fail;
        }
        e = upload_body(q, (uint64_t)q->body_len, false, &res);
        if (e)
            goto fail;
    }
    p.number = num;
    p.size = res.ext.length;
    p.etag = res.etag;
    p.extent = &res.ext;
    p.mtime_ns = now_ns();
    p.md5.data = res.md5;
    p.md5.len = 16;
    rc = meta_part_put(q->cl, param(q, "uploadId"), &p, &old);
    if (rc) {
        if (res.ext.length)
            free_extents(q->cl, (Cairn__Extent *[]){&res.ext}, 1);
        e = s3e(rc);
        goto fail;
    }
    if (old) {
        if (old->extent && old->extent->object_id != res.ext.object_id)
            free_extents(q->cl, &old->extent, 1);
        cairn__part__free_unpacked(old, NULL);
    }
    if (src) {
        struct s3_xbuf b;
        char t[40];

        s3_xbuf_init(&b);
        s3_xbuf_decl(&b);
        s3_time_iso8601(p.mtime_ns, t);
        s3_xbuf_puts(&b, "<CopyPartResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        s3_xbuf_elem(&b, "LastModified", t);
        s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag></CopyPartResult>", res.etag);
        reply_xml(q, 200, &b);
        s3_xbuf_fini(&b);
    } else {
        struct hdrs hs = {0};

        hdrs_addf(&hs, "ETag", "\"%s\"", res.etag);
        reply_empty(q, 200, &hs);
        hdrs_fini(&hs);
    }
    cairn__upload__free_unpacked(u, NULL);
    return;
fail:
    if (u)
        cairn__upload__free_unpacked(u, NULL);
    reply_error(q, e);
}

/* Free every part of an upload (records and stripes), except those kept (in keep[]). */
static void drop_parts(struct s3_req *q, const char *id, const uint32_t *keep, unsigned nkeep)
{
    struct meta_scan s;
    uint32_t from = 1;

    for (;;) {
        if (meta_part_scan(q->cl, id, from, 256, &s))
            return;
        for (unsigned i = 0; i < s.n; i++) {
            Cairn__Part *p = cairn__part__unpack(NULL, s.entries[i].len, s.entries[i].val);
            bool kept = false;

            if (!p)
                continue;
            for (unsigned j = 0; j < nkeep; j++)
                kept |= keep[j] == p->number;
            if (!kept && p->extent)
                free_extents(q->cl, &p->extent, 1);
            meta_part_del(q->cl, id, p->number);
            from = p->number + 1;
            cairn__part__free_unpacked(p, NULL);
        }
        if (!s.more || s.n == 0) {
            meta_scan_fini(&s);
            return;
        }
        meta_scan_fini(&s);
    }
}

static void complete_upload(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    Cairn__Part **parts = NULL;
    Cairn__Extent **ex = NULL;
    Cairn__Inode in = CAIRN__INODE__INIT;
    struct s3_complete c = {0};
    char *body = NULL, etag[48];
    uint32_t *keep = NULL;
    const char *id = param(q, "uploadId");
    uint64_t ver, off = 0, ino;
    EVP_MD_CTX *md = NULL;
    uint8_t digest[16];
    unsigned dl;
    enum s3_err e;
    int rc;

    e = load_upload(q, bucket, &u, &ver);
    if (e)
        goto fail;
    e = body_open(q);
    if (e)
        goto fail;
    if (q->body_len < 0 || q->body_len > (int64_t)S3_MAX_XML_BODY) {
        e = S3E_MALFORMED_XML;
        goto fail;
    }
    body = malloc((size_t)q->body_len + 1);
    if (!body) {
        e = S3E_INTERNAL_ERROR;
        goto fail;
    }
    e = body_read_full(q, (uint8_t *)body, (size_t)q->body_len);
    if (!e)
        e = body_close(q);
    if (!e)
        e = s3xml_parse_complete(body, (size_t)q->body_len, &c);
    if (e)
        goto fail;
    parts = calloc(c.nparts, sizeof(*parts));
    ex = calloc(c.nparts, sizeof(*ex));
    keep = calloc(c.nparts, sizeof(*keep));
    md = EVP_MD_CTX_new();
    if (!parts || !ex || !keep || !md || !EVP_DigestInit_ex(md, EVP_md5(), NULL)) {
        e = S3E_INTERNAL_ERROR;
        goto fail;
    }
    for (unsigned i = 0; i < c.nparts; i++) {
        rc = meta_part_get(q->cl, id, c.parts[i].number, &parts[i], NULL);
        if (rc == CAIRN_ENOENT || (!rc && strcmp(parts[i]->etag, c.parts[i].etag))) {
            e = S3E_INVALID_PART;
            goto fail;
        }
        if (rc) {
            e = s3e(rc);
            goto fail;
        }
        if (i + 1 < c.nparts && parts[i]->size < S3_MIN_PART_SIZE) {
            e = S3E_ENTITY_TOO_SMALL;
            goto fail;
        }
        ex[i] = parts[i]->extent;
        ex[i]->offset = off;
        off += parts[i]->size;
        keep[i] = parts[i]->number;
        EVP_DigestUpdate(md, parts[i]->md5.data, parts[i]->md5.len);
    }
    EVP_DigestFinal_ex(md, digest, &dl);
    hex(digest, 16, etag);
    snprintf(etag + 32, sizeof(etag) - 32, "-%u", c.nparts);
    in.content_type = u->meta ? u->meta->content_type : NULL;
    if (u->meta) {
        in.headers = u->meta->headers;
        in.n_headers = u->meta->n_headers;
        in.user_meta = u->meta->user_meta;
        in.n_user_meta = u->meta->n_user_meta;
    }
    in.type = CAIRN__FILE_TYPE__FT_FILE;
    in.mode = META_S3_FILE_MODE;
    in.nlink = 1;
    in.size = off;
    in.mtime_ns = in.ctime_ns = in.btime_ns = now_ns();
    in.etag = etag;
    in.parts = c.nparts;
    in.extents = ex;
    in.n_extents = c.nparts;
    {
        const char *last;
        size_t ll;
        uint64_t dir;

        rc = walk_dirs(q, bucket, q->key, q->key_len, true, &dir, &last, &ll);
        if (!rc) {
            in.parent = dir;
            if (u->completing_ino) {
                ino = u->completing_ino;
                rc = meta_inode_put(q->cl, ino, &in, META_ANY, NULL);
            } else {
                rc = meta_inode_create(q->cl, &in, &ino);
                if (!rc) {
                    /* Record the inode in the upload before linking: a retry after a crash
                     * then relinks this same inode instead of freeing its parts' stripes. */
                    u->completing_ino = ino;
                    rc = meta_upload_update(q->cl, id, u, ver);
                    if (rc)
                        meta_inode_del(q->cl, ino, META_ANY);
                    if (rc == CAIRN_ECONFLICT)
                        rc = CAIRN_ENOENT; /* completed or aborted meanwhile */
                }
            }
        }
        if (!rc)
            rc = link_file(q, dir, last, ll, ino, &in);
        if (rc) {
            e = rc == CAIRN_EEXIST ? S3E_PATH_CONFLICT
                : rc == CAIRN_ENOENT ? S3E_NO_SUCH_UPLOAD : s3e(rc);
            goto fail;
        }
    }
    /* The object is linked: drop the upload and the parts it did not use. */
    meta_upload_del(q->cl, id, u, META_ANY);
    drop_parts(q, id, keep, c.nparts);
    {
        struct s3_xbuf b;

        s3_xbuf_init(&b);
        s3_xbuf_decl(&b);
        s3_xbuf_puts(&b, "<CompleteMultipartUploadResult "
                         "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        s3_xbuf_printf(&b, "<Location>/%s/", q->bucket);
        s3_xbuf_escape(&b, q->key, q->key_len);
        s3_xbuf_puts(&b, "</Location>");
        s3_xbuf_elem(&b, "Bucket", q->bucket);
        s3_xbuf_elem(&b, "Key", q->key);
        s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag></CompleteMultipartUploadResult>", etag);
        reply_xml(q, 200, &b);
        s3_xbuf_fini(&b);
    }
    goto out;
fail:
    reply_error(q, e);
out:
    for (unsigned i = 0; parts && i < c.nparts; i++)
        if (parts[i])
            cairn__part__free_unpacked(parts[i], NULL);
    free(parts);
    free(ex);
    free(keep);
    free(body);
    EVP_MD_CTX_free(md);
    s3_complete_fini(&c);
    if (u)
        cairn__upload__free_unpacked(u, NULL);
}

static void abort_upload(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    uint64_t ver;
    enum s3_err e = load_upload(q, bucket, &u, &ver);
    int rc;

    if (e) {
        reply_error(q, e);
        return;
    }
    if (u->completing_ino) {
        /* Completion is under way (or crashed half way): finishing it is the only safe end. */
        cairn__upload__free_unpacked(u, NULL);
        reply_error_msg(q, S3E_CONFLICT, "The upload is being completed");
        return;
    }
    rc = meta_upload_del(q->cl, param(q, "uploadId"), u, ver);
    cairn__upload__free_unpacked(u, NULL);
    if (rc) {
        reply_error(q, rc == CAIRN_ECONFLICT ? S3E_NO_SUCH_UPLOAD : s3e(rc));
        return;
    }
    drop_parts(q, param(q, "uploadId"), NULL, 0);
    reply_empty(q, 204, NULL);
}

static void list_parts(struct s3_req *q, uint64_t bucket)
{
    Cairn__Upload *u = NULL;
    struct meta_scan s;
    struct s3_xbuf b;
    const char *mp = param(q, "max-parts"), *marker = param(q, "part-number-marker");
    unsigned max = mp ? (unsigned)CAIRN_MIN(strtoul(mp, NULL, 10), 1000ul) : 1000;
    uint32_t from = marker ? (uint32_t)strtoul(marker, NULL, 10) + 1 : 1, last = 0;
    uint64_t ver;
    unsigned n = 0;
    bool truncated = false;
    enum s3_err e = load_upload(q, bucket, &u, &ver);
    int rc;

    if (e) {
        reply_error(q, e);
        return;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<ListPartsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s3_xbuf_elem(&b, "Bucket", q->bucket);
    s3_xbuf_elem(&b, "Key", q->key);
    s3_xbuf_elem(&b, "UploadId", param(q, "uploadId"));
    s3_xbuf_printf(&b, "<PartNumberMarker>%u</PartNumberMarker><MaxParts>%u</MaxParts>",
                   from - 1, max);
    s3_xbuf_puts(&b, "<StorageClass>STANDARD</StorageClass>");
    for (;;) {
        rc = meta_part_scan(q->cl, param(q, "uploadId"), from, 256, &s);
        if (rc) {
            s3_xbuf_fini(&b);
            cairn__upload__free_unpacked(u, NULL);
            reply_cairn(q, rc);
            return;
        }
        for (unsigned i = 0; i < s.n; i++) {
            Cairn__Part *p = cairn__part__unpack(NULL, s.entries[i].len, s.entries[i].val);
            char t[40];

            if (!p)
                continue;
            from = p->number + 1;
            if (n == max) {
                truncated = true;
                cairn__part__free_unpacked(p, NULL);
                break;
            }
            s3_time_iso8601(p->mtime_ns, t);
            s3_xbuf_printf(&b, "<Part><PartNumber>%u</PartNumber>", p->number);
            s3_xbuf_elem(&b, "LastModified", t);
            s3_xbuf_printf(&b, "<ETag>&quot;%s&quot;</ETag><Size>%" PRIu64 "</Size></Part>",
                           p->etag, p->size);
            last = p->number;
            n++;
            cairn__part__free_unpacked(p, NULL);
        }
        if (truncated || !s.more) {
            meta_scan_fini(&s);
            break;
        }
        meta_scan_fini(&s);
    }
    s3_xbuf_printf(&b, "<NextPartNumberMarker>%u</NextPartNumberMarker>"
                       "<IsTruncated>%s</IsTruncated></ListPartsResult>",
                   last, truncated ? "true" : "false");
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    cairn__upload__free_unpacked(u, NULL);
}

static void list_uploads(struct s3_req *q, uint64_t bucket)
{
    const char *prefix = param(q, "prefix"), *km = param(q, "key-marker");
    const char *um = param(q, "upload-id-marker"), *mu = param(q, "max-uploads");
    unsigned max = mu ? (unsigned)CAIRN_MIN(strtoul(mu, NULL, 10), 1000ul) : 1000, n = 0;
    size_t pl = prefix ? strlen(prefix) : 0;
    struct meta_scan s;
    struct s3_xbuf b;
    bool truncated = false;
    char nk[S3_MAX_KEY_LEN + 1] = "", nu[33] = "";
    int rc = meta_upload_scan(q->cl, bucket, km, um, 1000, &s);

    if (rc) {
        reply_cairn(q, rc);
        return;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<ListMultipartUploadsResult "
                     "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    s3_xbuf_elem(&b, "Bucket", q->bucket);
    s3_xbuf_elem(&b, "KeyMarker", km ? km : "");
    s3_xbuf_elem(&b, "UploadIdMarker", um ? um : "");
    s3_xbuf_elem(&b, "Prefix", prefix ? prefix : "");
    s3_xbuf_printf(&b, "<MaxUploads>%u</MaxUploads>", max);
    for (unsigned i = 0; i < s.n; i++) {
        const char *k, *id;
        uint32_t kl, il;
        Cairn__Upload *u;
        char t[40];

        if (meta_upload_index_key(s.entries[i].key, s.entries[i].klen, &k, &kl, &id, &il) ||
            il != 32 || kl > S3_MAX_KEY_LEN)
            continue;
        if (pl && (kl < pl || memcmp(k, prefix, pl)))
            continue;
        if (km && kl == strlen(km) && !memcmp(k, km, kl) && um && !memcmp(id, um, 32))
            continue; /* the marker itself */
        if (n == max) {
            truncated = true;
            break;
        }
        memcpy(nk, k, kl);
        nk[kl] = 0;
        memcpy(nu, id, 32);
        nu[32] = 0;
        if (meta_upload_get(q->cl, nu, &u, NULL))
            continue;
        s3_time_iso8601(u->initiated_ns, t);
        s3_xbuf_puts(&b, "<Upload>");
        s3_xbuf_elem(&b, "Key", nk);
        s3_xbuf_elem(&b, "UploadId", nu);
        s3_xbuf_elem(&b, "Initiated", t);
        s3_xbuf_puts(&b, "<StorageClass>STANDARD</StorageClass></Upload>");
        cairn__upload__free_unpacked(u, NULL);
        n++;
    }
    meta_scan_fini(&s);
    if (truncated) {
        s3_xbuf_elem(&b, "NextKeyMarker", nk);
        s3_xbuf_elem(&b, "NextUploadIdMarker", nu);
    }
    s3_xbuf_printf(&b, "<IsTruncated>%s</IsTruncated></ListMultipartUploadsResult>",
                   truncated ? "true" : "false");
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

/* ---- multi-object delete ---- */

static void delete_objects(struct s3_req *q, uint64_t bucket)
{
    struct s3_delete d = {0};
    struct s3_xbuf b;
    char *body = NULL;
    enum s3_err e = body_open(q);

    if (!e && (q->body_len < 0 || q->body_len > (int64_t)S3_MAX_XML_BODY))
        e = q->body_len < 0 ? S3E_MISSING_CONTENT_LENGTH : S3E_MALFORMED_XML;
    if (!e) {
        body = malloc((size_t)q->body_len + 1);
        e = body ? body_read_full(q, (uint8_t *)body, (size_t)q->body_len) : S3E_INTERNAL_ERROR;
    }
    if (!e)
        e = body_close(q);
    if (!e && hdr(q, "content-md5")) {
        struct s3_cksum *ck = s3_cksum_create(false, S3_CK_NONE);
        uint8_t md5[16], want[16], sha[32];
        char x[64];
        const char *cm = hdr(q, "content-md5");

        if (!ck) {
            e = S3E_INTERNAL_ERROR;
        } else {
            s3_cksum_update(ck, body, (size_t)q->body_len);
            s3_cksum_final(ck, md5, sha, x);
            s3_cksum_destroy(ck);
            if (s3_base64_decode(cm, strlen(cm), want, sizeof(want)) != 16)
                e = S3E_INVALID_DIGEST;
            else if (memcmp(md5, want, 16))
                e = S3E_BAD_DIGEST;
        }
    }
    if (!e)
        e = s3xml_parse_delete(body, (size_t)q->body_len, &d);
    free(body);
    if (e) {
        reply_error(q, e);
        return;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (unsigned i = 0; i < d.nkeys; i++) {
        int rc = delete_key(q, bucket, d.keys[i], strlen(d.keys[i]));

        if (rc) {
            const struct s3_err_info *info = s3_err_info(s3e(rc));

            s3_xbuf_puts(&b, "<Error>");
            s3_xbuf_elem(&b, "Key", d.keys[i]);
            s3_xbuf_elem(&b, "Code", info->code);
            s3_xbuf_elem(&b, "Message", info->message);
            s3_xbuf_puts(&b, "</Error>");
        } else if (!d.quiet) {
            s3_xbuf_puts(&b, "<Deleted>");
            s3_xbuf_elem(&b, "Key", d.keys[i]);
            s3_xbuf_puts(&b, "</Deleted>");
        }
    }
    s3_xbuf_puts(&b, "</DeleteResult>");
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
    s3_delete_fini(&d);
}

/* ---- dispatch ---- */

/* Whether every query parameter is one of ok[], a presigned-URL parameter (X-Amz-*) or, for
 * objects, a response-* header override. */
static bool params_known(const struct s3_req *q, const char *const *ok, size_t nok,
                         bool response_overrides)
{
    for (unsigned i = 0; i < q->nparams; i++) {
        const char *n = q->params[i].name;
        bool known = !strncmp(n, "X-Amz-", 6) ||
                     (response_overrides && !strncmp(n, "response-", 9));

        for (size_t j = 0; j < nok && !known; j++)
            known = !strcmp(n, ok[j]);
        if (!known)
            return false;
    }
    return true;
}

static bool known_bucket_params(const struct s3_req *q)
{
    static const char *const ok[] = {"list-type", "prefix", "delimiter", "max-keys",
                                      "encoding-type", "continuation-token", "start-after",
                                      "marker", "fetch-owner", "location", "uploads", "delete",
                                      "key-marker", "upload-id-marker", "max-uploads", "x-id"};

    return params_known(q, ok, CAIRN_ARRAY_SIZE(ok), false);
}

static void bucket_request(struct s3_req *q)
{
    enum http_method m = q->h->method;
    Cairn__Inode *bin = NULL;
    uint64_t bucket;
    enum s3_err e;

    if (!known_bucket_params(q)) {
        reply_error_msg(q, S3E_NOT_IMPLEMENTED, "This sub-resource is not supported");
        return;
    }

    if (m == HTTP_PUT && !param(q, "uploads") && !param(q, "delete")) {
        create_bucket(q);
        return;
    }
    if (m == HTTP_DELETE && !param(q, "uploads") && !param(q, "delete")) {
        delete_bucket(q);
        return;
    }
    if (m == HTTP_HEAD || (m == HTTP_GET && param(q, "location"))) {
        head_bucket(q);
        return;
    }
    if (m == HTTP_GET && !param(q, "uploads")) {
        list_objects(q, param(q, "list-type") && !strcmp(param(q, "list-type"), "2"));
        return;
    }
    e = bucket_ino(q, &bucket, &bin);
    if (!e)
        e = check_access(q, bin, m != HTTP_GET);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    if (m == HTTP_GET && param(q, "uploads"))
        list_uploads(q, bucket);
    else if (m == HTTP_POST && param(q, "delete"))
        delete_objects(q, bucket);
    else
        reply_error(q, S3E_NOT_IMPLEMENTED);
}

/* Query parameters a plain object request may carry; anything else names a sub-resource
 * (?acl, ?retention, ...) that must not be mistaken for the object itself. */
static bool known_object_params(const struct s3_req *q)
{
    static const char *const ok[] = {"uploadId", "uploads", "partNumber", "versionId",
                                      "x-id", "max-parts", "part-number-marker"};

    return params_known(q, ok, CAIRN_ARRAY_SIZE(ok), true);
}

/* Object tags are not stored: an object has an empty tag set (clients copying objects ask). */
static void object_tagging(struct s3_req *q)
{
    Cairn__Inode *in = NULL, *bin = NULL;
    uint64_t bucket, ino;
    struct s3_xbuf b;
    enum s3_err e = bucket_ino(q, &bucket, &bin);
    int rc;

    if (!e)
        e = check_access(q, bin, q->h->method != HTTP_GET);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    rc = resolve(q, bucket, q->key, q->key_len, &ino, &in, NULL);
    if (rc) {
        reply_error(q, rc == CAIRN_ENOENT ? S3E_NO_SUCH_KEY : s3e(rc));
        return;
    }
    cairn__inode__free_unpacked(in, NULL);
    if (q->h->method == HTTP_DELETE) {
        reply_empty(q, 204, NULL);
        return;
    }
    s3_xbuf_init(&b);
    s3_xbuf_decl(&b);
    s3_xbuf_puts(&b, "<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet></TagSet>"
                     "</Tagging>");
    reply_xml(q, 200, &b);
    s3_xbuf_fini(&b);
}

static void object_request(struct s3_req *q)
{
    enum http_method m = q->h->method;
    Cairn__Inode *bin = NULL;
    uint64_t bucket;
    enum s3_err e;

    if (!key_valid(q->key, q->key_len)) {
        reply_error_msg(q, m == HTTP_GET || m == HTTP_HEAD ? S3E_NO_SUCH_KEY
                                                           : S3E_INVALID_ARGUMENT,
                        m == HTTP_GET || m == HTTP_HEAD
                            ? NULL
                            : "Object keys are paths here: no empty, '.' or '..' components");
        return;
    }
    if (param(q, "tagging") && (m == HTTP_GET || m == HTTP_DELETE)) {
        object_tagging(q);
        return;
    }
    if (!known_object_params(q)) {
        reply_error_msg(q, S3E_NOT_IMPLEMENTED, "This sub-resource is not supported");
        return;
    }
    if (!param(q, "uploadId") && !param(q, "uploads")) {
        switch (m) {
        case HTTP_PUT: put_object(q); return;
        case HTTP_GET:
        case HTTP_HEAD: get_object(q); return;
        case HTTP_DELETE: delete_object(q); return;
        default: break;
        }
    }
    e = bucket_ino(q, &bucket, &bin);
    if (!e)
        e = check_access(q, bin, true);
    if (bin)
        cairn__inode__free_unpacked(bin, NULL);
    if (e) {
        reply_error(q, e);
        return;
    }
    if (m == HTTP_POST && param(q, "uploads"))
        create_upload(q, bucket);
    else if (m == HTTP_PUT && param(q, "uploadId"))
        upload_part(q, bucket);
    else if (m == HTTP_POST && param(q, "uploadId"))
        complete_upload(q, bucket);
    else if (m == HTTP_DELETE && param(q, "uploadId"))
        abort_upload(q, bucket);
    else if (m == HTTP_GET && param(q, "uploadId"))
        list_parts(q, bucket);
    else
        reply_error(q, S3E_METHOD_NOT_ALLOWED);
}

static void s3_handle(void *appv, void *wstate, struct http_req *r)
{
    struct s3_req *q = calloc(1, sizeof(*q));
    enum s3_err e;

    if (!q)
        return; /* the server answers 500 */
    q->app = appv;
    q->w = wstate;
    cn_fileio_run_deferred(&q->w->fio, false);
    q->cl = q->w->cl;
    q->r = r;
    q->h = http_req_http(r);
    q->body_len = -1;
    meta_random_hex(q->request_id);
    q->request_id[16] = 0;
    if (q->h->expect_continue && q->h->content_length == 0) {
        /* Nothing to wait for: a read sends "100 Continue", so the connection stays usable
         * (answering without the 100 would make the server close it). */
        uint8_t none;

        http_req_read(r, &none, 1);
    }
    e = parse_target(q);
    if (!e)
        e = parse_query(q);
    if (!e)
        e = authenticate(q);
    if (e) {
        /* The body was not read: say so in the response's Connection header. */
        if (q->h->content_length != 0 || q->h->chunked)
            http_req_close_after(r);
        reply_error(q, e);
        goto out;
    }
    if (!q->has_bucket) {
        if (q->h->method == HTTP_GET)
            list_buckets(q);
        else
            reply_error(q, S3E_METHOD_NOT_ALLOWED);
    } else if (!q->has_key) {
        bucket_request(q);
    } else {
        object_request(q);
    }
    if (!q->responded)
        reply_error(q, S3E_INTERNAL_ERROR);
out:
    body_fini(q);
    free_params(q);
    if (q->user)
        cairn__user__free_unpacked(q->user, NULL);
    free(q);
}

/* ---- app ---- */

static void *s3_worker_init(void *appv, unsigned idx)
{
    struct s3_app *app = appv;
    struct s3_worker *w = calloc(1, sizeof(*w));
    int rc;

    (void)idx;
    if (!w)
        return NULL;
    rc = cl_cluster_open(&app->cfg.cluster, &w->cl);
    if (rc) {
        log_error(TAG, "worker %u: cluster view: %s", idx, cairn_strerror(rc));
        free(w);
        return NULL;
    }
    cn_fileio_init(&w->fio, w->cl);
    return w;
}

static void s3_worker_fini(void *appv, void *wstate)
{
    struct s3_worker *w = wstate;

    (void)appv;
    if (!w)
        return;
    cn_fileio_fini(&w->fio);
    cl_cluster_close(w->cl);
    free(w);
}

/* The S3 error for a head the HTTP parser refused. */
static enum s3_err s3_error_for_status(int status)
{
    return status == 431   ? S3E_REQUEST_HEADER_TOO_LARGE
           : status == 414 ? S3E_URI_TOO_LONG
           : status == 411 ? S3E_MISSING_CONTENT_LENGTH
           : status == 501 ? S3E_NOT_IMPLEMENTED
           : status == 503 ? S3E_SERVICE_UNAVAILABLE
                           : S3E_INVALID_REQUEST;
}

static const char *s3_error_response(void *appv, int status, const char *reason, char **body,
                                     size_t *len)
{
    enum s3_err e = s3_error_for_status(status);
    struct s3_xbuf b;

    (void)appv;
    s3_xbuf_init(&b);
    s3_xml_error(&b, e, reason, NULL, NULL);
    if (b.oom) {
        s3_xbuf_fini(&b);
        return NULL;
    }
    *body = b.data;
    *len = b.len;
    return XML_TYPE;
}

static int s3_error_status(void *appv, int status)
{
    (void)appv;
    return s3_err_info(s3_error_for_status(status))->status;
}

int s3_app_init(const struct s3_config *cfg, struct http_server_app *out)
{
    struct s3_app *app = calloc(1, sizeof(*app));

    if (!app)
        return CAIRN_ENOMEM;
    app->cfg = *cfg;
    snprintf(app->region, sizeof(app->region), "%s",
             cfg->region && *cfg->region ? cfg->region : "us-east-1");
    memset(out, 0, sizeof(*out));
    out->app = app;
    out->worker_init = s3_worker_init;
    out->worker_fini = s3_worker_fini;
    out->handle = s3_handle;
    out->error_response = s3_error_response;
    out->error_status = s3_error_status;
    return 0;
}

void s3_app_fini(struct http_server_app *app)
{
    free(app->app);
    app->app = NULL;
}
