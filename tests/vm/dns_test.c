// SPDX-License-Identifier: GPL-2.0
/*
 * dns_test.c - danced's DNS side under stress, in the VM: a slow DNS server while the
 * same names keep being asked, several stubs and a forwarder, DNS settings changed by a
 * reload, a flood of names that do not exist, and names with a zero byte inside. The
 * DNS world is dnsfix's (Knot behind a counting proxy that can hold answers back); the
 * clients are real OpenSSL clients that name themselves in dane_clientid.
 *
 * Run it under the sanitizer build too (make check does): the slow-server tests are
 * meant to be read by AddressSanitizer, which sees a late answer reaching a freed or
 * reused cache entry even when danced happens not to crash.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/dnsfix.h"
#include "../lib/pki.h"
#include "../../agent/lib/dance.h"

#define CLIENTID 65282 /* danced's default dane_clientid codepoint */
#define Z "fixture.example"
#define SLOW_FILLER 30 /* extra TLSA records per slow name: a big answer, slow to parse */
#define SLOT_MS 2000 /* the slow tests ask for a new name every SLOT_MS */
#define SLOTS 24 /* names s0.w. to s23.w.: the 20 s of a slow test, and ample margin */
#define STORM_S 20
/*
 * Each answer of a slow name waits this long in the proxy; the big answer comes twice
 * (truncated over UDP, then over TCP), so a lookup takes over danced's 1 s re-query
 * point, yet each answer comes before unbound gives up on most queries.
 */
#define HOLD_MS 450

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return x;
}

/* ---- a DANE client on OpenSSL: dane_clientid in its TLS 1.3 Certificate --------------- */

struct dclient {
	int port;
	const char *name; /* sent as dane_clientid */
	size_t name_len; /* 0: strlen(name); more: the name has zero bytes inside */
	const char *cert, *key;
	bool handshake_ok;
	bool no_identity; /* its certificate or key could not be loaded: it never connected */
	unsigned long err;
	uint8_t ext[256];
};

static int dc_clientid_add(SSL *ssl, unsigned int type, unsigned int context,
			   const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			   int *al, void *arg)
{
	struct dclient *c = arg;
	size_t n = c->name_len ?: strlen(c->name);

	if (context != SSL_EXT_TLS1_3_CERTIFICATE || chainidx || n > 255)
		return 0;
	c->ext[0] = n;
	memcpy(c->ext + 1, c->name, n);
	*out = c->ext;
	*outlen = n + 1;
	return 1;
}

static int dc_clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
			     const unsigned char *in, size_t inlen, X509 *x, size_t chainidx,
			     int *al, void *arg)
{
	return 1;
}

/* One handshake, then a read: danced's refusal (an alert) or the server's close. */
static void dclient_run(struct dclient *c)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	char buf[16];
	int fd;

	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_add_custom_ext(ctx, CLIENTID,
			       SSL_EXT_TLS1_3_CERTIFICATE_REQUEST | SSL_EXT_TLS1_3_CERTIFICATE,
			       dc_clientid_add, NULL, c, dc_clientid_parse, c);
	/*
	 * Without its identity a client would send an empty Certificate and earn a verdict
	 * (dane-missing) that says nothing about danced: it does not connect at all.
	 */
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
		c->no_identity = true;
		c->err = ERR_peek_error();
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return;
	}
	fd = tcp_connect(c->port);
	if (fd >= 0) {
		ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		SSL_set_tlsext_host_name(ssl, "localhost");
		if (SSL_connect(ssl) == 1) {
			c->handshake_ok = true;
			SSL_read(ssl, buf, sizeof(buf));
		}
	}
	c->err = ERR_peek_error();
	ERR_clear_error();
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
}

static void *dclient_main(void *arg)
{
	dclient_run(arg);
	return NULL;
}

/* ---- the world ------------------------------------------------------------------------ */

FIXTURE(dns)
{
	struct env e;
	struct dnsfix f;
	int lfd, port;
	struct dance *d;
	struct dance_result *r;
	char ee_cert[160], ee_key[160]; /* self-signed, DANE-EE at ee., slowN. */
	char dev7_cert[160], dev7_key[160]; /* from the device CA: sensor7._device. */
	char dir[200];
};

