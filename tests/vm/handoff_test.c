// SPDX-License-Identifier: GPL-2.0
/*
 * handoff_test.c - what danced owes the channels servers and backends talk to it on
 * (issue 9): every descriptor that arrives is closed or owned on every path, a channel
 * that dies takes its sockets' work with it, and a server is admitted by any of its
 * groups, not only the first 64.
 *
 * The real danced, raw SEQPACKET messages where the test must control every byte and
 * descriptor, libdance where a real server would use it, and OpenSSL clients. Deadlines
 * are hang guards only.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
#include <sys/un.h>
#include <sys/wait.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/pair.h"
#include "../../agent/lib/dance.h"

/* danced's descriptor count, once it settles back to @want (hang guard: 10 s). */
static int fds_settle(const struct env *e, int want)
{
	long t0 = ms_now();
	int n;

	while ((n = danced_fds(e)) != want && ms_now() - t0 < 10000)
		usleep(100000);
	return n;
}

/* ... or once it reaches at least @want. */
static int fds_reach(const struct env *e, int want)
{
	long t0 = ms_now();
	int n;

	while ((n = danced_fds(e)) < want && ms_now() - t0 < 30000)
		usleep(100000);
	return n;
}

/* ---- 8a: descriptors that come with stray messages ---------------------------------- */

enum stray {
	ZERO_LENGTH, /* a zero-length message with one socket, the channel left open */
	ZERO_LENGTH_THEN_CLOSE, /* the same, and the channel closed right behind it */
	REQUEST_THEN_CLOSE, /* a good request, and the channel closed right behind it */
};

FIXTURE(stray)
{
	struct env e;
	int lfd, port;
	char backend[160];
};

FIXTURE_VARIANT(stray)
{
	bool backend; /* on a front-door backend socket instead of the handoff socket */
	enum stray kind;
};

FIXTURE_VARIANT_ADD(stray, handoff_zero_length){
	.backend = false,
	.kind = ZERO_LENGTH,
};

FIXTURE_VARIANT_ADD(stray, handoff_zero_length_then_close){
	.backend = false,
	.kind = ZERO_LENGTH_THEN_CLOSE,
};

FIXTURE_VARIANT_ADD(stray, handoff_request_then_close){
	.backend = false,
	.kind = REQUEST_THEN_CLOSE,
};

FIXTURE_VARIANT_ADD(stray, backend_zero_length){
	.backend = true,
	.kind = ZERO_LENGTH,
};

FIXTURE_VARIANT_ADD(stray, backend_zero_length_then_close){
	.backend = true,
	.kind = ZERO_LENGTH_THEN_CLOSE,
};

FIXTURE_SETUP(stray)
{
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	snprintf(self->backend, sizeof(self->backend), "%.100s/front.sock", self->e.dir);
	/* Long deadlines: whatever danced closes, it closes because it must, not by timeout. */
	ASSERT_EQ(0, env_conf(&self->e,
			      "handshake_timeout = 100s\n"
			      "[service www]\ncertificate = %s\nkey = %s\n"
			      "[service front]\ncertificate = %s\nkey = %s\n"
			      "server_names = front.localhost\n"
			      "listen = 127.0.0.1:%d\nbackend_socket = %s\n",
			      self->e.srv_cert, self->e.srv_key, self->e.srv_cert, self->e.srv_key,
			      free_port(), self->backend));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	/* The backend socket comes after the handoff socket danced_start() waits for. */
	ASSERT_EQ(0, wait_connectable(self->backend, 0, 10000));
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
}

FIXTURE_TEARDOWN(stray)
{
	close(self->lfd);
	env_fini(&self->e);
}

/*
 * 100 times, a connected TCP socket comes with a message danced cannot take as a request
 * (or with a request on a channel that closes at once). danced closes every one: their
 * peers see EOF (nothing sits in CLOSE_WAIT because danced still holds it), and danced's
 * descriptor count returns to where it was.
 */
