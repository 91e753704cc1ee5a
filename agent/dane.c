// SPDX-License-Identifier: GPL-2.0
/*
 * dane.c - TLSA lookups, DNSSEC-validated by libunbound inside danced.
 *
 * Receives a name and a struct dns_wait from a worker; hands back, through the waiter's
 * own post function, exactly one of three outcomes: secure records; secure "no records"
 * or an insecure zone; or a failure (bogus, SERVFAIL, timeout). A failure is never read
 * as "no TLSA". It never sees a conn.
 *
 * A resolver is one libunbound context (its own thread resolves) and one cache: bounded,
 * with positive and negative answers in separate LRU lists so that a flood of one kind
 * never evicts the other; TTLs clamped to the configured limits; failures not cached;
 * concurrent lookups of a name share one query. The main thread runs ub_process() for
 * every resolver. A reload with new DNS settings swaps in a new resolver; lookups in
 * flight finish on the old one, which goes once its last query has answered.
 *
 * libunbound gets a query object of ours, never a cache entry: its callback finds the
 * entry by name and generation under our lock, so an answer that comes late (after a
 * re-query, an expiry or a reload) can never reach a freed or reused entry.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "agent.h"

#define DNS_TYPE_TLSA 52
#define DNS_CLASS_IN 1
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_NXDOMAIN 3
#define REQUERY_NS 1000000000ULL /* a lookup pending this long gets a fresh query */
#define NEGATIVE_MIN 16 /* negative answers kept at least */
#define RESOLVERS_MAX 8 /* the current one and those still finishing after reloads */

struct resolver;

/* One ub_resolve_async() in flight: freed by its callback, or by a cancel that worked. */
struct dane_query {
	struct resolver *r;
	uint64_t gen; /* of the entry that asked */
	uint32_t hash;
	int async_id;
	struct dane_query *prev, *next; /* the resolver's queries in flight */
	char name[DANCE_HOST_MAX];
};

struct lru {
	struct dane_entry *head, *tail; /* most recent first */
	size_t n, cap;
};

struct dane_entry {
	char name[DANCE_HOST_MAX]; /* lower case, no trailing dot */
	uint32_t hash;
	uint64_t gen; /* this incarnation of the name; queries carry it */
	bool pending;
	struct dane_query *query; /* the latest query, while it may still answer */
	uint64_t asked_ns;
	struct tlsa_set *set; /* the answer, once there is one */
	uint64_t expires_ns;
	struct lru *lru; /* which list it is on, answered entries only */
	struct dns_wait *waiters;
	struct dane_entry *hnext;
	struct dane_entry *lru_prev, *lru_next;
};

struct resolver {
	struct ub_ctx *ub;
	struct dane_entry **table;
	size_t buckets;
	struct lru pos, neg;
	struct dane_query *queries_list; /* freed with the resolver if never answered */
	unsigned int queries; /* ub queries that will still call back */
	unsigned int min_ttl, max_ttl, negative_ttl;
	bool retired;
};

static struct {
	pthread_mutex_t lock; /* everything below, every resolver's cache, and dns_waits */
	struct resolver *cur;
	struct resolver *all[RESOLVERS_MAX]; /* the current one and the retired ones */
	size_t n_all;
	uint64_t next_gen;
	FILE *devnull;
} dns = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The answer when there is no memory for one: never freed. */
static struct tlsa_set oom_set = {
	.refs = INT_MAX / 2,
	.outcome = TLSA_FAILURE,
	.status = -ENOMEM,
	.why = "dns-error: out of memory for the answer",
};

static uint32_t name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static struct tlsa_set *tlsa_get(struct tlsa_set *set)
{
	atomic_fetch_add(&set->refs, 1);
	return set;
}

void tlsa_set_put(struct tlsa_set *set)
{
	if (set && set != &oom_set && atomic_fetch_sub(&set->refs, 1) == 1)
		free(set);
}

/**
 * tlsa_next - the next record of a set
 *
 * Return: 0 with the record, -ENOENT at the end, -EBADMSG when a record would run past
 * the set (the walk ends there; nothing past the buffer is read).
 */
int tlsa_next(const struct tlsa_set *set, size_t *off, const uint8_t **rdata, uint16_t *len)
{
	uint16_t n;

	if (*off + 2 > set->rdata_len)
		return -ENOENT;
	memcpy(&n, set->rdata + *off, 2);
	if (*off + 2 + n > set->rdata_len) {
		*off = set->rdata_len;
		return -EBADMSG;
	}
	*len = n;
	*rdata = set->rdata + *off + 2;
	*off += 2 + n;
	return 0;
}

