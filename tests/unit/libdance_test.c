// SPDX-License-Identifier: GPL-2.0
/*
 * libdance_test.c - host unit tests for agent/lib/dance.c against a protocol peer.
 *
 * The test body plays danced's side of the handoff protocol on a real AF_UNIX SEQPACKET
 * socket in a temporary directory, while blocking libdance calls run in a thread. The
 * sockets handed over are real loopback TCP sockets, so "the same socket" is checked by
 * SO_COOKIE, and "closed, not leaked" by fcntl() and by counting /proc/self/fd.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "../harness.h"
#include "../lib/pair.h"
#include "../../agent/lib/dance.h"

#define PEER_WAIT_MS 5000

/* ---- danced's side of the protocol ---------------------------------------------- */

struct peer {
	char dir[64];
	char path[108];
	int lfd; /* listening */
	int c; /* the accepted channel, or -1 */
};

static int peer_listen(struct peer *p)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	strcpy(sun.sun_path, p->path);
	p->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sun, sizeof(sun)) || listen(p->lfd, 16))
		return -errno;
	return 0;
}

static int peer_start(struct peer *p)
{
	strcpy(p->dir, "/tmp/libdance-test.XXXXXX");
	if (!mkdtemp(p->dir))
		return -errno;
	snprintf(p->path, sizeof(p->path), "%s/handoff.sock", p->dir);
	p->c = -1;
	return peer_listen(p);
}

static void peer_hangup(struct peer *p)
{
	if (p->c >= 0)
		close(p->c);
	p->c = -1;
}

/* danced exits: the channel and the listening socket go, the path stays or goes. */
static void peer_stop(struct peer *p, bool unlink_path)
{
	peer_hangup(p);
	if (p->lfd >= 0)
		close(p->lfd);
	p->lfd = -1;
	if (unlink_path)
		unlink(p->path);
}

static int peer_restart(struct peer *p)
{
	peer_stop(p, true);
	return peer_listen(p);
}

static bool readable(int fd, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	return poll(&pfd, 1, ms) == 1;
}

static int peer_accept(struct peer *p)
{
	peer_hangup(p);
	if (!readable(p->lfd, PEER_WAIT_MS))
		return -ETIMEDOUT;
	p->c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
	return p->c < 0 ? -errno : 0;
}

/* One message and its descriptors; -ETIMEDOUT when libdance sends nothing. */
static ssize_t peer_recv(int c, void *buf, size_t size, int *fds, int *nfds)
{
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	ssize_t n;

	*nfds = 0;
	if (!readable(c, PEER_WAIT_MS))
		return -ETIMEDOUT;
	n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
			memcpy(fds + *nfds, CMSG_DATA(cmsg), cmsg->cmsg_len - CMSG_LEN(0));
			*nfds += (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		}
	}
	return n;
}

static int peer_send(int c, const void *buf, size_t len, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cmsg;

	if (nfds) {
		memset(&u, 0, sizeof(u));
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cmsg), fds, nfds * sizeof(int));
	}
	return sendmsg(c, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}

static struct dance_result *result_new(enum dance_msg_type type, uint64_t id, int status,
				       const char *pending)
{
	struct dance_result *r = calloc(1, sizeof(*r));

	dance_hdr_init(&r->hdr, type);
	r->id = id;
	r->status = status;
	r->cookie = 42;
	r->tls_version = 0x0304;
	r->cipher = 0x1301;
	r->pending_len = pending ? strlen(pending) : 0;
	memcpy(r->pending, pending ? pending : "", r->pending_len);
	strcpy(r->reason, status ? "peer said no" : "ok");
	strcpy(r->cipher_name, "TLS_AES_128_GCM_SHA256");
	strcpy(r->sni, "example.com");
	return r;
}

static size_t result_len(const struct dance_result *r)
{
	return DANCE_RESULT_HDR_LEN + r->pending_len;
}

/* Receive a request with its one descriptor; check it and return the descriptor. */
static int peer_take_request(struct __test_metadata *_metadata, int c, struct dance_request *req)
{
	int fds[8], nfds;
	const char *why;
	ssize_t n;

	n = peer_recv(c, req, sizeof(*req), fds, &nfds);
	EXPECT_EQ((ssize_t)sizeof(*req), n);
	EXPECT_EQ(0, dance_request_check(req, n, &why)) TH_LOG("%s", why);
	EXPECT_EQ(1, nfds);
	return nfds == 1 ? fds[0] : -1;
}

static int peer_answer(int c, enum dance_msg_type type, uint64_t id, int status,
		       const char *pending, const int *fds, int nfds)
{
	struct dance_result *r = result_new(type, id, status, pending);
	int ret = peer_send(c, r, result_len(r), fds, nfds);

	free(r);
	return ret;
}

/* ---- the server's side ------------------------------------------------------------ */

static uint64_t cookie(int fd)
{
	uint64_t v = 0;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &v, &len))
		return 0;
	return v;
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static int count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int n = -1; /* the directory's own descriptor */

	if (!dir)
		return -1;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* A blocking libdance call, run in a thread while the test body plays danced. */
struct call {
	struct dance *d;
	int fd;
	struct dance_params p;
	struct dance_result res;
	int ret;
	pthread_t t;
};

static void *call_run(void *arg)
{
	struct call *c = arg;

	c->ret = dance_handshake(c->d, c->fd, &c->p, &c->res);
	return NULL;
}

