/*
 * admin.h - the small HTTP endpoint every daemon serves for operators: GET /metrics (the
 * registry of common/metrics.h in the Prometheus text format) and GET /healthz ("ok").
 *
 * It runs on a thread of its own with plain blocking sockets, one request per connection,
 * one connection at a time: a scrape every few seconds needs no event loop, and keeping it
 * apart from the data path means a slow or hostile scraper can delay only other scrapers,
 * never a request.  Each connection has a deadline (ADMIN_IO_TIMEOUT_MS) and its request head
 * a size limit (ADMIN_MAX_REQUEST); anything else gets 400, 404, 405 or 431, and the
 * connection is closed.
 */
#ifndef CAIRN_COMMON_ADMIN_H
#define CAIRN_COMMON_ADMIN_H

#include "common/metrics.h"

#define ADMIN_MAX_REQUEST 4096u   /* bytes of a request head */
#define ADMIN_IO_TIMEOUT_MS 2000u /* to receive a request head, and to send an answer */
#define ADMIN_MAX_DRAIN 65536u    /* bytes read and dropped after an answer, before closing */

struct admin_server;

/* Listen on hostport ("HOST:PORT", "[V6]:PORT"; port 0: any free one) and serve m (borrowed
 * until admin_stop; may be NULL: /metrics is then empty).  Returns 0, CAIRN_EINVAL (a bad
 * address), CAIRN_EIO (bind or listen failed: the errno is logged), CAIRN_ENOMEM. */
int admin_start(const char *hostport, struct metrics *m, struct admin_server **out);
/* The port it listens on (the chosen one when 0 was asked for). */
unsigned admin_port(const struct admin_server *s);
/* Stop serving (the connection in progress, if any, ends first), close and free.  Accepts
 * NULL. */
void admin_stop(struct admin_server *s);

#endif
