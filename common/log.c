/*
 * log.c - one line per message on stderr: time, ident, level, tag, text.
 * stderr is unbuffered and each line goes out in one write, so lines from
 * several threads do not interleave mid-line.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum cairn_log_level cairn_log_threshold = CAIRN_LOG_INFO;
static const char *log_ident = "cairn";

void cairn_log_set_level(const char *name)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    if (!name)
        return;
    for (unsigned i = 0; i < 4; i++)
        if (!strcmp(name, names[i]))
            cairn_log_threshold = (enum cairn_log_level)i;
}

void cairn_log_set_ident(const char *ident)
{
    log_ident = ident;
}

void cairn_log_emit(enum cairn_log_level lvl, const char *tag, const char *fmt, ...)
{
    static const char lv[] = "EWID";
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s %c [%s] ", tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, log_ident, lv[lvl], tag);
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}
