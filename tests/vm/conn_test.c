// SPDX-License-Identifier: GPL-2.0
/*
 * conn_test.c - what one socket's life in danced must survive (issue 9): floods of idle
 * connections and bursts from one address, a ring that is too small or that fails, and
 * a danced stopped past its handshakes' deadlines.
 *
 * Every test runs the real danced with real peers (OpenSSL clients, libdance servers and
 * backends, raw handoff messages where the test must see every result). Deadlines here
 * are hang guards only: TCG is slow and noisy, so nothing asserts on how long a step took.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/pair.h"
#include "../../agent/lib/dance.h"

/* Both ends of thousands of connections live in this process, and danced inherits it. */
static int raise_nofile(rlim_t n)
{
	struct rlimit rl = { n, n };

	return setrlimit(RLIMIT_NOFILE, &rl) ? -errno : 0;
}

/* danced's whole log (log_contains() reads only its first 64 KiB); free() it. */
static char *log_read(const struct env *e)
{
	FILE *f = fopen(e->log, "r");
	char *buf = NULL;
	size_t n = 0, cap = 0, got;

	if (!f)
		return strdup("");
	do {
		if (cap - n < 65536) {
			cap = cap ? cap * 2 : 1 << 20;
			buf = realloc(buf, cap);
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
	} while (got);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static bool log_has(const struct env *e, const char *needle)
{
	char *log = log_read(e);
	bool has = strstr(log, needle) != NULL;

	free(log);
	return has;
}

/* A client context trusting the test CA; TLS 1.3 only when @tls13. */
static SSL_CTX *client_ctx(const struct env *e, bool tls13)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return NULL;
	if (tls13)
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_load_verify_locations(ctx, e->ca, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

static void set_rcvtimeo(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int local_port(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	if (getsockname(fd, (struct sockaddr *)&a, &len))
		return -1;
	return ntohs(a.sin_port);
}

/* Has the peer ended this connection (FIN, RST)? Idle clients get no bytes otherwise. */
static int count_closed(const int *fds, int n, int timeout_ms)
{
	struct pollfd *p = calloc(n, sizeof(*p));
	int i, closed = 0;

	for (i = 0; i < n; i++) {
		p[i].fd = fds[i];
		p[i].events = POLLIN | POLLRDHUP;
	}
	poll(p, n, timeout_ms);
	for (i = 0; i < n; i++)
		if (p[i].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))
			closed++;
	free(p);
	return closed;
}

/*
 * The length of the accept queue of every listener on 127.0.0.1:@port, summed, from
 * /proc/net/tcp (for a listener, rx_queue is its accept backlog): 0 once danced has
 * taken every connection the kernel completed for it.
 */
static int accept_queue(int port)
{
	char line[512];
	unsigned int lport, st, txq, rxq;
	FILE *f = fopen("/proc/net/tcp", "r");
	int sum = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " %*d: %*x:%x %*x:%*x %x %x:%x", &lport, &st, &txq, &rxq) == 4 &&
		    (int)lport == port && st == 0x0a)
			sum += rxq;
	fclose(f);
	return sum;
}

/* Wait until danced took every queued connection and its closes settled (hang guards). */
static int settle_front_door(int port, const int *fds, int n)
{
	long t0 = ms_now();
	int closed, last = -1;

	while (accept_queue(port) > 0 && ms_now() - t0 < 60000)
		usleep(200000);
	for (;;) {
		usleep(500000);
		closed = count_closed(fds, n, 0);
		if (closed == last || ms_now() - t0 > 90000)
			return closed;
		last = closed;
	}
}

static int raw_request(int ch, uint64_t id, const char *service, int fd)
{
	struct dance_request req;

	memset(&req, 0, sizeof(req));
	dance_hdr_init(&req.hdr, DANCE_MSG_HANDSHAKE);
	req.id = id;
	snprintf(req.service, sizeof(req.service), "%s", service);
	return send_raw_fd(ch, &req, sizeof(req), fd);
}

/* One result, waiting up to @timeout_ms: 0, -EAGAIN, -ECONNRESET (EOF) or -EBADMSG. */
static int raw_result(int ch, struct dance_result *r, int timeout_ms)
{
	struct pollfd p = { .fd = ch, .events = POLLIN };
	const char *why;
	ssize_t n;

	if (poll(&p, 1, timeout_ms) != 1)
		return -EAGAIN;
	n = recv(ch, r, sizeof(*r), MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN ? -EAGAIN : -ECONNRESET;
	if (!n)
		return -ECONNRESET;
	return dance_result_check(r, n, &why) ? -EBADMSG : 0;
}

/* ---- TLS clients in threads --------------------------------------------------------- */

enum outcome {
	OUT_NONE,
	OUT_WORKS, /* handshake, "ping" out, "pong" back through kTLS */
	OUT_ALERT, /* a fatal alert from danced */
	OUT_EOF, /* a bare EOF, no alert */
	OUT_CLOSE_NOTIFY,
	OUT_RESET,
	OUT_HUNG, /* nothing within the hang guard */
	OUT_OTHER,
};

static const char *const outcome_names[] = { "none",	     "works", "alert", "bare EOF",
					     "close_notify", "reset", "hung",  "other" };

struct client {
	SSL_CTX *ctx;
	const char *src; /* source address; NULL: 127.0.0.1 */
	int port;
	bool hold; /* keep the last flight until *go */
	atomic_int *go;
	atomic_bool held; /* the client's handshake is done (its last flight maybe unsent) */
	atomic_bool done;
	int fd, lport;
	SSL *ssl;
	enum outcome out;
	int alert; /* the alert received, for OUT_ALERT */
	char err[160];
	pthread_t thread;
};

/* Sleep for @ms whatever signals arrive meanwhile. */
static void sleep_ms(long ms)
{
	long t0 = ms_now(), left;

	while ((left = ms - (ms_now() - t0)) > 0)
		usleep(left > 100 ? 100000 : left * 1000);
}

static enum outcome classify(struct client *c, long n)
{
	unsigned long e = ERR_peek_last_error();
	int reason = ERR_GET_REASON(e);

	if (n == -EAGAIN || n == -EWOULDBLOCK)
		return OUT_HUNG;
	if (n == -ECONNRESET || n == -EPIPE)
		return OUT_RESET;
	if (n == 0)
		return SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN ? OUT_CLOSE_NOTIFY :
									  OUT_EOF;
	if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
	    reason < SSL_AD_REASON_OFFSET + 256) {
		c->alert = reason - SSL_AD_REASON_OFFSET;
		return OUT_ALERT;
	}
	return OUT_OTHER;
}

static void *client_main(void *arg)
{
	struct client *c = arg;
	char buf[8];
	long n, t0;

	c->fd = c->src ? tcp_connect_from(c->src, c->port) : tcp_connect(c->port);
	if (c->fd < 0) {
		snprintf(c->err, sizeof(c->err), "connect: %s", strerror(-c->fd));
		c->out = OUT_OTHER;
		goto out;
	}
	set_rcvtimeo(c->fd, 60000);
	c->lport = local_port(c->fd);
	c->ssl = pair_mem_ssl(c->ctx);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	SSL_set1_host(c->ssl, "localhost");
	n = peer_handshake(c->ssl, c->fd, c->hold);
	if (n) {
		/* peer_handshake() reports EOF as -ECONNRESET: no alert either way. */
		c->out = classify(c, n);
		snprintf(c->err, sizeof(c->err), "handshake: %ld (%s)", n, pair_ssl_error());
		goto out;
	}
	c->held = true;
	for (t0 = ms_now(); c->hold && !*c->go && ms_now() - t0 < 100000;)
		usleep(10000);
	/* The request, behind the held Finished when there is one: one segment. */
	n = peer_write(c->ssl, c->fd, "ping", 4, false);
	if (!n)
		n = peer_flush(c->ssl, c->fd);
	if (n) {
		c->out = classify(c, n);
		snprintf(c->err, sizeof(c->err), "send: %ld", n);
		goto out;
	}
	n = peer_read(c->ssl, c->fd, buf, sizeof(buf));
	if (n == 4 && !memcmp(buf, "pong", 4)) {
		c->out = OUT_WORKS;
	} else {
		c->out = n > 0 ? OUT_OTHER : classify(c, n);
		snprintf(c->err, sizeof(c->err), "read: %ld (%s)", n, pair_ssl_error());
	}
out:
	c->done = true;
	return NULL;
}

static void client_start(struct client *c)
{
	c->fd = -1;
	pthread_create(&c->thread, NULL, client_main, c);
}

static enum outcome client_join(struct client *c)
{
	pthread_join(c->thread, NULL);
	return c->out;
}

static void client_free(struct client *c)
{
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
}

/* The server's half of a client's exchange: "ping" (maybe in pending) in, "pong" out. */
static int serve_ping(int fd, const struct dance_result *r)
{
	char buf[8];
	size_t got = r->pending_len < 4 ? r->pending_len : 4;
	ssize_t n;

	memcpy(buf, r->pending, got);
	set_rcvtimeo(fd, 30000);
	while (got < 4) {
		do
			n = dance_recv(fd, buf + got, 4 - got, 0);
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			return n ? -errno : -ECONNRESET;
		got += n;
	}
	if (memcmp(buf, "ping", 4))
		return -EPROTO;
	return send(fd, "pong", 4, MSG_NOSIGNAL) == 4 ? 0 : -errno;
}

/* ---- 5a: idle floods, per-address limits and per-service shares --------------------- */

#define FLOOD_MARK 0x4d41524bULL /* the id of the request that ends a flood */

FIXTURE(flood)
{
	struct env e;
	int lfd_a, lfd_b; /* return mode: our listeners of alpha and beta */
	int port_a, port_b; /* where clients of alpha and beta connect */
	char backend_a[160], backend_b[160];
	struct dance *d; /* return mode: alpha's requests, async */
	struct dance *d_b; /* return mode: blocking requests */
	struct dance *b_a, *b_b; /* front door: backends of alpha and beta */
	SSL_CTX *cctx;
	int *cfd, n;
	struct dance_result *r;
	/* return mode: what the flood's requests got */
	int ok, refused, refused_as_wanted;
	char other_reason[DANCE_REASON_MAX + 32];
};

FIXTURE_VARIANT(flood)
{
	bool front;
};

FIXTURE_VARIANT_ADD(flood, return_mode){
	.front = false,
};

FIXTURE_VARIANT_ADD(flood, front_door){
	.front = true,
};

FIXTURE_SETUP(flood)
{
	signal(SIGPIPE, SIG_IGN); /* OpenSSL's socket BIO writes with write(2) */
	self->lfd_a = self->lfd_b = -1;
	self->d = self->d_b = self->b_a = self->b_b = NULL;
	self->cfd = NULL;
	self->n = 0;
	ASSERT_EQ(0, raise_nofile(16384));
	ASSERT_EQ(0, env_init(&self->e));
	self->r = calloc(1, sizeof(*self->r));
	self->cctx = client_ctx(&self->e, false);
	ASSERT_NE(NULL, self->cctx);
	if (variant->front) {
		self->port_a = free_port();
		self->port_b = free_port();
		snprintf(self->backend_a, sizeof(self->backend_a), "%.100s/alpha.sock",
			 self->e.dir);
		snprintf(self->backend_b, sizeof(self->backend_b), "%.100s/beta.sock", self->e.dir);
	} else {
		self->lfd_a = tcp_listen_any(&self->port_a);
		self->lfd_b = tcp_listen_any(&self->port_b);
		ASSERT_LE(0, self->lfd_a);
		ASSERT_LE(0, self->lfd_b);
	}
}

FIXTURE_TEARDOWN(flood)
{
	int i;

	for (i = 0; i < self->n; i++)
		close(self->cfd[i]);
	free(self->cfd);
	dance_close(self->d);
	dance_close(self->d_b);
	dance_close(self->b_a);
	dance_close(self->b_b);
	if (self->lfd_a >= 0)
		close(self->lfd_a);
	if (self->lfd_b >= 0)
		close(self->lfd_b);
	SSL_CTX_free(self->cctx);
	free(self->r);
	env_fini(&self->e);
}

/* Two services, alpha and beta, in the variant's mode; idle handshakes never time out. */
static void flood_start(struct __test_metadata *_metadata, FIXTURE_DATA(flood) * self,
			const FIXTURE_VARIANT(flood) * variant, const char *danced_extra)
{
	char fa[400] = "", fb[400] = "";

	if (variant->front) {
		snprintf(fa, sizeof(fa),
			 "listen = 127.0.0.1:%d\nbackend_socket = %s\nbacklog = 4096\n",
			 self->port_a, self->backend_a);
		snprintf(fb, sizeof(fb), "listen = 127.0.0.1:%d\nbackend_socket = %s\n",
			 self->port_b, self->backend_b);
	}
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\nhandshake_timeout = 300s\n%s"
			      "[service alpha]\ncertificate = %s\nkey = %s\n"
			      "server_names = alpha.localhost\n%s"
			      "[service beta]\ncertificate = %s\nkey = %s\n"
			      "server_names = localhost\n%s",
			      danced_extra, self->e.srv_cert, self->e.srv_key, fa, self->e.srv_cert,
			      self->e.srv_key, fb));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	if (variant->front) {
		/* Both services need a backend: without one danced does not accept at all. */
		ASSERT_EQ(0, wait_connectable(self->backend_b, 0, 10000));
		ASSERT_EQ(0, dance_listen(self->backend_a, 16, &self->b_a));
		ASSERT_EQ(0, dance_listen(self->backend_b, 4, &self->b_b));
		usleep(300000); /* the READY windows are in */
	} else {
		ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
		ASSERT_EQ(0, dance_open(self->e.sock, &self->d_b));
	}
}

