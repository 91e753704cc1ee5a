// SPDX-License-Identifier: GPL-2.0
/*
 * connmem.c - where danced's memory per socket goes, measured on the build machine
 * (no kTLS needed): the sizes of its own per-socket structures, and the heap that
 * OpenSSL holds per SSL at the two points where danced keeps many of them, measured
 * with mallinfo2() (bytes in use, all arenas) around N SSLs held at once:
 *
 *   mid-handshake   the server's first flight is out, the client's second not in
 *   handshake done  the SSL once its handshake is complete
 *
 * each with the modes danced's SSL_CTX sets and with SSL_MODE_RELEASE_BUFFERS added,
 * for danced's own SSL_CTX (built by config_load() and state_new() from a generated
 * danced.conf, so verification settings, callbacks and ex_data are danced's) without
 * client authentication, with X.509 client_auth and with DANE. And the cost of one
 * pending TLSA lookup: danced's cache entry plus libunbound's state, with the resolver
 * danced configures (dane_init()), against a DNS server in this process that never
 * answers.
 */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unbound.h>

#include "../agent/agent.h"
#include "../tests/lib/pki.h"

struct agent agent; /* the stages refer to it; nothing here runs a worker */

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static char dir[64];
static unsigned int n_ssl = 500, n_dns = 500;

static void __attribute__((noreturn)) die(const char *what)
{
	fprintf(stderr, "connmem: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static long heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return (long)(mi.uordblks + mi.hblkhd);
}

static long rss_kb(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			v = atol(line + 6);
	if (f)
		fclose(f);
	return v;
}

/* ---- an in-memory transport: each end reads its inbox, writes to the other's ---- */

struct end {
	const uint8_t *in; /* a shared replay buffer, or own */
	uint8_t *own;
	size_t len, off, cap;
	struct end *peer; /* NULL: writes are dropped */
};

static BIO_METHOD *end_method;

static int end_read(BIO *b, char *buf, int len)
{
	struct end *e = BIO_get_data(b);
	size_t n = e->len - e->off;

	BIO_clear_retry_flags(b);
	if (!n) {
		BIO_set_retry_read(b);
		return -1;
	}
	if (n > (size_t)len)
		n = len;
	memcpy(buf, e->in + e->off, n);
	e->off += n;
	return n;
}

static int end_write(BIO *b, const char *buf, int len)
{
	struct end *e = BIO_get_data(b), *p = e->peer;

	BIO_clear_retry_flags(b);
	if (!p)
		return len;
	if (p->off == p->len)
		p->off = p->len = 0;
	if (p->len + len > p->cap) {
		p->cap = (p->len + len) * 2;
		p->own = realloc(p->own, p->cap);
		if (!p->own)
			die("out of memory");
		p->in = p->own;
	}
	memcpy(p->own + p->len, buf, len);
	p->len += len;
	return len;
}

static long end_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH;
}

static int end_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO *end_bio(struct end *e)
{
	BIO *b = BIO_new(end_method);

	if (!b)
		die("BIO_new");
	BIO_set_data(b, e);
	return b;
}

/* ---- danced's TLS state for one configuration ------------------------------------ */

enum auth { AUTH_NONE, AUTH_X509, AUTH_DANE, AUTH_N };
static const char *const auth_names[AUTH_N] = { "no client auth", "X.509 client_auth",
						"DANE (dane = required)" };

static const char *svc_lines(enum auth a)
{
	static char buf[512];

	switch (a) {
	case AUTH_X509:
		snprintf(buf, sizeof(buf), "client_auth = optional\nca = %s/ca.pem\n", dir);
		return buf;
	case AUTH_DANE:
		return "dane = required\ndane_names = _device.demo.example\n";
	default:
		return "";
	}
}