static char *tlsa(X509 *x, int u, int s, int m, char *buf, size_t max)
{
	if (dnsfix_tlsa(x, u, s, m, buf, max))
		buf[0] = '\0';
	return buf;
}

#define P(field, name) snprintf(self->field, sizeof(self->field), "%.100s/" name, self->e.dir)

FIXTURE_SETUP(dns)
{
	static const char *const ee_names[] = { "ignored.example", NULL };
	static const char *const dev7[] = { "sensor7._device." Z, NULL };
	static char parent[1 << 18], bogus[1 << 18];
	struct pki_ca devca = { 0 };
	char b[2048], c[2048];
	size_t n = 0, m = 0;
	X509 *ee, *dev;
	int i, j;
	/* Storms keep both ends of hundreds of connections in this process. */
	struct rlimit rl = { 65536, 65536 };

	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &rl));
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	P(ee_cert, "ee.pem");
	P(ee_key, "ee.key");
	P(dev7_cert, "sensor7.pem");
	P(dev7_key, "sensor7.key");
	ASSERT_EQ(0, pki_leaf(NULL, "a DANE-EE client", ee_names, 0, self->ee_cert, self->ee_key));
	ASSERT_EQ(0, pki_ca_new(&devca, "the organisation's device CA"));
	ASSERT_EQ(0, pki_leaf(&devca, "sensor7", dev7, 0, self->dev7_cert, self->dev7_key));
	dev = X509_dup(devca.cert);
	pki_ca_free(&devca);
	ee = load_cert(self->ee_cert);
	ASSERT_TRUE(ee && dev);
	tlsa(ee, 3, 1, 1, b, sizeof(b));
	n += snprintf(parent + n, sizeof(parent) - n, "ee IN TLSA %s\n", b);
	n += snprintf(parent + n, sizeof(parent) - n, "good IN TLSA %s\n", b);
	n += snprintf(parent + n, sizeof(parent) - n, "sensor7._device IN TLSA %s\n",
		      tlsa(dev, 2, 1, 1, c, sizeof(c)));
	/*
	 * The slow names sN.w.: the client's record among many others. No wildcard: unbound
	 * would answer new names from the cached wildcard (RFC 8198) without asking.
	 */
	for (i = 0; i < SLOTS; i++) {
		n += snprintf(parent + n, sizeof(parent) - n, "s%d.w IN TLSA %s\n", i, b);
		m += snprintf(bogus + m, sizeof(bogus) - m, "s%d.w IN TLSA %s\n", i, b);
		for (j = 0; j < SLOW_FILLER; j++) {
			n += snprintf(parent + n, sizeof(parent) - n, "s%d.w IN TLSA 3 1 1 %064x\n",
				      i, j + 1);
			m += snprintf(bogus + m, sizeof(bogus) - m, "s%d.w IN TLSA 3 1 1 %064x\n",
				      i, j + 1);
		}
	}
	ASSERT_GT(sizeof(bogus) - 1, m);
	ASSERT_GT(sizeof(parent) - 1, n);
	X509_free(ee);
	X509_free(dev);
	{
		/* Long TTLs: the cache tests must not see an answer expire under TCG. */
		struct dnsfix_zones z = { .parent = parent, .bogus = bogus, .ttl = 3600 };

		snprintf(self->dir, sizeof(self->dir), "%.100s/dns", self->e.dir);
		ASSERT_EQ(0, mkdir(self->dir, 0700));
		ASSERT_EQ(0, dnsfix_start(&self->f, self->dir, 53, &z));
	}
	self->lfd = tcp_listen_any(&self->port);
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(dns)
{
	if (self->d)
		dance_close(self->d);
	free(self->r);
	close(self->lfd);
	if (self->e.pid > 0)
		danced_stop(&self->e, SIGTERM);
	dnsfix_fini(&self->f);
	env_fini(&self->e);
}

