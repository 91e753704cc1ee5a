// SPDX-License-Identifier: GPL-2.0
/*
 * dance_bench.c - dance-bench, a TLS handshake load generator for any TLS server: full
 * handshakes (no resumption), each followed by one small HTTP/1.1 request that the
 * server answers before it closes, so a connection counts only when the server side
 * finished its handshake too. Closed loop (a fixed number in flight) or open loop (a
 * fixed arrival rate, latency counted from when each connection was due, so that an
 * overloaded server cannot hide its queue). One epoll loop per thread (-T), each with
 * its share of the connections, non-blocking OpenSSL.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "clientid.h"

enum err_kind {
	ERR_CONNECT, /* socket() or connect() refused */
	ERR_HANDSHAKE, /* the TLS handshake failed (alert, verification, reset) */
	ERR_REQUEST, /* the request (or, with --no-request, the close_notify) was not sent */
	ERR_NO_ANSWER, /* closed or reset before any answer */
	ERR_UNFINISHED, /* -N: still in flight when the guard time ran out */
	ERR_KINDS,
};

static const char *const err_names[ERR_KINDS] = { "connect", "handshake", "request", "no_answer",
						  "unfinished" };

enum phase {
	P_HANDSHAKE,
	P_REQUEST, /* writing the request */
	P_RESPONSE, /* reading the answer, until the server closes */
	P_CLOSE_NOTIFY, /* --no-request: sending close_notify */
	P_CLOSING, /* --no-request: until the server closes in turn */
};

struct slot {
	int fd; /* -1: free */
	SSL *ssl;
	enum phase phase;
	size_t sent, got;
	double t0; /* when it was due (open loop) or opened (closed loop) */
};

/* What every thread shares, set before any starts and read-only after. */
static struct {
	SSL_CTX *ctx;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *name;
	bool request; /* false: --no-request */
	bool pha; /* --pha */
	double t0, t_end;
} cfg;

/* One thread's share of the load and what it measured. */
struct worker {
	pthread_t thread;
	int conc; /* connections in flight at most */
	double rate; /* open loop: its share of the arrival rate; 0: closed loop */
	long count; /* -N: its share; 0: until the clock ends it */
	double *lat; /* seconds, one per connection served */
	size_t cap;
	long errs[ERR_KINDS];
	long cut_off;
	atomic_long served, errors, in_flight; /* read by the progress line */
	int status; /* 0, or a negative errno when the thread could not start */
};

static atomic_int live; /* threads still running */

static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
static unsigned char clientid[256]; /* ClientName<0..255>: length, then the name */