/* Return mode: sort one result of the flood. */
static void flood_tally(FIXTURE_DATA(flood) * self, const struct dance_result *r,
			const char *const *want, const char *not_want, bool *mark)
{
	bool as_wanted = r->status == -EBUSY;
	int i;

	if (r->id == FLOOD_MARK) {
		*mark = true;
		return;
	}
	if (!r->status) {
		self->ok++;
		return;
	}
	self->refused++;
	for (i = 0; want[i]; i++)
		as_wanted = as_wanted && strstr(r->reason, want[i]);
	if (not_want && strstr(r->reason, not_want))
		as_wanted = false;
	if (as_wanted)
		self->refused_as_wanted++;
	else if (!self->other_reason[0])
		snprintf(self->other_reason, sizeof(self->other_reason), "status %d: %s", r->status,
			 r->reason);
}

static void flood_drain(FIXTURE_DATA(flood) * self, const char *const *want, const char *not_want,
			bool *mark)
{
	while (!dance_complete(self->d, self->r))
		flood_tally(self, self->r, want, not_want, mark);
}

/*
 * @n idle connections to alpha, round robin over the source addresses @srcs. Return mode:
 * each is handed to danced as it comes; a last request (from 127.0.0.4, for a service
 * that does not exist) is answered at once and, read in order after the others, says
 * danced has decided on all of them. Front door: danced has taken every queued
 * connection and closed those it refuses.
 */
