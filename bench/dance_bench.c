// SPDX-License-Identifier: GPL-2.0
/*
 * dance_bench.c - dance-bench, a TLS handshake load generator for any TLS server: full
 * handshakes (no resumption), each followed by one small HTTP/1.1 request that the
 * server answers before it closes, so a connection counts only when the server side
 * finished its handshake too. Closed loop (a fixed number in flight) or open loop (a
 * fixed arrival rate, latency counted from when each connection was due, so that an
 * overloaded server cannot hide its queue). One thread, epoll, non-blocking OpenSSL.
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

#include "clientid.h"

enum err_kind {
	ERR_CONNECT, /* socket() or connect() refused */
	ERR_HANDSHAKE, /* the TLS handshake failed (alert, verification, reset) */
	ERR_REQUEST, /* the request could not be written */
	ERR_NO_ANSWER, /* closed or reset before any answer */
	ERR_UNFINISHED, /* -N: still in flight when the guard time ran out */
	ERR_KINDS,
};

static const char *const err_names[ERR_KINDS] = { "connect", "handshake", "request", "no_answer",
						  "unfinished" };

struct slot {
	int fd; /* -1: free */
	SSL *ssl;
	int phase; /* 0 handshake, 1 request, 2 response */
	size_t sent, got;
	double t0; /* when it was due (open loop) or opened (closed loop) */
};

static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
static unsigned char clientid[256]; /* ClientName<0..255>: length, then the name */
static int offer_pha; /* --pha */

static const char usage_text[] =
	"NAME\n"
	"    dance-bench - TLS handshake load generator\n"
	"\n"
	"SYNOPSIS\n"
	"    dance-bench -p PORT [-c CONCURRENCY] [-r RATE] [-t SECONDS | -N COUNT]\n"
	"                [-n SERVERNAME] [-a CAFILE] [-V 1.2|1.3] [-s SUITES] [-G GROUPS]\n"
	"                [-C CERT -K KEY [-D DANE_NAME [-X CODEPOINT]]] [-H]\n"
	"                [--json FILE] [--progress]\n"
	"\n"
	"DESCRIPTION\n"
	"    Makes full TLS handshakes (no session resumption, no tickets) against\n"
	"    127.0.0.1:PORT, each followed by one HTTP/1.1 request (\"GET /\",\n"
	"    \"Connection: close\"); a connection counts when an answer came and the\n"
	"    server closed, so the server's side of the handshake is in every count.\n"
	"    Any TLS server that answers HTTP/1.1 will do: danced (dance-echo --http),\n"
	"    nginx, HAProxy.\n"
	"\n"
	"    Closed loop (the default): CONCURRENCY connections are always in flight.\n"
	"    Open loop (-r): a new connection is due every 1/RATE seconds whatever the\n"
	"    server does, up to CONCURRENCY in flight; latency counts from when each was\n"
	"    due, so an overloaded server's queue shows in it (no coordinated omission).\n"
	"\n"
	"OPTIONS\n"
	"    -p PORT          the server's port on 127.0.0.1\n"
	"    -c CONCURRENCY   connections in flight (closed loop), or at most (open\n"
	"                     loop); default 16\n"
	"    -r RATE          open loop: connections started per second\n"
	"    -t SECONDS       run this long (default 5)\n"
	"    -N COUNT         make exactly COUNT connections, then stop (errors count\n"
	"                     too); -t is then a guard, default 600\n"
	"    -n SERVERNAME    SNI (default localhost)\n"
	"    -a CAFILE        verify the server's certificate against CAFILE\n"
	"    -V 1.2|1.3       TLS version (default 1.3)\n"
	"    -s SUITES        TLS 1.3 ciphersuites or TLS 1.2 cipher list, OpenSSL syntax\n"
	"    -G GROUPS        key exchange groups, OpenSSL syntax (default OpenSSL's)\n"
	"    -C CERT, -K KEY  a client certificate (PEM chain) and key, sent when asked\n"
	"    -D DANE_NAME     name the client in dane_clientid (draft-ietf-dance-client-\n"
	"                     auth) in its Certificate, for DANE client authentication\n"
	"    -X CODEPOINT     the dane_clientid codepoint (default 65282, danced's)\n"
	"    -H, --pha        offer post_handshake_auth, as curl does\n"
	"    --json FILE      write the summary as JSON to FILE (- for standard output)\n"
	"    --progress       a line on standard error every second\n"
	"    -h, --help       this text\n"
	"\n"
	"OUTPUT\n"
	"    One line on standard output:\n"
	"        conns=N secs=S rate=R/s p50_ms=.. p99_ms=.. errors=E cut_off=K\n"
	"    and with --json an object: conns, secs, rate, offered_rate (open loop),\n"
	"    latency_ms {p50, p90, p99, p99_9, max}, errors, errors_by_kind {connect,\n"
	"    handshake, request, no_answer, unfinished}, cut_off.\n"
	"    cut_off counts the connections still in flight when a -t run ended: the\n"
	"    clock stopped them, they did not fail. With -N, a connection the guard\n"
	"    time stops is an error (unfinished).\n"
	"\n"
	"EXIT STATUS\n"
	"    0 when at least one connection was served, 1 when none was or setup failed,\n"
	"    2 on bad usage.\n"
	"\n"
	"EXAMPLES\n"
	"    dance-bench -p 8443 -c 32 -t 10 -a ca.pem\n"
	"    dance-bench -p 8443 -r 200 -c 1000 -t 30 --json result.json\n"
	"    dance-bench -p 9443 -N 1000 -C sensor.pem -K sensor.key \\\n"
	"        -D sensor1._device.example.com\n";

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The latency at quantile @q of @n sorted values, in ms. */
static double pct(const double *lat, size_t n, double q)
{
	size_t i = (size_t)(q * n);

	return n ? lat[i < n ? i : n - 1] * 1e3 : 0;
}