static const char usage_text[] =
	"NAME\n"
	"    dance-bench - TLS handshake load generator\n"
	"\n"
	"SYNOPSIS\n"
	"    dance-bench -p PORT [-A ADDRESS] [-c CONCURRENCY] [-T THREADS] [-r RATE]\n"
	"                [-t SECONDS | -N COUNT] [-n SERVERNAME] [-a CAFILE] [-V 1.2|1.3]\n"
	"                [-s SUITES] [-G GROUPS] [-C CERT -K KEY [--rpk]\n"
	"                [-D DANE_NAME [-X CODEPOINT]]] [-H] [--no-request]\n"
	"                [--json FILE] [--progress]\n"
	"\n"
	"DESCRIPTION\n"
	"    Makes full TLS handshakes (no session resumption, no tickets) against\n"
	"    ADDRESS:PORT, each followed by one HTTP/1.1 request (\"GET /\",\n"
	"    \"Connection: close\"); a connection counts when an answer came and the\n"
	"    server closed, so the server's side of the handshake is in every count.\n"
	"    Any TLS server that answers HTTP/1.1 will do: danced (dance-echo --http),\n"
	"    nginx, HAProxy. With --no-request, any TLS server at all.\n"
	"\n"
	"    Closed loop (the default): CONCURRENCY connections are always in flight.\n"
	"    Open loop (-r): a new connection is due every 1/RATE seconds whatever the\n"
	"    server does, up to CONCURRENCY in flight; latency counts from when each was\n"
	"    due, so an overloaded server's queue shows in it (no coordinated omission).\n"
	"    With -T, each of THREADS threads runs its own event loop with an equal share\n"
	"    of CONCURRENCY, RATE and COUNT: one per core when the client's own crypto\n"
	"    would otherwise be the bottleneck.\n"
	"\n"
	"OPTIONS\n"
	"    -p PORT          the server's TCP port\n"
	"    -A ADDRESS       the server's IPv4 or IPv6 address (default 127.0.0.1)\n"
	"    -c CONCURRENCY   connections in flight (closed loop), or at most (open\n"
	"                     loop); default 16. The open-files limit is raised to fit,\n"
	"                     up to its hard limit\n"
	"    -T THREADS       threads, each with its own share (default 1)\n"
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
	"    --rpk            send CERT's public key alone, as a raw public key (RFC 7250:\n"
	"                     the client offers only that type); TLS 1.3, OpenSSL 3.2 or\n"
	"                     later. For DANE servers, whose TLSA record (selector 1,\n"
	"                     SubjectPublicKeyInfo) names the key\n"
	"    -D DANE_NAME     name the client in dane_clientid (draft-ietf-dance-client-\n"
	"                     auth) in its Certificate, for DANE client authentication\n"
	"    -X CODEPOINT     the dane_clientid codepoint (default 65282, danced's)\n"
	"    -H, --pha        offer post_handshake_auth, as curl does\n"
	"    --no-request     send no request: after the handshake the client sends\n"
	"                     close_notify, and the connection counts when the server\n"
	"                     closes in turn (so the server's side of the handshake is\n"
	"                     still in the count)\n"
	"    --json FILE      write the summary as JSON to FILE (- for standard output)\n"
	"    --progress       a line on standard error every second\n"
	"    -h, --help       this text\n"
	"\n"
	"OUTPUT\n"
	"    One line on standard output:\n"
	"        conns=N secs=S rate=R/s p50_ms=.. p99_ms=.. errors=E cut_off=K\n"
	"    and with --json an object: conns, secs, rate, offered_rate (open loop),\n"
	"    threads, latency_ms {p50, p90, p99, p99_9, max}, errors, errors_by_kind\n"
	"    {connect, handshake, request, no_answer, unfinished}, cut_off.\n"
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
	"    dance-bench -p 8443 -r 200 -c 1000 -t 30 -T 2 --json result.json\n"
	"    dance-bench -p 9443 -N 1000 -C sensor.pem -K sensor.key \\\n"
	"        -D sensor1._device.example.com --rpk\n";

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

static int slot_open(struct slot *s, int ep, double due)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = s };
	int one = 1;

	s->fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return -errno;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (struct sockaddr *)&cfg.addr, cfg.addr_len) && errno != EINPROGRESS) {
		close(s->fd);
		s->fd = -1;
		return -errno;
	}
	s->ssl = SSL_new(cfg.ctx);
	if (!s->ssl)
		return -ENOMEM;
	SSL_set_post_handshake_auth(s->ssl, cfg.pha);
	SSL_set_fd(s->ssl, s->fd);
	SSL_set_connect_state(s->ssl);
	SSL_set_tlsext_host_name(s->ssl, cfg.name);
	s->phase = P_HANDSHAKE;
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
	int ret = 0, err;

	for (;;) {
		switch (s->phase) {
		case P_HANDSHAKE:
			ret = SSL_do_handshake(s->ssl);
			if (ret == 1) {
				s->phase = cfg.request ? P_REQUEST : P_CLOSE_NOTIFY;
				continue;
			}
			break;
		case P_REQUEST:
			ret = SSL_write(s->ssl, req + s->sent, sizeof(req) - 1 - s->sent);
			if (ret > 0) {
				s->sent += ret;
				if (s->sent == sizeof(req) - 1)
					s->phase = P_RESPONSE;
				continue;
			}
			break;
		case P_CLOSE_NOTIFY:
			/* 0: sent, the peer's is yet to come. */
			ret = SSL_shutdown(s->ssl);
			if (ret >= 0) {
				s->phase = P_CLOSING;
				continue;
			}
			break;
		case P_RESPONSE:
		case P_CLOSING:
			ret = SSL_read(s->ssl, buf, sizeof(buf));
			if (ret > 0) {
				s->got += ret;
				continue;
			}
			err = SSL_get_error(s->ssl, ret);
			/*
			 * Closed or reset: served if an answer came first, or, with no request,
			 * if the server closed after the client's close_notify.
			 */
			if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) {
				ERR_clear_error();
				return s->got || s->phase == P_CLOSING ? 1 : -1 - ERR_NO_ANSWER;
			}
			break;
		}
		err = SSL_get_error(s->ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return 0;
		ERR_clear_error();
		/* A non-blocking connect() fails where the handshake first writes. */
		if (s->phase == P_HANDSHAKE && err == SSL_ERROR_SYSCALL && errno == ECONNREFUSED)
			return -1 - ERR_CONNECT;
		switch (s->phase) {
		case P_HANDSHAKE:
			return -1 - ERR_HANDSHAKE;
		case P_REQUEST:
		case P_CLOSE_NOTIFY:
			return -1 - ERR_REQUEST;
		default:
			return -1 - ERR_NO_ANSWER;
		}
	}
}

