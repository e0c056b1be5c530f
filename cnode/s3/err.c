/*
 * err.c - the S3 error table (see err.h).
 *
 * One row per enum s3_err, indexed by the enum itself (designated initializers), so a value
 * added to the enum without a row shows up as a NULL code, which the unit tests catch.  Codes,
 * statuses and messages are the ones Amazon S3 documents and sends ("List of error codes" in
 * the S3 API reference): clients and SDKs dispatch on <Code> and the status, and people search
 * for the message, so the strings stay exactly as S3 words them.  The few rows S3 has no code
 * of its own for (URI too long, a file/directory name clash) reuse the S3 code closest in
 * meaning, as the comments in err.h say.
 */
#include "cnode/s3/err.h"

#include "common/cairn.h"

static const struct s3_err_info s3_err_table[S3E_LAST] = {
    [S3E_OK] = {"OK", 200, "OK"},
    [S3E_ACCESS_DENIED] = {"AccessDenied", 403, "Access Denied"},
    [S3E_ACCOUNT_PROBLEM] = {"AccountProblem", 403,
                             "There is a problem with your AWS account that prevents the "
                             "operation from completing successfully."},
    [S3E_AUTH_HEADER_MALFORMED] = {"AuthorizationHeaderMalformed", 400,
                                   "The authorization header you provided is invalid."},
    [S3E_AUTH_QUERY_PARAMS_ERROR] = {"AuthorizationQueryParametersError", 400,
                                     "Query-string authentication version 4 requires the "
                                     "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, "
                                     "X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires "
                                     "parameters."},
    [S3E_BAD_DIGEST] = {"BadDigest", 400,
                        "The Content-MD5 you specified did not match what we received."},
    [S3E_BUCKET_ALREADY_EXISTS] = {"BucketAlreadyExists", 409,
                                   "The requested bucket name is not available. The bucket "
                                   "namespace is shared by all users of the system. Please "
                                   "select a different name and try again."},
    [S3E_BUCKET_ALREADY_OWNED_BY_YOU] = {"BucketAlreadyOwnedByYou", 409,
                                         "Your previous request to create the named bucket "
                                         "succeeded and you already own it."},
    [S3E_BUCKET_NOT_EMPTY] = {"BucketNotEmpty", 409, "The bucket you tried to delete is not empty"},
    [S3E_ENTITY_TOO_LARGE] = {"EntityTooLarge", 400,
                              "Your proposed upload exceeds the maximum allowed size"},
    [S3E_ENTITY_TOO_SMALL] = {"EntityTooSmall", 400,
                              "Your proposed upload is smaller than the minimum allowed size"},
    [S3E_EXPIRED_TOKEN] = {"ExpiredToken", 400, "The provided token has expired."},
    [S3E_INCOMPLETE_BODY] = {"IncompleteBody", 400,
                             "You did not provide the number of bytes specified by the "
                             "Content-Length HTTP header."},
    [S3E_INTERNAL_ERROR] = {"InternalError", 500,
                            "We encountered an internal error. Please try again."},
    [S3E_INVALID_ACCESS_KEY_ID] = {"InvalidAccessKeyId", 403,
                                   "The AWS Access Key Id you provided does not exist in our "
                                   "records."},
    [S3E_INVALID_ARGUMENT] = {"InvalidArgument", 400, "Invalid Argument"},
    [S3E_INVALID_BUCKET_NAME] = {"InvalidBucketName", 400, "The specified bucket is not valid."},
    [S3E_INVALID_DIGEST] = {"InvalidDigest", 400, "The Content-MD5 you specified was invalid."},
    [S3E_INVALID_PART] = {"InvalidPart", 400,
                          "One or more of the specified parts could not be found. The part "
                          "might not have been uploaded, or the specified entity tag might not "
                          "have matched the part's entity tag."},
    [S3E_INVALID_PART_ORDER] = {"InvalidPartOrder", 400,
                                "The list of parts was not in ascending order. The parts list "
                                "must be specified in order by part number."},
    [S3E_INVALID_RANGE] = {"InvalidRange", 416, "The requested range is not satisfiable"},
    [S3E_INVALID_REQUEST] = {"InvalidRequest", 400, "Invalid Request"},
    [S3E_KEY_TOO_LONG] = {"KeyTooLongError", 400, "Your key is too long"},
    [S3E_MALFORMED_XML] = {"MalformedXML", 400,
                           "The XML you provided was not well-formed or did not validate "
                           "against our published schema"},
    [S3E_METADATA_TOO_LARGE] = {"MetadataTooLarge", 400,
                                "Your metadata headers exceed the maximum allowed metadata "
                                "size."},
    [S3E_METHOD_NOT_ALLOWED] = {"MethodNotAllowed", 405,
                                "The specified method is not allowed against this resource."},
    [S3E_MISSING_CONTENT_LENGTH] = {"MissingContentLength", 411,
                                    "You must provide the Content-Length HTTP header."},
    [S3E_MISSING_SECURITY_HEADER] = {"MissingSecurityHeader", 400,
                                     "Your request is missing a required header."},
    [S3E_NO_SUCH_BUCKET] = {"NoSuchBucket", 404, "The specified bucket does not exist"},
    [S3E_NO_SUCH_KEY] = {"NoSuchKey", 404, "The specified key does not exist."},
    [S3E_NO_SUCH_UPLOAD] = {"NoSuchUpload", 404,
                            "The specified upload does not exist. The upload ID may be "
                            "invalid, or the upload may have been aborted or completed."},
    [S3E_NOT_IMPLEMENTED] = {"NotImplemented", 501,
                             "A header you provided implies functionality that is not "
                             "implemented"},
    [S3E_PRECONDITION_FAILED] = {"PreconditionFailed", 412,
                                 "At least one of the pre-conditions you specified did not "
                                 "hold"},
    [S3E_NOT_MODIFIED] = {"NotModified", 304, "Not Modified"},
    [S3E_REQUEST_HEADER_TOO_LARGE] = {"RequestHeaderSectionTooLarge", 400,
                                      "Your request header section exceeds the maximum allowed "
                                      "size."},
    [S3E_REQUEST_TIMEOUT] = {"RequestTimeout", 400,
                             "Your socket connection to the server was not read from or "
                             "written to within the timeout period. Idle connections will be "
                             "closed."},
    [S3E_REQUEST_TIME_TOO_SKEWED] = {"RequestTimeTooSkewed", 403,
                                     "The difference between the request time and the current "
                                     "time is too large."},
    [S3E_SERVICE_UNAVAILABLE] = {"ServiceUnavailable", 503, "Service is unable to handle request."},
    /* AWS never runs out of space; S3-compatible stores answer 507 (WebDAV's Insufficient
     * Storage), which clients do not retry blindly and operators can tell from an outage. */
    [S3E_INSUFFICIENT_STORAGE] = {"InsufficientStorage", 507,
                                  "The cluster has no room for the data: delete some, or add "
                                  "D-nodes."},
    [S3E_SIGNATURE_DOES_NOT_MATCH] = {"SignatureDoesNotMatch", 403,
                                      "The request signature we calculated does not match the "
                                      "signature you provided. Check your key and signing "
                                      "method."},
    [S3E_SLOW_DOWN] = {"SlowDown", 503, "Please reduce your request rate."},
    [S3E_TOO_MANY_PARTS] = {"InvalidArgument", 400,
                            "Part number must be an integer between 1 and 10000, inclusive"},
    [S3E_URI_TOO_LONG] = {"InvalidURI", 414, "The request URI is too long."},
    [S3E_INVALID_URI] = {"InvalidURI", 400, "Couldn't parse the specified URI."},
    [S3E_CONFLICT] = {"OperationAborted", 409,
                      "A conflicting conditional operation is currently in progress against "
                      "this resource. Please try again."},
    [S3E_PATH_CONFLICT] = {"InvalidObjectState", 409,
                           "The key cannot be used: an object and a directory would share "
                           "the same name."},
    [S3E_XAMZ_CONTENT_SHA256_MISMATCH] = {"XAmzContentSHA256Mismatch", 400,
                                          "The provided 'x-amz-content-sha256' header does not "
                                          "match what was computed."},
    [S3E_INVALID_CHUNK_SIZE] = {"InvalidChunkSizeError", 403,
                                "Only the last chunk is allowed to have a size less than 8192 "
                                "bytes"},
};