static int slot_open(struct slot *s, SSL_CTX *ctx, int ep, struct sockaddr_in *addr,
		     const char *name, double due)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = s };
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (struct sockaddr *)addr, sizeof(*addr)) && errno != EINPROGRESS) {
		close(s->fd);
		s->fd = -1;
		return -errno;
	}
	s->ssl = SSL_new(ctx);
	SSL_set_post_handshake_auth(s->ssl, offer_pha);
	SSL_set_fd(s->ssl, s->fd);
	SSL_set_connect_state(s->ssl);
	SSL_set_tlsext_host_name(s->ssl, name);
	s->phase = 0;
	s->sent = s->got = 0;
	s->t0 = due;
	return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) ? -errno : 0;
}

static void slot_close(struct slot *s, int ep)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
	SSL_free(s->ssl);
	close(s->fd);
	s->ssl = NULL;
	s->fd = -1;
}

/* Advance one connection: 1 when it completed, 0 to wait, or -1 - enum err_kind. */
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
				return s->got ? 1 : -1 - ERR_NO_ANSWER;
		}
		err = SSL_get_error(s->ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return 0;
		ERR_clear_error();
		/* A non-blocking connect() fails where the handshake first writes. */
		if (s->phase == 0 && err == SSL_ERROR_SYSCALL && errno == ECONNREFUSED)
			return -1 - ERR_CONNECT;
		return -1 - (s->phase == 0 ? ERR_HANDSHAKE :
			     s->phase == 1 ? ERR_REQUEST :
					     ERR_NO_ANSWER);
	}
}