/* danced.conf: the fixture's anchor, @dns lines, and one DANE service with @svc lines. */
static int start(FIXTURE_DATA(dns) * self, const char *anchor, const char *dns, const char *svc)
{
	int ret = env_conf(&self->e,
			   "workers = 2\nlog_level = debug\n"
			   "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n%s"
			   "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			   "dane = required\ntls_min = 1.3\ndane_names = " Z "\n"
			   "handshake_timeout = 60s\n%s",
			   anchor ?: self->f.trust_anchor, dns, self->e.srv_cert, self->e.srv_key,
			   svc ?: "");

	if (ret)
		return ret;
	ret = danced_start(&self->e);
	if (!ret)
		ret = dance_open(self->e.sock, &self->d);
	return ret;
}

#define STUB "dns_stub = " Z ". 127.0.0.1@53\n"

/* One client against danced in return mode; the result is in self->r. */
static int attempt(FIXTURE_DATA(dns) * self, struct dclient *c)
{
	struct dance_params p = { 0 };
	pthread_t t;
	int fd, ret;

	c->port = self->port;
	memset(self->r, 0, sizeof(*self->r));
	pthread_create(&t, NULL, dclient_main, c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
	} else {
		ret = dance_handshake(self->d, fd, &p, self->r);
		close(fd);
	}
	pthread_join(t, NULL);
	return ret;
}

static void expect_ok(struct __test_metadata *_metadata, FIXTURE_DATA(dns) * self, const char *name,
		      const char *cert, const char *key)
{
	struct dclient c = { .name = name, .cert = cert, .key = key };
	int ret = attempt(self, &c);

	EXPECT_EQ(0, ret) TH_LOG("%s: %s", name, self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth) TH_LOG("%s", name);
	EXPECT_STREQ(name, self->r->verified_name);
}

static void expect_refused(struct __test_metadata *_metadata, FIXTURE_DATA(dns) * self,
			   const char *name, const char *code)
{
	struct dclient c = { .name = name, .cert = self->ee_cert, .key = self->ee_key };
	int ret = attempt(self, &c);

	EXPECT_EQ(-EACCES, ret) TH_LOG("%s: %s", name, self->r->reason);
	EXPECT_EQ(0, strncmp(self->r->reason, code, strlen(code)))
	TH_LOG("%s: want %s: %s", name, code, self->r->reason);
	EXPECT_STREQ("", self->r->verified_name);
}

/* danced is still the process the test started, and running. */
static bool danced_alive(FIXTURE_DATA(dns) * self)
{
	siginfo_t si = { 0 };

	/* WNOWAIT: danced_stop() reaps it later and reports its exit status. */
	return self->e.pid > 0 && !waitid(P_PID, self->e.pid, &si, WEXITED | WNOHANG | WNOWAIT) &&
	       !si.si_pid;
}

/* Wait (a hang guard only) until danced's log holds @needle. */
static bool wait_log(FIXTURE_DATA(dns) * self, const char *needle, int seconds)
{
	long end = ms_now() + seconds * 1000L;

	while (!log_contains(&self->e, needle)) {
		if (ms_now() > end)
			return false;
		usleep(50000);
	}
	return true;
}

/* ---- many clients at once ------------------------------------------------------------- */

struct storm {
	FIXTURE_DATA(dns) * self;
	const char *const *names; /* each client asks for the next of these, once each */
	int n_names;
	const char *suffix; /* names NULL: "sK.suffix", a new K every SLOT_MS */
	long t0;
	int threads;
	long until; /* clients start no new handshake after this (ms_now()) */
	int next; /* the next name, shared by the client threads */
	int started;
	pthread_mutex_t lock;
};

static void *storm_client(void *arg)
{
	struct storm *s = arg;

	char name[128];

	while (ms_now() < s->until) {
		struct dclient c = { .port = s->self->port,
				     .name = name,
				     .cert = s->self->ee_cert,
				     .key = s->self->ee_key };

		pthread_mutex_lock(&s->lock);
		if (s->names && s->next >= s->n_names) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		if (s->names)
			snprintf(name, sizeof(name), "%s", s->names[s->next++]);
		else
			snprintf(name, sizeof(name), "s%ld.%s",
				 (ms_now() - s->t0) / SLOT_MS % SLOTS, s->suffix);
		s->started++;
		pthread_mutex_unlock(&s->lock);
		dclient_run(&c);
	}
	return NULL;
}

