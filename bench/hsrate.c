// SPDX-License-Identifier: GPL-2.0
/*
 * hsrate.c - a handshake-rate load generator: keeps C connections in flight, each a full
 * TLS handshake (no resumption) followed by one small HTTP request answered before the
 * server closes, so a connection counts only when the server side finished its
 * handshake too. Prints connections per second and latency percentiles. With a client
 * certificate it answers CertificateRequests; with -D it also names itself in
 * dane_clientid (draft-ietf-dance-client-auth), for DANE client authentication. With -N
 * it makes exactly that many connections and stops, for counting work per handshake.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

struct slot {
	int fd;
	SSL *ssl;
	int phase; /* 0 handshake, 1 request, 2 response */
	size_t sent, got;
	double t0;
};

static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
static unsigned char clientid[256]; /* ClientName<0..255>: length, then the name */
static int offer_pha; /* -H */

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hsrate -p PORT [-c CONCURRENCY] [-t SECONDS | -N COUNT] [-n SERVERNAME]\n"
		"              [-a CAFILE] [-C CERT -K KEY [-D DANE_NAME [-X CODEPOINT]]]\n"
		"              [-G GROUPS] [-H]\n"
		"Full TLS 1.3 handshakes plus one HTTP/1.1 request each, against\n"
		"127.0.0.1:PORT, CONCURRENCY (default 16) at a time for SECONDS (default 5),\n"
		"or until COUNT connections have ended (-N; errors count too; -t is then a\n"
		"guard, default 600).\n"
		"  -C, -K  a client certificate (PEM chain) and its key, sent when asked\n"
		"  -D      send DANE_NAME in dane_clientid of the Certificate message\n"
		"  -X      the dane_clientid codepoint (default 65282, danced's default)\n"
		"  -G      key exchange groups to offer, OpenSSL syntax (default: OpenSSL's)\n"
		"  -H      offer post_handshake_auth, as curl does: a server may then keep the\n"
		"          transcript to ask for a certificate later\n"
		"Prints: conns=N secs=S rate=R/s p50_ms=.. p99_ms=.. errors=E\n");
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int slot_open(struct slot *s, SSL_CTX *ctx, int ep, struct sockaddr_in *addr,
		     const char *name)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = s };
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (struct sockaddr *)addr, sizeof(*addr)) && errno != EINPROGRESS)
		return -errno;
	s->ssl = SSL_new(ctx);
	SSL_set_post_handshake_auth(s->ssl, offer_pha);
	SSL_set_fd(s->ssl, s->fd);
	SSL_set_connect_state(s->ssl);
	SSL_set_tlsext_host_name(s->ssl, name);
	s->phase = 0;
	s->sent = s->got = 0;
	s->t0 = now();
	return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) ? -errno : 0;
}

static void slot_close(struct slot *s, int ep)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	SSL_free(s->ssl);
	close(s->fd);
}

/* dane_clientid in the first CertificateEntry, when a name was given. */
static int clientid_add(SSL *ssl, unsigned int type, unsigned int context,
			const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			int *al, void *arg)
{
	(void)ssl, (void)type, (void)x, (void)al, (void)arg;
	if (!clientid[0] || context != SSL_EXT_TLS1_3_CERTIFICATE || chainidx)
		return 0;
	*out = clientid;
	*outlen = clientid[0] + 1;
	return 1;
}

static int clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
			  const unsigned char *in, size_t inlen, X509 *x, size_t chainidx, int *al,
			  void *arg)
{
	(void)ssl, (void)type, (void)context, (void)in, (void)inlen, (void)x, (void)chainidx;
	(void)al, (void)arg;
	return 1; /* the server's empty one in CertificateRequest */
}

