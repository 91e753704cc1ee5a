// SPDX-License-Identifier: GPL-2.0
/*
 * admit.c - whether danced takes on one more handshake, before it does any work for it.
 *
 * Receives a socket's source address and service from handoff.c or frontdoor.c; hands
 * back a ticket (the handshake counts against every limit until admit_release()) or a
 * refusal with the limit that said no. Limits: the global pool (max_handshakes), each
 * service's share of it ([service] max_handshakes), the handshakes in flight from one
 * source address (source_max_handshakes: IPv4 address, IPv6 /64, since one host owns a
 * /64) and how fast one source may start them (source_rate, a GCRA token bucket). So a
 * few thousand idle connections from one address, or a flood at one service, cannot
 * starve everyone else. One lock guards it all: two short critical sections per
 * handshake, against a handshake's milliseconds of crypto.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "agent.h"

#define IDLE_KEEP 4096 /* sources without handshakes kept for their rate state */
#define SVC_SLOTS (2 * CFG_MAX_SERVICES) /* services, across reloads */

struct source {
	uint8_t key[17]; /* family, then 4 (IPv4) or 8 (IPv6 /64) address bytes */
	uint32_t hash;
	unsigned int inflight;
	uint64_t tat; /* GCRA: the theoretical arrival time of the next handshake */
	unsigned int rate; /* source_rate when it last asked */
	struct source *hnext;
	struct source *idle_prev, *idle_next; /* sources with nothing in flight */
	bool idle;
};

static struct {
	pthread_mutex_t lock;
	struct source **table;
	size_t buckets;
	struct source *idle_head, *idle_tail; /* most recently idle first */
	size_t n_idle;
	struct source *free;
	struct {
		char name[DANCE_NAME_MAX];
		unsigned int inflight;
	} svc[SVC_SLOTS];
} adm = { .lock = PTHREAD_MUTEX_INITIALIZER };

/**
 * admit_init - the source table, sized for the configuration at start
 *
 * Return: 0 or -ENOMEM.
 */
int admit_init(const struct config *cfg)
{
	adm.buckets = 64;
	while (adm.buckets < cfg->max_handshakes)
		adm.buckets <<= 1;
	adm.table = calloc(adm.buckets, sizeof(*adm.table));
	return adm.table ? 0 : -ENOMEM;
}

void admit_fini(void)
{
	struct source *s, *next;
	size_t i;

	for (i = 0; adm.table && i < adm.buckets; i++)
		for (s = adm.table[i]; s; s = next) {
			next = s->hnext;
			free(s);
		}
	for (s = adm.free; s; s = next) {
		next = s->hnext;
		free(s);
	}
	free(adm.table);
	memset(&adm.table, 0, sizeof(adm) - offsetof(typeof(adm), table));
}

/* The source a peer counts as; false for addresses that are not IP (nothing to limit). */
static bool source_key(const struct sockaddr_storage *ss, uint8_t *key)
{
	memset(key, 0, 17);
	if (ss->ss_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)ss)->sin_addr, 4);
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			key[0] = 4;
			memcpy(key + 1, a->s6_addr + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, a->s6_addr, 8);
		}
		return true;
	}
	return false;
}