static struct call *call_new(struct dance *d, int fd, const char *service)
{
	struct call *c = calloc(1, sizeof(*c));

	c->d = d;
	c->fd = fd;
	c->p.service = service;
	c->ret = 1;
	return c;
}

static void call_go(struct call *c)
{
	pthread_create(&c->t, NULL, call_run, c);
}

static struct call *call_start(struct dance *d, int fd, const char *service)
{
	struct call *c = call_new(d, fd, service);

	call_go(c);
	return c;
}

static int call_join(struct call *c)
{
	pthread_join(c->t, NULL);
	return c->ret;
}

FIXTURE(chan)
{
	struct peer p;
	struct dance *d;
	int client, server; /* the TCP connection handed over */
	int fds_at_start;
};

FIXTURE_SETUP(chan)
{
	self->fds_at_start = count_fds();
	ASSERT_EQ(0, peer_start(&self->p));
	ASSERT_EQ(0, pair_tcp(&self->client, &self->server));
	self->d = NULL;
}

FIXTURE_TEARDOWN(chan)
{
	dance_close(self->d);
	peer_stop(&self->p, true);
	rmdir(self->p.dir);
	close(self->client);
	close(self->server);
}

/* Everything the test opened is closed again, and nothing libdance received is left. */
static void expect_no_leak(struct __test_metadata *_metadata, FIXTURE_DATA(chan) * self)
{
	int open_now;

	dance_close(self->d);
	self->d = NULL;
	peer_stop(&self->p, true);
	if (!fd_closed(self->client))
		close(self->client);
	close(self->server);
	self->client = self->server = -1;
	open_now = count_fds();
	EXPECT_EQ(self->fds_at_start, open_now);
}

/* ---- opening ---------------------------------------------------------------------- */

