// SPDX-License-Identifier: GPL-2.0
/*
 * dane.c - TLSA lookups, DNSSEC-validated by libunbound inside danced.
 *
 * Receives a conn that needs the TLSA RRset at a name; hands back, on the conn's worker,
 * exactly one of three outcomes: secure records; secure "no records" or an insecure zone;
 * or a failure (bogus, SERVFAIL, timeout). A failure is never read as "no TLSA". One
 * cache serves every worker: bounded in entries, TTLs clamped to the configured limits,
 * negative answers cached, failures not; concurrent lookups of a name share one query.
 * libunbound resolves in its own thread; worker 0 polls its descriptor on the ring and
 * runs ub_process(), and results reach other workers through their mailboxes.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unbound.h>

#include "agent.h"

#define DNS_TYPE_TLSA 52
#define DNS_CLASS_IN 1
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define REQUERY_NS 1000000000ULL /* a lookup pending this long gets a fresh query */

struct dane_entry {
	char name[DANCE_HOST_MAX]; /* lower case, no trailing dot */
	uint32_t hash;
	bool pending;
	int async_id;
	uint64_t asked_ns;
	struct tlsa_set set; /* the answer, once there is one */
	uint64_t expires_ns;
	struct conn *waiters;
	struct dane_entry *hnext;
	struct dane_entry *lru_prev, *lru_next; /* done entries only; most recent first */
};

static struct {
	pthread_mutex_t lock; /* everything below, and every conn's dane_wait */
	struct ub_ctx *ub;
	struct dane_entry **table;
	size_t buckets;
	size_t n_entries, cap;
	struct dane_entry *lru_head, *lru_tail;
	unsigned int min_ttl, max_ttl, negative_ttl;
	FILE *devnull;
} dns = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

/**
 * dane_init - the resolver and the cache, once at start-up
 *
 * Return: 0, -ENOMEM, or -EINVAL with @err saying which trust anchor, stub or option
 * libunbound refused.
 */
int dane_init(const struct config *cfg, char *err, size_t errlen)
{
	char buf[32];
	size_t i;
	int ret;

	dns.ub = ub_ctx_create();
	/* Chains of two on average at full capacity. */
	dns.buckets = 16;
	while (dns.buckets < cfg->dns_cache_size / 2)
		dns.buckets <<= 1;
	dns.table = calloc(dns.buckets, sizeof(*dns.table));
	dns.devnull = fopen("/dev/null", "w");
	if (!dns.ub || !dns.table || !dns.devnull) {
		snprintf(err, errlen, "out of memory for the DNS resolver");
		return -ENOMEM;
	}
	dns.cap = cfg->dns_cache_size;
	dns.min_ttl = cfg->dns_min_ttl;
	dns.max_ttl = cfg->dns_max_ttl;
	dns.negative_ttl = cfg->dns_negative_ttl;

#define UB(what, call)                                                                \
	do {                                                                          \
		ret = (call);                                                         \
		if (ret) {                                                            \
			snprintf(err, errlen, "DNS: %s: %s", what, ub_strerror(ret)); \
			return -EINVAL;                                               \
		}                                                                     \
	} while (0)

	/* libunbound logs to stderr by default; danced reports outcomes itself. */
	UB("debugout", ub_ctx_debugout(dns.ub, dns.devnull));
	/* Resolution runs in libunbound's thread; results come back through ub_fd(). */
	UB("async", ub_ctx_async(dns.ub, 1));
	/* Private zones often live on this machine. */
	UB("do-not-query-localhost", ub_ctx_set_option(dns.ub, "do-not-query-localhost:", "no"));
	/* Our cache decides lifetimes; unbound's must not outlive it. */
	snprintf(buf, sizeof(buf), "%u", cfg->dns_max_ttl);
	UB("cache-max-ttl", ub_ctx_set_option(dns.ub, "cache-max-ttl:", buf));
	snprintf(buf, sizeof(buf), "%u", cfg->dns_min_ttl);
	UB("cache-min-ttl", ub_ctx_set_option(dns.ub, "cache-min-ttl:", buf));
	snprintf(buf, sizeof(buf), "%u", cfg->dns_negative_ttl);
	UB("cache-max-negative-ttl", ub_ctx_set_option(dns.ub, "cache-max-negative-ttl:", buf));
	/* Why an answer was bogus goes into the result's reason. */
	UB("val-log-level", ub_ctx_set_option(dns.ub, "val-log-level:", "2"));
	/*
	 * A server that was down is tried again within seconds, not after unbound's 15
	 * minutes, and a dead one fails fast instead of holding lookups for 30 s: both
	 * bounds are needed (measured: either alone leaves one of the two problems).
	 * The cost: a server slower than 1 s per answer is retried before it answers.
	 */
	UB("infra-host-ttl", ub_ctx_set_option(dns.ub, "infra-host-ttl:", "5"));
	UB("infra-cache-max-rtt", ub_ctx_set_option(dns.ub, "infra-cache-max-rtt:", "1000"));
	if (cfg->dns_trust_anchor_file)
		UB(cfg->dns_trust_anchor_file,
		   ub_ctx_add_ta_file(dns.ub, cfg->dns_trust_anchor_file));
	for (i = 0; i < cfg->n_dns_trust_anchors; i++)
		UB(cfg->dns_trust_anchors[i], ub_ctx_add_ta(dns.ub, cfg->dns_trust_anchors[i]));
	for (i = 0; i < cfg->n_dns_stubs; i++) {
		const struct dns_stub *s = &cfg->dns_stubs[i];

		const char *z;

		UB(s->zone, ub_ctx_set_stub(dns.ub, s->zone, s->addr, 0));
		/*
		 * A built-in local zone at or above the stub (test., invalid., ...) would answer
		 * NXDOMAIN itself; unbound says nothing when there is none to remove.
		 */
		for (z = s->zone; z && *z && strcmp(z, ".");
		     z = strchr(z, '.') ? strchr(z, '.') + 1 : NULL)
			ub_ctx_zone_remove(dns.ub, z);
	}
	if (cfg->dns_forwarder)
		UB(cfg->dns_forwarder, ub_ctx_set_fwd(dns.ub, cfg->dns_forwarder));
#undef UB
	return 0;
}