struct storm_result {
	int submitted, done, ok, refused, wrong;
	char wrong_reason[600];
};

/*
 * @threads clients handshake over and over for @seconds (or until each of @names was
 * asked once), the names from @names, or else "sSLOT.@suffix"; the test accepts each
 * connection and submits it to danced; every result is checked: ok with the name asked
 * for as the verified name (@want_ok), or refused with a reason that starts with one
 * of @refusals.
 */
static void storm_run(struct __test_metadata *_metadata, FIXTURE_DATA(dns) * self,
		      const char *const *names, int n_names, const char *suffix, int threads,
		      int seconds, bool want_ok, const char *const *refusals,
		      struct storm_result *out)
{
	enum { MAX_CONNS = 4096 };
	struct storm s = { .self = self,
			   .names = names,
			   .n_names = n_names,
			   .suffix = suffix,
			   .threads = threads };
	static int fds[MAX_CONNS + 1];
	struct dance_params p = { 0 };
	pthread_t t[32];
	long guard;
	int i;

	memset(out, 0, sizeof(*out));
	pthread_mutex_init(&s.lock, NULL);
	s.t0 = ms_now();
	s.until = s.t0 + seconds * 1000L;
	/* A hang guard: every started handshake ends within its 60 s deadline. */
	guard = s.until + 120000;
	for (i = 0; i < threads && i < 32; i++)
		pthread_create(&t[i], NULL, storm_client, &s);
	while (ms_now() < guard) {
		struct pollfd pfd[2] = { { .fd = self->lfd, .events = POLLIN },
					 { .fd = dance_fd(self->d), .events = POLLIN } };
		int ret;

		if (ms_now() > s.until + 1000 && out->done == out->submitted) {
			pthread_mutex_lock(&s.lock);
			ret = s.started;
			pthread_mutex_unlock(&s.lock);
			if (ret == out->submitted)
				break;
		}
		if (poll(pfd, 2, 200) <= 0)
			continue;
		if ((pfd[0].revents & POLLIN) && out->submitted < MAX_CONNS) {
			int fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0) {
				fds[++out->submitted] = fd;
				ret = dance_submit(self->d, fd, &p, out->submitted);
				if (ret) {
					snprintf(out->wrong_reason, sizeof(out->wrong_reason),
						 "dance_submit: %d", ret);
					out->wrong++;
					close(fd);
					fds[out->submitted] = -1;
					out->done++;
				}
			}
		}
		while (pfd[1].revents & POLLIN) {
			bool right = false;

			memset(self->r, 0, sizeof(*self->r));
			ret = dance_complete(self->d, self->r);
			if (ret == -EAGAIN)
				break;
			if (ret) {
				snprintf(out->wrong_reason, sizeof(out->wrong_reason),
					 "dance_complete: %d (danced gone?)", ret);
				out->wrong++;
				goto out;
			}
			out->done++;
			if (self->r->status == 0) {
				size_t vl = strlen(self->r->verified_name);

				out->ok++;
				for (i = 0; names && i < n_names; i++)
					right |= want_ok &&
						 !strcmp(self->r->verified_name, names[i]);
				if (!names)
					right = want_ok && vl > strlen(suffix) &&
						!strcmp(self->r->verified_name + vl -
								strlen(suffix),
							suffix);
			} else {
				/*
				 * A client that gave up before the server handed its socket
				 * over, or during the handshake: no verdict, never a pass.
				 */
				static const char *const gone[] = {
					"the socket is not an established connection",
					"the peer closed the connection",
					"recv from the peer failed",
					"send to the peer failed",
				};

				out->refused++;
				for (i = 0; i < (int)(sizeof(gone) / sizeof(gone[0])); i++)
					right |=
						!strncmp(self->r->reason, gone[i], strlen(gone[i]));
				for (i = 0; refusals && refusals[i]; i++)
					right |= self->r->status < 0 &&
						 !strncmp(self->r->reason, refusals[i],
							  strlen(refusals[i]));
			}
			if (!right) {
				if (!out->wrong)
					snprintf(out->wrong_reason, sizeof(out->wrong_reason),
						 "status %d, name '%.250s': %.300s",
						 self->r->status, self->r->verified_name,
						 self->r->reason);
				out->wrong++;
			}
			/*
			 * A good socket is ours again; a refused one libdance closed already.
			 * Closing that number a second time would close whatever socket a
			 * client thread got meanwhile, and mix two handshakes on one number.
			 */
			if (self->r->id >= 1 && self->r->id <= (uint64_t)out->submitted &&
			    fds[self->r->id] >= 0) {
				if (!self->r->status)
					close(fds[self->r->id]);
				fds[self->r->id] = -1;
			}
		}
	}