TEST_F(chan, open_refuses_bad_paths)
{
	char longpath[200];
	struct dance *d = (void *)1;
	char file[300];
	int fd;

	EXPECT_EQ(-EINVAL, dance_open(NULL, &d));
	EXPECT_EQ(NULL, d);
	EXPECT_EQ(-EINVAL, dance_open("", &d));
	EXPECT_EQ(-EINVAL, dance_open(self->p.path, NULL));
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	EXPECT_EQ(-ENAMETOOLONG, dance_open(longpath, &d));
	EXPECT_EQ(-ENOENT, dance_open("/nonexistent/danced.sock", &d));
	/* A path that exists but where nothing listens: danced is not running. */
	snprintf(file, sizeof(file), "%s/stale.sock", self->p.dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	close(fd);
	EXPECT_EQ(-ECONNREFUSED, dance_open(file, &d));
	unlink(file);
	EXPECT_EQ(NULL, d);
	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	EXPECT_LE(0, dance_fd(self->d));
	EXPECT_EQ(FD_CLOEXEC, fcntl(dance_fd(self->d), F_GETFD) & FD_CLOEXEC);
	expect_no_leak(_metadata, self);
}

/* ---- dance_handshake ------------------------------------------------------------- */

TEST_F(chan, request_carries_the_same_socket_and_the_fields)
{
	struct dance_request req;
	struct call *c;
	struct stat a, b;
	int got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	c = call_new(self->d, self->client, "web");
	c->p.timeout_ms = 1234;
	call_go(c);
	got = peer_take_request(_metadata, self->p.c, &req);
	ASSERT_LE(0, got);
	EXPECT_NE(got, self->client);
	EXPECT_EQ(cookie(self->client), cookie(got));
	EXPECT_NE((uint64_t)0, cookie(got));
	ASSERT_EQ(0, fstat(got, &a));
	ASSERT_EQ(0, fstat(self->client, &b));
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(DANCE_MAGIC, req.hdr.magic);
	EXPECT_EQ(DANCE_PROTO_VERSION, req.hdr.version);
	EXPECT_EQ(DANCE_MSG_HANDSHAKE, req.hdr.type);
	EXPECT_EQ(0U, req.flags);
	EXPECT_EQ(1234U, req.timeout_ms);
	EXPECT_NE(0U, req.id);
	EXPECT_STREQ("web", req.service);
	EXPECT_STREQ("", req.peer_name);
	EXPECT_STREQ("", req.alpn);
	/* danced keeps no socket after answering. */
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, 0, "GET / HTTP/1.1\r\n", NULL,
				 0));
	ASSERT_EQ(0, call_join(c));
	EXPECT_EQ(0, c->res.status);
	EXPECT_EQ(req.id, c->res.id);
	EXPECT_EQ(0U, c->res.flags & DANCE_RES_FD_KEPT);
	EXPECT_EQ(0x0304, c->res.tls_version);
	EXPECT_STREQ("TLS_AES_128_GCM_SHA256", c->res.cipher_name);
	EXPECT_STREQ("example.com", c->res.sni);
	ASSERT_EQ(16U, c->res.pending_len);
	EXPECT_EQ(0, memcmp("GET / HTTP/1.1\r\n", c->res.pending, 16));
	/* The caller's descriptor is still the socket, and still works. */
	EXPECT_FALSE(fd_closed(self->client));
	EXPECT_EQ(5, write(self->client, "hello", 5));
	free(c);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, client_role_request_carries_names_and_fresh_ids)
{
	struct dance_request req;
	uint64_t first_id;
	struct call *c;
	char name[DANCE_HOST_MAX];
	int got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	/* The longest name that fits, exactly. */
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	c = call_new(self->d, self->client, NULL);
	c->p.client = 1;
	c->p.peer_name = name;
	c->p.alpn = "h2,http/1.1";
	call_go(c);
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	EXPECT_EQ(DANCE_REQ_CLIENT, req.flags);
	EXPECT_STREQ(name, req.peer_name);
	EXPECT_STREQ("h2,http/1.1", req.alpn);
	EXPECT_STREQ("", req.service);
	EXPECT_EQ(0U, req.timeout_ms);
	first_id = req.id;
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, 0, NULL, NULL, 0));
	ASSERT_EQ(0, call_join(c));
	EXPECT_EQ(0U, c->res.pending_len);
	free(c);

	/* Same channel, next request: a new id. */
	c = call_start(self->d, self->client, "svc");
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	EXPECT_NE(first_id, req.id);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, 0, NULL, NULL, 0));
	EXPECT_EQ(0, call_join(c));
	free(c);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, too_long_names_send_nothing_and_keep_the_fd)
{
	struct dance_params p = { 0 };
	static char big[DANCE_ALPN_MAX + 1];
	struct dance_result *res = calloc(1, sizeof(*res));
	char buf[16];
	int i;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	for (i = 0; i < 3; i++) {
		memset(&p, 0, sizeof(p));
		p.client = 1;
		p.peer_name = "example.com";
		/* Each field one byte longer than fits (its NUL included). */
		memset(big, 'A', sizeof(big) - 1);
		if (i == 0) {
			big[DANCE_NAME_MAX] = '\0';
			p.service = big;
		} else if (i == 1) {
			big[DANCE_HOST_MAX] = '\0';
			p.peer_name = big;
		} else {
			big[DANCE_ALPN_MAX] = '\0';
			p.alpn = big;
		}
		EXPECT_EQ(-ENAMETOOLONG, dance_handshake(self->d, self->client, &p, res));
		EXPECT_EQ(-ENAMETOOLONG, res->status);
		EXPECT_NE(0U, res->flags & DANCE_RES_FD_KEPT);
		EXPECT_NE(0, res->reason[0]);
		EXPECT_FALSE(fd_closed(self->client));
		EXPECT_EQ(-ENAMETOOLONG, dance_submit(self->d, self->client, &p, 9));
		EXPECT_FALSE(fd_closed(self->client));
	}
	/* Nothing reached danced. */
	EXPECT_EQ(-1, recv(self->p.c, buf, sizeof(buf), MSG_DONTWAIT));
	EXPECT_EQ(EAGAIN, errno);
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, argument_errors_keep_the_fd)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .client = 1 };
	struct dance *backend;
	char buf[16];
	int closed;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	/* A client role needs the name to verify. */
	EXPECT_EQ(-EINVAL, dance_handshake(self->d, self->client, &p, res));
	EXPECT_NE(0U, res->flags & DANCE_RES_FD_KEPT);
	EXPECT_EQ(-EINVAL, dance_submit(self->d, self->client, &p, 1));
	p.client = 0;
	EXPECT_EQ(-EINVAL, dance_handshake(NULL, self->client, &p, res));
	EXPECT_EQ(-EINVAL, dance_handshake(self->d, self->client, NULL, res));
	EXPECT_EQ(-EINVAL, dance_handshake(self->d, self->client, &p, NULL));
	EXPECT_EQ(-EBADF, dance_handshake(self->d, -1, &p, res));
	EXPECT_NE(0U, res->flags & DANCE_RES_FD_KEPT);
	closed = dup(self->server);
	close(closed);
	EXPECT_EQ(-EBADF, dance_handshake(self->d, closed, &p, res));
	EXPECT_EQ(-EBADF, dance_submit(self->d, closed, &p, 1));
	EXPECT_EQ(-EINVAL, dance_submit(self->d, self->client, &p, 0));
	EXPECT_EQ(-EINVAL, dance_complete(NULL, res));
	EXPECT_EQ(-EINVAL, dance_accept(self->d, res));
	EXPECT_EQ(-EINVAL, dance_fd(NULL));
	/* A backend handle is not for return mode. */
	ASSERT_EQ(0, dance_listen(self->p.path, 1, &backend));
	EXPECT_EQ(-EINVAL, dance_handshake(backend, self->client, &p, res));
	EXPECT_EQ(-EINVAL, dance_submit(backend, self->client, &p, 1));
	EXPECT_EQ(-EINVAL, dance_complete(backend, res));
	dance_close(backend);
	EXPECT_FALSE(fd_closed(self->client));
	EXPECT_EQ(-1, recv(self->p.c, buf, sizeof(buf), MSG_DONTWAIT));
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, failure_status_closes_the_fd)
{
	struct dance_request req;
	struct dance_result *r;
	struct call *c;
	int got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	c = call_start(self->d, self->client, "web");
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	r = result_new(DANCE_MSG_RESULT, req.id, -ETIMEDOUT, NULL);
	strcpy(r->reason, "handshake timed out after 10000 ms");
	/* The bit libdance uses for itself cannot come from danced. */
	r->flags = DANCE_RES_FD_KEPT;
	ASSERT_EQ(0, peer_send(self->p.c, r, result_len(r), NULL, 0));
	free(r);
	EXPECT_EQ(-ETIMEDOUT, call_join(c));
	EXPECT_EQ(-ETIMEDOUT, c->res.status);
	EXPECT_STREQ("handshake timed out after 10000 ms", c->res.reason);
	EXPECT_EQ(0U, c->res.flags & DANCE_RES_FD_KEPT);
	EXPECT_TRUE(fd_closed(self->client));
	free(c);

	/* A refusal with an argument errno from danced still closes: FD_KEPT tells them apart. */
	/* libdance closed the client end; a new connection for the next call. */
	close(self->server);
	ASSERT_EQ(0, pair_tcp(&self->client, &self->server));
	c = call_start(self->d, self->client, "nosuch");
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, -EINVAL, NULL, NULL, 0));
	EXPECT_EQ(-EINVAL, call_join(c));
	EXPECT_EQ(0U, c->res.flags & DANCE_RES_FD_KEPT);
	EXPECT_TRUE(fd_closed(self->client));
	free(c);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, peer_close_after_request_is_connreset_and_next_call_reconnects)
{
	struct dance_request req;
	struct call *c;
	int got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	c = call_start(self->d, self->client, "web");
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	/* danced dies mid-handshake and comes back. */
	ASSERT_EQ(0, peer_restart(&self->p));
	EXPECT_EQ(-ECONNRESET, call_join(c));
	EXPECT_EQ(-ECONNRESET, c->res.status);
	EXPECT_EQ(0U, c->res.flags & DANCE_RES_FD_KEPT);
	EXPECT_TRUE(fd_closed(self->client));
	EXPECT_EQ(-1, dance_fd(self->d));
	free(c);

	/* libdance closed the client end; a new connection for the next call. */
	close(self->server);
	ASSERT_EQ(0, pair_tcp(&self->client, &self->server));
	c = call_start(self->d, self->client, "web");
	ASSERT_EQ(0, peer_accept(&self->p));
	got = peer_take_request(_metadata, self->p.c, &req);
	EXPECT_EQ(cookie(self->client), cookie(got));
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, 0, NULL, NULL, 0));
	EXPECT_EQ(0, call_join(c));
	EXPECT_FALSE(fd_closed(self->client));
	free(c);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, channel_dead_before_the_call_is_replaced_and_the_request_resent)
{
	struct dance_request req;
	char buf[16];
	struct call *c;
	int got, old;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	old = dance_fd(self->d);
	/* danced restarts between two calls: the old channel is dead but looks open. */
	ASSERT_EQ(0, peer_restart(&self->p));
	c = call_start(self->d, self->client, "web");
	ASSERT_EQ(0, peer_accept(&self->p));
	got = peer_take_request(_metadata, self->p.c, &req);
	EXPECT_EQ(cookie(self->client), cookie(got));
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, 0, "x", NULL, 0));
	EXPECT_EQ(0, call_join(c));
	EXPECT_EQ(1U, c->res.pending_len);
	EXPECT_FALSE(fd_closed(self->client));
	/* Exactly one request arrived, on the new channel. */
	EXPECT_EQ(-1, recv(self->p.c, buf, sizeof(buf), MSG_DONTWAIT));
	EXPECT_LE(0, dance_fd(self->d));
	(void)old;
	free(c);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, reconnect_failure_closes_the_fd)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	int c2, s2;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	/* danced is gone, its socket file left behind. */
	peer_stop(&self->p, false);
	EXPECT_EQ(-ECONNREFUSED, dance_handshake(self->d, self->client, &p, res));
	EXPECT_EQ(0U, res->flags & DANCE_RES_FD_KEPT);
	EXPECT_NE(0, res->reason[0]);
	EXPECT_TRUE(fd_closed(self->client));
	/* ... and then its socket file too. */
	unlink(self->p.path);
	ASSERT_EQ(0, pair_tcp(&c2, &s2));
	EXPECT_EQ(-ENOENT, dance_handshake(self->d, c2, &p, res));
	EXPECT_TRUE(fd_closed(c2));
	close(s2);
	free(res);
	expect_no_leak(_metadata, self);
}