/* ---- the cache ------------------------------------------------------------------------ */

static struct dane_entry *find(struct resolver *r, const char *name, uint32_t h)
{
	struct dane_entry *e;

	for (e = r->table[h & (r->buckets - 1)]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->name, name))
			return e;
	return NULL;
}

static void lru_unlink(struct dane_entry *e)
{
	struct lru *l = e->lru;

	if (!l)
		return;
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		l->head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		l->tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
	e->lru = NULL;
	l->n--;
}

static void lru_front(struct lru *l, struct dane_entry *e)
{
	lru_unlink(e);
	e->lru = l;
	e->lru_next = l->head;
	if (l->head)
		l->head->lru_prev = e;
	l->head = e;
	if (!l->tail)
		l->tail = e;
	l->n++;
}

/* Waiters are gone or served before an entry goes; a late query finds no entry. */
static void entry_remove(struct resolver *r, struct dane_entry *e)
{
	struct dane_entry **pp = &r->table[e->hash & (r->buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	tlsa_set_put(e->set);
	free(e);
}

/* An answer joins its list; the list's least recently used answer makes room. */
static void lru_add(struct resolver *r, struct lru *l, struct dane_entry *e)
{
	lru_front(l, e);
	while (l->n > l->cap && l->tail != e)
		entry_remove(r, l->tail);
}

/* Sort unbound's answer into the three outcomes, with the reason the operator will read. */
static struct tlsa_set *classify(int err, struct ub_result *res)
{
	struct tlsa_set *set;
	size_t total = 0;
	int i;

	if (!err && res->havedata && res->secure && !res->bogus &&
	    (res->rcode == DNS_RCODE_NOERROR))
		for (i = 0; res->data[i]; i++)
			total += 2 + res->len[i];
	set = calloc(1, sizeof(*set) + total);
	if (!set)
		return &oom_set;
	atomic_init(&set->refs, 1);
	if (err) {
		set->outcome = TLSA_FAILURE;
		set->status = -EHOSTUNREACH;
		snprintf(set->why, sizeof(set->why), "dns-error: %s", ub_strerror(err));
		return set;
	}
	if (res->bogus) {
		set->outcome = TLSA_FAILURE;
		set->status = -EACCES;
		snprintf(set->why, sizeof(set->why), "tlsa-bogus: %s",
			 res->why_bogus ?: "DNSSEC validation failed");
		return set;
	}
	if (res->rcode != DNS_RCODE_NOERROR && res->rcode != DNS_RCODE_NXDOMAIN) {
		set->outcome = TLSA_FAILURE;
		set->status = -EHOSTUNREACH;
		snprintf(set->why, sizeof(set->why), "dns-servfail: the lookup failed (rcode %d)",
			 res->rcode);
		return set;
	}
	set->ttl = res->ttl;
	set->status = -EACCES;
	if (!res->secure) {
		set->outcome = TLSA_INSECURE;
		snprintf(set->why, sizeof(set->why),
			 "tlsa-insecure: the zone is not DNSSEC-signed, so its TLSA records "
			 "cannot authenticate anyone");
		return set;
	}
	if (!res->havedata) {
		set->outcome = TLSA_NONE;
		snprintf(set->why, sizeof(set->why), "tlsa-none: no TLSA record %s",
			 res->nxdomain ? "(the name does not exist)" : "at that name");
		return set;
	}
	/* Packed as length (2 bytes, host order) + RDATA, record after record. */
	for (i = 0; res->data[i]; i++) {
		uint16_t len = res->len[i];

		memcpy(set->rdata + set->rdata_len, &len, 2);
		memcpy(set->rdata + set->rdata_len + 2, res->data[i], len);
		set->rdata_len += 2 + len;
		set->n_records++;
	}
	set->outcome = TLSA_SECURE;
	set->status = 0;
	return set;
}

static void query_link(struct resolver *r, struct dane_query *q)
{
	q->prev = NULL;
	q->next = r->queries_list;
	if (q->next)
		q->next->prev = q;
	r->queries_list = q;
	r->queries++;
}

static void query_unlink(struct resolver *r, struct dane_query *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		r->queries_list = q->next;
	if (q->next)
		q->next->prev = q->prev;
	r->queries--;
}

static unsigned int clamp(unsigned int v, unsigned int lo, unsigned int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Give every waiter the answer; each moves to its own thread through its post(). */
static void deliver(struct dns_wait *waiters, struct tlsa_set *set)
{
	struct dns_wait *w, *next;

	for (w = waiters; w; w = next) {
		next = w->next;
		w->next = NULL;
		w->waiting = false;
		w->entry = NULL;
		w->answer = tlsa_get(set);
		w->cached = false;
		w->post(w);
	}
}

/* libunbound's callback, on the main thread inside ub_process(); none of its locks held. */
static void lookup_done(void *arg, int err, struct ub_result *res)
{
	struct dane_query *q = arg;
	struct tlsa_set *set = classify(err, res);
	struct resolver *r = q->r;
	struct dane_entry *e;
	struct dns_wait *waiters;
	unsigned int ttl;

	ub_resolve_free(res);
	log_debug("TLSA %s: %s", q->name,
		  set->outcome == TLSA_SECURE ? "secure records" : set->why);
	pthread_mutex_lock(&dns.lock);
	query_unlink(r, q);
	e = find(r, q->name, q->hash);
	if (e && e->query == q)
		e->query = NULL;
	if (e && e->gen == q->gen && e->pending) {
		waiters = e->waiters;
		e->waiters = NULL;
		e->pending = false;
		deliver(waiters, set);
		if (set->outcome == TLSA_FAILURE || r->retired) {
			/* Failures are not remembered: the next handshake asks again. */
			entry_remove(r, e);
		} else {
			ttl = set->outcome == TLSA_SECURE ?
				      clamp(set->ttl, r->min_ttl, r->max_ttl) :
				      clamp(set->ttl, r->min_ttl, r->negative_ttl);
			e->set = tlsa_get(set);
			e->expires_ns = now_ns() + (uint64_t)ttl * 1000000000ULL;
			lru_add(r, set->outcome == TLSA_SECURE ? &r->pos : &r->neg, e);
		}
	}
	/* else: a late answer (re-queried, expired, or a reload); nothing waits for it */
	pthread_mutex_unlock(&dns.lock);
	tlsa_set_put(set);
	free(q);
}

/* Ask libunbound; under dns.lock. */
static int ask(struct resolver *r, struct dane_entry *e)
{
	char qname[DANCE_HOST_MAX + 1];
	struct dane_query *q = malloc(sizeof(*q));
	int ret;

	if (!q)
		return -ENOMEM;
	q->r = r;
	q->gen = e->gen;
	q->hash = e->hash;
	snprintf(q->name, sizeof(q->name), "%s", e->name);
	snprintf(qname, sizeof(qname), "%s.", e->name);
	ret = ub_resolve_async(r->ub, qname, DNS_TYPE_TLSA, DNS_CLASS_IN, q, lookup_done,
			       &q->async_id);
	if (ret) {
		free(q);
		return -EIO;
	}
	query_link(r, q);
	/*
	 * The query before this one may still answer; whichever answer comes first serves
	 * every waiter. If libunbound takes it back, its callback will not run: free it.
	 * If not (it is answering right now), the callback frees it and finds the entry.
	 */
	if (e->query && ub_cancel(r->ub, e->query->async_id) == 0) {
		query_unlink(r, e->query);
		free(e->query);
	}
	e->query = q;
	e->asked_ns = now_ns();
	return 0;
}

/**
 * dane_lookup - the TLSA RRset at @name
 * @name: lower case, no trailing dot, already checked against the allow-list
 * @w: the waiter; w->post must be set
 *
 * Return: 0 with the answer in w->answer (from the cache; the caller puts it);
 * -EINPROGRESS when @w waits: w->post(w) runs on the main thread once the answer is in
 * w->answer, unless dane_cancel() takes @w back first; -ENOMEM or -EIO when no lookup
 * could start; -ENOSYS when danced runs without a resolver (no service used DANE).
 */
int dane_lookup(const char *name, struct dns_wait *w)
{
	uint32_t h = name_hash(name);
	struct dane_entry *e;
	struct resolver *r;
	uint64_t now = now_ns();
	int ret;

	w->answer = NULL;
	w->cached = false;
	pthread_mutex_lock(&dns.lock);
	r = dns.cur;
	ret = -ENOSYS;
	if (!r)
		goto out;
	e = find(r, name, h);
	if (e && !e->pending && now >= e->expires_ns) {
		entry_remove(r, e);
		e = NULL;
	}
	if (e && !e->pending) {
		lru_front(e->lru, e);
		w->answer = tlsa_get(e->set);
		w->cached = true;
		ret = 0;
		goto out;
	}
	if (!e) {
		ret = -ENOMEM;
		e = calloc(1, sizeof(*e));
		if (!e)
			goto out;
		snprintf(e->name, sizeof(e->name), "%s", name);
		e->hash = h;
		e->gen = ++dns.next_gen;
		e->pending = true;
		e->hnext = r->table[h & (r->buckets - 1)];
		r->table[h & (r->buckets - 1)] = e;
		ret = ask(r, e);
		if (ret) {
			entry_remove(r, e);
			goto out;
		}
	} else if (now - e->asked_ns > REQUERY_NS) {
		/* The query has been out for a while (a server down?): ask afresh. */
		ask(r, e);
	}
	w->next = e->waiters;
	e->waiters = w;
	w->entry = e;
	w->waiting = true;
	ret = -EINPROGRESS;
out:
	pthread_mutex_unlock(&dns.lock);
	return ret;
}

/**
 * dane_cancel - take a waiter back (its deadline passed, or its socket is going)
 *
 * Return: true when @w was still waiting (it will get no answer now); false when its
 * answer has been posted already.
 */
bool dane_cancel(struct dns_wait *w)
{
	struct dns_wait **pp;
	bool was = false;

	pthread_mutex_lock(&dns.lock);
	if (w->waiting) {
		struct dane_entry *e = w->entry;

		for (pp = &e->waiters; *pp; pp = &(*pp)->next)
			if (*pp == w) {
				*pp = w->next;
				break;
			}
		w->waiting = false;
		w->entry = NULL;
		w->next = NULL;
		was = true;
	}
	pthread_mutex_unlock(&dns.lock);
	return was;
}

/* ---- resolvers ------------------------------------------------------------------------- */

static void resolver_free(struct resolver *r)
{
	size_t i;

	if (!r)
		return;
	if (r->ub)
		ub_ctx_delete(r->ub); /* outstanding queries' callbacks never run after this */
	while (r->queries_list) {
		struct dane_query *q = r->queries_list;

		query_unlink(r, q);
		free(q);
	}
	for (i = 0; r->table && i < r->buckets; i++) {
		struct dane_entry *e, *next;

		for (e = r->table[i]; e; e = next) {
			next = e->hnext;
			tlsa_set_put(e->set);
			free(e);
		}
	}
	free(r->table);
	free(r);
}

#define UB(what, call)                                                                \
	do {                                                                          \
		ret = (call);                                                         \
		if (ret) {                                                            \
			snprintf(err, errlen, "DNS: %s: %s", what, ub_strerror(ret)); \
			goto fail;                                                    \
		}                                                                     \
	} while (0)

static int resolver_new(const struct config *cfg, struct resolver **out, char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));
	char buf[32];
	size_t i;
	int ret;

	if (!r)
		goto nomem;
	r->ub = ub_ctx_create();
	/* Chains of two on average at full capacity. */
	r->buckets = 16;
	while (r->buckets < cfg->dns_cache_size / 2)
		r->buckets <<= 1;
	r->table = calloc(r->buckets, sizeof(*r->table));
	if (!r->ub || !r->table)
		goto nomem;
	r->pos.cap = cfg->dns_cache_size;
	r->neg.cap = cfg->dns_cache_size / 4 > NEGATIVE_MIN ? cfg->dns_cache_size / 4 :
							      NEGATIVE_MIN;
	r->min_ttl = cfg->dns_min_ttl;
	r->max_ttl = cfg->dns_max_ttl;
	r->negative_ttl = cfg->dns_negative_ttl;

	/* libunbound logs to stderr by default; danced reports outcomes itself. */
	UB("debugout", ub_ctx_debugout(r->ub, dns.devnull));
	/* Resolution runs in libunbound's thread; results come back through ub_fd(). */
	UB("async", ub_ctx_async(r->ub, 1));
	/* Private zones often live on this machine. */
	UB("do-not-query-localhost", ub_ctx_set_option(r->ub, "do-not-query-localhost:", "no"));
	/* Our cache decides lifetimes; unbound's must not outlive it. */
	snprintf(buf, sizeof(buf), "%u", cfg->dns_max_ttl);
	UB("cache-max-ttl", ub_ctx_set_option(r->ub, "cache-max-ttl:", buf));
	snprintf(buf, sizeof(buf), "%u", cfg->dns_min_ttl);
	UB("cache-min-ttl", ub_ctx_set_option(r->ub, "cache-min-ttl:", buf));
	snprintf(buf, sizeof(buf), "%u", cfg->dns_negative_ttl);
	UB("cache-max-negative-ttl", ub_ctx_set_option(r->ub, "cache-max-negative-ttl:", buf));
	/* Why an answer was bogus goes into the result's reason. */
	UB("val-log-level", ub_ctx_set_option(r->ub, "val-log-level:", "2"));
	/*
	 * A server that was down is tried again within seconds, not after unbound's 15
	 * minutes, and a dead one fails fast instead of holding lookups for 30 s: both
	 * bounds are needed (measured: either alone leaves one of the two problems).
	 * The cost: a server slower than 1 s per answer is retried before it answers.
	 */
	UB("infra-host-ttl", ub_ctx_set_option(r->ub, "infra-host-ttl:", "5"));
	UB("infra-cache-max-rtt", ub_ctx_set_option(r->ub, "infra-cache-max-rtt:", "1000"));
	if (cfg->dns_trust_anchor_file)
		UB(cfg->dns_trust_anchor_file,
		   ub_ctx_add_ta_file(r->ub, cfg->dns_trust_anchor_file));
	for (i = 0; i < cfg->n_dns_trust_anchors; i++)
		UB(cfg->dns_trust_anchors[i], ub_ctx_add_ta(r->ub, cfg->dns_trust_anchors[i]));
	for (i = 0; i < cfg->n_dns_stubs; i++)
		UB(cfg->dns_stubs[i].zone,
		   ub_ctx_set_stub(r->ub, cfg->dns_stubs[i].zone, cfg->dns_stubs[i].addr, 0));
	if (cfg->dns_forwarder)
		UB(cfg->dns_forwarder, ub_ctx_set_fwd(r->ub, cfg->dns_forwarder));
	/*
	 * Last: removing a local zone finalizes the context, and every setting after that
	 * fails ("setting change after finalize"). A built-in local zone at or above a stub
	 * (test., invalid., ...) would answer NXDOMAIN itself; unbound says nothing when
	 * there is none to remove.
	 */
	for (i = 0; i < cfg->n_dns_stubs; i++) {
		const char *z;

		for (z = cfg->dns_stubs[i].zone; z && *z && strcmp(z, ".");
		     z = strchr(z, '.') ? strchr(z, '.') + 1 : NULL)
			ub_ctx_zone_remove(r->ub, z);
	}
	*out = r;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory for the DNS resolver");
	ret = -ENOMEM;
	resolver_free(r);
	return ret;
fail:
	resolver_free(r);
	return -EINVAL;
}
#undef UB

/* Only a configuration that uses DANE needs a resolver (and the root trust anchor). */
static bool config_uses_dns(const struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n_svcs; i++)
		if (cfg->svcs[i].dane != DANE_OFF || cfg->svcs[i].verify == VERIFY_DANE ||
		    cfg->svcs[i].verify == VERIFY_DANE_OR_PKIX)
			return true;
	return false;
}

