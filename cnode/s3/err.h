/*
 * err.h - the S3 head's error space: every S3 error code the C-node answers with, its HTTP
 * status and its default message, in one table (err.c).  Project errors (CAIRN_E*) map to
 * these in one place, s3_err_from_cairn().
 */
#ifndef CAIRN_CN_S3ERR_H
#define CAIRN_CN_S3ERR_H

enum s3_err {
    S3E_OK = 0,
    S3E_ACCESS_DENIED,                /* 403 AccessDenied */
    S3E_ACCOUNT_PROBLEM,              /* 403 AccountProblem */
    S3E_AUTH_HEADER_MALFORMED,        /* 400 AuthorizationHeaderMalformed */
    S3E_AUTH_QUERY_PARAMS_ERROR,      /* 400 AuthorizationQueryParametersError */
    S3E_BAD_DIGEST,                   /* 400 BadDigest */
    S3E_BUCKET_ALREADY_EXISTS,        /* 409 BucketAlreadyExists */
    S3E_BUCKET_ALREADY_OWNED_BY_YOU,  /* 409 BucketAlreadyOwnedByYou */
    S3E_BUCKET_NOT_EMPTY,             /* 409 BucketNotEmpty */
    S3E_ENTITY_TOO_LARGE,             /* 400 EntityTooLarge */
    S3E_ENTITY_TOO_SMALL,             /* 400 EntityTooSmall */
    S3E_EXPIRED_TOKEN,                /* 400 ExpiredToken */
    S3E_INCOMPLETE_BODY,              /* 400 IncompleteBody */
    S3E_INTERNAL_ERROR,               /* 500 InternalError */
    S3E_INVALID_ACCESS_KEY_ID,        /* 403 InvalidAccessKeyId */
    S3E_INVALID_ARGUMENT,             /* 400 InvalidArgument */
    S3E_INVALID_BUCKET_NAME,          /* 400 InvalidBucketName */
    S3E_INVALID_DIGEST,               /* 400 InvalidDigest */
    S3E_INVALID_PART,                 /* 400 InvalidPart */
    S3E_INVALID_PART_ORDER,           /* 400 InvalidPartOrder */
    S3E_INVALID_RANGE,                /* 416 InvalidRange */
    S3E_INVALID_REQUEST,              /* 400 InvalidRequest */
    S3E_KEY_TOO_LONG,                 /* 400 KeyTooLongError */
    S3E_MALFORMED_XML,                /* 400 MalformedXML */
    S3E_METADATA_TOO_LARGE,           /* 400 MetadataTooLarge */
    S3E_METHOD_NOT_ALLOWED,           /* 405 MethodNotAllowed */
    S3E_MISSING_CONTENT_LENGTH,       /* 411 MissingContentLength */
    S3E_MISSING_SECURITY_HEADER,      /* 400 MissingSecurityHeader */
    S3E_NO_SUCH_BUCKET,               /* 404 NoSuchBucket */
    S3E_NO_SUCH_KEY,                  /* 404 NoSuchKey */
    S3E_NO_SUCH_UPLOAD,               /* 404 NoSuchUpload */
    S3E_NOT_IMPLEMENTED,              /* 501 NotImplemented */
    S3E_PRECONDITION_FAILED,          /* 412 PreconditionFailed */
    S3E_NOT_MODIFIED,                 /* 304 (no body) */
    S3E_REQUEST_HEADER_TOO_LARGE,     /* 400 RequestHeaderSectionTooLarge */
    S3E_REQUEST_TIMEOUT,              /* 400 RequestTimeout */
    S3E_REQUEST_TIME_TOO_SKEWED,      /* 403 RequestTimeTooSkewed */
    S3E_SERVICE_UNAVAILABLE,          /* 503 ServiceUnavailable */
    S3E_INSUFFICIENT_STORAGE,         /* 507 InsufficientStorage (not AWS's: a full cluster) */
    S3E_SIGNATURE_DOES_NOT_MATCH,     /* 403 SignatureDoesNotMatch */
    S3E_SLOW_DOWN,                    /* 503 SlowDown */
    S3E_TOO_MANY_PARTS,               /* 400 InvalidArgument (part number or count) */
    S3E_URI_TOO_LONG,                 /* 414 UriTooLong (not an S3 code; said as InvalidURI) */
    S3E_INVALID_URI,                  /* 400 InvalidURI */
    S3E_CONFLICT,                     /* 409 OperationAborted: concurrent change, retry */
    S3E_PATH_CONFLICT,                /* 409 InvalidObjectState: a file and a directory of one name */
    S3E_XAMZ_CONTENT_SHA256_MISMATCH, /* 400 XAmzContentSHA256Mismatch */
    S3E_INVALID_CHUNK_SIZE,           /* 403 InvalidChunkSizeError */
    S3E_LAST
};

struct s3_err_info {
    const char *code; /* the <Code> of the XML error */
    int status;       /* HTTP status */
    const char *message;
};

/* Table entry for e (S3E_INTERNAL_ERROR's entry for out-of-range values); never NULL. */
const struct s3_err_info *s3_err_info(enum s3_err e);
/* The S3 error for a project error code (CAIRN_E*): ENOENT -> NoSuchKey, ENOSPC/EDEGRADED/
 * ETIMEDOUT/EUNREACH -> ServiceUnavailable, ECONFLICT -> OperationAborted, ETOOBIG ->
 * EntityTooLarge, EINVAL -> InvalidArgument, others -> InternalError. */
enum s3_err s3_err_from_cairn(int cairn_err);

#endif
