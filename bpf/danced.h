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
#define DANCED_BPF_RULE_NAME_MAX 250 /* what an LPM trie key (256 bytes) leaves for a name */
#define DANCED_BPF_SERVICES_MAX 256
#define DANCED_BPF_RULES_MAX 65536
#define DANCED_BPF_IDENTITIES_MAX 262144

/* How a socket's peer was verified (the values of enum dance_auth). */
#define DANCED_AUTH_NONE 0
#define DANCED_AUTH_X509 1
#define DANCED_AUTH_DANE 2
#define DANCED_AUTH_EA_X509 3 /* after the handshake, by an exported authenticator (RFC 9261) */
#define DANCED_AUTH_EA_DANE 4 /* ... whose key a DNSSEC-secure TLSA record matched */
#define DANCED_AUTH_PHA_X509 5 /* after the handshake, by TLS 1.3 post-handshake auth */
#define DANCED_AUTH_PHA_DANE 6 /* ... whose key a DNSSEC-secure TLSA record matched */

/*
 * A network namespace is named by its inode number, as `stat -L -c %i /proc/PID/ns/net`
 * and `lsns -t net` show it: 4026531840 is usually the host's.
 */

/*
 * The identity of a socket danced returned: in socket storage for the hooks, and by
 * socket cookie in the "identities" map for people. rname is the verified name, lower
 * case, reversed character by character and terminated by a '.': "a.example.com"
 * becomes "moc.elpmaxe.a.", so that a rule for a suffix is a prefix of it (see
 * danced_rule_key).
 *
 * While danced handshakes on a socket, its socket storage holds @hold, danced's token
 * (see danced_agent): that exempts danced's own I/O on it, and nobody else's. The
 * programs then fill in netns, port and the service's mode as danced's I/O passes, for
 * danced to read: it judges plaintext it read behind the handshake by them.
 */
struct danced_ident {
	__u64 cookie; /* SO_COOKIE, the key of "identities" */
	__u64 hold; /* nonzero: danced holds the socket (socket storage only) */
	__u32 auth; /* DANCED_AUTH_* */
	__u32 netns; /* the socket's network namespace; 0: unknown */
	__u16 tls_version; /* 0x0303, 0x0304 */
	__u16 cipher; /* IANA cipher suite */
	__u16 port; /* the local port (the service), host order */
	__u8 name_len; /* bytes of rname before its terminating '.' */
	__u8 mode; /* while held: the service's DANCED_MODE_* when danced's I/O last passed */
	char rname[256]; /* reversed name, '.', then zeros */
	__u64 proof_asked; /* CLOCK_MONOTONIC ns when the server last asked danced for a proof
			      of this peer (an exported-authenticator request); 0: never */
};

/*
 * "services": a protected TCP service, a local port in one network namespace -> how
 * it is protected. Only TCP (and MPTCP) sockets are judged: UDP on the same port
 * number (QUIC), raw sockets and other namespaces are not the service.
 */
struct danced_service_key {
	__u32 netns; /* inode number of the network namespace */
	__u16 port; /* host order */
	__u16 pad; /* zero */
};

#define DANCED_MODE_AUDIT 1 /* let everything through; record what enforce would refuse */
#define DANCED_MODE_ENFORCE 2 /* refuse data I/O of sockets the policy does not allow */
#define DANCED_VERDICT_DENY 0
#define DANCED_VERDICT_ALLOW 1

struct danced_service {
	__u8 mode; /* DANCED_MODE_* */
	__u8 dflt; /* DANCED_VERDICT_* for a verified name no rule matches, any proof */
	__u16 proof_window; /* seconds a socket the policy refuses may still carry the proof
			       the server asked for (an exported authenticator, RFC 9261) over
			       the connection itself; 0: never */
	__u32 cgroup_level; /* depth of cgroup_id below the cgroup v2 root (which is 0) */
	__u64 cgroup_id; /* 0: any process; else only processes in this cgroup v2 or below */
};

/*
 * "rules", an LPM trie: the longest match wins. A rule belongs to a service: the key is
 * the service's namespace and port followed by the reversed name; prefixlen counts bits
 * of all three:
 *   "a.example.com" exactly: rname "moc.elpmaxe.a." and the zero byte after it,
 *       prefixlen = 8 * (4 + 2 + 14 + 1)
 *   "example.com" and everything under it: rname "moc.elpmaxe.", prefixlen = 8 * (4 + 2 + 12)
 * Labels end at the '.', so a rule for "_device.example.com" never matches
 * "x_device.example.com"; an exact rule for a domain is longer than the domain's suffix
 * rule, so it wins for that name. Exact rules name at most 248 characters, suffix rules
 * 249; a longer verified name can only match a suffix rule.
 */
struct danced_rule_key {
	__u32 prefixlen;
	__u32 netns;
	__u16 port; /* host order: every rule covers all of netns and port */
	char rname[DANCED_BPF_RULE_NAME_MAX];
};

