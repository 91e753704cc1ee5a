/* SPDX-License-Identifier: GPL-2.0 */
/*
 * danced.h - what danced's BPF programs and their users share: the layouts of the
 * pinned maps under /sys/fs/bpf/danced/, which operators read and write with bpftool.
 * Fixed-size types only, no pointers, no implicit padding: these bytes are the
 * interface, and the README documents them field by field.
 */
#ifndef DANCED_BPF_H
#define DANCED_BPF_H

#define DANCED_BPF_NAME_MAX 254 /* a DNS name in text (253) plus its terminator */
#define DANCED_BPF_SERVICES_MAX 256
#define DANCED_BPF_RULES_MAX 65536
#define DANCED_BPF_IDENTITIES_MAX 262144

/* How a socket's peer was verified (the values of enum dance_auth). */
#define DANCED_AUTH_NONE 0
#define DANCED_AUTH_X509 1
#define DANCED_AUTH_DANE 2

/*
 * The identity of a socket danced returned: in socket storage for the hooks, and by
 * socket cookie in the "identities" map for people. rname is the verified name, lower
 * case, reversed character by character and terminated by a '.': "a.example.com"
 * becomes "moc.elpmaxe.a.", so that a rule for a suffix is a prefix of it (see
 * danced_rule_key).
 */
struct danced_ident {
	__u64 cookie; /* SO_COOKIE, the key of "identities" */
	__u32 auth; /* DANCED_AUTH_* */
	__u16 tls_version; /* 0x0303, 0x0304 */
	__u16 cipher; /* IANA cipher suite */
	__u16 port; /* the local port (the service), host order */
	__u8 name_len; /* bytes of rname before its terminating '.' */
	__u8 pad;
	__u32 pad2;
	char rname[256]; /* reversed name, '.', then zeros */
};

/* "services": a protected local port (host order, key __u16) -> how it is protected. */
#define DANCED_MODE_AUDIT 1 /* let everything through; record what enforce would refuse */
#define DANCED_MODE_ENFORCE 2 /* refuse data I/O of sockets the policy does not allow */
#define DANCED_VERDICT_DENY 0
#define DANCED_VERDICT_ALLOW 1

struct danced_service {
	__u8 mode; /* DANCED_MODE_* */
	__u8 dflt; /* DANCED_VERDICT_* for a verified name no rule matches */
	__u16 pad;
	__u32 cgroup_level; /* depth of cgroup_id below the cgroup v2 root (which is 0) */
	__u64 cgroup_id; /* 0: any process; else only processes in this cgroup v2 or below */
};

/*
 * "rules", an LPM trie: the longest match wins. The key is the port followed by the
 * reversed name; prefixlen counts bits of both:
 *   "a.example.com" exactly, on port 443: port 443, rname "moc.elpmaxe.a." and the
 *       zero byte after it, prefixlen = 8 * (2 + 14 + 1)
 *   "example.com" and everything under it: rname "moc.elpmaxe.", prefixlen = 8 * (2 + 12)
 * Labels end at the '.', so a rule for "_device.example.com" never matches
 * "x_device.example.com"; an exact rule for a domain is longer than the domain's suffix
 * rule, so it wins for that name.
 */
struct danced_rule_key {
	__u32 prefixlen;
	__u16 port; /* host order: every rule covers all 16 bits, so byte order is moot */
	char rname[DANCED_BPF_NAME_MAX];
};

struct danced_rule {
	__u8 verdict; /* DANCED_VERDICT_* */
	__u8 pad[7];
};

/* "agent", an array of one: the tgid whose I/O is danced's own handshakes, exempt. */
struct danced_agent {
	__u32 tgid;
	__u32 pad;
};

/*
 * "revoke", a hash of names (key: rname as in danced_ident, value: __u8 1): the sweep
 * (reading the pinned iterator "danced_sweep") destroys every live socket whose
 * identity is listed here, and every one on an enforcing port that the rules now deny.
 */
#define DANCED_BPF_REVOKE_MAX 1024

/*
 * "events" and "watch", two ring buffers with the same records: one per refused (or, in
 * audit mode, refusable) call. A ring buffer has one reader: danced reads "events" and
 * logs them; "watch" is for followers such as `dancectl events`. A full buffer drops
 * new records; the verdict stands either way.
 */
#define DANCED_EV_SEND 1
#define DANCED_EV_RECV 2

#define DANCED_WHY_NO_IDENTITY 1 /* no identity on a socket of a protected port */
#define DANCED_WHY_DENIED 2 /* a rule (or the default) denies its name */

struct danced_event {
	__u64 cookie;
	__u64 ts; /* CLOCK_MONOTONIC, ns: a follower skips what happened before it came */
	__u32 pid;
	__u16 port;
	__u8 op; /* DANCED_EV_* */
	__u8 why; /* DANCED_WHY_* */
	__u8 audit; /* 1: audit mode let it through */
	__u8 pad[7];
	char comm[16];
	char rname[256];
};

#ifndef __bpf__
/* Userspace only: the stored forms, in one place for danced, dancectl and the bench. */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * @name's first @n bytes as stored (see danced_ident): reversed, lower case, then '.',
 * zero-padded to @max. False, with @out all zeros, when it does not fit a rule key.
 */
static inline bool danced_rname(const char *name, size_t n, char *out, size_t max)
{
	size_t i;

	memset(out, 0, max);
	if (!n || n + 1 > DANCED_BPF_NAME_MAX || n + 1 > max)
		return false;
	for (i = 0; i < n; i++)
		out[i] = tolower((unsigned char)name[n - 1 - i]);
	out[n] = '.';
	return true;
}

/* Back from the stored form to a printable name ('?' for any other byte). */
static inline void danced_fname(const char *rname, size_t rmax, char *out, size_t max)
{
	size_t n = strnlen(rname, rmax), i;

	if (n && rname[n - 1] == '.')
		n--;
	if (n + 1 > max)
		n = max - 1;
	for (i = 0; i < n; i++)
		out[i] = isprint((unsigned char)rname[n - 1 - i]) ? rname[n - 1 - i] : '?';
	out[n] = '\0';
}

/* A rule's key: @rname exactly (with the zero after it), or it and all under it. */
static inline void danced_rule_key_init(struct danced_rule_key *k, __u16 port, const char *rname,
					bool exact)
{
	size_t n = strnlen(rname, sizeof(k->rname) - 1);

	memset(k, 0, sizeof(*k));
	k->port = port;
	memcpy(k->rname, rname, n);
	k->prefixlen = 8 * (sizeof(k->port) + n + exact);
}
#endif

#endif