static void count_error(struct worker *w, enum err_kind k)
{
	w->errs[k]++;
	atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
}

/* One thread: its share of the connections, in its own epoll loop, until the end. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	struct slot *slots, **free_slots;
	long opened = 0;
	size_t nfree = 0;
	double next_due = cfg.t0, t;
	int ep, i, n;

	ep = epoll_create1(EPOLL_CLOEXEC);
	slots = calloc(w->conc, sizeof(*slots));
	free_slots = calloc(w->conc, sizeof(*free_slots));
	if (ep < 0 || !slots || !free_slots) {
		w->status = -errno;
		goto out;
	}
	for (i = 0; i < w->conc; i++) {
		slots[i].fd = -1;
		free_slots[nfree++] = &slots[w->conc - 1 - i];
	}
	for (;;) {
		long served = atomic_load_explicit(&w->served, memory_order_relaxed);
		long errors = atomic_load_explicit(&w->errors, memory_order_relaxed);

		t = now();
		if (t >= cfg.t_end || (w->count && served + errors >= w->count))
			break;
		/* Start what is due: everything free (closed loop), or what the clock says. */
		while (nfree && (!w->count || opened < w->count) && (!w->rate || next_due <= t)) {
			struct slot *s = free_slots[--nfree];

			opened++;
			if (slot_open(s, ep, w->rate ? next_due : t)) {
				if (s->fd >= 0)
					slot_close(s, ep);
				count_error(w, ERR_CONNECT);
				free_slots[nfree++] = s;
				if (!w->rate)
					break; /* the server is gone: let the clock move on */
			}
			if (w->rate)
				next_due += 1 / w->rate;
		}
		atomic_store_explicit(&w->in_flight, w->conc - nfree, memory_order_relaxed);
		n = epoll_wait(ep, evs, 256,
			       w->rate ? (int)((next_due > t ? next_due - t : 0) * 1e3) + 1 : 100);
		for (i = 0; i < n; i++) {
			struct slot *s = evs[i].data.ptr;
			int r = slot_step(s);

			if (!r)
				continue;
			if (r > 0) {
				long k = atomic_fetch_add_explicit(&w->served, 1,
								   memory_order_relaxed);

				if ((size_t)k < w->cap)
					w->lat[k] = now() - s->t0;
			} else {
				count_error(w, -1 - r);
			}
			slot_close(s, ep);
			free_slots[nfree++] = s;
		}
	}
	for (i = 0; i < w->conc; i++)
		if (slots[i].fd >= 0) {
			/*
			 * A run of -t SECONDS ends with connections in flight: cut off by the
			 * clock, not failed. A run of -N COUNT that ran out of time failed them.
			 */
			if (w->count)
				count_error(w, ERR_UNFINISHED);
			else
				w->cut_off++;
			slot_close(&slots[i], ep);
		}
	atomic_store_explicit(&w->in_flight, 0, memory_order_relaxed);
out:
	free(slots);
	free(free_slots);
	if (ep >= 0)
		close(ep);
	atomic_fetch_sub(&live, 1);
	return NULL;
}