TEST_F_TIMEOUT(stray, every_socket_received_is_closed, 120)
{
	enum { N = 100 };
	const char *path = variant->backend ? self->backend : self->e.sock;
	struct dance_request req;
	int cfd[N], before, i, fd, ch = -1, ret, closed;

	usleep(200000);
	before = danced_fds(&self->e);
	ASSERT_LT(0, before);
	memset(&req, 0, sizeof(req));
	dance_hdr_init(&req.hdr, DANCE_MSG_HANDSHAKE);
	strcpy(req.service, "www");
	for (i = 0; i < N; i++) {
		cfd[i] = tcp_connect(self->port);
		ASSERT_LE(0, cfd[i]);
		fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fd);
		if (ch < 0)
			ch = raw_channel(path);
		ASSERT_LE(0, ch);
		req.id = i + 1;
		if (variant->kind == REQUEST_THEN_CLOSE) {
			ret = send_raw_fd(ch, &req, sizeof(req), fd);
		} else {
			ret = send_raw_fd(ch, "", 0, fd);
			if (ret == -EPIPE || ret == -ECONNRESET) {
				/* danced ended the channel after an earlier message: a new one. */
				close(ch);
				ch = raw_channel(path);
				ASSERT_LE(0, ch);
				ret = send_raw_fd(ch, "", 0, fd);
			}
		}
		ASSERT_EQ(0, ret) TH_LOG("message %d: %s", i, strerror(-ret));
		close(fd); /* danced's copy is now the only one */
		if (variant->kind == ZERO_LENGTH) {
			char sink[sizeof(struct dance_result)];

			/* Whatever danced answers (if anything), so that its sends never wait. */
			while (recv(ch, sink, sizeof(sink), MSG_DONTWAIT) > 0)
				;
		} else {
			close(ch);
			ch = -1;
		}
	}
	/* The peers see the end while the channel is still open (ZERO_LENGTH). */
	closed = wait_all_closed(cfd, N, 30000);
	EXPECT_EQ(N, closed) TH_LOG("%d TCP peers still connected to danced", N - closed);
	if (ch >= 0)
		close(ch);
	EXPECT_EQ(before, fds_settle(&self->e, before)) TH_LOG("descriptors before: %d", before);
	for (i = 0; i < N; i++)
		close(cfd[i]);
}

/* ---- 9a: a channel that dies cancels its sockets' work -------------------------------- */

FIXTURE(dying)
{
	struct env e;
	int lfd, port;
};

FIXTURE_SETUP(dying)
{
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\nmax_handshakes = 50\nhandshake_timeout = 100s\n"
			      "[service www]\ncertificate = %s\nkey = %s\n",
			      self->e.srv_cert, self->e.srv_key));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
}

FIXTURE_TEARDOWN(dying)
{
	close(self->lfd);
	env_fini(&self->e);
}

struct s_client {
	const struct env *e;
	int port;
	char out[8192];
	int ret;
};

static void *s_client_main(void *arg)
{
	struct s_client *j = arg;
	char connect[32];
	char *argv[] = { "/usr/bin/openssl", "s_client",
			 "-connect",	     connect,
			 "-CAfile",	     (char *)j->e->ca,
			 "-brief",	     "-servername",
			 "localhost",	     "-verify_hostname",
			 "localhost",	     "-verify_return_error",
			 "-ign_eof",	     NULL };

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", j->port);
	j->ret = run(argv, "x", 1, j->out, sizeof(j->out), 60);
	return NULL;
}

/*
 * A server hands 50 sockets (max_handshakes = 50) whose clients stay silent, then closes
 * its channel. danced closes those connections long before handshake_timeout (100 s), and
 * its handshakes in flight drop: a new request right after is served, not refused busy.
 */
TEST_F_TIMEOUT(dying, a_closed_channel_cancels_its_handshakes, 120)
{
	enum { N = 50 };
	struct dance_params p = { .service = "www" };
	struct dance_result *r = calloc(1, sizeof(*r));
	struct dance *d1, *d2;
	int cfd[N], before, i, fd, ret, closed;

	usleep(200000);
	before = danced_fds(&self->e);
	ASSERT_EQ(0, dance_open(self->e.sock, &d1));
	for (i = 0; i < N; i++) {
		char src[16];

		/* Ten addresses: under the default source_max_handshakes (max_handshakes / 8). */
		snprintf(src, sizeof(src), "127.0.0.%d", 10 + i % 10);
		cfd[i] = tcp_connect_from(src, self->port);
		ASSERT_LE(0, cfd[i]);
		fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, dance_submit(d1, fd, &p, i + 1));
	}
	/* danced holds all 50 (and the channel): the pool is full, a 51st is refused busy. */
	ASSERT_LE(before + N + 1, fds_reach(&self->e, before + N + 1));
	ASSERT_EQ(0, dance_open(self->e.sock, &d2));
	{
		int x = tcp_connect(self->port);

		fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_EQ(-EBUSY, dance_handshake(d2, fd, &p, r)) TH_LOG("%s", r->reason);
		close(x);
	}
	/* The server goes away; libdance closes its copies of the 50 sockets. */
	dance_close(d1);
	closed = wait_all_closed(cfd, N, 30000);
	EXPECT_EQ(N, closed) TH_LOG("%d of the dead channel's connections still open", N - closed);
	/* A real client right after is served. */
	{
		struct s_client j = { .e = &self->e, .port = self->port };
		pthread_t t;

		pthread_create(&t, NULL, s_client_main, &j);
		fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fd);
		ret = dance_handshake(d2, fd, &p, r);
		EXPECT_EQ(0, ret) TH_LOG("the request after the dead channel: %s", r->reason);
		if (!ret)
			close(fd); /* s_client leaves when we close */
		pthread_join(t, NULL);
		EXPECT_NE(NULL, strstr(j.out, "Verification: OK")) TH_LOG("%s", j.out);
	}
	for (i = 0; i < N; i++)
		close(cfd[i]);
	dance_close(d2);
	free(r);
}