out:
	for (i = 0; i < threads && i < 32; i++)
		pthread_join(t[i], NULL);
	EXPECT_EQ(out->submitted, out->done) TH_LOG("handshakes left without a result");
}

/* ---- defect 1: a slow DNS server while the same names keep being asked ------------------- */

/*
 * The server holds each TLSA answer for the slow names for @hold_ms, so that lookups
 * stay pending past danced's 1 s re-query point while new handshakes keep asking for the
 * same names: the re-query cancels the first query and asks again, and when that cancel
 * races the first answer, the answer arrives anyway. It must never reach a freed or
 * reused cache entry (ASan reads every such access), danced must stay up, and every
 * handshake must get the verdict its name deserves.
 */
static void slow_server(struct __test_metadata *_metadata, FIXTURE_DATA(dns) * self,
			const char *suffix, const char *dns_extra, bool want_ok,
			const char *const *refusals)
{
	char name[128];
	struct storm_result res;
	int queries = 0, status, slot;

	ASSERT_EQ(0, start(self, NULL, dns_extra, NULL)) TH_LOG("log: %s", self->e.log);
	/* The zones' keys first, without holding; then every answer is slow. */
	expect_ok(_metadata, self, "ee." Z, self->ee_cert, self->ee_key);
	snprintf(name, sizeof(name), "warm.%s", suffix);
	{
		struct dclient c = { .name = name, .cert = self->ee_cert, .key = self->ee_key };

		attempt(self, &c);
	}
	dnsfix_reset_counts(&self->f);
	/* Only the slow names' answers: the keys of the zones come at once. */
	snprintf(name, sizeof(name), "*.%s", suffix);
	ASSERT_EQ(0, dnsfix_hold(&self->f, name, HOLD_MS));
	storm_run(_metadata, self, NULL, 0, suffix, 12, STORM_S, want_ok, refusals, &res);
	dnsfix_release(&self->f, NULL);
	TH_LOG("%d handshakes: %d ok, %d refused; %d answers held; first wrong: %s", res.submitted,
	       res.ok, res.refused, dnsfix_held(&self->f, true),
	       res.wrong ? res.wrong_reason : "none");
	EXPECT_TRUE(danced_alive(self)) TH_LOG("danced died; log: %s", self->e.log);
	EXPECT_EQ(0, res.wrong) TH_LOG("%s", res.wrong_reason);
	EXPECT_LT(20, res.submitted);
	/* Some good answers made it through the slow server. */
	if (want_ok)
		EXPECT_LT(0, res.ok);
	/* The slow server was really slow: answers were held. */
	EXPECT_LT(0, dnsfix_held(&self->f, true));
	/* Waiting handshakes share the lookup of their name: far fewer queries went out
	 * than handshakes asked (each query can be sent twice: UDP, then TCP for the
	 * big answer, and unbound retries a query it gave up on). */
	for (slot = 0; slot < SLOTS; slot++) {
		int q;

		snprintf(name, sizeof(name), "s%d.%s", slot, suffix);
		q = dnsfix_queries(&self->f, name);
		queries += q > 0 ? q : 0;
	}
	EXPECT_LT(0, queries);
	EXPECT_GT(res.submitted, queries)
	TH_LOG("%d queries for %d handshakes", queries, res.submitted);
	/* A normal stop: leaks are checked at exit in the sanitizer build. */
	dance_close(self->d);
	self->d = NULL;
	status = danced_stop(&self->e, SIGTERM);
	EXPECT_EQ(0, status) TH_LOG("danced exit status %d; log: %s", status, self->e.log);
}

