/*
 * reply.c - S3 responses: headers, XML bodies and errors (see req.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/s3/req.h"
#include "common/cairn.h"
#include "common/log.h"

void s3_hdrs_add(struct s3_hdrs *hs, const char *name, const char *value)
{
    if (hs->n >= S3_MAX_RESP_HEADERS)
        return;
    hs->h[hs->n].name = name;
    hs->h[hs->n].name_len = strlen(name);
    hs->h[hs->n].value = value;
    hs->h[hs->n].value_len = strlen(value);
    hs->n++;
}

void s3_hdrs_addf(struct s3_hdrs *hs, const char *name, const char *fmt, ...)
{
    char *v, *n;
    va_list ap;

    if (hs->n >= S3_MAX_RESP_HEADERS || hs->nowned + 2 > S3_MAX_RESP_HEADERS)
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
    s3_hdrs_add(hs, n, v);
}

void s3_hdrs_fini(struct s3_hdrs *hs)
{
    for (unsigned i = 0; i < hs->nowned; i++)
        free(hs->owned[i]);
}

void s3_std_headers(struct s3_req *q, struct s3_hdrs *hs)
{
    s3_hdrs_add(hs, "x-amz-request-id", q->request_id);
}

enum s3_err s3e(int rc)
{
    enum s3_err e = s3_err_from_cairn(rc);

    if (s3_err_info(e)->status >= 500)
        log_warn(S3_TAG, "request failed: %s", cairn_strerror(rc));
    return e;
}

void s3_reply_error_msg(struct s3_req *q, enum s3_err e, const char *message)
{
    const struct s3_err_info *info = s3_err_info(e);
    struct s3_hdrs hs = {0};
    struct s3_xbuf b;
    char resource[S3_MAX_KEY_LEN + 80];

    if (q->responded)
        return;
    q->responded = true;
    s3_std_headers(q, &hs);
    if (q->h->method == HTTP_HEAD || info->status == 304) {
        http_req_reply(q->r, info->status, hs.h, hs.n, NULL, 0);
        return;
    }
    snprintf(resource, sizeof(resource), "/%s%s%s", q->bucket, q->has_key ? "/" : "",
             q->has_key ? q->key : "");
    s3_xbuf_init(&b);
    s3_xml_error(&b, e, message, resource, q->request_id);
    s3_hdrs_add(&hs, "Content-Type", S3_XML_TYPE);
    if (info->status >= 500 || info->status == 400)
        log_debug(S3_TAG, "%s %s: %s", q->h->method_name, q->h->target, info->code);
    http_req_reply(q->r, info->status, hs.h, hs.n, b.oom ? "" : b.data, b.oom ? 0 : b.len);
    s3_xbuf_fini(&b);
}

void s3_reply_error(struct s3_req *q, enum s3_err e)
{
    s3_reply_error_msg(q, e, NULL);
}

void s3_reply_cairn(struct s3_req *q, int rc)
{
    if (rc != CAIRN_ENOENT && rc != CAIRN_ECONFLICT)
        log_warn(S3_TAG, "%s %s: %s", q->h->method_name, q->h->target, cairn_strerror(rc));
    s3_reply_error(q, s3e(rc));
}

void s3_reply_xml(struct s3_req *q, int status, struct s3_xbuf *b)
{
    struct s3_hdrs hs = {0};

    if (b->oom) {
        s3_reply_error(q, S3E_INTERNAL_ERROR);
        return;
    }
    q->responded = true;
    s3_std_headers(q, &hs);
    s3_hdrs_add(&hs, "Content-Type", S3_XML_TYPE);
    http_req_reply(q->r, status, hs.h, hs.n, b->data, b->len);
}

void s3_reply_empty(struct s3_req *q, int status, struct s3_hdrs *extra)
{
    struct s3_hdrs hs = {0};

    q->responded = true;
    s3_std_headers(q, &hs);
    for (unsigned i = 0; extra && i < extra->n; i++)
        s3_hdrs_add(&hs, extra->h[i].name, extra->h[i].value);
    http_req_reply(q->r, status, hs.h, hs.n, NULL, 0);
}