/*
 * Which proofs of the name an allow rule admits. Zero, what a value of zeros says, is
 * DANE: rules name DNS names, and a DNSSEC-validated TLSA record is what proves one to
 * danced; a CA-issued certificate carrying the name is admitted only where the rule says
 * x509 or any. A deny rule refuses its name however it was proven.
 */
#define DANCED_PROOF_DANE 0
#define DANCED_PROOF_X509 1
#define DANCED_PROOF_ANY 2

struct danced_rule {
	__u8 verdict; /* DANCED_VERDICT_* */
	__u8 proof; /* DANCED_PROOF_* */
	__u8 pad[6];
};

/*
 * "agent", an array of one: the live danced. token is a random nonzero number danced
 * draws at start and zeroes when it stops; when it dies any other way, the program on
 * process exit zeroes it. 0: danced is down, and nothing is exempt. pid is danced's
 * PID as danced sees it, for people; the programs recognise danced by "agent_task",
 * storage that belongs to danced's process itself, so a PID reused is nobody.
 */
struct danced_agent {
	__u64 token;
	__u32 pid;
	__u32 pad;
};

/* "agent_task", task storage of danced's thread-group leader: the token it runs with. */
struct danced_agent_task {
	__u64 token;
};

/*
 * "revoke", a hash of names (key: rname as in danced_ident, value: __u8 1): the sweep
 * (reading the pinned iterator "danced_sweep") destroys every live socket whose
 * identity is listed here, and every one on an enforcing service that the rules now
 * deny. The iterator sees the TCP sockets of the network namespace it is read in.
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
#define DANCED_WHY_PROOF 3 /* the rule for its name does not admit how it was proven */

struct danced_event {
	__u64 cookie;
	__u64 ts; /* CLOCK_MONOTONIC, ns: a follower skips what happened before it came */
	__u32 pid;
	__u32 netns;
	__u16 port;
	__u8 op; /* DANCED_EV_* */
	__u8 why; /* DANCED_WHY_* */
	__u8 audit; /* 1: audit mode let it through */
	__u8 auth; /* DANCED_AUTH_*: how the name was proven */
	__u8 pad[2];
	char comm[16];
	char rname[256];
};

/* Does an allow rule with @proof admit a name proven by @auth (DANCED_AUTH_*)? */
static inline int danced_proof_admits(__u8 proof, __u32 auth)
{
	/* A name proven after the handshake is proven the same way. */
	int dane = auth == DANCED_AUTH_DANE || auth == DANCED_AUTH_EA_DANE ||
		   auth == DANCED_AUTH_PHA_DANE;
	int x509 = auth == DANCED_AUTH_X509 || auth == DANCED_AUTH_EA_X509 ||
		   auth == DANCED_AUTH_PHA_X509;

	if (proof == DANCED_PROOF_ANY)
		return dane || x509;
	if (proof == DANCED_PROOF_X509)
		return x509;
	return proof == DANCED_PROOF_DANE && dane;
}

#ifndef __bpf__
/* Userspace only: the stored forms, in one place for danced, dancectl and the bench. */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * @name's first @n bytes as stored (see danced_ident): reversed, lower case, then '.',
 * zero-padded to @max. False, with @out all zeros, when it does not fit @max.
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

/* How a name was proven, as dancectl and danced's log say it. */
static inline const char *danced_auth_name(__u32 auth)
{
	switch (auth) {
	case DANCED_AUTH_DANE:
		return "dane";
	case DANCED_AUTH_X509:
		return "x509";
	case DANCED_AUTH_EA_DANE:
		return "ea-dane";
	case DANCED_AUTH_EA_X509:
		return "ea-x509";
	case DANCED_AUTH_PHA_DANE:
		return "pha-dane";
	case DANCED_AUTH_PHA_X509:
		return "pha-x509";
	default:
		return "none";
	}
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

/*
 * A rule's key: @rname exactly (with the zero after it), or it and all under it. False
 * when the name is too long for a rule (see danced_rule_key).
 */
static inline bool danced_rule_key_init(struct danced_rule_key *k, __u32 netns, __u16 port,
					const char *rname, bool exact)
{
	size_t n = 0;

	/* Not strnlen(): GCC warns when a literal is shorter than the bound. */
	while (n < DANCED_BPF_NAME_MAX && rname[n])
		n++;
	memset(k, 0, sizeof(*k));
	if (n + exact > sizeof(k->rname))
		return false;
	k->netns = netns;
	k->port = port;
	memcpy(k->rname, rname, n);
	k->prefixlen = 8 * (sizeof(k->netns) + sizeof(k->port) + n + exact);
	return true;
}

static inline struct danced_service_key danced_service_key(__u32 netns, __u16 port)
{
	struct danced_service_key k = { .netns = netns, .port = port };

	return k;
}
#endif

#endif
