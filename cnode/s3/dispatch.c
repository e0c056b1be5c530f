/*
 * dispatch.c - the S3 head's entry: a request from the HTTP server is parsed (path-style
 * /bucket/key, query parameters), authenticated (SigV4; the secret comes from the user record
 * in the metadata) and handed to the operation that serves it (see s3.h and req.h).
 *
 * Paths: path-style requests only (/bucket/key); the key is percent-decoded once.  A key is a
 * path of the one namespace (fs_key_valid): no empty, "." or ".." components, and a key ending
 * in '/' is a directory marker (an explicit directory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

static void free_params(struct s3_req *q)
{
    for (unsigned i = 0; i < q->nparams; i++) {
        free(q->params[i].name);
        free(q->params[i].value);
    }
    q->nparams = 0;
}

/* ---- request parsing ---- */

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

        if (bl >= sizeof(q->bucket) || !s3_bucket_name_valid(dec, bl)) {
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
        struct s3_param *pp;

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
    rc = fs_user_get(q->fs, q->auth.access_key, &q->user);
    if (rc == CAIRN_ENOENT || rc == CAIRN_EINVAL)
        return S3E_INVALID_ACCESS_KEY_ID;
    if (rc)
        return s3e(rc);
    return sigv4_verify(q->h, &q->auth, q->user->secret_key);
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
    uint64_t bucket;
    enum s3_err e;

    if (!known_bucket_params(q)) {
        s3_reply_error_msg(q, S3E_NOT_IMPLEMENTED, "This sub-resource is not supported");
        return;
    }
    if (m == HTTP_PUT && !s3_param(q, "uploads") && !s3_param(q, "delete")) {
        q->op = S3_OP_CREATE_BUCKET;
        s3_create_bucket(q);
        return;
    }
    if (m == HTTP_DELETE && !s3_param(q, "uploads") && !s3_param(q, "delete")) {
        q->op = S3_OP_DELETE_BUCKET;
        s3_delete_bucket(q);
        return;
    }
    if (m == HTTP_HEAD || (m == HTTP_GET && s3_param(q, "location"))) {
        q->op = S3_OP_HEAD_BUCKET;
        s3_head_bucket(q);
        return;
    }
    if (m == HTTP_GET && !s3_param(q, "uploads")) {
        bool v2 = s3_param(q, "list-type") && !strcmp(s3_param(q, "list-type"), "2");

        q->op = v2 ? S3_OP_LIST_OBJECTS_V2 : S3_OP_LIST_OBJECTS;
        s3_list_objects(q, v2);
        return;
    }
    if (m == HTTP_GET && s3_param(q, "uploads"))
        q->op = S3_OP_LIST_UPLOADS;
    else if (m == HTTP_POST && s3_param(q, "delete"))
        q->op = S3_OP_DELETE_OBJECTS;
    e = s3_bucket_open(q, m != HTTP_GET, &bucket, NULL);
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    if (m == HTTP_GET && s3_param(q, "uploads"))
        s3_list_uploads(q, bucket);
    else if (m == HTTP_POST && s3_param(q, "delete"))
        s3_delete_objects(q, bucket);
    else
        s3_reply_error(q, S3E_NOT_IMPLEMENTED);
}

/* Query parameters a plain object request may carry; anything else names a sub-resource
 * (?acl, ?retention, ...) that must not be mistaken for the object itself. */
static bool known_object_params(const struct s3_req *q)
{
    static const char *const ok[] = {"uploadId", "uploads", "partNumber", "versionId",
                                      "x-id", "max-parts", "part-number-marker"};

    return params_known(q, ok, CAIRN_ARRAY_SIZE(ok), true);
}