static void flood(struct __test_metadata *_metadata, FIXTURE_DATA(flood) * self,
		  const FIXTURE_VARIANT(flood) * variant, const char *const *srcs, int n,
		  bool connect_first, const char *const *want, const char *not_want)
{
	struct dance_params p = { .service = "alpha" };
	int *sfd = calloc(n, sizeof(int));
	bool mark = false;
	int i, fd, nsrc;
	long t0, quiet;

	for (nsrc = 0; srcs[nsrc]; nsrc++)
		;
	self->cfd = calloc(n, sizeof(int));
	for (i = 0; i < n; i++) {
		fd = tcp_connect_from(srcs[i % nsrc], self->port_a);
		ASSERT_LE(0, fd)
		TH_LOG("connection %d from %s: %s", i, srcs[i % nsrc], strerror(-fd));
		self->cfd[self->n++] = fd;
		if (variant->front)
			continue;
		sfd[i] = accept4(self->lfd_a, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, sfd[i]);
		if (connect_first)
			continue;
		ASSERT_EQ(0, dance_submit(self->d, sfd[i], &p, i + 1));
		flood_drain(self, want, not_want, &mark);
	}
	if (variant->front) {
		settle_front_door(self->port_a, self->cfd, self->n);
		free(sfd);
		return;
	}
	/* A burst: every request leaves at once. */
	for (i = 0; connect_first && i < n; i++)
		ASSERT_EQ(0, dance_submit(self->d, sfd[i], &p, i + 1));
	free(sfd);
	{
		struct dance_params pm = { .service = "no-such-service" };

		/* From an address of its own: no limit of the flood's sources applies. */
		fd = tcp_connect_from("127.0.0.4", self->port_a);
		ASSERT_LE(0, fd);
		close(fd); /* the accepted end is what danced gets */
		fd = accept4(self->lfd_a, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_EQ(0, dance_submit(self->d, fd, &pm, FLOOD_MARK));
	}
	/* Hang guards: the mark within 60 s, then until a second passes without a result. */
	for (t0 = quiet = ms_now(); ms_now() - t0 < 60000;) {
		struct pollfd pfd = { .fd = dance_fd(self->d), .events = POLLIN };
		int before = self->ok + self->refused;

		if (poll(&pfd, 1, 200) > 0)
			flood_drain(self, want, not_want, &mark);
		if (self->ok + self->refused != before)
			quiet = ms_now();
		if (mark && ms_now() - quiet > 1000)
			break;
	}
	ASSERT_TRUE(mark) TH_LOG("danced never answered the request behind the flood");
}

/* A client of @service from 127.0.0.1 completes its handshake and a ping through kTLS. */
static void served(struct __test_metadata *_metadata, FIXTURE_DATA(flood) * self,
		   const FIXTURE_VARIANT(flood) * variant, bool beta)
{
	struct client c = { .ctx = self->cctx, .port = beta ? self->port_b : self->port_a };
	const char *svc = beta ? "beta" : "alpha";
	int fd, ret;

	client_start(&c);
	if (variant->front) {
		struct dance *b = beta ? self->b_b : self->b_a;
		struct pollfd pfd = { .fd = dance_fd(b), .events = POLLIN };
		long t0 = ms_now();

		/* Hang guard; a client refused at the door ends at once. */
		while (poll(&pfd, 1, 100) == 0 && !c.done && ms_now() - t0 < 60000)
			;
		if (pfd.revents & POLLIN) {
			fd = dance_accept(b, self->r);
			EXPECT_LE(0, fd) TH_LOG("%s backend: %s", svc, self->r->reason);
			if (fd >= 0) {
				EXPECT_EQ(0, serve_ping(fd, self->r));
				close(fd);
			}
		}
	} else {
		struct dance_params p = { .service = svc };
		int lfd = beta ? self->lfd_b : self->lfd_a;

		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fd);
		ret = dance_handshake(self->d_b, fd, &p, self->r);
		EXPECT_EQ(0, ret) TH_LOG("%s from 127.0.0.1: %s", svc, self->r->reason);
		if (!ret) {
			EXPECT_EQ(0, serve_ping(fd, self->r));
			close(fd);
		}
	}
	EXPECT_EQ(OUT_WORKS, (int)client_join(&c))
	TH_LOG("the %s client from 127.0.0.1: %s, %s", svc, outcome_names[c.out], c.err);
	client_free(&c);
}