/* Advance one connection; 1 when it completed, 0 to wait, -1 on failure. */
static int slot_step(struct slot *s)
{
	char buf[4096];
	int ret, err;

	for (;;) {
		if (s->phase == 0) {
			ret = SSL_do_handshake(s->ssl);
			if (ret == 1) {
				s->phase = 1;
				continue;
			}
		} else if (s->phase == 1) {
			ret = SSL_write(s->ssl, req + s->sent, sizeof(req) - 1 - s->sent);
			if (ret > 0) {
				s->sent += ret;
				if (s->sent == sizeof(req) - 1)
					s->phase = 2;
				continue;
			}
		} else {
			ret = SSL_read(s->ssl, buf, sizeof(buf));
			if (ret > 0) {
				s->got += ret;
				continue;
			}
			err = SSL_get_error(s->ssl, ret);
			/* Closed or reset: served only if an answer came first. */
			if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL)
				return s->got ? 1 : -1;
		}
		err = SSL_get_error(s->ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return 0;
		return -1;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int port = 0, conc = 16, secs = 5, opt, ep, i, n, errors = 0;
	long count = 0, opened = 0;
	bool secs_given = false, pha = false;
	const char *name = "localhost", *ca = NULL, *cert = NULL, *key = NULL, *dane = NULL;
	const char *groups = NULL;
	unsigned int codepoint = 65282;
	struct epoll_event evs[256];
	size_t done = 0, cap = 1 << 20;
	double *lat = malloc(cap * sizeof(double)), t_end, t0;
	struct slot *slots;
	SSL_CTX *ctx;

	while ((opt = getopt(argc, argv, "p:c:t:N:n:a:C:K:D:X:G:Hh")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'c':
			conc = atoi(optarg);
			break;
		case 't':
			secs = atoi(optarg);
			secs_given = true;
			break;
		case 'N':
			count = atol(optarg);
			break;
		case 'n':
			name = optarg;
			break;
		case 'a':
			ca = optarg;
			break;
		case 'C':
			cert = optarg;
			break;
		case 'K':
			key = optarg;
			break;
		case 'D':
			dane = optarg;
			break;
		case 'X':
			codepoint = atoi(optarg);
			break;
		case 'G':
			groups = optarg;
			break;
		case 'H':
			pha = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (port <= 0 || conc <= 0 || secs <= 0 || count < 0 || !lat || !cert != !key ||
	    (dane && (!cert || !*dane || strlen(dane) > 255)) || codepoint > 65535) {
		usage(stderr);
		return 2;
	}
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	offer_pha = pha;
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (groups && SSL_CTX_set1_groups_list(ctx, groups) != 1) {
		fprintf(stderr, "hsrate: -G %s: not a group list this OpenSSL knows\n", groups);
		return 2;
	}
	if (ca) {
		SSL_CTX_load_verify_locations(ctx, ca, NULL);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
		     SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
		fprintf(stderr, "hsrate: %s, %s: %s\n", cert, key,
			ERR_reason_error_string(ERR_get_error()));
		return 1;
	}
	if (dane) {
		clientid[0] = strlen(dane);
		memcpy(clientid + 1, dane, clientid[0]);
		SSL_CTX_add_custom_ext(ctx, codepoint,
				       SSL_EXT_TLS1_3_CERTIFICATE_REQUEST |
					       SSL_EXT_TLS1_3_CERTIFICATE,
				       clientid_add, NULL, NULL, clientid_parse, NULL);
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (count && conc > count)
		conc = count;
	if (count && !secs_given)
		secs = 600; /* only a guard against a server that stopped answering */
	slots = calloc(conc, sizeof(*slots));
	for (i = 0; i < conc; i++, opened++)
		if (slot_open(&slots[i], ctx, ep, &addr, name)) {
			perror("hsrate: connect");
			return 1;
		}
	t0 = now();
	t_end = t0 + secs;
	while (now() < t_end && (!count || (long)done + errors < count)) {
		n = epoll_wait(ep, evs, 256, 100);
		for (i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;
			int r = slot_step(s);

			if (!r)
				continue;
			if (r > 0 && done < cap)
				lat[done++] = now() - s->t0;
			else if (r < 0)
				errors++;
			slot_close(s, ep);
			if (count && opened == count)
				continue;
			opened++;
			if (slot_open(s, ctx, ep, &addr, name)) {
				perror("hsrate: connect");
				return 1;
			}
		}
	}
	t_end = now() - t0;
	qsort(lat, done, sizeof(double), cmp);
	printf("conns=%zu secs=%.2f rate=%.1f/s p50_ms=%.1f p99_ms=%.1f errors=%d\n", done, t_end,
	       done / t_end, done ? lat[done / 2] * 1e3 : 0, done ? lat[done * 99 / 100] * 1e3 : 0,
	       errors);
	return done ? 0 : 1;
}