static struct state *state_for(enum auth a, int dns_port)
{
	char path[128], err[512];
	struct config *cfg;
	struct state *st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/danced-%d.conf", dir, a);
	f = fopen(path, "w");
	if (!f)
		die("cannot write a configuration");
	fprintf(f,
		"[danced]\nsocket = %s/danced.sock\nbpf_policy = no\n"
		"dns_trust_anchor_file = none\n"
		"dns_trust_anchor = demo.example. DS 12345 13 2 "
		"3E1D1FBB03C6A2C8A5AC5F8B2A1C0B7D4E6F708192A3B4C5D6E7F8091A2B3C4D\n"
		"dns_stub = demo.example. 127.0.0.1@%d\n"
		"[service www]\ncertificate = %s/server.pem\nkey = %s/server.key\n"
		"tls_min = 1.3\ndefault = yes\n%s",
		dir, dns_port, dir, dir, svc_lines(a));
	fclose(f);
	if (config_load(path, &cfg, err, sizeof(err)) || state_new(cfg, &st, err, sizeof(err))) {
		fprintf(stderr, "connmem: %s\n", err);
		exit(1);
	}
	return st;
}

/* The client's side: the CA's client certificate, or a self-signed one with a DANE name. */
static unsigned char dane_id[64];

static int id_add(SSL *ssl, unsigned int type, unsigned int context, const unsigned char **out,
		  size_t *outlen, X509 *x, size_t chainidx, int *al, void *arg)
{
	(void)ssl, (void)type, (void)x, (void)al, (void)arg;
	if (context != SSL_EXT_TLS1_3_CERTIFICATE || chainidx)
		return 0;
	*out = dane_id;
	*outlen = dane_id[0] + 1;
	return 1;
}

static int id_parse(SSL *ssl, unsigned int type, unsigned int context, const unsigned char *in,
		    size_t inlen, X509 *x, size_t chainidx, int *al, void *arg)
{
	(void)ssl, (void)type, (void)context, (void)in, (void)inlen, (void)x, (void)chainidx;
	(void)al, (void)arg;
	return 1;
}

static SSL_CTX *client_ctx(enum auth a)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char cert[128], key[128];

	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (a == AUTH_NONE)
		return ctx;
	snprintf(cert, sizeof(cert), "%s/%s.pem", dir, a == AUTH_DANE ? "sensor" : "client");
	snprintf(key, sizeof(key), "%s/%s.key", dir, a == AUTH_DANE ? "sensor" : "client");
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		die("client certificate");
	if (a == AUTH_DANE) {
		const char *name = "sensor1._device.demo.example";

		dane_id[0] = strlen(name);
		memcpy(dane_id + 1, name, dane_id[0]);
		SSL_CTX_add_custom_ext(
			ctx, 65282, SSL_EXT_TLS1_3_CERTIFICATE_REQUEST | SSL_EXT_TLS1_3_CERTIFICATE,
			id_add, NULL, NULL, id_parse, NULL);
	}
	return ctx;
}

/* One server SSL set up as tls_begin() does (without the ULP), on @t and @e. */
static SSL *server_ssl(struct state *st, struct tls *t, struct fail *f, struct end *e, bool release)
{
	SSL *s = SSL_new(st->svcs[0].ctx);

	if (!s)
		die("SSL_new");
	t->ssl = s;
	t->st = st;
	t->svc = &st->svcs[0];
	t->svc_fixed = true;
	t->fail = f;
	SSL_set_bio(s, end_bio(e), end_bio(e));
	SSL_set_app_data(s, t);
	if (ktls_conn_attach(&t->kc, s))
		die("ktls_conn_attach");
	if (release)
		SSL_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
	SSL_set_accept_state(s);
	return s;
}

/*
 * Heap per server SSL at a point of the handshake: N of them held at once. The tls
 * structs and transport ends come before the baseline: OpenSSL's part is what counts.
 */
