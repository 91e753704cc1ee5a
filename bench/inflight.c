// SPDX-License-Identifier: GPL-2.0
/*
 * inflight.c - how much memory danced holds per socket it is working on: many TLS
 * clients, each stopped at one point of its handshake, while danced's resident memory
 * (VmRSS, and Pss/Private from smaps_rollup) is read before and once all are there.
 *
 *   hello   each client sends a ClientHello, reads the server's whole first flight and
 *           then stalls (never sends its second flight): danced holds N handshakes
 *           mid-way. The ClientHello is one real OpenSSL client's, replayed on every
 *           connection, so the clients cost no crypto and the load is all danced's.
 *   dane    each client completes a TLS 1.3 handshake naming itself (a name of its
 *           own) in dane_clientid, then waits: danced holds N sockets waiting for their
 *           TLSA lookup, which dns-sink keeps from finishing.
 *   dns-sink
 *           a DNS server that keeps every validated lookup in its zone pending for
 *           minutes, at a few queries per second (see run_sink() and bench/README.md:
 *           a server that never answers does not do it).
 *
 * The server side is this process too: in return mode it accepts the clients' TCP
 * connections and hands each to danced with libdance (dance_submit()); in front-door
 * mode the clients connect to danced's listen address and this process is the backend
 * (dance_listen()). Prints one "RESULT ..." line per measurement for bench/cost-guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "clientid.h"

#include "../agent/lib/dance.h"

#define HELLO_MAX 2048
#define CHECKPOINTS_MAX 8
#define WARMUP 4 /* full handshakes before the baseline: OpenSSL and danced warm up */

enum client_state {
	C_FREE,
	C_CONNECTING, /* stall client: connect() in progress */
	C_READING, /* stall client: ClientHello sent, reading the server's flight */
	C_STALLED, /* stall client: flight complete; sends nothing more */
	C_HANDSHAKE, /* full client: SSL_do_handshake() in progress */
	C_DONE, /* full client: handshake complete; waits for danced to end it */
	C_DEAD, /* the connection ended (EOF, error, alert) */
};

struct client {
	int fd;
	enum client_state state;
	SSL *ssl; /* full clients only */
	unsigned char *clientid; /* its dane_clientid ClientName: length, then the name */
	bool warmup;
	bool calibrate; /* the one full client that records the ClientHello and flight */
	uint8_t hdr_len; /* record parser of a stall client: header bytes seen */
	uint16_t rec_len; /* the length field of the header being read */
	uint32_t body_left;
	uint32_t records;
};

static struct {
	const char *mode; /* hello, dane */
	const char *label;
	int port; /* where clients connect: danced's listen (front door) or ours (return) */
	const char *sni;
	const char *handoff; /* return mode */
	const char *backend; /* front-door mode */
	bool direct; /* clients connect to --port, nothing of libdance (any TLS server) */
	bool again; /* hello: end them all, then fill once more (memory reused) */
	bool maps; /* with each report, the mappings that grew by 1 MB or more */
	const char *heap_file; /* the server runs with malloc_count.so writing here */
	pid_t pid; /* danced */
	unsigned int checkpoints[CHECKPOINTS_MAX];
	size_t n_checkpoints;
	unsigned int window; /* stall clients connecting or reading at once */
	unsigned int conc; /* full clients handshaking at once (dane) */
	const char *cert, *key, *dane_name, *warm_name;
	unsigned int names; /* dane: names used, each dane_name prefixed with n<i>-; 0: all */
	unsigned int codepoint;
	unsigned int timeout;
	int sink_port;
	const char *zone;
	unsigned int hold_ms;
} opt = { .zone = "demo.example",
	  .hold_ms = 2200,
	  .window = 64,
	  .conc = 16,
	  .names = 0,
	  .codepoint = 65282,
	  .timeout = 900 };

static struct {
	int ep;
	int lfd; /* return mode: our TCP listener */
	struct dance *d; /* return mode: handoff channel; front door: backend channel */
	bool dance_armed;
	struct sockaddr_in addr; /* where clients connect */
	SSL_CTX *ctx;
	struct client *clients;
	size_t n_clients, cap;
	uint8_t hello[HELLO_MAX]; /* the replayed ClientHello record(s) */
	size_t hello_len;
	bool hello_done; /* calibration saw its first write after the ClientHello */
	uint32_t flight_records; /* records in the server's first flight */
	uint32_t cal_records;
	uint64_t next_id;
	int *fds; /* return mode: our descriptor of request id i */
	size_t n_fds;
	/* stall clients: connecting or reading, stalled, ended before or after stalling */
	unsigned int connecting, stalled, failed, lost;
	/* full clients: handshaking, completed (ever), ended after completing */
	unsigned int handshaking, done, ended;
	double t0;
} g = { .ep = -1, .lfd = -1 };

static struct dance_result result; /* large: one, reused */

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "inflight: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("inflight: [%6.1f s] ", now() - g.t0);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

/* ---- danced's memory ------------------------------------------------------------- */

struct mem {
	long rss, pss, priv; /* kB */
	long long live; /* heap bytes in use, from malloc_count.so (--heap-file), or -1 */
};