/* Raw answers that are not a valid result for the request; each must fail cleanly. */
enum bad_answer {
	BAD_TRUNCATED,
	BAD_MAGIC,
	BAD_VERSION,
	BAD_TYPE_ACCEPTED,
	BAD_PENDING_LEN,
	BAD_OVERSIZED,
	BAD_WITH_FD,
	BAD_WITH_TWO_FDS,
	BAD_ID0_SUCCESS,
	BAD_COUNT,
};

static int send_bad_answer(int c, enum bad_answer kind, uint64_t id, int extra_fd)
{
	struct dance_result *r = result_new(DANCE_MSG_RESULT, id, 0, "abc");
	size_t len = result_len(r);
	int fds[2] = { extra_fd, extra_fd }, nfds = 0, ret;
	uint8_t *big;

	switch (kind) {
	case BAD_TRUNCATED:
		len = 10;
		break;
	case BAD_MAGIC:
		r->hdr.magic = 0x12345678;
		break;
	case BAD_VERSION:
		r->hdr.version = DANCE_PROTO_VERSION + 1;
		break;
	case BAD_TYPE_ACCEPTED:
		r->hdr.type = DANCE_MSG_ACCEPTED;
		break;
	case BAD_PENDING_LEN:
		r->pending_len = 4;
		break;
	case BAD_WITH_FD:
		nfds = 1;
		break;
	case BAD_WITH_TWO_FDS:
		nfds = 2;
		break;
	case BAD_ID0_SUCCESS:
		r->id = 0;
		break;
	case BAD_OVERSIZED:
		big = calloc(1, sizeof(*r) + 100);
		memcpy(big, r, sizeof(*r));
		ret = peer_send(c, big, sizeof(*r) + 100, NULL, 0);
		free(big);
		free(r);
		return ret;
	case BAD_COUNT:
		break;
	}
	ret = peer_send(c, r, len, fds, nfds);
	free(r);
	return ret;
}