/*
 * 2,000 idle connections from 127.0.0.2 to alpha, with max_handshakes = 1000 and
 * source_max_handshakes at its default (max_handshakes / 8): beta's client from
 * 127.0.0.1 is still served. Refusals say -EBUSY, source_max_handshakes.
 */
TEST_F_TIMEOUT(flood, idle_connections_from_one_address_leave_another_service_served, 120)
{
	static const char *const srcs[] = { "127.0.0.2", NULL };
	static const char *const want[] = { "source_max_handshakes", NULL };
	enum { N = 2000, MAX = 1000, PER_SOURCE = MAX / 8 };
	int open;

	flood_start(_metadata, self, variant, "max_handshakes = 1000\n");
	flood(_metadata, self, variant, srcs, N, false, want, NULL);
	served(_metadata, self, variant, true);
	if (variant->front) {
		open = N - count_closed(self->cfd, self->n, 0);
		EXPECT_GE(PER_SOURCE, open)
		TH_LOG("%d of 127.0.0.2's connections still open", open);
		EXPECT_TRUE(log_has(&self->e, "source_max_handshakes"));
		return;
	}
	EXPECT_EQ(0, self->ok);
	EXPECT_EQ(N - PER_SOURCE, self->refused);
	EXPECT_EQ(self->refused, self->refused_as_wanted)
	TH_LOG("first other refusal: %s", self->other_reason);
}

/*
 * Ten addresses, 40 idle connections each (under source_max_handshakes), fill the whole
 * pool of max_handshakes = 400 for alpha: alpha gets its default share (3/4, with two
 * services), beta's client is still served.
 */
TEST_F_TIMEOUT(flood, idle_flood_from_many_addresses_leaves_another_service_its_share, 120)
{
	static const char *const srcs[] = { "127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13",
					    "127.0.0.14", "127.0.0.15", "127.0.0.16", "127.0.0.17",
					    "127.0.0.18", "127.0.0.19", NULL };
	static const char *const want[] = { "max_handshakes", "alpha", NULL };
	enum { N = 400, MAX = 400, SHARE = MAX * 3 / 4 };
	int open;

	flood_start(_metadata, self, variant, "max_handshakes = 400\n");
	flood(_metadata, self, variant, srcs, N, false, want, "source_");
	served(_metadata, self, variant, true);
	if (variant->front) {
		open = N - count_closed(self->cfd, self->n, 0);
		EXPECT_GE(SHARE, open) TH_LOG("%d of alpha's connections still open", open);
		return;
	}
	EXPECT_EQ(0, self->ok);
	EXPECT_EQ(N - SHARE, self->refused);
	EXPECT_EQ(self->refused, self->refused_as_wanted)
	TH_LOG("first other refusal: %s", self->other_reason);
}

/*
 * source_rate = 2: a burst of 40 new handshakes from 127.0.0.3 is refused beyond what the
 * bucket holds (-EBUSY, source_rate), while a client from 127.0.0.1 is served.
 */
TEST_F_TIMEOUT(flood, burst_beyond_source_rate_is_refused_and_another_address_served, 120)
{
	static const char *const srcs[] = { "127.0.0.3", NULL };
	static const char *const want[] = { "source_rate", NULL };
	enum { N = 40, RATE = 2 };
	int closed;

	flood_start(_metadata, self, variant, "source_rate = 2\n");
	flood(_metadata, self, variant, srcs, N, true, want, NULL);
	if (variant->front) {
		closed = count_closed(self->cfd, self->n, 0);
		EXPECT_LE(1, closed);
		EXPECT_GE(N - RATE, closed) TH_LOG("the bucket's burst was not let in");
		EXPECT_TRUE(log_has(&self->e, "source_rate"));
	} else {
		EXPECT_LE(1, self->refused);
		EXPECT_GE(N - RATE, self->refused) TH_LOG("the bucket's burst was not let in");
		EXPECT_EQ(self->refused, self->refused_as_wanted)
		TH_LOG("first other refusal: %s", self->other_reason);
	}
	served(_metadata, self, variant, false);
}

/* ---- 6: a ring too small, and a ring that fails ----------------------------------------- */

FIXTURE(ring)
{
	struct env e;
	int lfd, port, ch;
	SSL_CTX *cctx;
	struct dance_result *r;
};