static void object_request(struct s3_req *q)
{
    enum http_method m = q->h->method;
    bool read = m == HTTP_GET || m == HTTP_HEAD;
    uint64_t bucket;
    enum s3_err e;

    if (!fs_key_valid(q->key, q->key_len)) {
        s3_reply_error_msg(q, read ? S3E_NO_SUCH_KEY : S3E_INVALID_ARGUMENT,
                           read ? NULL
                                : "Object keys are paths here: no empty, '.' or '..' components");
        return;
    }
    if (s3_param(q, "tagging") && (m == HTTP_GET || m == HTTP_DELETE)) {
        q->op = S3_OP_OBJECT_TAGGING;
        s3_object_tagging(q);
        return;
    }
    if (!known_object_params(q)) {
        s3_reply_error_msg(q, S3E_NOT_IMPLEMENTED, "This sub-resource is not supported");
        return;
    }
    if (!s3_param(q, "uploadId") && !s3_param(q, "uploads")) {
        switch (m) {
        case HTTP_PUT: q->op = S3_OP_PUT_OBJECT; s3_put_object(q); return;
        case HTTP_GET: q->op = S3_OP_GET_OBJECT; s3_get_object(q); return;
        case HTTP_HEAD: q->op = S3_OP_HEAD_OBJECT; s3_get_object(q); return;
        case HTTP_DELETE: q->op = S3_OP_DELETE_OBJECT; s3_delete_object(q); return;
        default: break;
        }
    }
    q->op = m == HTTP_POST && s3_param(q, "uploads")      ? S3_OP_CREATE_UPLOAD
            : m == HTTP_PUT && s3_param(q, "uploadId")    ? S3_OP_UPLOAD_PART
            : m == HTTP_POST && s3_param(q, "uploadId")   ? S3_OP_COMPLETE_UPLOAD
            : m == HTTP_DELETE && s3_param(q, "uploadId") ? S3_OP_ABORT_UPLOAD
            : m == HTTP_GET && s3_param(q, "uploadId")    ? S3_OP_LIST_PARTS
                                                          : S3_OP_OTHER;
    e = s3_bucket_open(q, true, &bucket, NULL);
    if (e) {
        s3_reply_error(q, e);
        return;
    }
    if (m == HTTP_POST && s3_param(q, "uploads"))
        s3_create_upload(q, bucket);
    else if (m == HTTP_PUT && s3_param(q, "uploadId"))
        s3_upload_part(q, bucket);
    else if (m == HTTP_POST && s3_param(q, "uploadId"))
        s3_complete_upload(q, bucket);
    else if (m == HTTP_DELETE && s3_param(q, "uploadId"))
        s3_abort_upload(q, bucket);
    else if (m == HTTP_GET && s3_param(q, "uploadId"))
        s3_list_parts(q, bucket);
    else
        s3_reply_error(q, S3E_METHOD_NOT_ALLOWED);
}

/* ---- what the head counts ---- */

static const char *const op_names[S3_OP_COUNT] = {
#define S3_X_NAME(name, text) text,
    S3_OPS(S3_X_NAME)
#undef S3_X_NAME
};

static int stats_register(struct metrics *m, struct metrics_ops *st)
{
    const struct metrics_ops_desc d = {
        .prefix = "cairn_s3", .label = "op", .values = op_names, .nvalues = S3_OP_COUNT,
        .help_requests = "S3 requests answered, by operation.",
        .help_errors = "S3 requests answered with a status of 400 or more.",
        .help_in = "Request body bytes read, by operation.",
        .help_out = "Response body bytes sent, by operation.",
        .help_latency = "Time from a request's head to the end of its answer, by operation."};

    return metrics_ops_register(m, &d, st);
}

static void count(struct s3_req *q, uint64_t t0)
{
    const struct metrics_ops *st = &q->app->stats;
    uint64_t in, out;
    int status;

    if (!st->requests)
        return;
    http_req_counts(q->r, &in, &out, &status);
    metrics_ops_count(st, q->op, status >= 400 || status == 0, in, out, cairn_now_ns() - t0);
}