const struct s3_err_info *s3_err_info(enum s3_err e)
{
    /* The enum's underlying type may be unsigned; compare as int so negative garbage is caught. */
    if ((int)e < 0 || (int)e >= S3E_LAST)
        return &s3_err_table[S3E_INTERNAL_ERROR];
    return &s3_err_table[e];
}

enum s3_err s3_err_from_cairn(int cairn_err)
{
    switch (cairn_err) {
    case CAIRN_OK:
        return S3E_OK;
    case CAIRN_ENOENT:
        return S3E_NO_SUCH_KEY;
    /* The cluster cannot take the request now (too many fragments lost, peers silent):
     * a retryable 503 rather than a 500 that clients may not retry. */
    case CAIRN_ENOSPC:
        return S3E_INSUFFICIENT_STORAGE;
    case CAIRN_EDEGRADED:
    case CAIRN_ETIMEDOUT:
    case CAIRN_EUNREACH:
        return S3E_SERVICE_UNAVAILABLE;
    case CAIRN_ECONFLICT:
        return S3E_CONFLICT;
    case CAIRN_ETOOBIG:
        return S3E_ENTITY_TOO_LARGE;
    case CAIRN_EINVAL:
        return S3E_INVALID_ARGUMENT;
    /* A key is a path: a name is a file or a directory, never both. */
    case CAIRN_EEXIST:
    case CAIRN_EISDIR:
    case CAIRN_ENOTDIR:
        return S3E_PATH_CONFLICT;
    case CAIRN_ENOTEMPTY:
        return S3E_BUCKET_NOT_EMPTY;
    case CAIRN_EACCES:
    case CAIRN_EPERM:
        return S3E_ACCESS_DENIED;
    case CAIRN_ENAMETOOLONG:
        return S3E_KEY_TOO_LONG;
    case CAIRN_EPRECOND:
        return S3E_PRECONDITION_FAILED;
    default:
        return S3E_INTERNAL_ERROR;
    }
}