static void summary_json(FILE *f, size_t done, double secs, double rate, const double *lat,
			 const long *errs, long cut_off)
{
	long total = 0;
	int k;

	for (k = 0; k < ERR_KINDS; k++)
		total += errs[k];
	fprintf(f,
		"{\"conns\":%zu,\"secs\":%.3f,\"rate\":%.1f,\"offered_rate\":%.1f,"
		"\"latency_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p99_9\":%.2f,"
		"\"max\":%.2f},\"errors\":%ld,\"errors_by_kind\":{",
		done, secs, secs > 0 ? done / secs : 0, rate, pct(lat, done, 0.5),
		pct(lat, done, 0.9), pct(lat, done, 0.99), pct(lat, done, 0.999),
		done ? lat[done - 1] * 1e3 : 0, total);
	for (k = 0; k < ERR_KINDS; k++)
		fprintf(f, "%s\"%s\":%ld", k ? "," : "", err_names[k], errs[k]);
	fprintf(f, "},\"cut_off\":%ld}\n", cut_off);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", required_argument, NULL, 'J' },
		{ "progress", no_argument, NULL, 'R' },
		{ "pha", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int port = 0, conc = 16, secs = 5, opt, ep, i, n, version = TLS1_3_VERSION, k;
	long count = 0, opened = 0, errs[ERR_KINDS] = { 0 }, errors = 0, cut_off = 0;
	bool secs_given = false, progress = false;
	const char *name = "localhost", *ca = NULL, *cert = NULL, *key = NULL, *dane = NULL;
	const char *groups = NULL, *suites = NULL, *json = NULL;
	unsigned int codepoint = 65282;
	double rate = 0, next_due, next_report, t_end, t0, t;
	struct epoll_event evs[256];
	size_t done = 0, cap = 1 << 20, nfree;
	double *lat = malloc(cap * sizeof(double));
	struct slot *slots, **free_slots;
	SSL_CTX *ctx;

	while ((opt = getopt_long(argc, argv, "p:c:r:t:N:n:a:V:s:C:K:D:X:G:Hh", longopts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'c':
			conc = atoi(optarg);
			break;
		case 'r':
			rate = atof(optarg);
			if (rate <= 0)
				goto bad_usage;
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
		case 'V':
			if (!strcmp(optarg, "1.2"))
				version = TLS1_2_VERSION;
			else if (strcmp(optarg, "1.3"))
				goto bad_usage;
			break;
		case 's':
			suites = optarg;
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
			offer_pha = 1;
			break;
		case 'J':
			json = optarg;
			break;
		case 'R':
			progress = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			goto bad_usage;
		}
	}
	if (optind != argc || port <= 0 || port > 65535 || conc <= 0 || secs <= 0 || count < 0 ||
	    !lat || !cert != !key || (dane && (!cert || !*dane || strlen(dane) > 255)) ||
	    codepoint > 65535 || (dane && version != TLS1_3_VERSION))
		goto bad_usage;
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(ctx, version);
	SSL_CTX_set_max_proto_version(ctx, version);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (groups && SSL_CTX_set1_groups_list(ctx, groups) != 1) {
		fprintf(stderr, "dance-bench: -G %s: not a group list this OpenSSL knows\n",
			groups);
		return 2;
	}
	if (suites && (version == TLS1_3_VERSION ? SSL_CTX_set_ciphersuites(ctx, suites) :
						   SSL_CTX_set_cipher_list(ctx, suites)) != 1) {
		fprintf(stderr, "dance-bench: -s %s: no suite this OpenSSL knows\n", suites);
		return 2;
	}
	if (ca) {
		if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
			fprintf(stderr, "dance-bench: -a %s: %s\n", ca,
				ERR_reason_error_string(ERR_get_error()));
			return 1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
		     SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
		fprintf(stderr, "dance-bench: %s, %s: %s\n", cert, key,
			ERR_reason_error_string(ERR_get_error()));
		return 1;
	}
	if (dane) {
		clientid[0] = strlen(dane);
		memcpy(clientid + 1, dane, clientid[0]);
		bench_clientid_register(ctx, codepoint, clientid);
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (count && conc > count && !rate)
		conc = count;
	if (count && !secs_given)
		secs = 600; /* only a guard against a server that stopped answering */
	slots = calloc(conc, sizeof(*slots));
	free_slots = calloc(conc, sizeof(*free_slots));
	if (ep < 0 || !slots || !free_slots) {
		perror("dance-bench");
		return 1;
	}
	for (i = 0, nfree = 0; i < conc; i++) {
		slots[i].fd = -1;
		free_slots[nfree++] = &slots[conc - 1 - i];
	}
	t0 = now();
	t_end = t0 + secs;
	next_due = t0;
	next_report = t0 + 1;
	for (;;) {
		t = now();
		if (t >= t_end || (count && (long)done + errors >= count))
			break;
		/* Start what is due: everything free (closed loop), or what the clock says. */
		while (nfree && (!count || opened < count) && (!rate || next_due <= t)) {
			struct slot *s = free_slots[--nfree];

			opened++;
			if (slot_open(s, ctx, ep, &addr, name, rate ? next_due : t)) {
				if (s->fd >= 0)
					slot_close(s, ep);
				errs[ERR_CONNECT]++;
				errors++;
				free_slots[nfree++] = s;
				if (!rate)
					break; /* the server is gone: let the clock move on */
			}
			if (rate)
				next_due += 1 / rate;
		}
		n = epoll_wait(ep, evs, 256,
			       rate ? (int)((next_due > t ? next_due - t : 0) * 1e3) + 1 : 100);
		for (i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;
			int r = slot_step(s);

			if (!r)
				continue;
			if (r > 0 && done < cap)
				lat[done++] = now() - s->t0;
			if (r < 0) {
				errs[-1 - r]++;
				errors++;
			}
			slot_close(s, ep);
			free_slots[nfree++] = s;
		}
		if (progress && now() >= next_report) {
			fprintf(stderr,
				"dance-bench: %.0f s: %zu served, %ld errors, %zu in flight\n",
				next_report - t0, done, errors, (size_t)conc - nfree);
			next_report += 1;
		}
	}
	t_end = now() - t0;
	for (i = 0; i < conc; i++)
		if (slots[i].fd >= 0) {
			/*
			 * A run of -t SECONDS ends with connections in flight: cut off by the
			 * clock, not failed. A run of -N COUNT that ran out of time failed them.
			 */
			if (count) {
				errs[ERR_UNFINISHED]++;
				errors++;
			} else {
				cut_off++;
			}
			slot_close(&slots[i], ep);
		}
	qsort(lat, done, sizeof(double), cmp);
	printf("conns=%zu secs=%.2f rate=%.1f/s p50_ms=%.1f p99_ms=%.1f errors=%ld cut_off=%ld\n",
	       done, t_end, done / t_end, pct(lat, done, 0.5), pct(lat, done, 0.99), errors,
	       cut_off);
	if (json) {
		FILE *f = strcmp(json, "-") ? fopen(json, "w") : stdout;

		if (!f) {
			fprintf(stderr, "dance-bench: --json %s: %s\n", json, strerror(errno));
			return 1;
		}
		summary_json(f, done, t_end, rate, lat, errs, cut_off);
		if (f != stdout)
			fclose(f);
	}
	for (k = 0; progress && k < ERR_KINDS; k++)
		if (errs[k])
			fprintf(stderr, "dance-bench: %ld %s errors\n", errs[k], err_names[k]);
	return done ? 0 : 1;

bad_usage:
	fputs(usage_text, stderr);
	return 2;
}