void dane_fini(void)
{
	size_t i;

	if (dns.ub)
		ub_ctx_delete(dns.ub);
	for (i = 0; dns.table && i < dns.buckets; i++) {
		struct dane_entry *e, *next;

		for (e = dns.table[i]; e; e = next) {
			next = e->hnext;
			free(e->set.rdata);
			free(e);
		}
	}
	free(dns.table);
	if (dns.devnull)
		fclose(dns.devnull);
	memset(&dns.ub, 0, sizeof(dns) - offsetof(typeof(dns), ub));
}

int dane_fd(void)
{
	return dns.ub ? ub_fd(dns.ub) : -1;
}

static struct dane_entry *find(const char *name, uint32_t h)
{
	struct dane_entry *e;

	for (e = dns.table[h & (dns.buckets - 1)]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->name, name))
			return e;
	return NULL;
}

static void lru_unlink(struct dane_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else if (dns.lru_head == e)
		dns.lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else if (dns.lru_tail == e)
		dns.lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_front(struct dane_entry *e)
{
	lru_unlink(e);
	e->lru_next = dns.lru_head;
	if (dns.lru_head)
		dns.lru_head->lru_prev = e;
	dns.lru_head = e;
	if (!dns.lru_tail)
		dns.lru_tail = e;
}

static void entry_remove(struct dane_entry *e)
{
	struct dane_entry **pp = &dns.table[e->hash & (dns.buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	free(e->set.rdata);
	free(e);
	dns.n_entries--;
}

/* Room for one more: the least recently used answer goes. Pending lookups stay. */
static bool make_room(void)
{
	if (dns.n_entries < dns.cap)
		return true;
	if (!dns.lru_tail)
		return false;
	entry_remove(dns.lru_tail);
	return true;
}

/* Sort unbound's answer into the three outcomes, with the reason the operator will read. */
static void classify(struct tlsa_set *set, int err, struct ub_result *r)
{
	size_t total = 0;
	int i;

	memset(set, 0, sizeof(*set));
	if (err) {
		set->outcome = TLSA_FAILURE;
		set->status = -EHOSTUNREACH;
		snprintf(set->why, sizeof(set->why), "dns-error: %s", ub_strerror(err));
		return;
	}
	if (r->bogus) {
		set->outcome = TLSA_FAILURE;
		set->status = -EACCES;
		snprintf(set->why, sizeof(set->why), "tlsa-bogus: %s",
			 r->why_bogus ?: "DNSSEC validation failed");
		return;
	}
	if (r->rcode != DNS_RCODE_NOERROR && r->rcode != DNS_RCODE_NXDOMAIN) {
		set->outcome = TLSA_FAILURE;
		set->status = -EHOSTUNREACH;
		snprintf(set->why, sizeof(set->why), "dns-servfail: the lookup failed (rcode %d)",
			 r->rcode);
		return;
	}
	set->ttl = r->ttl;
	if (!r->secure) {
		set->outcome = TLSA_INSECURE;
		set->status = -EACCES;
		snprintf(set->why, sizeof(set->why),
			 "tlsa-insecure: the zone is not DNSSEC-signed, so its TLSA records "
			 "cannot authenticate anyone");
		return;
	}
	if (!r->havedata) {
		set->outcome = TLSA_NONE;
		set->status = -EACCES;
		snprintf(set->why, sizeof(set->why), "tlsa-none: no TLSA record %s",
			 r->nxdomain ? "(the name does not exist)" : "at that name");
		return;
	}
	for (i = 0; r->data[i]; i++)
		total += 2 + r->len[i];
	set->rdata = malloc(total);
	if (!set->rdata) {
		set->outcome = TLSA_FAILURE;
		set->status = -ENOMEM;
		snprintf(set->why, sizeof(set->why), "dns-error: out of memory for the answer");
		return;
	}
	/* Packed as length (2 bytes, host order) + RDATA, record after record. */
	for (i = 0; r->data[i]; i++) {
		uint16_t len = r->len[i];

		memcpy(set->rdata + set->rdata_len, &len, 2);
		memcpy(set->rdata + set->rdata_len + 2, r->data[i], len);
		set->rdata_len += 2 + len;
		set->n_records++;
	}
	set->outcome = TLSA_SECURE;
}

static unsigned int clamp(unsigned int v, unsigned int lo, unsigned int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Give every waiter its answer, on its own worker. */
static void deliver(struct conn *waiters, const struct tlsa_set *set)
{
	struct conn *c, *next;

	for (c = waiters; c; c = next) {
		next = c->dane_next;
		if (tlsa_set_copy(&c->tlsa, set))
			c->tlsa.outcome = TLSA_FAILURE;
		c->dane_wait = DANE_DELIVERED;
		mailbox_post(c);
	}
}

static void lookup_done(void *arg, int err, struct ub_result *r)
{
	struct dane_entry *e = arg;
	struct tlsa_set set;
	struct conn *waiters;
	uint64_t now = now_ns();
	unsigned int ttl;

	classify(&set, err, r);
	ub_resolve_free(r);
	log_debug("TLSA %s: %s", e->name, set.outcome == TLSA_SECURE ? "secure records" : set.why);
	pthread_mutex_lock(&dns.lock);
	waiters = e->waiters;
	e->waiters = NULL;
	e->pending = false;
	deliver(waiters, &set);
	if (set.outcome == TLSA_FAILURE) {
		/* Failures are not remembered: the next handshake asks again. */
		free(set.rdata);
		entry_remove(e);
	} else {
		ttl = set.outcome == TLSA_SECURE ? clamp(set.ttl, dns.min_ttl, dns.max_ttl) :
						   clamp(set.ttl, dns.min_ttl, dns.negative_ttl);
		e->set = set;
		e->expires_ns = now + (uint64_t)ttl * 1000000000ULL;
		lru_front(e);
	}
	pthread_mutex_unlock(&dns.lock);
}

/* Worker 0: libunbound has answers. Callbacks run here, with no lock of ours held. */
void dane_process(void)
{
	int ret = ub_process(dns.ub);

	if (ret)
		log_warn("DNS: ub_process: %s", ub_strerror(ret));
}

static int ask(struct dane_entry *e)
{
	char qname[DANCE_HOST_MAX + 1];
	int ret;

	snprintf(qname, sizeof(qname), "%s.", e->name);
	ret = ub_resolve_async(dns.ub, qname, DNS_TYPE_TLSA, DNS_CLASS_IN, e, lookup_done,
			       &e->async_id);
	if (ret)
		return -EIO;
	e->asked_ns = now_ns();
	return 0;
}

/**
 * dane_lookup - the TLSA RRset at @name for conn @c
 * @name: lower case, no trailing dot, already checked against the allow-list
 *
 * Return: 0 when @c->tlsa holds the answer now (from the cache); -EINPROGRESS when @c
 * waits (handshake_dns_done() runs on its worker later, unless dane_cancel() takes it
 * back first); -ENOMEM or -EIO when no lookup could be started; -ENOSYS when danced
 * started without a resolver (no service used DANE then).
 */
int dane_lookup(struct conn *c, const char *name)
{
	uint32_t h = name_hash(name);
	struct dane_entry *e;
	int ret = -EINPROGRESS;

	if (!dns.ub)
		return -ENOSYS; /* DANE came with a reload; the resolver starts with danced */
	pthread_mutex_lock(&dns.lock);
	e = find(name, h);
	if (e && !e->pending && now_ns() >= e->expires_ns) {
		entry_remove(e);
		e = NULL;
	}
	if (e && !e->pending) {
		lru_front(e);
		ret = tlsa_set_copy(&c->tlsa, &e->set) ? -ENOMEM : 0;
		c->dns_cached = true;
		goto out;
	}
	if (!e) {
		ret = -ENOMEM;
		if (!make_room())
			goto out;
		e = calloc(1, sizeof(*e));
		if (!e)
			goto out;
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->hash = h;
		e->pending = true;
		e->hnext = dns.table[h & (dns.buckets - 1)];
		dns.table[h & (dns.buckets - 1)] = e;
		dns.n_entries++;
		if (ask(e)) {
			entry_remove(e);
			ret = -EIO;
			goto out;
		}
	} else if (now_ns() - e->asked_ns > REQUERY_NS) {
		/*
		 * The query has been out for a while (a server down?). Ask afresh; whichever
		 * answer comes first serves every waiter, the other finds no entry.
		 */
		ub_cancel(dns.ub, e->async_id);
		ask(e);
	}
	c->dane_next = e->waiters;
	e->waiters = c;
	c->dane_entry = e;
	c->dane_wait = DANE_WAITING;
	ret = -EINPROGRESS;
out:
	pthread_mutex_unlock(&dns.lock);
	return ret;
}

/**
 * dane_cancel - take a waiting conn back (its deadline passed)
 *
 * Return: true when @c was still waiting (it will get no answer now); false when an
 * answer is already on its way to @c's mailbox.
 */
bool dane_cancel(struct conn *c)
{
	struct conn **pp;
	bool was = false;

	pthread_mutex_lock(&dns.lock);
	if (c->dane_wait == DANE_WAITING) {
		struct dane_entry *e = c->dane_entry;

		for (pp = &e->waiters; *pp; pp = &(*pp)->dane_next)
			if (*pp == c) {
				*pp = c->dane_next;
				break;
			}
		c->dane_wait = DANE_IDLE;
		was = true;
	}
	pthread_mutex_unlock(&dns.lock);
	return was;
}

int tlsa_set_copy(struct tlsa_set *dst, const struct tlsa_set *src)
{
	free(dst->rdata);
	*dst = *src;
	dst->rdata = NULL;
	if (!src->rdata_len)
		return 0;
	dst->rdata = malloc(src->rdata_len);
	if (!dst->rdata) {
		dst->rdata_len = 0;
		dst->n_records = 0;
		return -ENOMEM;
	}
	memcpy(dst->rdata, src->rdata, src->rdata_len);
	return 0;
}

void tlsa_set_free(struct tlsa_set *set)
{
	free(set->rdata);
	memset(set, 0, sizeof(*set));
}

/* The next record of a set: 0 and its fields, or -ENOENT at the end. */
int tlsa_next(const struct tlsa_set *set, size_t *off, const uint8_t **rdata, uint16_t *len)
{
	if (*off + 2 > set->rdata_len)
		return -ENOENT;
	memcpy(len, set->rdata + *off, 2);
	*rdata = set->rdata + *off + 2;
	*off += 2 + *len;
	return 0;
}

/**
 * dane_name_check - is @name a usable client name, and does the allow-list permit it?
 * @out: the name in lower case without a trailing dot
 *
 * Checked before any DNS query, so an unauthenticated client cannot make danced look
 * up names of its choosing. Labels are letters, digits, hyphens and underscores
 * (A-labels; underscore labels for _service and _device names); no wildcards.
 *
 * Return: 0, -EINVAL for a malformed name, -EPERM for a name outside the allow-list.
 */
int dane_name_check(const struct svc_config *cfg, const char *name, char *out, size_t max)
{
	size_t len = strlen(name), i, label = 0, n;

	if (len && name[len - 1] == '.')
		len--;
	if (!len || len > 253 || len >= max)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		char ch = name[i];

		if (ch == '.') {
			if (!label)
				return -EINVAL;
			label = 0;
		} else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
			if (++label > 63)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
		out[i] = tolower((unsigned char)ch);
	}
	if (!label)
		return -EINVAL;
	out[len] = '\0';
	for (i = 0; i < cfg->n_dane_names; i++) {
		const char *allowed = cfg->dane_names[i];

		n = strlen(allowed);
		if (!strcmp(out, allowed) ||
		    (len > n && out[len - n - 1] == '.' && !strcmp(out + len - n, allowed)))
			return 0;
	}
	return -EPERM;
}
