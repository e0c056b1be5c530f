/*
 * xml.h - the XML the S3 head reads and writes.
 *
 * Responses are built into a growable buffer with explicit escaping (a response is a few
 * known shapes, so a writer is simpler than a DOM).  Request bodies (CompleteMultipartUpload,
 * Delete, CreateBucketConfiguration) are parsed with expat, which is packaged, streaming and
 * well fuzzed; the parsers accept only the documented shape (namespace optional), enforce
 * the limits below before allocating, and reject DTDs/entities (no entity expansion attacks).
 */
#ifndef CAIRN_CN_S3XML_H
#define CAIRN_CN_S3XML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/s3/err.h"

#define S3_MAX_XML_BODY (2u << 20)  /* request XML bodies larger than this: MalformedXML */
#define S3_MAX_PARTS 10000u
#define S3_MAX_DELETE_KEYS 1000u
#define S3_MAX_KEY_LEN 1024u
/* The namespace of every S3 document (xmlns of response roots; optional on requests). */
#define S3_XML_NS "http://s3.amazonaws.com/doc/2006-03-01/"

/* A growable output buffer.  On allocation failure it sets oom and ignores further writes. */
struct s3_xbuf {
    char *data; /* owned, NUL-terminated when len > 0 */
    size_t len, cap;
    bool oom;
};

void s3_xbuf_init(struct s3_xbuf *b);
void s3_xbuf_fini(struct s3_xbuf *b);
void s3_xbuf_put(struct s3_xbuf *b, const char *s, size_t len);
void s3_xbuf_puts(struct s3_xbuf *b, const char *s);
void s3_xbuf_printf(struct s3_xbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append text with &, <, >, ", ' escaped, and bytes not allowed in XML 1.0 as &#xNN;. */
void s3_xbuf_escape(struct s3_xbuf *b, const char *s, size_t len);
/* <tag>escaped text</tag> */
void s3_xbuf_elem(struct s3_xbuf *b, const char *tag, const char *text);
/* The XML declaration line. */
void s3_xbuf_decl(struct s3_xbuf *b);
/* Start a response body: s3_xbuf_init, the XML declaration and the root element `root` in
 * the S3 namespace (the caller closes it). */
void s3_xbuf_start(struct s3_xbuf *b, const char *root);

/* An S3 error document: <Error><Code/><Message/><Resource/><RequestId/></Error>.  message NULL
 * uses the table's message; resource or request_id NULL leaves that element out. */
void s3_xml_error(struct s3_xbuf *b, enum s3_err e, const char *message, const char *resource,
                  const char *request_id);

/* CompleteMultipartUpload: <Part><PartNumber/><ETag/></Part>... */
struct s3_complete_part {
    uint32_t number;
    char etag[80]; /* as sent, quotes stripped */
};
struct s3_complete {
    struct s3_complete_part *parts; /* owned */
    unsigned nparts;
};
/* Errors: S3E_MALFORMED_XML (bad XML, unknown shape, no parts, part number outside
 * 1..10000, > S3_MAX_PARTS parts), S3E_INVALID_PART_ORDER (not ascending), S3E_INTERNAL_ERROR
 * (ENOMEM). */
enum s3_err s3xml_parse_complete(const char *body, size_t len, struct s3_complete *out);
void s3_complete_fini(struct s3_complete *c);

/* Delete (multi-object delete): <Delete><Quiet/>?<Object><Key/><VersionId/>?</Object>... */
struct s3_delete {
    char **keys; /* owned, NUL-terminated */
    unsigned nkeys;
    bool quiet;
};
/* Errors: S3E_MALFORMED_XML (also 0 or > S3_MAX_DELETE_KEYS keys, a key longer than
 * S3_MAX_KEY_LEN or empty), S3E_INTERNAL_ERROR. */
enum s3_err s3xml_parse_delete(const char *body, size_t len, struct s3_delete *out);
void s3_delete_fini(struct s3_delete *d);

/* CreateBucketConfiguration: <LocationConstraint/>; an empty body is fine (region "").
 * Errors: S3E_MALFORMED_XML (also a region that does not fit cap), S3E_INTERNAL_ERROR. */
enum s3_err s3xml_parse_create_bucket(const char *body, size_t len, char *region, size_t cap);

/* Time formats S3 uses: ISO 8601 with milliseconds for XML ("2009-10-12T17:50:30.000Z") and
 * RFC 1123 for headers ("Wed, 12 Oct 2009 17:50:30 GMT").  buf needs 32 bytes. */
void s3_time_iso8601(int64_t unix_ns, char *buf);
void s3_time_http(int64_t unix_ns, char *buf);
/* Parse an HTTP date (RFC 1123, also RFC 850 and asctime as RFC 9110 asks) into unix time in
 * nanoseconds (whole seconds), so s3_time_http() output parses back.  -1 if invalid. */
int64_t s3_time_parse_http(const char *s);

#endif