TEST_F_TIMEOUT(dns, slow_server_failure_answers_reach_no_freed_entry, 280)
{
	static const char *const refusals[] = { "tlsa-bogus", "dns-", NULL };

	slow_server(_metadata, self, "w.bogus." Z, STUB, false, refusals);
}

/*
 * A good name may still fail when unbound gives up on the slow server (dns-servfail,
 * fail closed); what it must never get is another name, or another kind of verdict.
 */
static const char *const slow_refusals[] = { "dns-", NULL };
/* With nothing cached, unbound fetches the zone's keys for every answer, from a server it
 * now thinks slow: a key it could not fetch makes the answer bogus (also fail closed). */
static const char *const slow_nocache_refusals[] = { "dns-", "tlsa-bogus", NULL };

TEST_F_TIMEOUT(dns, slow_server_with_max_ttl_zero_reaches_no_freed_entry, 280)
{
	slow_server(_metadata, self, "w." Z, STUB "dns_max_ttl = 0\ndns_negative_ttl = 0\n", true,
		    slow_nocache_refusals);
}

TEST_F_TIMEOUT(dns, slow_server_good_answers_neither_leak_nor_double_deliver, 280)
{
	slow_server(_metadata, self, "w." Z, STUB, true, slow_refusals);
}

/* ---- defect 8b: several stubs, and a stub beside a forwarder ------------------------------ */

/* How many queries for @name queries.log shows from the proxy @proto ("udp2", "tcp"). */
static int query_lines(FIXTURE_DATA(dns) * self, const char *proto, const char *name)
{
	char path[256], line[512], p[16], q[300], want[300];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/queries.log", self->dir);
	snprintf(want, sizeof(want), "%s.", name);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		n += sscanf(line, "%15s %299s", p, q) == 2 && !strcmp(p, proto) && !strcmp(q, want);
	if (f)
		fclose(f);
	return n;
}

TEST_F(dns, two_stubs_each_serve_their_zone)
{
	char dns[256];
	int port2 = 0;

	ASSERT_EQ(0, dnsfix_second_port(&self->f, &port2));
	snprintf(dns, sizeof(dns), STUB "dns_stub = _device." Z ". 127.0.0.1@%d\n", port2);
	ASSERT_EQ(0, start(self, NULL, dns, NULL)) TH_LOG("danced did not start: see its log");
	expect_ok(_metadata, self, "ee." Z, self->ee_cert, self->ee_key);
	expect_ok(_metadata, self, "sensor7._device." Z, self->dev7_cert, self->dev7_key);
	/* Each name was asked of its own stub. */
	EXPECT_LT(0, query_lines(self, "udp2", "sensor7._device." Z) +
			     query_lines(self, "tcp2", "sensor7._device." Z));
	EXPECT_EQ(0, query_lines(self, "udp2", "ee." Z) + query_lines(self, "tcp2", "ee." Z));
	EXPECT_LT(0, query_lines(self, "udp", "ee." Z) + query_lines(self, "tcp", "ee." Z));
}

TEST_F(dns, stub_beside_a_forwarder)
{
	char dns[256];
	int port2 = 0;

	ASSERT_EQ(0, dnsfix_second_port(&self->f, &port2));
	snprintf(dns, sizeof(dns),
		 "dns_forwarder = 127.0.0.1\ndns_stub = _device." Z ". 127.0.0.1@%d\n", port2);
	ASSERT_EQ(0, start(self, NULL, dns, NULL)) TH_LOG("danced did not start: see its log");
	expect_ok(_metadata, self, "ee." Z, self->ee_cert, self->ee_key);
	expect_ok(_metadata, self, "sensor7._device." Z, self->dev7_cert, self->dev7_key);
	EXPECT_LT(0, query_lines(self, "udp2", "sensor7._device." Z) +
			     query_lines(self, "tcp2", "sensor7._device." Z));
	EXPECT_EQ(0, query_lines(self, "udp2", "ee." Z) + query_lines(self, "tcp2", "ee." Z));
}

/* ---- defect 8b: dns_* settings follow a reload ------------------------------------------ */

