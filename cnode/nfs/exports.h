/*
 * exports.h - the NFS exports of a C-node, from the cluster configuration.
 *
 * NFS_EXPORTS in cluster.env lists exports separated by ';', each a path of the namespace
 * followed by client rules in /etc/exports style:
 *
 *     NFS_EXPORTS="/ 10.0.0.0/8(rw) 127.0.0.1(rw,no_root_squash) ; /datasets *(ro)"
 *
 * A client is '*', an IPv4 or IPv6 address, or ADDR/PREFIX.  Options: rw or ro (default rw),
 * root_squash (default) / no_root_squash / all_squash, anonuid=N, anongid=N (default 65534).
 * The first rule that matches the client's address applies; no match means no access.  Unset,
 * the C-node exports "/ *(rw,root_squash)".
 *
 * An export is named in file handles by a 32-bit id hashed from its path, so every C-node
 * with the same configuration agrees on it.
 */
#ifndef CAIRN_CN_EXPORTS_H
#define CAIRN_CN_EXPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NFS_MAX_EXPORTS 64u
#define NFS_MAX_RULES 32u
#define NFS_EXPORT_PATH_MAX 1024u
#define NFS_DEFAULT_EXPORTS "/ *(rw,root_squash)"
#define NFS_ANON_ID 65534u

enum nfs_squash { NFS_SQUASH_ROOT = 0, NFS_SQUASH_NONE, NFS_SQUASH_ALL };

struct nfs_rule {
    bool any;                      /* '*' */
    int family;                    /* AF_INET or AF_INET6 */
    uint8_t addr[16];              /* network byte order */
    unsigned prefix;               /* bits that must match */
    bool ro;
    enum nfs_squash squash;
    uint32_t anonuid, anongid;
    char text[64];                 /* the client as written (EXPORT replies) */
};

struct nfs_export {
    char path[NFS_EXPORT_PATH_MAX]; /* normalised: leading '/', no trailing '/' except root */
    uint32_t id;
    struct nfs_rule rules[NFS_MAX_RULES];
    unsigned nrules;
};

struct nfs_exports {
    struct nfs_export *v; /* owned */
    unsigned n;
};

/* Parse spec (NULL: the default).  Returns 0, or CAIRN_EINVAL with a message in err. */
int nfs_exports_parse(const char *spec, struct nfs_exports *out, char *err, size_t errlen);
void nfs_exports_fini(struct nfs_exports *e);
const struct nfs_export *nfs_export_by_path(const struct nfs_exports *e, const char *path,
                                            size_t len);
const struct nfs_export *nfs_export_by_id(const struct nfs_exports *e, uint32_t id);
/* The rule that applies to a client address, or NULL (no access). */
const struct nfs_rule *nfs_export_match(const struct nfs_export *x,
                                        const struct sockaddr_storage *peer);

#endif