/* ---- 9b: more than 64 supplementary groups --------------------------------------------- */

#define GROUP_BASE 5000
#define GROUPS 100
#define ALLOWED_GID (GROUP_BASE + 90) /* the 91st supplementary group */
#define SERVER_UID 6000

FIXTURE(groups)
{
	struct env e;
};

FIXTURE_SETUP(groups)
{
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	/* The server below is not root: it must reach the socket through the directory. */
	ASSERT_EQ(0, chmod(self->e.dir, 0755));
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\nsocket_mode = 0666\nallow_gid = %d\n"
			      "handshake_timeout = 100s\n"
			      "[service www]\ncertificate = %s\nkey = %s\n",
			      ALLOWED_GID, self->e.srv_cert, self->e.srv_key));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
}

FIXTURE_TEARDOWN(groups)
{
	env_fini(&self->e);
}

/*
 * A server process that is uid and gid SERVER_UID with @n supplementary groups from
 * GROUP_BASE up, leaving out @skip, hands danced one silent TCP socket with a 300 ms
 * deadline. Return: 0 when danced answered (admitted: the handshake timed out), 1 when it
 * closed the channel (refused), 2 for anything else.
 */
static int server_with_groups(const char *sock, int n, gid_t skip, char *why, size_t max)
{
	int pipefd[2], status, k;
	pid_t pid;
	ssize_t got;

	if (pipe(pipefd))
		return -errno;
	pid = fork();
	if (!pid) {
		struct dance_params p = { .timeout_ms = 300 };
		struct dance_result *r = calloc(1, sizeof(*r));
		gid_t g[GROUPS];
		struct dance *d;
		int c, s, ret;

		close(pipefd[0]);
		alarm(60);
		for (k = 0, ret = 0; ret < n; ret++)
			if (GROUP_BASE + ret != (int)skip)
				g[k++] = GROUP_BASE + ret;
		if (setgroups(k, g) || setgid(SERVER_UID) || setuid(SERVER_UID)) {
			dprintf(pipefd[1], "cannot become the server: %s", strerror(errno));
			_exit(2);
		}
		if (pair_tcp(&c, &s))
			_exit(2);
		ret = dance_open(sock, &d);
		if (ret) {
			dprintf(pipefd[1], "dance_open: %s", strerror(-ret));
			_exit(ret == -ECONNRESET ? 1 : 2);
		}
		ret = dance_handshake(d, s, &p, r);
		dprintf(pipefd[1], "status %d: %s", ret, r->reason);
		_exit(ret == -ETIMEDOUT ? 0 : ret == -ECONNRESET ? 1 : 2);
	}
	close(pipefd[1]);
	got = read(pipefd[0], why, max - 1);
	why[got > 0 ? got : 0] = '\0';
	close(pipefd[0]);
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/*
 * allow_gid names a server's 91st supplementary group: the server is admitted (the
 * kernel's SO_PEERGROUPS holds all of them). The same server without that group is
 * refused.
 */
TEST_F(groups, admits_a_server_by_a_group_beyond_its_64th)
{
	char why[512];

	EXPECT_EQ(0, server_with_groups(self->e.sock, GROUPS, (gid_t)-1, why, sizeof(why)))
	TH_LOG("with %d groups, the allowed one 91st: %s", GROUPS, why);
	EXPECT_EQ(1, server_with_groups(self->e.sock, GROUPS, ALLOWED_GID, why, sizeof(why)))
	TH_LOG("without the allowed group: %s", why);
	EXPECT_EQ(0, server_with_groups(self->e.sock, 91, (gid_t)-1, why, sizeof(why)))
	TH_LOG("with 91 groups, the allowed one last: %s", why);
}

DANCED_HARNESS_MAIN