/* A DS for the zone that is not its key's: what an operator has before a key roll. */
#define OLD_ANCHOR \
	Z ". DS 4711 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"

TEST_F_TIMEOUT(dns, reload_applies_a_new_trust_anchor, 200)
{
	struct dance_params p = { 0 };
	struct dclient c = { .name = "good." Z, .cert = self->ee_cert, .key = self->ee_key };
	pthread_t t;
	long guard;
	int fd, ret;

	ASSERT_EQ(0, start(self, OLD_ANCHOR, STUB, NULL)) TH_LOG("log: %s", self->e.log);
	expect_refused(_metadata, self, "ee." Z, "tlsa-bogus");

	/* A lookup in flight across the reload: its answer waits in the proxy. */
	dnsfix_hold(&self->f, NULL, 0);
	c.port = self->port;
	pthread_create(&t, NULL, dclient_main, &c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dance_submit(self->d, fd, &p, 77));
	for (guard = ms_now() + 60000; !dnsfix_held(&self->f, false) && ms_now() < guard;)
		usleep(20000);
	ASSERT_LT(0, dnsfix_held(&self->f, false)) TH_LOG("danced's query never came");

	/* The operator fixes the anchor and reloads. */
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\nlog_level = debug\n"
			      "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n" STUB
			      "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			      "dane = required\ntls_min = 1.3\ndane_names = " Z "\n"
			      "handshake_timeout = 60s\n",
			      self->f.trust_anchor, self->e.srv_cert, self->e.srv_key));
	ASSERT_EQ(0, kill(self->e.pid, SIGHUP));
	ASSERT_TRUE(wait_log(self, "reloaded", 60));
	dnsfix_release(&self->f, NULL);

	/* The lookup in flight ends on the old resolver: a verdict, not a crash. */
	for (ret = -EAGAIN, guard = ms_now() + 90000; ret == -EAGAIN && ms_now() < guard;) {
		struct pollfd pfd = { .fd = dance_fd(self->d), .events = POLLIN };

		poll(&pfd, 1, 200);
		memset(self->r, 0, sizeof(*self->r));
		ret = dance_complete(self->d, self->r);
	}
	ASSERT_EQ(0, ret) TH_LOG("no result for the handshake in flight");
	EXPECT_EQ(77U, self->r->id);
	EXPECT_EQ(-EACCES, self->r->status) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(0, strncmp(self->r->reason, "tlsa-bogus", 10)) TH_LOG("%s", self->r->reason);
	/* Refused: libdance closed fd already. */
	pthread_join(t, NULL);
	EXPECT_TRUE(danced_alive(self));

	/* New handshakes validate with the new anchor, without a restart. */
	expect_ok(_metadata, self, "ee." Z, self->ee_cert, self->ee_key);
	expect_ok(_metadata, self, "sensor7._device." Z, self->dev7_cert, self->dev7_key);
	EXPECT_FALSE(log_contains(&self->e, "keep their values until a restart"));
}

TEST_F(dns, reload_without_dns_changes_keeps_the_cache)
{
	ASSERT_EQ(0, start(self, NULL, STUB, NULL)) TH_LOG("log: %s", self->e.log);
	expect_ok(_metadata, self, "ee." Z, self->ee_cert, self->ee_key);
	EXPECT_FALSE(self->r->dns_cached);
	/* Another service, another log level: nothing DNS-related. */
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\nlog_level = info\n"
			      "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n" STUB
			      "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			      "dane = required\ntls_min = 1.3\ndane_names = " Z "\n"
			      "handshake_timeout = 60s\n"
			      "[service other]\ncertificate = %s\nkey = %s\n"
			      "server_names = other.localhost\n",
			      self->f.trust_anchor, self->e.srv_cert, self->e.srv_key,
			      self->e.srv_cert, self->e.srv_key));
	dnsfix_reset_counts(&self->f);
	ASSERT_EQ(0, kill(self->e.pid, SIGHUP));
	ASSERT_TRUE(wait_log(self, "reloaded", 60));
	expect_ok(_metadata, self, "ee." Z, self->ee_cert, self->ee_key);
	EXPECT_TRUE(self->r->dns_cached);
	EXPECT_EQ(0, dnsfix_queries(&self->f, "ee." Z));
	EXPECT_EQ(0, dnsfix_queries(&self->f, NULL));
}