FIXTURE_SETUP(ring)
{
	signal(SIGPIPE, SIG_IGN); /* OpenSSL's socket BIO writes with write(2) */
	ASSERT_EQ(0, raise_nofile(4096));
	ASSERT_EQ(0, env_init(&self->e));
	self->ch = -1;
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	self->cctx = client_ctx(&self->e, false);
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(ring)
{
	if (self->ch >= 0)
		close(self->ch);
	close(self->lfd);
	SSL_CTX_free(self->cctx);
	free(self->r);
	env_fini(&self->e);
}

/* One worker, with the debug knob @var = @val in its environment. */
static void ring_start(struct __test_metadata *_metadata, FIXTURE_DATA(ring) * self,
		       const char *var, const char *val)
{
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\nhandshake_timeout = 100s\n"
			      "[service www]\ncertificate = %s\nkey = %s\n",
			      self->e.srv_cert, self->e.srv_key));
	setenv(var, val, 1);
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	unsetenv(var);
	self->ch = raw_channel(self->e.sock);
	ASSERT_LE(0, self->ch);
}

/*
 * The submission and completion queue sizes of danced's rings, from the kernel's fdinfo
 * of each io_uring descriptor ("SqMask: 0x3" for 4 entries).
 */
static int ring_sizes(pid_t pid, unsigned int *sq, unsigned int *cq, int max)
{
	char path[320], target[64], line[128];
	struct dirent *d;
	DIR *dir;
	FILE *f;
	int n = 0;
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((d = readdir(dir)) && n < max) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%s", pid, d->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		if (!strstr(target, "io_uring"))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, d->d_name);
		/*
		 * The kernel prints the ring's masks only when it can take the ring's lock
		 * at once, so a read while the worker is inside io_uring_enter() may lack
		 * them: read again for a while.
		 */
		sq[n] = cq[n] = 0;
		for (int tries = 0; tries < 200 && (!sq[n] || !cq[n]); tries++) {
			f = fopen(path, "r");
			if (!f)
				break;
			while (fgets(line, sizeof(line), f)) {
				sscanf(line, "SqMask: %x", &sq[n]);
				sscanf(line, "CqMask: %x", &cq[n]);
			}
			fclose(f);
			if (!sq[n] || !cq[n])
				usleep(10000);
		}
		sq[n]++;
		cq[n]++;
		n++;
	}
	closedir(dir);
	return n;
}

/* CPU time danced used, in clock ticks (utime + stime of all its threads). */
static long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return ut + st;
}

/* A non-blocking OpenSSL client, driven by poll() with many others. */
struct nbc {
	int fd;
	SSL *ssl;
	bool done, ok;
};

static void nbc_step(struct nbc *c)
{
	int ret = SSL_do_handshake(c->ssl), err;

	if (ret == 1) {
		c->done = c->ok = true;
		return;
	}
	err = SSL_get_error(c->ssl, ret);
	if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
		c->done = true;
}

/*
 * DANCED_DEBUG_RING_ENTRIES=4: 4 submission and 8 completion entries for 100 concurrent
 * handshakes, whose linked operations alone need far more. Every request gets exactly
 * one result, every handshake completes, and danced neither hangs nor spins.
 */
TEST_F_TIMEOUT(ring, tiny_ring_completes_every_handshake_exactly_once, 120)
{
	enum { N = 100 };
	struct nbc *cl = calloc(N, sizeof(*cl));
	struct pollfd *pfd = calloc(N + 1, sizeof(*pfd));
	int *sfd = calloc(N, sizeof(int)), *count = calloc(N + 1, sizeof(int));
	unsigned int sq[8], cq[8];
	int i, k, n, results = 0, ok = 0, bad = 0, dup = 0, clients_ok = 0, ret;
	long t0, cpu0, cpu1;

	ring_start(_metadata, self, "DANCED_DEBUG_RING_ENTRIES", "4");
	/* The knob took: otherwise this test would prove nothing. */
	n = ring_sizes(self->e.pid, sq, cq, 8);
	ASSERT_LT(0, n) TH_LOG("danced has no io_uring descriptor");
	for (i = 0; i < n; i++) {
		EXPECT_EQ(4U, sq[i]) TH_LOG("ring %d: %u submission entries", i, sq[i]);
		EXPECT_EQ(8U, cq[i]) TH_LOG("ring %d: %u completion entries", i, cq[i]);
	}
	for (i = 0; i < N; i++) {
		cl[i].fd = tcp_connect(self->port);
		ASSERT_LE(0, cl[i].fd);
		fcntl(cl[i].fd, F_SETFL, O_NONBLOCK);
		cl[i].ssl = SSL_new(self->cctx);
		SSL_set_fd(cl[i].ssl, cl[i].fd);
		SSL_set_connect_state(cl[i].ssl);
		SSL_set_tlsext_host_name(cl[i].ssl, "localhost");
		sfd[i] = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, sfd[i]);
		ASSERT_EQ(0, raw_request(self->ch, i + 1, "www", sfd[i]));
	}
	/* Hang guard: 90 s for everything. */
	for (t0 = ms_now(); ms_now() - t0 < 90000;) {
		bool all = results >= N;

		for (i = 0, k = 0; i < N; i++) {
			if (!cl[i].done)
				nbc_step(&cl[i]);
			if (!cl[i].done) {
				pfd[k].fd = cl[i].fd;
				pfd[k++].events = POLLIN;
				all = false;
			}
		}
		if (all)
			break;
		pfd[k].fd = self->ch;
		pfd[k++].events = POLLIN;
		poll(pfd, k, 200);
		while ((ret = raw_result(self->ch, self->r, 0)) == 0) {
			results++;
			if (self->r->id < 1 || self->r->id > N) {
				bad++;
				TH_LOG("a result for id %llu", (unsigned long long)self->r->id);
				continue;
			}
			if (count[self->r->id]++)
				dup++;
			if (!self->r->status)
				ok++;
			else
				TH_LOG("request %llu: %s", (unsigned long long)self->r->id,
				       self->r->reason);
		}
		ASSERT_NE(-ECONNRESET, ret) TH_LOG("danced closed the channel");
	}
	for (i = 0; i < N; i++) {
		clients_ok += cl[i].ok;
		EXPECT_EQ(1, count[i + 1]) TH_LOG("request %d got %d results", i + 1, count[i + 1]);
	}
	EXPECT_EQ(N, results);
	EXPECT_EQ(0, dup);
	EXPECT_EQ(0, bad);
	EXPECT_EQ(N, ok);
	EXPECT_EQ(N, clients_ok);
	/* Idle now: a worker spinning on a full queue would burn a CPU. */
	cpu0 = cpu_ticks(self->e.pid);
	sleep_ms(3000);
	cpu1 = cpu_ticks(self->e.pid);
	EXPECT_GT(3 * sysconf(_SC_CLK_TCK) / 2, cpu1 - cpu0)
	TH_LOG("danced used %ld ticks of CPU in 3 s idle", cpu1 - cpu0);
	EXPECT_EQ(-ETIMEDOUT, danced_wait(&self->e, 0)) TH_LOG("danced exited");
	for (i = 0; i < N; i++) {
		SSL_free(cl[i].ssl);
		close(cl[i].fd);
		close(sfd[i]);
	}
	free(cl);
	free(pfd);
	free(sfd);
	free(count);
}