static long field_kb(const char *path, const char *key)
{
	char line[256];
	size_t n = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n)) {
			v = strtol(line + n, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Resident kB per mapping, from /proc/PID/smaps. */
struct mapping {
	unsigned long start, end;
	long rss;
	char name[48];
};

static struct mapping *base_maps;
static size_t n_base_maps;

static size_t maps_read(struct mapping **out)
{
	char path[64], line[512];
	struct mapping *v = NULL, *cur = NULL;
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)opt.pid);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		int off = 0;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s%n", &a, &b, &off) == 2 && off) {
			v = realloc(v, (n + 1) * sizeof(*v));
			if (!v)
				die("out of memory");
			cur = &v[n++];
			cur->start = a;
			cur->end = b;
			cur->rss = 0;
			snprintf(cur->name, sizeof(cur->name), "%s",
				 line + off + strspn(line + off, " "));
			cur->name[strcspn(cur->name, "\n")] = '\0';
		} else if (cur && !strncmp(line, "Rss:", 4)) {
			cur->rss = strtol(line + 4, NULL, 10);
		}
	}
	if (f)
		fclose(f);
	*out = v;
	return n;
}

static void maps_report(void)
{
	struct mapping *v;
	size_t n = maps_read(&v), i, j;

	for (i = 0; i < n; i++) {
		long was = 0;

		for (j = 0; j < n_base_maps; j++)
			if (base_maps[j].start == v[i].start)
				was = base_maps[j].rss;
		if (v[i].rss - was >= 1024)
			note("  +%ld kB in %lx-%lx (%lu kB) %s", v[i].rss - was, v[i].start,
			     v[i].end, (v[i].end - v[i].start) / 1024,
			     v[i].name[0] ? v[i].name : "[anon]");
	}
	free(v);
}

static int file_lines(const char *path, char *last, size_t max)
{
	char line[512];
	FILE *f = fopen(path, "r");
	int n = 0;

	while (f && fgets(line, sizeof(line), f)) {
		n++;
		if (last)
			snprintf(last, max, "%s", line);
	}
	if (f)
		fclose(f);
	return n;
}

/* Ask malloc_count.so in the server for its counters (SIGUSR2): its "live=" bytes. */
static long long heap_live(void)
{
	int before = file_lines(opt.heap_file, NULL, 0), i;
	char last[512] = "";
	const char *p;

	kill(opt.pid, SIGUSR2);
	for (i = 0; i < 250 && file_lines(opt.heap_file, last, sizeof(last)) <= before; i++)
		usleep(20000);
	p = strstr(last, " live=");
	return p ? strtoll(p + 6, NULL, 10) : -1;
}

static struct mem mem_read(void)
{
	char st[64], roll[64];
	struct mem m;

	snprintf(st, sizeof(st), "/proc/%d/status", (int)opt.pid);
	snprintf(roll, sizeof(roll), "/proc/%d/smaps_rollup", (int)opt.pid);
	m.rss = field_kb(st, "VmRSS:");
	m.pss = field_kb(roll, "Pss:");
	m.priv = field_kb(roll, "Private_Clean:") + field_kb(roll, "Private_Dirty:");
	m.live = opt.heap_file ? heap_live() : -1;
	if (opt.maps && !base_maps)
		n_base_maps = maps_read(&base_maps); /* the first reading is the baseline */
	if (m.rss < 0)
		die("cannot read %s: is danced (pid %d) running?", st, (int)opt.pid);
	return m;
}

/* The server's open descriptors: one per socket it still holds. */
static int fd_count(void)
{
	char path[64];
	struct dirent *e;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)opt.pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n;
}

/* ---- the server side: return mode or front door ---------------------------------- */

static void ep_add(int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };

	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev))
		die("epoll_ctl: %s", strerror(errno));
}

#define TAG_LISTEN (~0ULL)
#define TAG_DANCE (~0ULL - 1)

static void server_init(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int one = 1, ret;

	g.addr.sin_family = AF_INET;
	g.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (opt.direct) {
		g.addr.sin_port = htons(opt.port);
		return;
	}
	if (opt.backend) {
		ret = dance_listen(opt.backend, 64, &g.d);
		if (ret)
			die("dance_listen %s: %s", opt.backend, strerror(-ret));
		g.addr.sin_port = htons(opt.port);
		ep_add(dance_fd(g.d), EPOLLIN, TAG_DANCE);
		return;
	}
	ret = dance_open(opt.handoff, &g.d);
	if (ret)
		die("dance_open %s: %s", opt.handoff, strerror(-ret));
	g.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(opt.port);
	setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (g.lfd < 0 || bind(g.lfd, (struct sockaddr *)&a, sizeof(a)) || listen(g.lfd, 65535) ||
	    getsockname(g.lfd, (struct sockaddr *)&a, &len))
		die("listen on 127.0.0.1:%d: %s", opt.port, strerror(errno));
	g.addr.sin_port = a.sin_port;
	ep_add(g.lfd, EPOLLIN, TAG_LISTEN);
}