/* ---- defect 5b: names that do not exist do not evict a good one ------------------------- */

TEST_F_TIMEOUT(dns, flood_of_missing_names_keeps_a_cached_good_name, 280)
{
	enum { FLOOD = 20 }; /* more than the cache's 16 entries */
	static char names[FLOOD][64];
	const char *list[FLOOD];
	static const char *const refusals[] = { "tlsa-none", NULL };
	struct storm_result res;
	int i;

	ASSERT_EQ(0, start(self, NULL, STUB "dns_cache_size = 16\n", NULL))
	TH_LOG("log: %s", self->e.log);
	expect_ok(_metadata, self, "good." Z, self->ee_cert, self->ee_key);
	EXPECT_FALSE(self->r->dns_cached);
	srandom(getpid() ^ ms_now());
	for (i = 0; i < FLOOD; i++) {
		snprintf(names[i], sizeof(names[i]), "r%08lx%02d." Z, random(), i);
		list[i] = names[i];
	}
	/* Each name once, four clients at a time. */
	storm_run(_metadata, self, list, FLOOD, NULL, 4, 200, false, refusals, &res);
	EXPECT_EQ(FLOOD, res.submitted);
	EXPECT_EQ(FLOOD, res.refused);
	EXPECT_EQ(0, res.wrong) TH_LOG("%s", res.wrong_reason);
	dnsfix_reset_counts(&self->f);
	expect_ok(_metadata, self, "good." Z, self->ee_cert, self->ee_key);
	EXPECT_TRUE(self->r->dns_cached) TH_LOG("the good name was evicted by the flood");
	EXPECT_EQ(0, dnsfix_queries(&self->f, "good." Z));
}

/* ---- defect 7a: a zero byte inside the dane_clientid name ------------------------------ */

TEST_F(dns, refuses_a_name_with_a_zero_byte)
{
	static const char name[] = "sensor7._device." Z "\0evil";
	struct dclient c = { .name = name,
			     .name_len = sizeof(name) - 1,
			     .cert = self->dev7_cert,
			     .key = self->dev7_key };
	int ret;

	ASSERT_EQ(0, start(self, NULL, STUB, NULL)) TH_LOG("log: %s", self->e.log);
	ret = attempt(self, &c);
	EXPECT_EQ(-EACCES, ret)
	TH_LOG("accepted as '%s': %s", self->r->verified_name, self->r->reason);
	EXPECT_EQ(0, strncmp(self->r->reason, "dane-badname", 12)) TH_LOG("%s", self->r->reason);
	EXPECT_STREQ("", self->r->verified_name);
	EXPECT_EQ(0U, self->r->auth);
	/* A zero byte first, and one alone in the middle of a label. */
	{
		static const char lead[] = "\0sensor7._device." Z;
		static const char mid[] = "sensor7._dev\0ice." Z;

		c = (struct dclient){ .name = lead,
				      .name_len = sizeof(lead) - 1,
				      .cert = self->dev7_cert,
				      .key = self->dev7_key };
		EXPECT_EQ(-EACCES, attempt(self, &c));
		EXPECT_EQ(0, strncmp(self->r->reason, "dane-badname", 12))
		TH_LOG("%s", self->r->reason);
		c = (struct dclient){ .name = mid,
				      .name_len = sizeof(mid) - 1,
				      .cert = self->dev7_cert,
				      .key = self->dev7_key };
		EXPECT_EQ(-EACCES, attempt(self, &c));
		EXPECT_EQ(0, strncmp(self->r->reason, "dane-badname", 12))
		TH_LOG("%s", self->r->reason);
	}
}

TEST_F(dns, accepts_the_same_name_without_the_zero_byte)
{
	ASSERT_EQ(0, start(self, NULL, STUB, NULL)) TH_LOG("log: %s", self->e.log);
	expect_ok(_metadata, self, "sensor7._device." Z, self->dev7_cert, self->dev7_key);
}

DANCED_HARNESS_MAIN