/* Results of requests 1..n, each counted, for exactly-once checks. */
struct tally {
	int n, *count, *status;
	int dup, stray;
	char odd[DANCE_REASON_MAX + 48]; /* the first result that is neither 0 nor -EIO "ring" */
};

static void tally_one(struct tally *t, const struct dance_result *r)
{
	if (r->id < 1 || r->id > (uint64_t)t->n) {
		t->stray++;
		return;
	}
	if (t->count[r->id]++) {
		t->dup++;
		return;
	}
	t->status[r->id] = r->status;
	if (r->status && (r->status != -EIO || !strstr(r->reason, "ring")) && !t->odd[0])
		snprintf(t->odd, sizeof(t->odd), "request %llu: status %d: %s",
			 (unsigned long long)r->id, r->status, r->reason);
}

/*
 * DANCED_DEBUG_RING_FAIL=40: the worker's 40th ring submission fails with -EIO while it
 * holds sockets (100 handed over at once, their clients then shaking hands one after the
 * other, so that the worker goes round its loop many times). Every socket it held gets
 * exactly one result, -EIO with "ring" in the reason (or 0 if it finished before); no
 * client is left hanging; danced exits with status 1.
 */
TEST_F_TIMEOUT(ring, failure_gives_every_held_socket_one_eio_and_danced_exits_1, 120)
{
	enum { N = 100 };
	struct tally t = { .n = N };
	int *cfd = calloc(N, sizeof(int));
	int i, fd, ret, sent = 0, eio = 0, ok = 0, hung = 0, tried = 0;
	long t0;

	t.count = calloc(N + 1, sizeof(int));
	t.status = calloc(N + 1, sizeof(int));
	ring_start(_metadata, self, "DANCED_DEBUG_RING_FAIL", "40");
	for (i = 0; i < N; i++) {
		cfd[i] = tcp_connect(self->port);
		ASSERT_LE(0, cfd[i]);
		set_rcvtimeo(cfd[i], 30000);
		fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fd);
		/* danced's copy is the only one: what it does not close stays open. */
		if (!raw_request(self->ch, i + 1, "www", fd))
			sent++;
		close(fd);
	}
	for (i = 0, t0 = ms_now(); i < N && ms_now() - t0 < 45000; i++) {
		SSL *ssl = SSL_new(self->cctx);

		SSL_set_fd(ssl, cfd[i]);
		SSL_set_tlsext_host_name(ssl, "localhost");
		ERR_clear_error();
		errno = 0;
		ret = SSL_connect(ssl);
		tried++;
		SSL_free(ssl);
		if (ret != 1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			hung++;
			TH_LOG("client %d: no answer within the hang guard", i);
			break;
		}
		while (!raw_result(self->ch, self->r, 0))
			tally_one(&t, self->r);
	}
	TH_LOG("%d clients tried, %d requests sent", tried, sent);
	EXPECT_EQ(1, danced_wait(&self->e, 20000)) TH_LOG("danced's exit status");
	/* Everything danced said before it went. */
	for (t0 = ms_now(); ms_now() - t0 < 10000;) {
		ret = raw_result(self->ch, self->r, 1000);
		if (ret == -ECONNRESET)
			break;
		if (!ret)
			tally_one(&t, self->r);
	}
	for (i = 1; i <= N; i++) {
		ok += t.count[i] && !t.status[i];
		eio += t.count[i] && t.status[i] == -EIO;
	}
	TH_LOG("%d ok before the failure, %d -EIO", ok, eio);
	EXPECT_EQ(0, t.dup);
	EXPECT_EQ(0, t.stray);
	EXPECT_LE(1, eio) TH_LOG("no socket failed with the ring");
	EXPECT_STREQ("", t.odd);
	EXPECT_EQ(0, hung);
	/* No client hangs: each sees the end of its connection. */
	EXPECT_EQ(N, wait_all_closed(cfd, N, 10000));
	for (i = 0; i < N; i++)
		close(cfd[i]);
	free(cfd);
	free(t.count);
	free(t.status);
}

/* ---- 7b: deadlines across a stopped danced --------------------------------------------- */

#define STOP_TIMEOUT_S 5 /* the service's handshake_timeout */

FIXTURE(stopped)
{
	struct env e;
	int port, lfd, bch;
	char backend[160];
	SSL_CTX *cctx;
	struct dance_result *r;
};

FIXTURE_SETUP(stopped)
{
	signal(SIGPIPE, SIG_IGN); /* OpenSSL's socket BIO writes with write(2) */
	ASSERT_EQ(0, env_init(&self->e));
	self->lfd = self->bch = -1;
	snprintf(self->backend, sizeof(self->backend), "%.100s/www.sock", self->e.dir);
	self->cctx = client_ctx(&self->e, true); /* the client's Finished is its last word */
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(stopped)
{
	if (self->e.pid > 0)
		kill(self->e.pid, SIGCONT);
	if (self->bch >= 0)
		close(self->bch);
	if (self->lfd >= 0)
		close(self->lfd);
	SSL_CTX_free(self->cctx);
	free(self->r);
	env_fini(&self->e);
}

static void wait_state(struct __test_metadata *_metadata, pid_t pid, char want)
{
	char path[64], buf[512], *p;
	long t0 = ms_now();
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	for (;;) {
		f = fopen(path, "r");
		ASSERT_NE(NULL, f);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && p[2] == want)
			return;
		ASSERT_GT(10000, ms_now() - t0) TH_LOG("danced never reached state %c", want);
		usleep(10000);
	}
}