TEST_F(chan, malformed_results_fail_without_leaks)
{
	static const int want[BAD_COUNT] = {
		[BAD_TRUNCATED] = -EBADMSG,	  [BAD_MAGIC] = -EPROTO,
		[BAD_VERSION] = -EPROTONOSUPPORT, [BAD_TYPE_ACCEPTED] = -EPROTO,
		[BAD_PENDING_LEN] = -EBADMSG,	  [BAD_OVERSIZED] = -EMSGSIZE,
		[BAD_WITH_FD] = -EPROTO,	  [BAD_WITH_TWO_FDS] = -EPROTO,
		[BAD_ID0_SUCCESS] = -EPROTO,
	};
	struct dance_request req;
	int kind, got, pipefd[2];
	struct call *c;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	for (kind = 0; kind < BAD_COUNT; kind++) {
		if (kind) {
			close(self->server);
			ASSERT_EQ(0, pair_tcp(&self->client, &self->server));
		}
		c = call_start(self->d, self->client, "web");
		/* Each failure drops the channel, so every call comes on a new one. */
		ASSERT_EQ(0, peer_accept(&self->p));
		got = peer_take_request(_metadata, self->p.c, &req);
		close(got);
		ASSERT_EQ(0, send_bad_answer(self->p.c, kind, req.id, pipefd[0]));
		EXPECT_EQ(want[kind], call_join(c)) TH_LOG("kind %d: %s", kind, c->res.reason);
		EXPECT_EQ(want[kind], c->res.status);
		EXPECT_NE(0, c->res.reason[0]);
		EXPECT_TRUE(fd_closed(self->client)) TH_LOG("kind %d", kind);
		EXPECT_EQ(-1, dance_fd(self->d));
		free(c);
	}
	close(pipefd[0]);
	close(pipefd[1]);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, answers_for_other_ids_are_skipped)
{
	struct dance_request req;
	struct call *c;
	int got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	c = call_start(self->d, self->client, "web");
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id + 1000, -EIO, NULL, NULL, 0));
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, req.id, 0, "ok", NULL, 0));
	EXPECT_EQ(0, call_join(c));
	EXPECT_EQ(req.id, c->res.id);
	EXPECT_FALSE(fd_closed(self->client));
	free(c);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, id_zero_answers_an_unreadable_request)
{
	struct dance_request req;
	struct call *c;
	int got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	c = call_start(self->d, self->client, "web");
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 0, -EPROTONOSUPPORT, NULL, NULL, 0));
	EXPECT_EQ(-EPROTONOSUPPORT, call_join(c));
	EXPECT_TRUE(fd_closed(self->client));
	free(c);
	expect_no_leak(_metadata, self);
}

/* ---- async ------------------------------------------------------------------------ */

static int complete_wait(struct dance *d, struct dance_result *res)
{
	int ret = dance_complete(d, res);

	if (ret == -EAGAIN && readable(dance_fd(d), PEER_WAIT_MS))
		ret = dance_complete(d, res);
	return ret;
}