/* Return mode: every connection the clients make goes to danced. */
static void server_accept(void)
{
	struct dance_params p = { .service = NULL };
	int fd, ret;

	while ((fd = accept4(g.lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		if (g.next_id + 1 >= g.n_fds) {
			g.n_fds = g.n_fds ? 2 * g.n_fds : 1024;
			g.fds = realloc(g.fds, g.n_fds * sizeof(*g.fds));
			if (!g.fds)
				die("out of memory");
		}
		g.fds[++g.next_id] = fd;
		ret = dance_submit(g.d, fd, &p, g.next_id);
		if (ret)
			die("dance_submit: %s", strerror(-ret));
		if (!g.dance_armed && dance_fd(g.d) >= 0) {
			ep_add(dance_fd(g.d), EPOLLIN, TAG_DANCE);
			g.dance_armed = true;
		}
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		die("accept: %s", strerror(errno));
}

/* Results (return mode) or finished sockets (front door): closing ends the client. */
static void server_results(void)
{
	int fd;

	if (opt.backend) {
		fd = dance_accept(g.d, &result);
		if (fd >= 0)
			close(fd);
		else if (fd == -ECONNRESET)
			die("danced closed the backend channel");
		return;
	}
	while (dance_complete(g.d, &result) == 0) {
		/* On failure libdance closed the socket; on success it is ours to close. */
		if (!result.status && result.id && result.id <= g.next_id)
			close(g.fds[result.id]);
	}
}

/* ---- clients ------------------------------------------------------------------------ */

static struct client *client_new(void)
{
	struct client *c;

	if (g.n_clients == g.cap) {
		g.cap = g.cap ? 2 * g.cap : 1024;
		g.clients = realloc(g.clients, g.cap * sizeof(*g.clients));
		if (!g.clients)
			die("out of memory");
	}
	c = &g.clients[g.n_clients++];
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s (raise the open file limit)", strerror(errno));
	if (connect(c->fd, (struct sockaddr *)&g.addr, sizeof(g.addr)) && errno != EINPROGRESS)
		die("connect to 127.0.0.1:%d: %s", ntohs(g.addr.sin_port), strerror(errno));
	return c;
}

static void client_end(struct client *c)
{
	switch (c->state) {
	case C_CONNECTING:
	case C_READING:
		g.connecting--;
		g.failed++;
		break;
	case C_STALLED:
		g.stalled--;
		g.lost++;
		break;
	case C_HANDSHAKE:
		g.handshaking--;
		g.failed++;
		break;
	case C_DONE:
		g.ended++;
		break;
	default:
		return;
	}
	epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
	c->state = C_DEAD;
	SSL_free(c->ssl);
	c->ssl = NULL;
	free(c->clientid);
	c->clientid = NULL;
	close(c->fd);
	c->fd = -1;
}

/* Calibration: the ClientHello as written, and the records read before the answer. */
static void msg_cb(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl,
		   void *arg)
{
	(void)version, (void)ssl, (void)arg;
	if (g.hello_done)
		return;
	if (!write_p) {
		if (type == SSL3_RT_HEADER)
			g.cal_records++;
		return;
	}
	if (type == SSL3_RT_HEADER && g.hello_len) {
		/* The first record after the ClientHello: the server's flight is in. */
		g.hello_done = true;
		g.flight_records = g.cal_records;
		return;
	}
	/* The record's 5-byte header is reported first, then the message it carries. */
	if (type == SSL3_RT_HEADER || type == SSL3_RT_HANDSHAKE) {
		if (g.hello_len + len > sizeof(g.hello))
			die("ClientHello larger than %d bytes", HELLO_MAX);
		memcpy(g.hello + g.hello_len, buf, len);
		g.hello_len += len;
	}
}

static void ctx_init(void)
{
	g.ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(g.ctx, TLS1_3_VERSION);
	SSL_CTX_set_session_cache_mode(g.ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(g.ctx, SSL_OP_NO_TICKET);
	if (opt.cert && (SSL_CTX_use_certificate_chain_file(g.ctx, opt.cert) != 1 ||
			 SSL_CTX_use_PrivateKey_file(g.ctx, opt.key, SSL_FILETYPE_PEM) != 1))
		die("%s, %s: %s", opt.cert, opt.key, ERR_reason_error_string(ERR_get_error()));
	/* The name is each connection's own (its app data), sent when asked for. */
	bench_clientid_register(g.ctx, opt.codepoint, NULL);
}

/* A full OpenSSL client; @name in dane_clientid when given. */
static struct client *full_client(const char *name, bool warmup, bool calibrate)
{
	struct client *c = client_new();

	c->ssl = SSL_new(g.ctx);
	if (!c->ssl)
		die("SSL_new");
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	if (opt.sni)
		SSL_set_tlsext_host_name(c->ssl, opt.sni);
	if (calibrate) {
		SSL_set_msg_callback(c->ssl, msg_cb);
		g.hello_len = 0;
		g.cal_records = 0;
		g.hello_done = false;
	}
	if (name) {
		c->clientid = malloc(strlen(name) + 1);
		if (!c->clientid)
			die("out of memory");
		c->clientid[0] = strlen(name);
		memcpy(c->clientid + 1, name, c->clientid[0]);
		SSL_set_app_data(c->ssl, c->clientid);
	}
	c->state = C_HANDSHAKE;
	c->warmup = warmup;
	c->calibrate = calibrate;
	g.handshaking++;
	ep_add(c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, c - g.clients);
	return c;
}

static void set_events(struct client *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = c - g.clients };

	epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Advance a full client: its handshake, then wait for danced to end the connection. */
static void full_step(struct client *c)
{
	char buf[512];
	int ret, err;

	if (c->state == C_HANDSHAKE) {
		ret = SSL_do_handshake(c->ssl);
		if (ret == 1) {
			c->state = C_DONE;
			g.handshaking--;
			g.done++;
			set_events(c, EPOLLIN | EPOLLRDHUP);
			/* With no libdance server to close it, a warm-up ends itself. */
			if (c->warmup && opt.direct)
				client_end(c);
			return;
		}
		err = SSL_get_error(c->ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return;
		client_end(c);
		return;
	}
	/* Done: anything from danced now (an alert, EOF) means it ended the connection. */
	ret = SSL_read(c->ssl, buf, sizeof(buf));
	if (ret > 0)
		return;
	err = SSL_get_error(c->ssl, ret);
	if (err == SSL_ERROR_WANT_READ)
		return;
	client_end(c);
}

/* A stall client: the replayed ClientHello, then count the flight's records. */
static void stall_step(struct client *c, uint32_t events)
{
	uint8_t buf[16384];
	ssize_t n, i;
	int err = 0;
	socklen_t len = sizeof(err);

	if (c->state == C_CONNECTING) {
		if (!(events & EPOLLOUT) && !(events & (EPOLLERR | EPOLLHUP)))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
			client_end(c);
			return;
		}
		if (write(c->fd, g.hello, g.hello_len) != (ssize_t)g.hello_len) {
			client_end(c);
			return;
		}
		c->state = C_READING;
		set_events(c, EPOLLIN | EPOLLRDHUP);
		return;
	}
	for (;;) {
		n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			client_end(c);
			return;
		}
		for (i = 0; i < n;) {
			if (c->body_left) {
				size_t k = (size_t)(n - i) < c->body_left ? (size_t)(n - i) :
									    c->body_left;

				c->body_left -= k;
				i += k;
				if (!c->body_left)
					c->records++;
				continue;
			}
			/* Record header: type, version (2), length (2); the length is all we need. */
			if (c->hdr_len >= 3)
				c->rec_len = c->rec_len << 8 | buf[i];
			c->hdr_len++;
			i++;
			if (c->hdr_len == 5) {
				c->hdr_len = 0;
				c->body_left = c->rec_len;
				c->rec_len = 0;
				if (!c->body_left)
					c->records++;
			}
		}
	}
	if (c->state == C_READING && c->records >= g.flight_records) {
		c->state = C_STALLED;
		g.connecting--;
		g.stalled++;
		/* Keep watching: an early end (busy, timeout) must not go unnoticed. */
		set_events(c, EPOLLRDHUP);
	}
}

static void stall_client(void)
{
	struct client *c = client_new();

	c->state = C_CONNECTING;
	g.connecting++;
	ep_add(c->fd, EPOLLOUT | EPOLLRDHUP, c - g.clients);
}

/* One round of events; @wait_ms at most. */
static void loop_once(int wait_ms)
{
	struct epoll_event evs[256];
	int n, i;

	if (now() - g.t0 > opt.timeout)
		die("gave up after %u s (stalled %u, handshakes done %u, ended %u)", opt.timeout,
		    g.stalled, g.done, g.ended);
	n = epoll_wait(g.ep, evs, 256, wait_ms);
	for (i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		struct client *c;

		if (tag == TAG_LISTEN) {
			server_accept();
			continue;
		}
		if (tag == TAG_DANCE) {
			server_results();
			continue;
		}
		c = &g.clients[tag];
		if (c->state == C_DEAD)
			continue;
		if (c->ssl) {
			full_step(c);
			continue;
		}
		if (c->state == C_STALLED) {
			if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				client_end(c);
			continue;
		}
		stall_step(c, evs[i].events);
	}
}

static void pause_for(double secs)
{
	double end = now() + secs;

	while (now() < end)
		loop_once(50);
}

static void report(const char *what, const struct mem *base, const struct mem *m, unsigned int n,
		   const char *extra)
{
	char heap[64] = "";

	note("%u %s: rss %ld kB (+%ld), pss %ld kB (+%ld), private %ld kB (+%ld)", n, what, m->rss,
	     m->rss - base->rss, m->pss, m->pss - base->pss, m->priv, m->priv - base->priv);
	if (opt.maps)
		maps_report();
	if (m->live >= 0 && base->live >= 0)
		snprintf(heap, sizeof(heap), " heap_kib=%.1f",
			 (double)(m->live - base->live) / 1024 / n);
	printf("RESULT %s %s n=%u rss_kib=%.1f pss_kib=%.1f private_kib=%.1f%s%s\n", what,
	       opt.label ? opt.label : "-", n, (double)(m->rss - base->rss) / n,
	       (double)(m->pss - base->pss) / n, (double)(m->priv - base->priv) / n, heap, extra);
	fflush(stdout);
}

/* Full handshakes, one at a time; each ends when the server side closes it. */
static void warm_up(void)
{
	unsigned int i, done;

	for (i = 0; i < WARMUP; i++) {
		struct client *c = full_client(NULL, true, i == 0);

		done = g.done;
		while (c->state != C_DEAD)
			loop_once(100);
		if (g.done == done)
			die("warm-up handshake %u failed: is a TLS server at 127.0.0.1:%d?", i,
			    ntohs(g.addr.sin_port));
		if (i == 0) {
			if (!g.hello_done || !g.hello_len || !g.flight_records)
				die("calibration saw no server flight (ClientHello %zu bytes, "
				    "%u records)",
				    g.hello_len, g.cal_records);
			note("calibrated: ClientHello %zu bytes (%02x %02x %02x %02x %02x), server's "
			     "first flight %u records",
			     g.hello_len, g.hello[0], g.hello[1], g.hello[2], g.hello[3],
			     g.hello[4], g.flight_records);
		}
	}
}

/* Stall clients up to each checkpoint from @k on; report the growth over @base at each. */
static void fill(const struct mem *base, const char *what, size_t k)
{
	unsigned int target = opt.checkpoints[opt.n_checkpoints - 1];
	char extra[128];
	double t, last;
	struct mem m;

	t = last = now();
	while (k < opt.n_checkpoints) {
		if (now() - last > 10) {
			last = now();
			note("%u stalled, %u on their way, %u ended early", g.stalled, g.connecting,
			     g.failed + g.lost);
		}
		while (g.stalled + g.connecting < opt.checkpoints[k] && g.connecting < opt.window &&
		       g.stalled + g.connecting < target)
			stall_client();
		loop_once(20);
		if (g.failed + g.lost > 16)
			die("%u connections ended before the measurement (danced busy or out of "
			    "descriptors? see its log)",
			    g.failed + g.lost);
		if (g.stalled < opt.checkpoints[k])
			continue;
		note("%u clients stalled after the server's flight, in %.1f s", g.stalled,
		     now() - t);
		pause_for(1.5); /* whatever danced started for them is done */
		m = mem_read();
		snprintf(extra, sizeof(extra), " ended_early=%u secs=%.1f", g.failed + g.lost,
			 now() - t);
		report(what, base, &m, g.stalled, extra);
		k++;
	}
}

static void run_hello(void)
{
	struct mem base, m;
	unsigned int n;
	int fds;
	size_t i;
	double t;

	warm_up();
	pause_for(1.0);
	base = mem_read();
	fds = fd_count();
	note("baseline: rss %ld kB, pss %ld kB, private %ld kB", base.rss, base.pss, base.priv);
	fill(&base, "mid-handshake", 0);
	if (!opt.again)
		return;
	/*
	 * A server that has been busy reuses memory it touched before: end every
	 * connection, wait until danced has let go of them, and fill again to the last
	 * count. Both are counted from the first baseline, per socket of that count.
	 */
	n = g.stalled;
	for (i = 0; i < g.n_clients; i++)
		client_end(&g.clients[i]);
	t = now();
	while (fd_count() > fds + 8 && now() - t < 120)
		loop_once(100);
	pause_for(1.0);
	m = mem_read();
	note("all ended (danced has %d descriptors, %d at the baseline) after %.1f s", fd_count(),
	     fds, now() - t);
	report("kept-after-end", &base, &m, n, "");
	g.stalled = g.failed = g.lost = 0;
	fill(&base, "mid-handshake-again", opt.n_checkpoints - 1);
}

static void run_dane(void)
{
	unsigned int n = opt.checkpoints[0], started = 0, i, waiting;
	char name[300], extra[160];
	struct mem base, m;
	double t;

	/*
	 * Start the resolver: libunbound makes its thread and caches at the first lookup.
	 * These lookups wait like the others; the baseline includes their sockets.
	 */
	for (i = 0; i < WARMUP; i++)
		full_client(opt.warm_name, true, false);
	t = now();
	while (g.handshaking)
		loop_once(100);
	if (g.done != WARMUP || g.ended)
		die("%u of %u warm-up handshakes completed, %u ended: is danced serving "
		    "127.0.0.1:%d with DANE, and the DNS server holding?",
		    g.done, WARMUP, g.ended, ntohs(g.addr.sin_port));
	pause_for(2.0);
	g.done = 0;
	base = mem_read();
	note("warm-up: %u DANE handshakes waiting for DNS; baseline: rss %ld kB, pss %ld kB, "
	     "private %ld kB",
	     WARMUP, base.rss, base.pss, base.priv);
	t = now();
	while (g.done < n) {
		while (started < n && g.handshaking < opt.conc) {
			if (opt.names)
				snprintf(name, sizeof(name), "n%u-%s", started % opt.names,
					 opt.dane_name);
			else
				snprintf(name, sizeof(name), "n%u-%s", started, opt.dane_name);
			full_client(name, false, false);
			started++;
		}
		loop_once(20);
		if (g.failed > 16 || g.ended > 16)
			die("%u handshakes failed and %u lookups ended early (see danced's log)",
			    g.failed, g.ended);
		if (started == n && !g.handshaking && g.done < n)
			die("only %u of %u handshakes completed", g.done, n);
	}
	note("%u DANE handshakes done in %.1f s; their lookups wait", g.done, now() - t);
	pause_for(2.0); /* the last Finished is read, kTLS installed, the lookup asked */
	m = mem_read();
	waiting = g.done - g.ended;
	snprintf(extra, sizeof(extra), " names=%u waiting=%u ended=%u secs=%.1f",
		 opt.names ? opt.names : n, waiting, g.ended, now() - t);
	report("dns-wait", &base, &m, n, extra);
	if (waiting < n)
		note("WARNING: only %u of %u still wait for DNS: the figure is too low", waiting,
		     n);
}

/* ---- dns-sink ----------------------------------------------------------------------- */

/*
 * Hold every lookup under --zone without costing the resolver work. Every query but
 * DNSKEY gets an empty answer at once. DNSKEY queries (the trust anchor's key, which
 * every validation in the zone waits for) are told over UDP to ask over TCP, and there
 * get SERVFAIL after --hold-ms, three times, and then, after --hold-ms again, a CNAME to
 * a new name in the zone, which starts the query afresh. libunbound
 * tries a query five times (3 s each over TCP) and follows 12 CNAMEs: the key stays
 * pending for about 12 x 4 x hold, and every TLSA lookup in the zone waits behind it.
 * A silent server holds nothing: danced's resolver gives a dead server up within
 * seconds (infra-cache-max-rtt 1 s); see bench/README.md.
 */
#define DNS_TYPE_DNSKEY 48
#define DNS_TYPE_TLSA 52
#define SINK_CONNS 256

struct sink_conn {
	int fd;
	uint8_t buf[4096];
	size_t len;
};

struct sink_reply {
	double due;
	int fd;
	size_t len;
	uint8_t msg[600];
};

static struct {
	char zone[256]; /* lower case, no trailing dot */
	struct sink_reply *replies;
	size_t n_replies, cap;
	char (*names)[256]; /* DNSKEY query names seen, and how often */
	unsigned int *tries;
	size_t n_names;
	unsigned long queries, held, udp, tlsa;
} sk;

static volatile sig_atomic_t sink_report;

static void sink_signal(int sig)
{
	(void)sig;
	sink_report = 1;
}

/* The question's name, lower case and dotted, and the offset just past the question. */
static int dns_question(const uint8_t *q, size_t len, char *name, uint16_t *type, size_t *end)
{
	size_t i = 12, n = 0;

	if (len < 17)
		return -1;
	while (i < len && q[i]) {
		size_t l = q[i];

		if (l > 63 || i + 1 + l >= len || n + l + 2 > 255)
			return -1;
		if (n)
			name[n++] = '.';
		for (size_t k = 0; k < l; k++) {
			char ch = q[i + 1 + k];

			name[n++] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
		}
		i += 1 + l;
	}
	name[n] = '\0';
	if (i + 5 > len)
		return -1;
	*type = q[i + 1] << 8 | q[i + 2];
	*end = i + 5;
	return 0;
}

/* Header and question of @q, as an answer: QR, AA, the query's RD, @rcode, no records. */
static size_t dns_answer(const uint8_t *q, size_t qend, uint8_t *out, int rcode)
{
	memcpy(out, q, qend);
	out[2] = 0x80 | 0x04 | (q[2] & 0x01);
	out[3] = rcode;
	memset(out + 4, 0, 8);
	out[5] = 1; /* QDCOUNT */
	return qend;
}

/* A CNAME from the question's name to h<k+1>.ZONE, where the question was h<k>.ZONE. */
static size_t dns_cname(const uint8_t *q, size_t qend, const char *qname, uint8_t *out)
{
	unsigned int hop = 0;
	size_t n = dns_answer(q, qend, out, 0), rd;
	char target[300], *label, *save;

	if (qname[0] == 'h' && strchr(qname, '.') && !strcmp(strchr(qname, '.') + 1, sk.zone))
		hop = atoi(qname + 1);
	snprintf(target, sizeof(target), "h%u.%s", hop + 1, sk.zone);
	out[7] = 1; /* ANCOUNT */
	out[n++] = 0xc0; /* the owner: a pointer to the question's name */
	out[n++] = 12;
	out[n++] = 0, out[n++] = 5; /* CNAME */
	out[n++] = 0, out[n++] = 1; /* IN */
	memset(out + n, 0, 4); /* TTL 0 */
	n += 4;
	rd = n;
	n += 2;
	for (label = strtok_r(target, ".", &save); label; label = strtok_r(NULL, ".", &save)) {
		out[n++] = strlen(label);
		memcpy(out + n, label, strlen(label));
		n += strlen(label);
	}
	out[n++] = 0;
	out[rd] = (n - rd - 2) >> 8;
	out[rd + 1] = (n - rd - 2) & 0xff;
	return n;
}

static void sink_queue(int fd, const uint8_t *msg, size_t len, double delay)
{
	struct sink_reply *r;

	if (sk.n_replies == sk.cap) {
		sk.cap = sk.cap ? 2 * sk.cap : 64;
		sk.replies = realloc(sk.replies, sk.cap * sizeof(*sk.replies));
		if (!sk.replies)
			die("out of memory");
	}
	r = &sk.replies[sk.n_replies++];
	r->due = now() + delay;
	r->fd = fd;
	r->len = len + 2;
	r->msg[0] = len >> 8;
	r->msg[1] = len & 0xff;
	memcpy(r->msg + 2, msg, len);
}

static unsigned int sink_try(const char *name)
{
	size_t i;

	for (i = 0; i < sk.n_names; i++)
		if (!strcmp(sk.names[i], name))
			return ++sk.tries[i];
	sk.names = realloc(sk.names, (i + 1) * sizeof(*sk.names));
	sk.tries = realloc(sk.tries, (i + 1) * sizeof(*sk.tries));
	if (!sk.names || !sk.tries)
		die("out of memory");
	snprintf(sk.names[i], sizeof(sk.names[i]), "%s", name);
	sk.tries[i] = 1;
	sk.n_names++;
	return 1;
}

static void sink_tcp_query(int fd, const uint8_t *q, size_t len, double hold)
{
	uint8_t out[600];
	char name[256];
	uint16_t type;
	size_t end, n;

	if (dns_question(q, len, name, &type, &end) || end > 300)
		return;
	sk.queries++;
	sk.tlsa += type == DNS_TYPE_TLSA;
	if (type != DNS_TYPE_DNSKEY) {
		n = dns_answer(q, end, out, 0);
		sink_queue(fd, out, n, 0);
		return;
	}
	sk.held++;
	/* Three failures, then a new name: the query never runs out of tries. */
	if (sink_try(name) % 4)
		n = dns_answer(q, end, out, 2);
	else
		n = dns_cname(q, end, name, out);
	sink_queue(fd, out, n, hold);
}

static void run_sink(const char *zone, double hold)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sink_conn *conns = calloc(SINK_CONNS, sizeof(*conns));
	struct pollfd pfd[SINK_CONNS + 2];
	int u, t, one = 1, n = 2, i, wait_ms;
	double next;
	size_t k;

	snprintf(sk.zone, sizeof(sk.zone), "%s", zone);
	if (sk.zone[0] && sk.zone[strlen(sk.zone) - 1] == '.')
		sk.zone[strlen(sk.zone) - 1] = '\0';
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(opt.sink_port);
	u = socket(AF_INET, SOCK_DGRAM, 0);
	t = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!conns || u < 0 || t < 0 || bind(u, (struct sockaddr *)&a, sizeof(a)) ||
	    bind(t, (struct sockaddr *)&a, sizeof(a)) || listen(t, 128))
		die("dns-sink on 127.0.0.1:%d: %s", opt.sink_port, strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, sink_signal); /* a line of counts on stdout */
	pfd[0] = (struct pollfd){ .fd = u, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = t, .events = POLLIN };
	for (;;) {
		next = now() + 1;
		for (k = 0; k < sk.n_replies; k++)
			if (sk.replies[k].due < next)
				next = sk.replies[k].due;
		wait_ms = next > now() ? (int)((next - now()) * 1000) + 1 : 0;
		if (poll(pfd, n, wait_ms) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		for (k = 0; k < sk.n_replies;) {
			struct sink_reply *r = &sk.replies[k];

			if (r->due > now()) {
				k++;
				continue;
			}
			/* A failed write: the resolver gave up on that connection. */
			if (r->fd >= 0 && write(r->fd, r->msg, r->len) < 0)
				r->fd = -1;
			*r = sk.replies[--sk.n_replies];
		}
		if (pfd[0].revents) {
			uint8_t q[512], out[600];
			struct sockaddr_in from;
			socklen_t flen = sizeof(from);
			ssize_t len = recvfrom(u, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
			char name[256];
			uint16_t type;
			size_t end;

			if (len > 0 && !dns_question(q, len, name, &type, &end) && end <= 300) {
				size_t m = dns_answer(q, end, out, 0);

				sk.udp++;
				sk.tlsa += type == DNS_TYPE_TLSA;
				/* The key: "truncated", ask over TCP; the rest: empty, at once. */
				if (type == DNS_TYPE_DNSKEY)
					out[2] |= 0x02;
				sendto(u, out, m, 0, (struct sockaddr *)&from, flen);
			}
		}
		if (pfd[1].revents) {
			int fd = accept4(t, NULL, NULL, SOCK_CLOEXEC);

			if (fd >= 0 && n < SINK_CONNS + 2) {
				conns[n - 2].fd = fd;
				conns[n - 2].len = 0;
				pfd[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
			} else if (fd >= 0) {
				close(fd);
			}
		}
		for (i = 2; i < n; i++) {
			struct sink_conn *c = &conns[i - 2];
			ssize_t r;

			if (!pfd[i].revents)
				continue;
			r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
			if (r <= 0) {
				for (k = 0; k < sk.n_replies; k++)
					if (sk.replies[k].fd == c->fd)
						sk.replies[k].fd = -1;
				close(c->fd);
				conns[i - 2] = conns[n - 3];
				pfd[i--] = pfd[--n];
				continue;
			}
			c->len += r;
			/* Length-prefixed messages; a partial one waits for the rest. */
			while (c->len >= 2 && c->len >= 2 + (size_t)(c->buf[0] << 8 | c->buf[1])) {
				size_t ql = c->buf[0] << 8 | c->buf[1];

				sink_tcp_query(c->fd, c->buf + 2, ql, hold);
				memmove(c->buf, c->buf + 2 + ql, c->len - 2 - ql);
				c->len -= 2 + ql;
			}
			if (c->len == sizeof(c->buf))
				c->len = 0; /* not DNS: drop it */
		}
		if (sink_report) {
			sink_report = 0;
			printf("dns-sink: %lu queries over UDP, %lu over TCP, %lu of them TLSA; the key "
			       "held %lu times, now at %zu names\n",
			       sk.udp, sk.queries, sk.tlsa, sk.held, sk.n_names);
			fflush(stdout);
		}
	}
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: inflight hello --pid PID (--handoff SOCK | --backend SOCK | --direct)\n"
		"                --port PORT [--sni NAME] [--counts N1,N2,...] [--window W]\n"
		"                [--again] [--maps] [--heap-file FILE] [--label TEXT]\n"
		"       inflight dane --pid PID --handoff SOCK --sni NAME --cert PEM --key PEM\n"
		"                --dane-name NAME --warm-name NAME [--counts N] [--conc C]\n"
		"                [--names K] [--codepoint CP] [--maps] [--heap-file FILE]\n"
		"                [--label TEXT]\n"
		"       inflight dns-sink --port PORT [--zone ZONE] [--hold-ms MS]\n"
		"hello: N clients stall after the server's first flight; danced's VmRSS, Pss\n"
		"  and Private growth per client at each count. --port is danced's listen port\n"
		"  (--backend), a free local port for our listener (--handoff; 0 picks one), or\n"
		"  any TLS server's (--direct: no libdance; --pid is that server's). --again:\n"
		"  then end them all, say what the server kept, and fill once more to the\n"
		"  last count (memory the server reuses). --maps: with each figure, the\n"
		"  server's mappings that grew by 1 MB or more. --heap-file FILE: the server\n"
		"  runs with malloc_count.so writing to FILE; adds its live heap per client.\n"
		"dane: N clients complete DANE handshakes and wait for their TLSA lookup, each\n"
		"  at its own name n<i>-NAME (with --names K, K names shared round robin).\n"
		"dns-sink: a DNS server for ZONE (default demo.example) on 127.0.0.1:PORT that\n"
		"  keeps every validated lookup in the zone waiting for about 12 x 4 x MS\n"
		"  (default 2200): see bench/README.md.\n");
}

static void parse_counts(const char *s)
{
	char *end;

	opt.n_checkpoints = 0;
	while (*s && opt.n_checkpoints < CHECKPOINTS_MAX) {
		unsigned long v = strtoul(s, &end, 10);

		if (end == s || !v ||
		    (opt.n_checkpoints && v <= opt.checkpoints[opt.n_checkpoints - 1]))
			die("--counts wants increasing numbers, like 1000,4096");
		opt.checkpoints[opt.n_checkpoints++] = v;
		s = *end == ',' ? end + 1 : end;
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "handoff", required_argument, NULL, 'H' },
		{ "backend", required_argument, NULL, 'B' },
		{ "direct", no_argument, NULL, 'd' },
		{ "again", no_argument, NULL, 'a' },
		{ "maps", no_argument, NULL, 'M' },
		{ "heap-file", required_argument, NULL, 'F' },
		{ "port", required_argument, NULL, 'P' },
		{ "sni", required_argument, NULL, 'n' },
		{ "counts", required_argument, NULL, 'N' },
		{ "window", required_argument, NULL, 'w' },
		{ "conc", required_argument, NULL, 'c' },
		{ "cert", required_argument, NULL, 'C' },
		{ "key", required_argument, NULL, 'K' },
		{ "dane-name", required_argument, NULL, 'D' },
		{ "warm-name", required_argument, NULL, 'W' },
		{ "names", required_argument, NULL, 'm' },
		{ "codepoint", required_argument, NULL, 'X' },
		{ "label", required_argument, NULL, 'l' },
		{ "timeout", required_argument, NULL, 't' },
		{ "zone", required_argument, NULL, 'z' },
		{ "hold-ms", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct rlimit rl;
	int o;

	if (argc < 2 || argv[1][0] == '-') {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	opt.mode = argv[1];
	optind = 2;
	parse_counts("1000");
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'p':
			opt.pid = atoi(optarg);
			break;
		case 'H':
			opt.handoff = optarg;
			break;
		case 'B':
			opt.backend = optarg;
			break;
		case 'd':
			opt.direct = true;
			break;
		case 'a':
			opt.again = true;
			break;
		case 'M':
			opt.maps = true;
			break;
		case 'F':
			opt.heap_file = optarg;
			break;
		case 'P':
			opt.port = opt.sink_port = atoi(optarg);
			break;
		case 'n':
			opt.sni = optarg;
			break;
		case 'N':
			parse_counts(optarg);
			break;
		case 'w':
			opt.window = atoi(optarg);
			break;
		case 'c':
			opt.conc = atoi(optarg);
			break;
		case 'C':
			opt.cert = optarg;
			break;
		case 'K':
			opt.key = optarg;
			break;
		case 'D':
			opt.dane_name = optarg;
			break;
		case 'W':
			opt.warm_name = optarg;
			break;
		case 'm':
			opt.names = atoi(optarg);
			break;
		case 'X':
			opt.codepoint = atoi(optarg);
			break;
		case 'l':
			opt.label = optarg;
			break;
		case 't':
			opt.timeout = atoi(optarg);
			break;
		case 'z':
			opt.zone = optarg;
			break;
		case 'o':
			opt.hold_ms = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!strcmp(opt.mode, "dns-sink")) {
		if (opt.sink_port <= 0)
			die("dns-sink needs --port");
		run_sink(opt.zone, opt.hold_ms / 1000.0);
	}
	if (strcmp(opt.mode, "hello") && strcmp(opt.mode, "dane"))
		die("unknown mode '%s' (hello, dane, dns-sink)", opt.mode);
	if (opt.pid <= 0 || (!!opt.handoff + !!opt.backend + opt.direct) != 1 ||
	    (!opt.handoff && opt.port <= 0))
		die("need --pid and one of --handoff, --backend or --direct (with --port)");
	if (!strcmp(opt.mode, "dane") && (!opt.cert || !opt.key || !opt.dane_name ||
					  !opt.warm_name || strlen(opt.dane_name) > 240))
		die("dane needs --cert, --key, --dane-name and --warm-name");
	/* Two descriptors per client in return mode (ours and the accepted one). */
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	g.t0 = now();
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	ctx_init();
	server_init();
	if (!strcmp(opt.mode, "hello"))
		run_hello();
	else
		run_dane();
	return 0;
}