static void summary_json(FILE *f, size_t done, double secs, double rate, int threads,
			 const double *lat, const long *errs, long cut_off)
{
	long total = 0;
	int k;

	for (k = 0; k < ERR_KINDS; k++)
		total += errs[k];
	fprintf(f,
		"{\"conns\":%zu,\"secs\":%.3f,\"rate\":%.1f,\"offered_rate\":%.1f,\"threads\":%d,"
		"\"latency_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p99_9\":%.2f,"
		"\"max\":%.2f},\"errors\":%ld,\"errors_by_kind\":{",
		done, secs, secs > 0 ? done / secs : 0, rate, threads, pct(lat, done, 0.5),
		pct(lat, done, 0.9), pct(lat, done, 0.99), pct(lat, done, 0.999),
		done ? lat[done - 1] * 1e3 : 0, total);
	for (k = 0; k < ERR_KINDS; k++)
		fprintf(f, "%s\"%s\":%ld", k ? "," : "", err_names[k], errs[k]);
	fprintf(f, "},\"cut_off\":%ld}\n", cut_off);
}

/* Raise the soft open-files limit to fit @need descriptors: 0, or -EMFILE when it cannot. */
static int fit_open_files(rlim_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (rl.rlim_cur >= need)
		return 0;
	if (rl.rlim_max < need)
		return -EMFILE;
	rl.rlim_cur = need;
	return setrlimit(RLIMIT_NOFILE, &rl) ? -errno : 0;
}