TEST_F(chan, async_completes_out_of_order)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	int cl[3], sv[3], got[3], i;
	struct dance_request req;
	uint64_t ids[3];

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, pair_tcp(&cl[i], &sv[i]));
		ASSERT_EQ(0, dance_submit(self->d, cl[i], &p, 11 + i));
	}
	EXPECT_EQ(-EAGAIN, dance_complete(self->d, res));
	for (i = 0; i < 3; i++) {
		got[i] = peer_take_request(_metadata, self->p.c, &req);
		ids[i] = req.id;
		EXPECT_EQ(cookie(cl[i]), cookie(got[i]));
		close(got[i]);
	}
	EXPECT_EQ(11U, ids[0]);
	EXPECT_EQ(12U, ids[1]);
	EXPECT_EQ(13U, ids[2]);
	/* danced finishes them in its own order. */
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 13, 0, "thirteen", NULL, 0));
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 11, -ECONNABORTED, NULL, NULL, 0));
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 12, 0, NULL, NULL, 0));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(13U, res->id);
	EXPECT_EQ(0, res->status);
	EXPECT_EQ(8U, res->pending_len);
	EXPECT_FALSE(fd_closed(cl[2]));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(11U, res->id);
	EXPECT_EQ(-ECONNABORTED, res->status);
	EXPECT_TRUE(fd_closed(cl[0]));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(12U, res->id);
	EXPECT_EQ(0, res->status);
	EXPECT_FALSE(fd_closed(cl[1]));
	EXPECT_EQ(-EAGAIN, dance_complete(self->d, res));
	/* Completed: blocking calls are allowed again. */
	close(cl[1]);
	close(cl[2]);
	for (i = 0; i < 3; i++)
		close(sv[i]);
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, async_refuses_duplicate_ids_and_blocking_calls_meanwhile)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	struct dance_request req;
	int c2, s2, got;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	ASSERT_EQ(0, pair_tcp(&c2, &s2));
	ASSERT_EQ(0, dance_submit(self->d, self->client, &p, 5));
	EXPECT_EQ(-EEXIST, dance_submit(self->d, c2, &p, 5));
	EXPECT_FALSE(fd_closed(c2));
	EXPECT_EQ(-EBUSY, dance_handshake(self->d, c2, &p, res));
	EXPECT_NE(0U, res->flags & DANCE_RES_FD_KEPT);
	EXPECT_FALSE(fd_closed(c2));
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 5, 0, NULL, NULL, 0));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(5U, res->id);
	/* Nothing in flight any more: the id is free and blocking calls work. */
	ASSERT_EQ(0, dance_submit(self->d, c2, &p, 5));
	got = peer_take_request(_metadata, self->p.c, &req);
	close(got);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 5, -EIO, NULL, NULL, 0));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(-EIO, res->status);
	EXPECT_TRUE(fd_closed(c2));
	close(s2);
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, async_channel_death_reports_each_request_once)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	int cl[4], sv[4], i, seen = 0, ret;
	struct dance_request req;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, pair_tcp(&cl[i], &sv[i]));
		ASSERT_EQ(0, dance_submit(self->d, cl[i], &p, 100 + i));
		close(peer_take_request(_metadata, self->p.c, &req));
	}
	ASSERT_EQ(0, peer_restart(&self->p));
	ASSERT_TRUE(readable(dance_fd(self->d), PEER_WAIT_MS));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, dance_complete(self->d, res));
		EXPECT_EQ(-ECONNRESET, res->status);
		ASSERT_TRUE(res->id >= 100 && res->id < 103);
		EXPECT_EQ(0, seen & 1 << (res->id - 100))
		TH_LOG("id %llu twice", (unsigned long long)res->id);
		seen |= 1 << (res->id - 100);
		EXPECT_TRUE(fd_closed(cl[res->id - 100]));
		/* Still readable, so a caller that completes one per wakeup drains them all. */
		if (i < 2)
			EXPECT_TRUE(readable(dance_fd(self->d), 0));
	}
	EXPECT_EQ(7, seen);
	EXPECT_EQ(-ECONNRESET, dance_complete(self->d, res));
	EXPECT_EQ(-EAGAIN, dance_complete(self->d, res));
	EXPECT_EQ(-1, dance_fd(self->d));

	/* The next submit reconnects. */
	ASSERT_EQ(0, pair_tcp(&cl[3], &sv[3]));
	ASSERT_EQ(0, dance_submit(self->d, cl[3], &p, 100));
	ASSERT_EQ(0, peer_accept(&self->p));
	close(peer_take_request(_metadata, self->p.c, &req));
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 100, 0, NULL, NULL, 0));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(0, res->status);
	ret = dance_complete(self->d, res);
	EXPECT_EQ(-EAGAIN, ret);
	close(cl[3]);
	for (i = 0; i < 4; i++)
		close(sv[i]);
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, async_submit_on_a_dead_channel_waits_for_the_lost_reports)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	struct dance_request req;
	int c2, s2, c3, s3;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	ASSERT_EQ(0, dance_submit(self->d, self->client, &p, 1));
	close(peer_take_request(_metadata, self->p.c, &req));
	ASSERT_EQ(0, peer_restart(&self->p));
	/* Request 1 is still owed a report: no new channel yet, and this socket is closed. */
	ASSERT_EQ(0, pair_tcp(&c2, &s2));
	EXPECT_EQ(-ECONNRESET, dance_submit(self->d, c2, &p, 2));
	EXPECT_TRUE(fd_closed(c2));
	EXPECT_FALSE(readable(self->p.lfd, 0));
	EXPECT_TRUE(readable(dance_fd(self->d), 0));
	ASSERT_EQ(0, dance_complete(self->d, res));
	EXPECT_EQ(1U, res->id);
	EXPECT_EQ(-ECONNRESET, res->status);
	EXPECT_TRUE(fd_closed(self->client));
	EXPECT_EQ(-ECONNRESET, dance_complete(self->d, res));
	/* Reported: the next submit connects to the new danced. */
	ASSERT_EQ(0, pair_tcp(&c3, &s3));
	ASSERT_EQ(0, dance_submit(self->d, c3, &p, 3));
	ASSERT_EQ(0, peer_accept(&self->p));
	close(peer_take_request(_metadata, self->p.c, &req));
	EXPECT_EQ(3U, req.id);
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 3, 0, NULL, NULL, 0));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(3U, res->id);
	EXPECT_EQ(0, res->status);
	close(c3);
	close(s2);
	close(s3);
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, async_malformed_result_loses_the_channel)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	struct dance_request req;
	int c2, s2;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	ASSERT_EQ(0, pair_tcp(&c2, &s2));
	ASSERT_EQ(0, dance_submit(self->d, self->client, &p, 1));
	ASSERT_EQ(0, dance_submit(self->d, c2, &p, 2));
	close(peer_take_request(_metadata, self->p.c, &req));
	close(peer_take_request(_metadata, self->p.c, &req));
	ASSERT_EQ(0, send_bad_answer(self->p.c, BAD_MAGIC, 1, -1));
	ASSERT_EQ(0, complete_wait(self->d, res));
	EXPECT_EQ(-ECONNRESET, res->status);
	EXPECT_NE(NULL, strstr(res->reason, "bad magic")) TH_LOG("%s", res->reason);
	/* danced sees the channel end at once, and lets go of the sockets ... */
	EXPECT_TRUE(readable(self->p.c, 0));
	EXPECT_EQ(0, recv(self->p.c, &req, sizeof(req), MSG_DONTWAIT));
	/* ... and the channel polls readable until the last request has been reported. */
	EXPECT_TRUE(readable(dance_fd(self->d), 0));
	ASSERT_EQ(0, dance_complete(self->d, res));
	EXPECT_EQ(-ECONNRESET, res->status);
	EXPECT_EQ(-EPROTO, dance_complete(self->d, res));
	EXPECT_TRUE(fd_closed(self->client));
	EXPECT_TRUE(fd_closed(c2));
	close(s2);
	free(res);
	expect_no_leak(_metadata, self);
}