static void wait_held(struct __test_metadata *_metadata, struct client *c, int n)
{
	long t0 = ms_now();
	int i;

	for (i = 0; i < n; i++)
		while (!c[i].held && !c[i].done) {
			ASSERT_GT(60000, ms_now() - t0)
			TH_LOG("client %d never got danced's flight", i);
			usleep(10000);
		}
}

struct backend_job {
	int ch;
	atomic_bool stop;
	int received, served;
	char err[160];
};

/* The backend's side: take each socket danced passes on and answer its ping. */
static void *backend_main(void *arg)
{
	struct backend_job *b = arg;
	struct dance_result *r = calloc(1, sizeof(*r));
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = r, .iov_len = sizeof(*r) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct pollfd pfd = { .fd = b->ch, .events = POLLIN };
	struct cmsghdr *cm;
	const char *why;
	ssize_t n;
	int fd;

	for (;;) {
		if (poll(&pfd, 1, 500) <= 0) {
			if (b->stop)
				break;
			continue;
		}
		m.msg_control = cbuf;
		m.msg_controllen = sizeof(cbuf);
		n = recvmsg(b->ch, &m, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			break;
		fd = -1;
		for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		if (dance_result_check(r, n, &why) || r->status || fd < 0) {
			snprintf(b->err, sizeof(b->err), "a bad message: %.100s",
				 r->status ? r->reason : why);
			if (fd >= 0)
				close(fd);
			continue;
		}
		b->received++;
		if (!serve_ping(fd, r))
			b->served++;
		close(fd);
	}
	free(r);
	return NULL;
}

static int send_ready(int ch, uint32_t n)
{
	struct dance_ready rd;

	memset(&rd, 0, sizeof(rd));
	dance_hdr_init(&rd.hdr, DANCE_MSG_READY);
	rd.n = n;
	return send_raw_fd(ch, &rd, sizeof(rd), -1);
}

/* "us=N" of one log line, or -1. */
static long line_us(const char *line, const char *end)
{
	const char *p = strstr(line, " us=");

	return p && p < end ? strtol(p + 4, NULL, 10) : -1;
}

/*
 * Front door, handshake_timeout = 5s. Ten clients finish their handshakes first (the
 * backend's initial credit takes five; the others wait for credit); ten more get
 * danced's flight and hold their Finished. danced is stopped for 12 s; meanwhile the
 * ten send Finished and a request, and, near the end, the backend grants credit. Then
 * danced continues.
 * No handshake whose deadline passed is logged "handshake ok"; "handshake ok" lines are
 * exactly the sockets the backend received; every socket given up is logged with id= and
 * peer=; every client has a working connection or a fatal alert, never a bare EOF.
 */
TEST_F_TIMEOUT(stopped, front_door_deadline_holds_across_sigstop, 120)
{
	enum { EARLY = 10, LATE = 10, N = EARLY + LATE };
	struct client c[N];
	struct backend_job b = { 0 };
	pthread_t bt;
	atomic_int go = 0;
	char *log, *line, *end, pat[64];
	int i, oks = 0, late_oks = 0, works = 0, alerts = 0, named, ok_unreceived = 0;
	int unnamed = 0, anonymous = 0, bad_ends = 0;

	self->port = free_port();
	ASSERT_EQ(0,
		  env_conf(&self->e,
			   "workers = 1\n[service www]\ncertificate = %s\nkey = %s\n"
			   "listen = 127.0.0.1:%d\nbackend_socket = %s\nhandshake_timeout = %ds\n",
			   self->e.srv_cert, self->e.srv_key, self->port, self->backend,
			   STOP_TIMEOUT_S));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, wait_connectable(self->backend, 0, 10000)); /* made after the handoff's */
	self->bch = raw_channel(self->backend);
	ASSERT_LE(0, self->bch);
	ASSERT_EQ(0, send_ready(self->bch, 5));
	for (i = 0; i < 200 && !log_has(&self->e, "ready"); i++)
		usleep(50000);
	memset(c, 0, sizeof(c));
	for (i = 0; i < N; i++) {
		c[i].ctx = self->cctx;
		c[i].port = self->port;
		c[i].hold = i >= EARLY;
		c[i].go = &go;
	}
	/* The early ones one at a time, each well inside its deadline. */
	for (i = 0; i < EARLY; i++) {
		client_start(&c[i]);
		wait_held(_metadata, &c[i], 1);
	}
	sleep_ms(1000); /* danced reads their Finished (not asserted) */
	for (i = EARLY; i < N; i++)
		client_start(&c[i]);
	wait_held(_metadata, &c[EARLY], LATE);
	for (i = EARLY; i < N; i++)
		ASSERT_TRUE(c[i].held) TH_LOG("client %d failed before the stop: %s", i, c[i].err);

	ASSERT_EQ(0, kill(self->e.pid, SIGSTOP));
	wait_state(_metadata, self->e.pid, 'T');
	go = 1; /* the late ones' Finished and request go out */
	/*
	 * Credit comes late in the stop, after danced's one-second tick has fired: on
	 * continuing, the tick is in the completion queue before the credit.
	 */
	sleep_ms((2 * STOP_TIMEOUT_S + 1) * 1000);
	ASSERT_EQ(0, send_ready(self->bch, 30));
	sleep_ms(1000);
	ASSERT_EQ(0, kill(self->e.pid, SIGCONT));

	b.ch = self->bch;
	pthread_create(&bt, NULL, backend_main, &b);
	for (i = 0; i < N; i++) {
		client_join(&c[i]);
		works += c[i].out == OUT_WORKS;
		alerts += c[i].out == OUT_ALERT;
	}
	b.stop = true;
	pthread_join(bt, NULL);
	usleep(500000); /* the last log lines */

	log = log_read(&self->e);
	/* Per client first (the output's tail, which a FAIL shows, has the sums). */
	for (i = 0; i < N; i++) {
		if (c[i].out == OUT_WORKS)
			continue;
		if (c[i].out != OUT_ALERT) {
			bad_ends++;
			TH_LOG("client %d (%s): %s, %s", i, i < EARLY ? "early" : "late",
			       outcome_names[c[i].out], c[i].err);
		}
		/* Given up or failed: its lines name it by id and peer, and none says ok. */
		snprintf(pat, sizeof(pat), "peer=127.0.0.1:%d", c[i].lport);
		named = 0;
		for (line = log; *line; line = *end ? end + 1 : end) {
			const char *at;

			end = strchrnul(line, '\n');
			at = memmem(line, end - line, pat, strlen(pat));
			if (!at || (at[strlen(pat)] >= '0' && at[strlen(pat)] <= '9'))
				continue;
			if (memmem(line, end - line, "handshake ok", 12)) {
				ok_unreceived++;
				TH_LOG("client %d, not served: %.*s", i, (int)(end - line), line);
			} else {
				named += memmem(line, end - line, "id=", 3) != NULL;
			}
		}
		if (!named) {
			unnamed++;
			TH_LOG("client %d (%s) is in no failure line with id= and peer=", i, pat);
		}
	}
	for (line = log; *line; line = *end ? end + 1 : end) {
		long us;

		end = strchrnul(line, '\n');
		/* The line the issue found, without id or peer. */
		if (memmem(line, end - line, "no backend took", 15) &&
		    !memmem(line, end - line, "peer=", 5)) {
			anonymous++;
			TH_LOG("%.*s", (int)(end - line), line);
		}
		if (!memmem(line, end - line, "handshake ok", 12))
			continue;
		oks++;
		us = line_us(line, end);
		if (us > STOP_TIMEOUT_S * 1000000L) {
			late_oks++;
			TH_LOG("logged ok past its deadline: %.*s", (int)(end - line), line);
		}
	}
	TH_LOG("%d clients work, %d got an alert; the backend received %d and served %d; "
	       "%d 'handshake ok' lines",
	       works, alerts, b.received, b.served, oks);
	EXPECT_STREQ("", b.err);
	EXPECT_EQ(0, late_oks) TH_LOG("'handshake ok' past the deadline");
	EXPECT_EQ(b.received, oks) TH_LOG("'handshake ok' lines, sockets received");
	EXPECT_EQ(0, ok_unreceived) TH_LOG("'handshake ok' for a socket no backend served");
	EXPECT_EQ(0, unnamed) TH_LOG("clients not served and not logged with id= and peer=");
	EXPECT_EQ(0, anonymous) TH_LOG("'no backend took' lines without peer=");
	EXPECT_EQ(0, bad_ends) TH_LOG("clients that got neither service nor an alert");
	EXPECT_EQ(N, works + alerts);
	free(log);
	for (i = 0; i < N; i++)
		client_free(&c[i]);
}