static long ssl_cost(struct state *st, SSL_CTX *cctx, bool done, bool release)
{
	struct tls *tlss = calloc(n_ssl, sizeof(*tlss));
	struct fail *fails = calloc(n_ssl, sizeof(*fails));
	struct end *se = calloc(n_ssl, sizeof(*se)), *ce = calloc(n_ssl, sizeof(*ce));
	SSL **ss = calloc(n_ssl, sizeof(*ss)), *cl;
	struct end hello = { 0 }, sink = { 0 };
	unsigned int i, round;
	long base, cost;

	if (!tlss || !fails || !se || !ce || !ss)
		die("out of memory");
	/* A ClientHello to replay (mid-handshake): one real client's, like bench/inflight. */
	cl = SSL_new(cctx);
	SSL_set_bio(cl, end_bio(&sink), end_bio(&sink));
	sink.peer = &hello;
	SSL_set_connect_state(cl);
	SSL_set_tlsext_host_name(cl, "localhost");
	SSL_do_handshake(cl);
	SSL_free(cl);
	ERR_clear_error();
	base = heap_in_use();
	for (i = 0; i < n_ssl; i++) {
		if (!done) {
			se[i].in = hello.own;
			se[i].len = hello.len;
			ss[i] = server_ssl(st, &tlss[i], &fails[i], &se[i], release);
			if (SSL_do_handshake(ss[i]) != -1 ||
			    SSL_get_error(ss[i], -1) != SSL_ERROR_WANT_READ)
				die("the server did not wait for the client's second flight");
			continue;
		}
		se[i].peer = &ce[i];
		ce[i].peer = &se[i];
		cl = SSL_new(cctx);
		SSL_set_bio(cl, end_bio(&ce[i]), end_bio(&ce[i]));
		SSL_set_connect_state(cl);
		SSL_set_tlsext_host_name(cl, "localhost");
		ss[i] = server_ssl(st, &tlss[i], &fails[i], &se[i], release);
		for (round = 0; round < 8; round++) {
			int a = SSL_do_handshake(cl), b = SSL_do_handshake(ss[i]);

			if (a == 1 && b == 1)
				break;
		}
		if (round == 8)
			die("the in-memory handshake did not complete");
		SSL_free(cl);
		/* What danced has after the handshake: its own BIO, no bytes in flight. */
		free(se[i].own);
		free(ce[i].own);
		memset(&se[i], 0, sizeof(se[i]));
		memset(&ce[i], 0, sizeof(ce[i]));
	}
	ERR_clear_error();
	cost = (heap_in_use() - base) / (long)n_ssl;
	for (i = 0; i < n_ssl; i++)
		SSL_free(ss[i]);
	free(hello.own);
	free(tlss);
	free(fails);
	free(se);
	free(ce);
	free(ss);
	return cost;
}

/* ---- a pending TLSA lookup ------------------------------------------------------- */

static struct {
	int udp, tcp, port;
	unsigned long tcp_queries;
} sink;