/* Random 64-bit ids, so that the in-flight table sees collisions and long probe runs. */
static uint64_t many_id(int i)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 29;
	return x | 1;
}

static int many_index(uint64_t id, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (many_id(i) == id)
			return i;
	return -1;
}

TEST_F(chan, async_many_in_flight_each_completes_once)
{
	/* Each result costs the socket about 4 KiB of buffer; 25 stay well under 208 KiB. */
	enum { N = 600, BATCH = 25 };
	struct dance_result *res = calloc(1, sizeof(*res));
	struct dance_params p = { .service = "web" };
	static int fds[N], order[N];
	static bool seen[N];
	struct dance_request req;
	int i, j, k = 0, round;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	/* Odd ones from the top, then even ones from the bottom. */
	for (i = N - 1; i >= 0; i -= 2)
		order[k++] = i;
	for (i = 0; i < N; i += 2)
		order[k++] = i;
	/*
	 * Two rounds, half in flight each, so that the second fills slots the first
	 * freed. In batches: danced's sends would block on a full channel otherwise.
	 */
	for (round = 0; round < 2; round++) {
		for (i = round * N / 2; i < (round + 1) * N / 2; i++) {
			fds[order[i]] = dup(self->client);
			ASSERT_LE(0, fds[order[i]]);
			ASSERT_EQ(0, dance_submit(self->d, fds[order[i]], &p, many_id(order[i])));
			close(peer_take_request(_metadata, self->p.c, &req));
			ASSERT_EQ(many_id(order[i]), req.id);
		}
		for (k = round * N / 2; k < (round + 1) * N / 2; k += BATCH) {
			/* Answer each batch in the opposite order. */
			for (j = k + BATCH - 1; j >= k; j--)
				ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT,
							 many_id(order[j]), order[j] % 3 ? 0 : -EIO,
							 NULL, NULL, 0));
			for (j = k + BATCH - 1; j >= k; j--) {
				ASSERT_EQ(0, complete_wait(self->d, res));
				i = many_index(res->id, N);
				ASSERT_EQ(order[j], i);
				EXPECT_FALSE(seen[i]);
				seen[i] = true;
				EXPECT_EQ(i % 3 ? 0 : -EIO, res->status);
				if (res->status) {
					EXPECT_TRUE(fd_closed(fds[i]));
				} else {
					EXPECT_FALSE(fd_closed(fds[i]));
					close(fds[i]);
				}
			}
		}
	}
	EXPECT_EQ(-EAGAIN, dance_complete(self->d, res));
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, close_with_requests_in_flight_closes_their_fds)
{
	struct dance_params p = { .service = "web" };
	struct dance_request req;
	int c2, s2;

	ASSERT_EQ(0, dance_open(self->p.path, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	ASSERT_EQ(0, pair_tcp(&c2, &s2));
	ASSERT_EQ(0, dance_submit(self->d, self->client, &p, 1));
	ASSERT_EQ(0, dance_submit(self->d, c2, &p, 2));
	close(peer_take_request(_metadata, self->p.c, &req));
	close(peer_take_request(_metadata, self->p.c, &req));
	dance_close(self->d);
	self->d = NULL;
	EXPECT_TRUE(fd_closed(self->client));
	EXPECT_TRUE(fd_closed(c2));
	close(s2);
	expect_no_leak(_metadata, self);
}

/* ---- front door ------------------------------------------------------------------- */

static uint32_t peer_take_ready(struct __test_metadata *_metadata, int c)
{
	struct dance_ready r;
	const char *why;
	int fds[8], nfds;
	ssize_t n;

	n = peer_recv(c, &r, sizeof(r), fds, &nfds);
	EXPECT_EQ((ssize_t)sizeof(r), n);
	EXPECT_EQ(0, nfds);
	if (n != sizeof(r))
		return 0;
	EXPECT_EQ(0, dance_ready_check(&r, n, &why)) TH_LOG("%s", why);
	return r.n;
}

TEST_F(chan, listen_sends_the_window)
{
	struct dance *d2;

	ASSERT_EQ(0, dance_listen(self->p.path, 0, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	EXPECT_EQ(16U, peer_take_ready(_metadata, self->p.c));
	ASSERT_EQ(0, dance_listen(self->p.path, 5, &d2));
	ASSERT_EQ(0, peer_accept(&self->p));
	EXPECT_EQ(5U, peer_take_ready(_metadata, self->p.c));
	dance_close(d2);
	EXPECT_EQ(-ENOENT, dance_listen("/nonexistent/backend.sock", 1, &d2));
	EXPECT_EQ(NULL, d2);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, accept_returns_the_socket_and_renews_credit)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	char buf[16];
	int fd, i;

	ASSERT_EQ(0, dance_listen(self->p.path, 2, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	EXPECT_EQ(2U, peer_take_ready(_metadata, self->p.c));
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_ACCEPTED, 0, 0, "early",
					 &self->server, 1));
		fd = dance_accept(self->d, res);
		ASSERT_LE(0, fd) TH_LOG("%s", res->reason);
		EXPECT_NE(self->server, fd);
		EXPECT_EQ(cookie(self->server), cookie(fd));
		EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
		EXPECT_EQ(DANCE_MSG_ACCEPTED, res->hdr.type);
		EXPECT_EQ(5U, res->pending_len);
		EXPECT_EQ(0, memcmp("early", res->pending, 5));
		EXPECT_STREQ("example.com", res->sni);
		/* The window is topped up before dance_accept() returns. */
		EXPECT_TRUE(readable(self->p.c, 0));
		EXPECT_EQ(1U, peer_take_ready(_metadata, self->p.c));
		EXPECT_EQ(3, write(self->client, "hi!", 3));
		EXPECT_EQ(3, recv(fd, buf, sizeof(buf), 0));
		close(fd);
	}
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, accept_refuses_messages_without_exactly_one_fd)
{
	struct dance_result *res = calloc(1, sizeof(*res));
	int two[2], fd, pipefd[2];

	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	ASSERT_EQ(0, dance_listen(self->p.path, 4, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	EXPECT_EQ(4U, peer_take_ready(_metadata, self->p.c));

	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_ACCEPTED, 0, 0, NULL, NULL, 0));
	EXPECT_EQ(-EPROTO, dance_accept(self->d, res));
	EXPECT_EQ(-EPROTO, res->status);
	EXPECT_NE(NULL, strstr(res->reason, "without"));
	/* danced counted it as sent, so the credit comes back all the same. */
	EXPECT_EQ(1U, peer_take_ready(_metadata, self->p.c));

	two[0] = pipefd[0];
	two[1] = pipefd[1];
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_ACCEPTED, 0, 0, NULL, two, 2));
	EXPECT_EQ(-EPROTO, dance_accept(self->d, res));
	EXPECT_EQ(1U, peer_take_ready(_metadata, self->p.c));

	/* A failure status with a socket is not something to serve. */
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_ACCEPTED, 0, -EIO, NULL, &self->server, 1));
	EXPECT_EQ(-EPROTO, dance_accept(self->d, res));
	EXPECT_EQ(1U, peer_take_ready(_metadata, self->p.c));

	/* A handshake result is not an accepted socket, and costs no credit. */
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_RESULT, 3, 0, NULL, NULL, 0));
	EXPECT_EQ(-EPROTO, dance_accept(self->d, res));
	EXPECT_FALSE(readable(self->p.c, 0));

	/* The channel still works. */
	ASSERT_EQ(0, peer_answer(self->p.c, DANCE_MSG_ACCEPTED, 0, 0, NULL, &self->server, 1));
	fd = dance_accept(self->d, res);
	ASSERT_LE(0, fd);
	EXPECT_EQ(1U, peer_take_ready(_metadata, self->p.c));
	close(fd);
	close(pipefd[0]);
	close(pipefd[1]);
	free(res);
	expect_no_leak(_metadata, self);
}