static bool str_equal(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* Would @a and @b build the same resolver? */
bool dane_config_equal(const struct config *a, const struct config *b)
{
	size_t i;

	if (config_uses_dns(a) != config_uses_dns(b) ||
	    !str_equal(a->dns_trust_anchor_file, b->dns_trust_anchor_file) ||
	    !str_equal(a->dns_forwarder, b->dns_forwarder) ||
	    a->n_dns_trust_anchors != b->n_dns_trust_anchors || a->n_dns_stubs != b->n_dns_stubs ||
	    a->dns_cache_size != b->dns_cache_size || a->dns_min_ttl != b->dns_min_ttl ||
	    a->dns_max_ttl != b->dns_max_ttl || a->dns_negative_ttl != b->dns_negative_ttl)
		return false;
	for (i = 0; i < a->n_dns_trust_anchors; i++)
		if (strcmp(a->dns_trust_anchors[i], b->dns_trust_anchors[i]))
			return false;
	for (i = 0; i < a->n_dns_stubs; i++)
		if (strcmp(a->dns_stubs[i].zone, b->dns_stubs[i].zone) ||
		    strcmp(a->dns_stubs[i].addr, b->dns_stubs[i].addr))
			return false;
	return true;
}

/**
 * dane_init - the resolver and its cache, at start-up, when a service uses DANE
 *
 * Return: 0, -ENOMEM, or -EINVAL with @err saying which trust anchor, stub or option
 * libunbound refused.
 */
int dane_init(const struct config *cfg, char *err, size_t errlen)
{
	return dane_reload(cfg, err, errlen);
}

/**
 * dane_reload - swap in a resolver for @cfg (main thread only)
 *
 * New handshakes ask the new resolver, with an empty cache; lookups in flight finish on
 * the old one. A configuration without DANE leaves none.
 *
 * Return: 0, or what dane_init() returns; the running resolver then stays.
 */
int dane_reload(const struct config *cfg, char *err, size_t errlen)
{
	struct resolver *r = NULL, *old;
	int ret;

	if (!dns.devnull)
		dns.devnull = fopen("/dev/null", "w");
	if (!dns.devnull) {
		snprintf(err, errlen, "cannot open /dev/null for libunbound's log");
		return -EIO;
	}
	if (config_uses_dns(cfg)) {
		if (dns.n_all >= RESOLVERS_MAX) {
			snprintf(err, errlen,
				 "DNS: %zu resolvers still finish lookups from earlier "
				 "reloads; try again in a few seconds",
				 dns.n_all);
			return -EBUSY;
		}
		ret = resolver_new(cfg, &r, err, errlen);
		if (ret)
			return ret;
	}
	pthread_mutex_lock(&dns.lock);
	old = dns.cur;
	dns.cur = r;
	if (r)
		dns.all[dns.n_all++] = r;
	if (old)
		old->retired = true;
	pthread_mutex_unlock(&dns.lock);
	dane_process(); /* frees the old one at once when nothing is left in it */
	return 0;
}

/* The descriptors the main thread polls: one per resolver. */
int dane_poll_fds(int *fds, int max)
{
	size_t i;
	int n = 0;

	pthread_mutex_lock(&dns.lock);
	for (i = 0; i < dns.n_all && n < max; i++)
		fds[n++] = ub_fd(dns.all[i]->ub);
	pthread_mutex_unlock(&dns.lock);
	return n;
}

/*
 * Main thread: libunbound has answers. Callbacks run here, with no lock of ours held;
 * then retired resolvers with nothing left to answer go.
 */
void dane_process(void)
{
	struct resolver *done[RESOLVERS_MAX];
	size_t i, n = 0, k = 0;
	int ret;

	for (i = 0; i < dns.n_all; i++) {
		ret = ub_process(dns.all[i]->ub);
		if (ret)
			log_warn("DNS: ub_process: %s", ub_strerror(ret));
	}
	pthread_mutex_lock(&dns.lock);
	for (i = 0; i < dns.n_all; i++) {
		struct resolver *r = dns.all[i];

		if (r->retired && !r->queries)
			done[n++] = r;
		else
			dns.all[k++] = r;
	}
	dns.n_all = k;
	pthread_mutex_unlock(&dns.lock);
	for (i = 0; i < n; i++)
		resolver_free(done[i]);
}

void dane_fini(void)
{
	size_t i;

	pthread_mutex_lock(&dns.lock);
	for (i = 0; i < dns.n_all; i++)
		resolver_free(dns.all[i]);
	dns.n_all = 0;
	dns.cur = NULL;
	pthread_mutex_unlock(&dns.lock);
	if (dns.devnull)
		fclose(dns.devnull);
	dns.devnull = NULL;
}

/**
 * dane_name_check - is @name a usable client name, and does the allow-list permit it?
 * @len: the name's length as sent: a zero byte inside it makes it unusable
 * @out: the name in lower case without a trailing dot
 *
 * Checked before any DNS query, so an unauthenticated client cannot make danced look
 * up names of its choosing. Labels are letters, digits, hyphens and underscores
 * (A-labels; underscore labels for _service and _device names); no wildcards.
 *
 * Return: 0, -EINVAL for a malformed name, -EPERM for a name outside the allow-list.
 */
int dane_name_check(const struct svc_config *cfg, const char *name, size_t len, char *out,
		    size_t max)
{
	size_t i, label = 0, n;

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
			return -EINVAL; /* a zero byte, a space, a wildcard, ... */
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