/*
 * Return mode, handshake_timeout = 5s: five handshakes get danced's flight; danced is
 * stopped for 10 s while their Finished arrives. Each is reported as a timeout, never
 * ok, and no client is left hanging.
 */
TEST_F_TIMEOUT(stopped, return_mode_late_completion_is_a_timeout_not_ok, 120)
{
	enum { N = 5 };
	struct dance_params p = { .service = "www" };
	struct client c[N];
	struct dance *d;
	atomic_int go = 0;
	int i, sfd[N], results = 0, ret;
	long t0;

	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\n[service www]\ncertificate = %s\nkey = %s\n"
			      "handshake_timeout = %ds\n",
			      self->e.srv_cert, self->e.srv_key, STOP_TIMEOUT_S));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, dance_open(self->e.sock, &d));
	memset(c, 0, sizeof(c));
	for (i = 0; i < N; i++) {
		c[i].ctx = self->cctx;
		c[i].port = self->port;
		c[i].hold = true;
		c[i].go = &go;
		client_start(&c[i]);
		sfd[i] = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, sfd[i]);
		ASSERT_EQ(0, dance_submit(d, sfd[i], &p, i + 1));
	}
	wait_held(_metadata, c, N);
	for (i = 0; i < N; i++)
		ASSERT_TRUE(c[i].held) TH_LOG("client %d failed before the stop: %s", i, c[i].err);
	ASSERT_EQ(0, kill(self->e.pid, SIGSTOP));
	wait_state(_metadata, self->e.pid, 'T');
	go = 1;
	sleep_ms(2 * STOP_TIMEOUT_S * 1000);
	ASSERT_EQ(0, kill(self->e.pid, SIGCONT));
	for (t0 = ms_now(); results < N && ms_now() - t0 < 60000;) {
		struct pollfd pfd = { .fd = dance_fd(d), .events = POLLIN };

		poll(&pfd, 1, 200);
		while ((ret = dance_complete(d, self->r)) == 0) {
			results++;
			EXPECT_EQ(-ETIMEDOUT, self->r->status)
			TH_LOG("request %llu: status %d after %u us: %s",
			       (unsigned long long)self->r->id, self->r->status,
			       self->r->handshake_us, self->r->reason);
			if (!self->r->status && self->r->id >= 1 && self->r->id <= N)
				close(sfd[self->r->id - 1]); /* no server: the client sees its end */
		}
	}
	EXPECT_EQ(N, results);
	for (i = 0; i < N; i++) {
		client_join(&c[i]);
		EXPECT_NE(OUT_HUNG, (int)c[i].out) TH_LOG("client %d", i);
		EXPECT_NE(OUT_WORKS, (int)c[i].out) TH_LOG("client %d", i);
		client_free(&c[i]);
	}
	dance_close(d);
}

DANCED_HARNESS_MAIN