static void s3_handle(void *appv, void *wstate, struct http_req *r)
{
    struct s3_req *q = calloc(1, sizeof(*q));
    uint64_t t0 = cairn_now_ns();
    enum s3_err e;

    if (!q)
        return; /* the server answers 500 */
    q->op = S3_OP_OTHER;
    q->app = appv;
    q->fs = wstate;
    fs_ctx_tick(q->fs);
    q->r = r;
    q->h = http_req_http(r);
    q->body_len = -1;
    fs_random_hex(q->request_id);
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
        s3_reply_error(q, e);
        goto out;
    }
    if (!q->has_bucket) {
        q->op = S3_OP_LIST_BUCKETS;
        if (q->h->method == HTTP_GET)
            s3_list_buckets(q);
        else
            s3_reply_error(q, S3E_METHOD_NOT_ALLOWED);
    } else if (!q->has_key) {
        bucket_request(q);
    } else {
        object_request(q);
    }
    if (!q->responded)
        s3_reply_error(q, S3E_INTERNAL_ERROR);
out:
    count(q, t0);
    s3_body_fini(q);
    free_params(q);
    if (q->user)
        cairn__user__free_unpacked(q->user, NULL);
    free(q);
}

/* ---- the app the HTTP server runs ---- */

static void *s3_worker_init(void *appv, unsigned idx)
{
    struct s3_app *app = appv;
    struct fs_ctx *c;
    int rc = fs_ctx_open(app->fs, false, &c);

    if (rc) {
        log_error(S3_TAG, "worker %u: %s", idx, cairn_strerror(rc));
        return NULL;
    }
    return c;
}

static void s3_worker_fini(void *appv, void *wstate)
{
    (void)appv;
    fs_ctx_close(wstate);
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
    return S3_XML_TYPE;
}

static int s3_error_status(void *appv, int status)
{
    (void)appv;
    return s3_err_info(s3_error_for_status(status))->status;
}

static int s3_app_init(struct fs *fs, const char *region, struct metrics *m,
                       struct http_server_app *out)
{
    struct s3_app *app = calloc(1, sizeof(*app));
    int rc;

    if (!app)
        return CAIRN_ENOMEM;
    rc = stats_register(m, &app->stats);
    if (rc) {
        log_error(S3_TAG, "metrics: %s", cairn_strerror(rc));
        free(app);
        return rc;
    }
    app->fs = fs;
    snprintf(app->region, sizeof(app->region), "%s",
             region && *region ? region : "us-east-1");
    memset(out, 0, sizeof(*out));
    out->app = app;
    out->worker_init = s3_worker_init;
    out->worker_fini = s3_worker_fini;
    out->handle = s3_handle;
    out->error_response = s3_error_response;
    out->error_status = s3_error_status;
    return 0;
}

static void s3_app_fini(struct http_server_app *app)
{
    free(app->app);
    app->app = NULL;
}

/* ---- the head ---- */

struct s3_head {
    struct http_server_app app;
    struct http_server *srv;
};

static void s3_head_stop(void *hv)
{
    struct s3_head *h = hv;

    if (!h)
        return;
    http_server_stop(h->srv);
    s3_app_fini(&h->app);
    free(h);
}

static int s3_head_start(const struct cn_head_args *a, void **out)
{
    struct s3_head *h = calloc(1, sizeof(*h));
    struct http_server_config cfg = {.host = a->host, .port = a->ports[0], .loops = a->loops,
                                     .workers = a->workers};
    int rc;

    if (!h)
        return CAIRN_ENOMEM;
    rc = s3_app_init(a->fs, a->conf(a->conf_arg, "S3_REGION"), a->metrics, &h->app);
    if (rc) {
        free(h);
        return rc;
    }
    rc = http_server_start(&cfg, &h->app, &h->srv);
    if (rc) {
        log_error(S3_TAG, "cannot serve S3 on %s:%u: %s", a->host, a->ports[0],
                  cairn_strerror(rc));
        s3_head_stop(h);
        return rc;
    }
    *out = h;
    return 0;
}

static unsigned s3_head_port(void *hv, unsigned i)
{
    struct s3_head *h = hv;

    (void)i;
    return http_server_port(h->srv);
}

const struct cn_head_ops s3_head_ops = {
    .name = "S3",
    .nports = 1,
    .start = s3_head_start,
    .port = s3_head_port,
    .stop = s3_head_stop,
};