static uint32_t key_hash(const uint8_t *key)
{
	uint32_t h = 2166136261u;
	int i;

	for (i = 0; i < 17; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

static void idle_unlink(struct source *s)
{
	if (!s->idle)
		return;
	if (s->idle_prev)
		s->idle_prev->idle_next = s->idle_next;
	else
		adm.idle_head = s->idle_next;
	if (s->idle_next)
		s->idle_next->idle_prev = s->idle_prev;
	else
		adm.idle_tail = s->idle_prev;
	s->idle_prev = s->idle_next = NULL;
	s->idle = false;
	adm.n_idle--;
}

static void source_remove(struct source *s)
{
	struct source **pp = &adm.table[s->hash & (adm.buckets - 1)];

	while (*pp != s)
		pp = &(*pp)->hnext;
	*pp = s->hnext;
	idle_unlink(s);
	s->hnext = adm.free;
	adm.free = s;
}

static struct source *source_get(const uint8_t *key)
{
	uint32_t h = key_hash(key);
	struct source *s;

	for (s = adm.table[h & (adm.buckets - 1)]; s; s = s->hnext)
		if (s->hash == h && !memcmp(s->key, key, sizeof(s->key)))
			return s;
	s = adm.free;
	if (s)
		adm.free = s->hnext;
	else
		s = malloc(sizeof(*s));
	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	memcpy(s->key, key, sizeof(s->key));
	s->hash = h;
	s->hnext = adm.table[h & (adm.buckets - 1)];
	adm.table[h & (adm.buckets - 1)] = s;
	return s;
}

/* A source with nothing in flight stays only while its rate state still matters. */
static void source_settle(struct source *s, uint64_t now)
{
	if (s->inflight)
		return;
	if (!s->rate || s->tat <= now) {
		source_remove(s);
		return;
	}
	s->idle = true;
	s->idle_next = adm.idle_head;
	if (adm.idle_head)
		adm.idle_head->idle_prev = s;
	adm.idle_head = s;
	if (!adm.idle_tail)
		adm.idle_tail = s;
	if (++adm.n_idle > IDLE_KEEP)
		source_remove(adm.idle_tail);
}

static int service_slot(const char *name)
{
	int i, free_slot = -1;

	for (i = 0; i < SVC_SLOTS; i++) {
		if (!strcmp(adm.svc[i].name, name))
			return i;
		if (free_slot < 0 && !adm.svc[i].inflight)
			free_slot = i;
	}
	if (free_slot >= 0)
		snprintf(adm.svc[free_slot].name, sizeof(adm.svc[0].name), "%s", name);
	return free_slot;
}

/**
 * admit - take on one more handshake, or say which limit refuses it
 * @t: the ticket; admit_release() gives it back, once, whatever happens to the handshake
 * @svc: the service the handshake starts with (SNI may move it later; it counts here)
 * @peer: its source address
 *
 * Return: 0, or -EBUSY with @f naming the limit (max_handshakes, the service's
 * max_handshakes, source_max_handshakes, source_rate); @t then holds nothing.
 */
int admit(struct admit_ticket *t, const struct state *st, const struct svc_config *svc,
	  const struct sockaddr_storage *peer, struct fail *f)
{
	const struct config *cfg = st->cfg;
	uint64_t now = 0, interval;
	uint8_t key[17];
	struct source *s = NULL;
	char addr[64];
	unsigned int n;
	int slot, ret = -EBUSY;

	n = atomic_fetch_add(&agent.inflight, 1);
	if (n >= cfg->max_handshakes) {
		atomic_fetch_sub(&agent.inflight, 1);
		return fail_set(f, -EBUSY,
				"danced is busy: %u handshakes in flight (max_handshakes)", n);
	}
	pthread_mutex_lock(&adm.lock);
	slot = service_slot(svc->name);
	if (slot >= 0 && adm.svc[slot].inflight >= svc->max_handshakes) {
		fail_set(f, -EBUSY,
			 "busy: service %s has %u handshakes in flight (its max_handshakes)",
			 svc->name, adm.svc[slot].inflight);
		goto out_refuse;
	}
	if (adm.table && source_key(peer, key)) {
		s = source_get(key);
		if (!s) {
			fail_set(f, -ENOMEM, "out of memory for the source limits");
			ret = -ENOMEM;
			goto out_refuse;
		}
		idle_unlink(s);
		now = now_ns();
		s->rate = cfg->source_rate;
		if (s->inflight >= cfg->source_max_handshakes) {
			fail_set(f, -EBUSY,
				 "busy: %u handshakes in flight from %s (source_max_handshakes)",
				 s->inflight, log_addr(peer, addr, sizeof(addr)));
			goto out_source;
		}
		if (cfg->source_rate) {
			/* A burst of source_rate at once, then source_rate a second. */
			interval = 1000000000ULL / cfg->source_rate;
			if (s->tat < now)
				s->tat = now;
			if (s->tat - now > (uint64_t)(cfg->source_rate - 1) * interval) {
				fail_set(f, -EBUSY,
					 "busy: %s started more than %u handshakes in the last "
					 "second (source_rate)",
					 log_addr(peer, addr, sizeof(addr)), cfg->source_rate);
				goto out_source;
			}
			s->tat += interval;
		}
		s->inflight++;
	}
	if (slot >= 0)
		adm.svc[slot].inflight++;
	pthread_mutex_unlock(&adm.lock);
	t->source = s;
	t->service = slot;
	t->global = true;
	return 0;
out_source:
	source_settle(s, now);
out_refuse:
	pthread_mutex_unlock(&adm.lock);
	atomic_fetch_sub(&agent.inflight, 1);
	return ret;
}

/* Give the ticket back; safe on an empty or already returned one. */
void admit_release(struct admit_ticket *t)
{
	struct source *s = t->source;

	if (!t->global)
		return;
	if (s || t->service >= 0) {
		pthread_mutex_lock(&adm.lock);
		if (t->service >= 0)
			adm.svc[t->service].inflight--;
		if (s) {
			s->inflight--;
			source_settle(s, now_ns());
		}
		pthread_mutex_unlock(&adm.lock);
	}
	atomic_fetch_sub(&agent.inflight, 1);
	t->source = NULL;
	t->service = -1;
	t->global = false;
}