TEST_F(chan, accept_reports_channel_close_every_time)
{
	struct dance_result *res = calloc(1, sizeof(*res));

	ASSERT_EQ(0, dance_listen(self->p.path, 1, &self->d));
	ASSERT_EQ(0, peer_accept(&self->p));
	EXPECT_EQ(1U, peer_take_ready(_metadata, self->p.c));
	peer_hangup(&self->p);
	EXPECT_EQ(-ECONNRESET, dance_accept(self->d, res));
	EXPECT_EQ(-ECONNRESET, res->status);
	/* No reconnect: the caller decides. */
	EXPECT_EQ(-ECONNRESET, dance_accept(self->d, res));
	EXPECT_FALSE(readable(self->p.lfd, 0));
	free(res);
	expect_no_leak(_metadata, self);
}

/* ---- after the handshake ----------------------------------------------------------- */

TEST_F(chan, recv_reads_plain_tcp_data_and_eof)
{
	char buf[16];

	EXPECT_EQ(-1, dance_recv(self->server, buf, sizeof(buf), MSG_DONTWAIT));
	EXPECT_EQ(EAGAIN, errno);
	ASSERT_EQ(5, write(self->client, "hello", 5));
	ASSERT_TRUE(readable(self->server, PEER_WAIT_MS));
	EXPECT_EQ(2, dance_recv(self->server, buf, 2, MSG_PEEK));
	EXPECT_EQ(0, memcmp(buf, "he", 2));
	EXPECT_EQ(5, dance_recv(self->server, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "hello", 5));
	/* A plain socket gets no close_notify, only the FIN. */
	EXPECT_EQ(0, dance_shutdown(self->client));
	EXPECT_EQ(0, dance_recv(self->server, buf, sizeof(buf), 0));
	EXPECT_EQ(-1, dance_recv(-1, buf, sizeof(buf), 0));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(-EBADF, dance_shutdown(-1));
}

TEST(strerror_names_statuses)
{
	EXPECT_STREQ("ok", dance_strerror(0));
	EXPECT_NE(NULL, strstr(dance_strerror(-ECONNREFUSED), "not running"));
	EXPECT_NE(NULL, strstr(dance_strerror(-ECONNRESET), "closed"));
	EXPECT_NE(NULL, strstr(dance_strerror(-ETIMEDOUT), "timed out"));
	EXPECT_STREQ(strerror(ENOSPC), dance_strerror(-ENOSPC));
	EXPECT_NE(NULL, dance_strerror(-99999));
	EXPECT_NE(NULL, dance_strerror(12345));
}

DANCED_HARNESS_MAIN