/* ADDRESS and PORT into cfg.addr: 0, or -EINVAL when ADDRESS is not an IP literal. */
static int set_addr(const char *address, int port)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&cfg.addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&cfg.addr;

	memset(&cfg.addr, 0, sizeof(cfg.addr));
	if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		cfg.addr_len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		cfg.addr_len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", required_argument, NULL, 'J' },
		{ "progress", no_argument, NULL, 'R' },
		{ "pha", no_argument, NULL, 'H' },
		{ "rpk", no_argument, NULL, 'P' },
		{ "no-request", no_argument, NULL, 'Q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int port = 0, conc = 16, secs = 5, opt, i, version = TLS1_3_VERSION, k, threads = 1;
	long count = 0, errs[ERR_KINDS] = { 0 }, errors = 0, cut_off = 0;
	bool secs_given = false, progress = false, rpk = false;
	const char *cert = NULL, *key = NULL, *dane = NULL, *address = "127.0.0.1";
	const char *groups = NULL, *suites = NULL, *json = NULL, *ca = NULL;
	unsigned int codepoint = 65282;
	double rate = 0, next_report, elapsed;
	size_t done = 0, cap;
	struct worker *workers;
	double *lat;
	SSL_CTX *ctx;

	cfg.name = "localhost";
	cfg.request = true;
	/* A server that resets a connection must cost that connection, not the run. */
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt_long(argc, argv, "p:A:c:T:r:t:N:n:a:V:s:C:K:D:X:G:Hh", longopts,
				  NULL)) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'A':
			address = optarg;
			break;
		case 'c':
			conc = atoi(optarg);
			break;
		case 'T':
			threads = atoi(optarg);
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
			cfg.name = optarg;
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
			cfg.pha = true;
			break;
		case 'P':
			rpk = true;
			break;
		case 'Q':
			cfg.request = false;
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
	    threads <= 0 || threads > 256 || !cert != !key ||
	    (dane && (!cert || !*dane || strlen(dane) > 255)) || codepoint > 65535 ||
	    (dane && version != TLS1_3_VERSION) || (rpk && (!cert || version != TLS1_3_VERSION)))
		goto bad_usage;
	if (set_addr(address, port)) {
		fprintf(stderr, "dance-bench: -A %s: not an IPv4 or IPv6 address\n", address);
		return 2;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		goto setup_failed;
	cfg.ctx = ctx;
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
	if (rpk) {
#ifdef TLSEXT_cert_type_rpk
		static const unsigned char rpk_only[] = { TLSEXT_cert_type_rpk };

		/* Only this type: a server that cannot take it must say so, not get X.509. */
		if (SSL_CTX_set1_client_cert_type(ctx, rpk_only, sizeof(rpk_only)) != 1)
			goto setup_failed;
#else
		fprintf(stderr,
			"dance-bench: --rpk: %s has no raw public keys (RFC 7250 came in "
			"OpenSSL 3.2)\n",
			OpenSSL_version(OPENSSL_VERSION));
		return 1;
#endif
	}
	if (dane) {
		clientid[0] = strlen(dane);
		memcpy(clientid + 1, dane, clientid[0]);
		if (bench_clientid_register(ctx, codepoint, clientid) != 1)
			goto setup_failed;
	}
	if (count && conc > count && !rate)
		conc = count;
	if (threads > conc)
		threads = conc;
	if (count && !secs_given)
		secs = 600; /* only a guard against a server that stopped answering */
	if (fit_open_files(conc + 3 * threads + 16)) {
		fprintf(stderr,
			"dance-bench: -c %d: more descriptors than the open-files limit allows "
			"(ulimit -n)\n",
			conc);
		return 1;
	}
	/* Latencies: every connection of a counted run, else up to a million. */
	cap = count ? (size_t)count : 1 << 20;
	lat = malloc(cap * sizeof(*lat));
	workers = calloc(threads, sizeof(*workers));
	if (!lat || !workers)
		goto setup_failed;
	cfg.t0 = now();
	cfg.t_end = cfg.t0 + secs;
	atomic_store(&live, threads);
	for (i = 0; i < threads; i++) {
		struct worker *w = &workers[i];

		/* Equal shares; the first threads take what does not divide. */
		w->conc = conc / threads + (i < conc % threads);
		w->count = count ? count / threads + (i < count % threads) : 0;
		w->rate = rate / threads;
		w->cap = w->count ? (size_t)w->count : cap / threads;
		w->lat = malloc(w->cap * sizeof(*w->lat));
		if (!w->lat || (errno = pthread_create(&w->thread, NULL, worker_main, w))) {
			perror("dance-bench: a thread");
			return 1;
		}
	}
	/* The main thread only reports; it wakes often enough that a short run ends soon. */
	next_report = cfg.t0 + 1;
	while (atomic_load(&live)) {
		usleep(20000);
		if (progress && now() >= next_report) {
			long served = 0, failed = 0, in_flight = 0;

			for (i = 0; i < threads; i++) {
				served += atomic_load(&workers[i].served);
				failed += atomic_load(&workers[i].errors);
				in_flight += atomic_load(&workers[i].in_flight);
			}
			fprintf(stderr,
				"dance-bench: %.0f s: %ld served, %ld errors, %ld in flight\n",
				next_report - cfg.t0, served, failed, in_flight);
			next_report += 1;
		}
	}
	for (i = 0; i < threads; i++) {
		struct worker *w = &workers[i];
		size_t n;

		pthread_join(w->thread, NULL);
		if (w->status) {
			fprintf(stderr, "dance-bench: a thread: %s\n", strerror(-w->status));
			return 1;
		}
		n = atomic_load(&w->served);
		if (n > w->cap)
			n = w->cap;
		memcpy(lat + done, w->lat, n * sizeof(*lat));
		done += n;
		for (k = 0; k < ERR_KINDS; k++)
			errs[k] += w->errs[k];
		errors += atomic_load(&w->errors);
		cut_off += w->cut_off;
		free(w->lat);
	}
	elapsed = now() - cfg.t0;
	qsort(lat, done, sizeof(double), cmp);
	printf("conns=%zu secs=%.2f rate=%.1f/s p50_ms=%.1f p99_ms=%.1f errors=%ld cut_off=%ld\n",
	       done, elapsed, done / elapsed, pct(lat, done, 0.5), pct(lat, done, 0.99), errors,
	       cut_off);
	if (json) {
		FILE *f = strcmp(json, "-") ? fopen(json, "w") : stdout;

		if (f) {
			summary_json(f, done, elapsed, rate, threads, lat, errs, cut_off);
			if (f != stdout)
				fclose(f);
		} else {
			fprintf(stderr, "dance-bench: --json %s: %s\n", json, strerror(errno));
			done = 0; /* the run's figures are lost: a failed run */
		}
	}
	for (k = 0; progress && k < ERR_KINDS; k++)
		if (errs[k])
			fprintf(stderr, "dance-bench: %ld %s errors\n", errs[k], err_names[k]);
	free(lat);
	free(workers);
	SSL_CTX_free(ctx);
	return done ? 0 : 1;

setup_failed:
	fprintf(stderr, "dance-bench: setup: %s\n",
		ERR_reason_error_string(ERR_get_error()) ?: strerror(errno ?: ENOMEM));
	return 1;
bad_usage:
	fputs(usage_text, stderr);
	return 2;
}
