/*
 * log.h - leveled logging with a subsystem tag.
 *
 * The level is process-wide configuration set once at start (CAIRN_LOG env or
 * a daemon flag).  Nothing on the per-request hot path logs above debug, and
 * a disabled level costs one comparison.
 */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

enum cairn_log_level { CAIRN_LOG_ERROR, CAIRN_LOG_WARN, CAIRN_LOG_INFO, CAIRN_LOG_DEBUG };

extern enum cairn_log_level cairn_log_threshold;

/* Set the threshold from a name ("error", "warn", "info", "debug"); unknown names keep it. */
void cairn_log_set_level(const char *name);
/* Set the name printed in front of every line (the daemon name). */
void cairn_log_set_ident(const char *ident);

void cairn_log_emit(enum cairn_log_level lvl, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CAIRN_LOG(lvl, tag, ...)                                                                   \
    do {                                                                                           \
        if ((lvl) <= cairn_log_threshold)                                                          \
            cairn_log_emit((lvl), (tag), __VA_ARGS__);                                             \
    } while (0)

#define log_error(tag, ...) CAIRN_LOG(CAIRN_LOG_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...) CAIRN_LOG(CAIRN_LOG_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...) CAIRN_LOG(CAIRN_LOG_INFO, tag, __VA_ARGS__)
#define log_debug(tag, ...) CAIRN_LOG(CAIRN_LOG_DEBUG, tag, __VA_ARGS__)

#endif