/* UDP: "truncated, ask over TCP"; TCP: read and never answer (bench/inflight's sink). */
static void *sink_main(void *arg)
{
	struct pollfd pfd[512];
	int n = 2, i;

	(void)arg;
	pfd[0] = (struct pollfd){ .fd = sink.udp, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = sink.tcp, .events = POLLIN };
	for (;;) {
		if (poll(pfd, n, -1) <= 0)
			continue;
		if (pfd[0].revents) {
			uint8_t q[512];
			struct sockaddr_in from;
			socklen_t flen = sizeof(from);
			ssize_t len = recvfrom(sink.udp, q, sizeof(q), 0, (struct sockaddr *)&from,
					       &flen);
			size_t end = 12;

			while (len > 12 && end < (size_t)len && q[end])
				end += q[end] + 1;
			end += 5;
			if (len > 12 && end <= (size_t)len) {
				q[2] = 0x80 | 0x04 | 0x02 | (q[2] & 0x79);
				q[3] = 0;
				memset(q + 6, 0, 6);
				sendto(sink.udp, q, end, 0, (struct sockaddr *)&from, flen);
			}
		}
		if (pfd[1].revents) {
			int fd = accept(sink.tcp, NULL, NULL);

			if (fd >= 0 && n < 512)
				pfd[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
			else if (fd >= 0)
				close(fd);
		}
		for (i = 2; i < n; i++) {
			uint8_t buf[8192];
			ssize_t r;
			size_t k;

			if (!pfd[i].revents)
				continue;
			r = read(pfd[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(pfd[i].fd);
				pfd[i--] = pfd[--n];
				continue;
			}
			/* Queries are length-prefixed; count the ones that start in this read. */
			for (k = 0; k + 2 < (size_t)r;) {
				size_t ql = buf[k] << 8 | buf[k + 1];

				__atomic_fetch_add(&sink.tcp_queries, 1, __ATOMIC_RELAXED);
				k += 2 + ql;
			}
		}
	}
	return NULL;
}

static void sink_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	pthread_t t;
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sink.tcp = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(sink.tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(sink.tcp, (struct sockaddr *)&a, sizeof(a)) || listen(sink.tcp, 128) ||
	    getsockname(sink.tcp, (struct sockaddr *)&a, &len))
		die("DNS sink (TCP)");
	sink.udp = socket(AF_INET, SOCK_DGRAM, 0);
	if (bind(sink.udp, (struct sockaddr *)&a, sizeof(a)))
		die("DNS sink (UDP)");
	sink.port = ntohs(a.sin_port);
	pthread_create(&t, NULL, sink_main, NULL);
}

/* Until libunbound's thread has taken in every lookup: the heap stops growing. */
static void settle(void)
{
	long last = -1, now;
	int same = 0, i;

	for (i = 0; i < 50 && same < 3; i++) {
		usleep(100000);
		now = heap_in_use();
		same = now == last ? same + 1 : 0;
		last = now;
	}
}

static void dns_posted(struct dns_wait *w)
{
	(void)w; /* an answer: none is expected while this measures */
}

static void dns_cost(void)
{
	struct dns_wait *waits = calloc(n_dns + 1, sizeof(*waits));
	struct state *st;
	char err[256], name[64];
	long base, rss0, heap, rss;
	unsigned int i;

	if (!waits)
		die("out of memory");
	sink_start();
	st = state_for(AUTH_DANE, sink.port);
	if (dane_init(st->cfg, err, sizeof(err)))
		die(err);
	for (i = 0; i <= n_dns; i++)
		waits[i].post = dns_posted;
	/* The first lookup starts libunbound's thread and its caches: not per lookup. */
	if (dane_lookup("warm._device.demo.example", &waits[n_dns]) != -EINPROGRESS)
		die("the first TLSA lookup did not wait");
	settle();
	base = heap_in_use();
	rss0 = rss_kb();
	for (i = 0; i < n_dns; i++) {
		snprintf(name, sizeof(name), "s%u._device.demo.example", i);
		if (dane_lookup(name, &waits[i]) != -EINPROGRESS)
			die("a TLSA lookup did not wait");
	}
	settle();
	heap = (heap_in_use() - base) / (long)n_dns;
	rss = (rss_kb() - rss0) * 1024 / (long)n_dns;
	printf("  pending TLSA lookup (%u at once, distinct names; %lu queries reached the\n"
	       "  server, the rest wait behind the trust anchor's DNSKEY):\n"
	       "    heap %ld B (danced's cache entry and libunbound's query state), rss %ld B\n",
	       n_dns, __atomic_load_n(&sink.tcp_queries, __ATOMIC_RELAXED), heap, rss);
	{
		char *v = NULL;

		if (!ub_ctx_get_option(ub_ctx_create(), "num-queries-per-thread", &v) && v)
			printf("    libunbound num-queries-per-thread (distinct lookups in flight "
			       "at most): %s\n",
			       v);
		free(v);
	}
}

/* ---- main -------------------------------------------------------------------------- */

static void pki(void)
{
	static const char *const server_names[] = { "localhost", NULL };
	static const char *const no_names[] = { NULL };
	struct pki_ca ca, sensor;
	char a[128], b[128];

	if (pki_ca_new(&ca, "connmem CA") || pki_ca_new(&sensor, "sensor1"))
		die("cannot make certificates");
#define P(x, f) (snprintf(x, sizeof(x), "%s/%s", dir, f), x)
	if (pki_ca_write(&ca, P(a, "ca.pem"), P(b, "ca.key")) ||
	    pki_ca_write(&sensor, P(a, "sensor.pem"), P(b, "sensor.key")) ||
	    pki_leaf(&ca, "localhost", server_names, 1, P(a, "server.pem"), P(b, "server.key")) ||
	    pki_leaf(&ca, "client", no_names, 0, P(a, "client.pem"), P(b, "client.key")))
		die("cannot write certificates");
#undef P
	pki_ca_free(&ca);
	pki_ca_free(&sensor);
}

int main(int argc, char **argv)
{
	enum auth a;
	int opt;

	while ((opt = getopt(argc, argv, "n:d:h")) != -1) {
		switch (opt) {
		case 'n':
			n_ssl = atoi(optarg);
			break;
		case 'd':
			n_dns = atoi(optarg);
			break;
		default:
			fprintf(opt == 'h' ? stdout : stderr,
				"usage: connmem [-n SSLS] [-d LOOKUPS]\n"
				"Where danced's memory per socket goes (bench/README.md): its own\n"
				"structures, OpenSSL's heap per SSL (N=%u held at once) mid-handshake\n"
				"and after it, and one pending TLSA lookup (%u at once).\n",
				n_ssl, n_dns);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (!n_ssl || !n_dns)
		return 2;
	snprintf(dir, sizeof(dir), "/tmp/connmem.XXXXXX");
	if (!mkdtemp(dir))
		die("mkdtemp");
	pki();
	if (ktls_init() || handshake_init())
		die("ktls_init");
	end_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "connmem");
	if (!end_method || !BIO_meth_set_read(end_method, end_read) ||
	    !BIO_meth_set_write(end_method, end_write) ||
	    !BIO_meth_set_ctrl(end_method, end_ctrl) ||
	    !BIO_meth_set_create(end_method, end_create))
		die("BIO_meth_new");

	printf("connmem: %s, heap in use by mallinfo2() (all arenas), per socket\n",
	       OpenSSL_version(OPENSSL_VERSION));
	printf("  struct conn                 %6zu B, of which struct tls %zu B; handshake\n"
	       "                              buffers from a pool, %u B each way while in use\n",
	       sizeof(struct conn), sizeof(struct tls), TLS_BUF_SIZE);
	printf("  result                      %6zu B (header; pending plaintext apart)\n",
	       (size_t)DANCE_RESULT_HDR_LEN);
	printf("  struct dane_check in the conn %4zu B, struct ktls_conn %zu B\n",
	       sizeof(struct dane_check), sizeof(struct ktls_conn));
	printf("  OpenSSL per server SSL (%u held at once), bytes of heap:\n", n_ssl);
	printf("    %-24s %14s %14s %14s %14s\n", "", "mid danced", "mid +release", "done danced",
	       "done +release");
	for (a = 0; a < AUTH_N; a++) {
		struct state *st = state_for(a, 53);
		SSL_CTX *cctx = client_ctx(a);

		printf("    %-24s %14ld %14ld %14ld %14ld\n", auth_names[a],
		       ssl_cost(st, cctx, false, false), ssl_cost(st, cctx, false, true),
		       ssl_cost(st, cctx, true, false), ssl_cost(st, cctx, true, true));
		SSL_CTX_free(cctx);
		state_put(st);
	}
	printf("    (mid: after the server's first flight; done: handshake complete; danced:\n"
	       "     the modes danced's SSL_CTX sets; +release: SSL_MODE_RELEASE_BUFFERS too)\n");
	dns_cost();
	fflush(stdout);
	/* libunbound's thread is still waiting for answers that never come. */
	_exit(0);
}
