/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dnsfix.h - a real DNSSEC world for DANE tests: one Knot DNS server on 127.0.0.1
 * serving a signed parent zone and three children (insecure, bogus, expired) that hold
 * the test's own records, behind a counting proxy, so that a test can ask how many
 * queries a name got. The test owns the directory; dnsfix_fini() stops what runs.
 *
 * knotd and the proxy are children of the thread that calls dnsfix_start() and die with
 * it: start the fixture in FIXTURE_SETUP (the harness's test process), not in a thread
 * that ends first, and stop or restart it from that process. The counters are shared
 * memory, readable from any process forked after the start.
 *
 * Resolvers on port 53 find every zone through the delegations; on any other port, give
 * them f->stubs. Counting sees every message on the wire: unbound's qname minimisation
 * asks each ancestor for A first, a truncated UDP answer makes it ask again over TCP,
 * and it sends _ta-XXXX NULL queries (RFC 8145) after DNSKEY lookups.
 *
 * A slow server: dnsfix_hold() makes the proxy hold the answers for chosen names (or
 * all) for a chosen time or until dnsfix_release(); dnsfix_held() says how many wait.
 * Several servers: dnsfix_second_port() puts a second proxy in front of the same knotd.
 */
#ifndef DANCED_TESTS_DNSFIX_H
#define DANCED_TESTS_DNSFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <openssl/x509.h>

/* Not "test.": libunbound answers that itself, as a built-in local zone. */
#define DNSFIX_ZONE "fixture.example."
#define DNSFIX_INSECURE "insecure." DNSFIX_ZONE /* delegated without a DS */
#define DNSFIX_BOGUS "bogus." DNSFIX_ZONE /* DS in the parent, every data RRSIG broken */
#define DNSFIX_EXPIRED "expired." DNSFIX_ZONE /* DS in the parent, every RRSIG expired */
#define DNSFIX_NZONES 4

/*
 * What the test puts into the zones: zone-file lines ('\n'-separated) with $ORIGIN at
 * the zone, so relative owner names work. NULL means none. Records go in as given; the
 * fixture adds SOA, NS, the address of ns.fixture.example. (127.0.0.1) and the DS sets.
 */
struct dnsfix_zones {
	const char *parent; /* fixture.example. */
	const char *insecure; /* insecure.fixture.example. */
	const char *bogus; /* bogus.fixture.example. */
	const char *expired; /* expired.fixture.example. */
	unsigned int ttl; /* $TTL, DNSKEY TTL and negative TTL of every zone; 0: 60 s */
};

struct dnsfix_stub {
	const char *zone; /* e.g. "bogus.fixture.example." */
	char addr[32]; /* "127.0.0.1@PORT", for ub_ctx_set_stub() or danced's dns_stub */
};

struct dnsfix_counts; /* shared with the proxy */

struct dnsfix {
	char dir[128]; /* the caller's; holds knot.conf, zones, keys, knotd.log, queries.log */
	int port; /* on 127.0.0.1, UDP and TCP: the proxy; knotd is on 127.0.0.2 */
	/* "fixture.example. DS <tag> 13 2 <hex>", as `keymgr ... ds` prints it */
	char trust_anchor[160];
	/* Every zone: a resolver on another port than 53 must be told about each. */
	struct dnsfix_stub stubs[DNSFIX_NZONES];
	pid_t knotd, proxy, proxy2; /* proxy2: dnsfix_second_port() */
	struct dnsfix_counts *counts;
};

int dnsfix_start(struct dnsfix *f, const char *dir, int port, const struct dnsfix_zones *z);
int dnsfix_stop(struct dnsfix *f);
int dnsfix_restart(struct dnsfix *f);
void dnsfix_silence(struct dnsfix *f, bool on);
int dnsfix_hold(struct dnsfix *f, const char *qname, unsigned int ms);
void dnsfix_release(struct dnsfix *f, const char *qname);
int dnsfix_held(struct dnsfix *f, bool ever);
int dnsfix_second_port(struct dnsfix *f, int *port);
void dnsfix_fini(struct dnsfix *f);
int dnsfix_queries(struct dnsfix *f, const char *qname);
void dnsfix_reset_counts(struct dnsfix *f);
int dnsfix_tlsa(X509 *cert, int usage, int selector, int mtype, char *out, size_t max);
int dnsfix_dane_ee(const char *dir, const char *cn, const char *name, char cert[160], char key[160],
		   char tlsa[256]);

#endif
