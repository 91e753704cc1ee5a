// SPDX-License-Identifier: GPL-2.0
/*
 * agent_test.c - danced end to end, in the VM: the real daemon, libdance, the example
 * server, and peers nobody here wrote (openssl s_client and s_server, curl).
 *
 * Every test starts its own danced from a fresh directory of certificates and a
 * configuration written for it, and checks what servers and peers see: results and
 * their reasons, bytes through kTLS, and danced still serving afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <linux/tls.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/pair.h"
#include "../../agent/lib/dance.h"

#define BULK (16u << 20)

/* A TLS client context trusting the test CA, optionally with a client certificate. */
static SSL_CTX *client_ctx(const struct env *e, const struct pair_suite *suite, const char *cert,
			   const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx)
		return NULL;
	if (suite) {
		SSL_CTX_set_min_proto_version(ctx, suite->version);
		SSL_CTX_set_max_proto_version(ctx, suite->version);
		if (suite->version == TLS1_3_VERSION)
			SSL_CTX_set_ciphersuites(ctx, suite->cipher);
		else
			SSL_CTX_set_cipher_list(ctx, suite->cipher);
	}
	SSL_CTX_load_verify_locations(ctx, e->ca, NULL);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
		     SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* An OpenSSL client in a thread: connect, handshake, then run @after. */
struct client {
	SSL_CTX *ctx;
	int port;
	int fd;
	SSL *ssl;
	bool hold_last_flight;
	volatile bool handshaken;
	int (*after)(struct client *c);
	int ret;
	char err[160];
	uint8_t hash[32], got_hash[32];
	pthread_t thread;
};

static int client_fail(struct client *c, int ret, const char *what)
{
	snprintf(c->err, sizeof(c->err), "client: %s (%d; %s)", what, ret, pair_ssl_error());
	return ret ? ret : -EPROTO;
}

static void *client_main(void *arg)
{
	struct client *c = arg;

	c->fd = tcp_connect(c->port);
	if (c->fd < 0) {
		c->ret = client_fail(c, c->fd, "connect");
		return NULL;
	}
	c->ssl = pair_mem_ssl(c->ctx);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	SSL_set1_host(c->ssl, "localhost");
	c->ret = peer_handshake(c->ssl, c->fd, c->hold_last_flight);
	c->handshaken = !c->ret;
	if (c->ret)
		client_fail(c, c->ret, "handshake");
	else if (c->after)
		c->ret = c->after(c);
	return NULL;
}

static void client_start(struct client *c)
{
	pthread_create(&c->thread, NULL, client_main, c);
}

static int client_join(struct client *c)
{
	pthread_join(c->thread, NULL);
	return c->ret;
}

static void client_free(struct client *c)
{
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
}

/* Our server side: accept one connection and hand it to danced (return mode). */
static int accept_handshake(int lfd, struct dance *d, const char *service, struct dance_result *r)
{
	struct dance_params p = { .service = service };
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = dance_handshake(d, fd, &p, r);
	return ret ? ret : fd;
}

/* All bytes the server has for the peer: the result's pending bytes, then the socket. */
static ssize_t server_read(int fd, struct dance_result *r, size_t *pend_off, uint8_t *buf,
			   size_t len)
{
	if (*pend_off < r->pending_len) {
		size_t n = r->pending_len - *pend_off;

		if (n > len)
			n = len;
		memcpy(buf, r->pending + *pend_off, n);
		*pend_off += n;
		return n;
	}
	return dance_recv(fd, buf, len, 0);
}

static const char *suite_cli_args(const struct pair_suite *s, char *const **out)
{
	static char *tls13[] = { "-tls1_3", "-ciphersuites", NULL };
	static char *tls12[] = { "-tls1_2", "-cipher", NULL };

	*out = s->version == TLS1_3_VERSION ? tls13 : tls12;
	return s->cipher;
}

/* ---- a danced with one server service, per TLS version and AEAD ------------------ */

FIXTURE(peers)
{
	struct env e;
	int lfd, port;
	struct dance *d;
	SSL_CTX *cctx;
	pid_t helper;
	char helper_log[160];
};

FIXTURE_VARIANT(peers)
{
	struct pair_suite suite;
	const char *curl_version;
	const char *curl_cipher_opt;
	const char *name; /* what the example server reports */
};

#define SUITE(id, ver, cipher, kcipher, curlv, curlopt, report)           \
	FIXTURE_VARIANT_ADD(peers, id)                                    \
	{                                                                 \
		.suite = { ver, cipher, kcipher }, .curl_version = curlv, \
		.curl_cipher_opt = curlopt, .name = report,               \
	}

SUITE(tls12_aes_128_gcm, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", TLS_CIPHER_AES_GCM_128,
      "--tls-max", "--ciphers", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
SUITE(tls12_aes_256_gcm, TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", TLS_CIPHER_AES_GCM_256,
      "--tls-max", "--ciphers", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
SUITE(tls12_chacha20, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", TLS_CIPHER_CHACHA20_POLY1305,
      "--tls-max", "--ciphers", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
SUITE(tls13_aes_128_gcm, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128,
      "--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256");
SUITE(tls13_aes_256_gcm, TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256,
      "--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384");
SUITE(tls13_chacha20, TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", TLS_CIPHER_CHACHA20_POLY1305,
      "--tlsv1.3", "--tls13-ciphers", "TLS_CHACHA20_POLY1305_SHA256");

FIXTURE_SETUP(peers)
{
	int ret;

	self->helper = -1;
	self->d = NULL;
	ASSERT_EQ(0, env_init(&self->e));
	snprintf(self->helper_log, sizeof(self->helper_log), "%s/helper.log", self->e.dir);
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\nlog_level = debug\n"
			      "[service www]\ncertificate = %s\nkey = %s\nalpn = http/1.1\n"
			      "[service upstream]\nrole = client\nca = %s\n",
			      self->e.srv_cert, self->e.srv_key, self->e.ca));
	ret = danced_start(&self->e);
	ASSERT_EQ(0, ret) TH_LOG("danced did not start; its log is %s", self->e.log);
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	self->cctx = client_ctx(&self->e, &variant->suite, NULL, NULL);
	ASSERT_NE(NULL, self->cctx);
}

FIXTURE_TEARDOWN(peers)
{
	if (self->helper > 0) {
		kill(self->helper, SIGKILL);
		waitpid(self->helper, NULL, 0);
	}
	if (self->d)
		dance_close(self->d);
	SSL_CTX_free(self->cctx);
	close(self->lfd);
	env_fini(&self->e);
}

/* openssl s_client against the example server in return mode, over HTTP/1.1. */
TEST_F(peers, s_client_through_return_mode)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char port[16], listen[32], out[16384], *const *verargs;
	const char *cipher = suite_cli_args(&variant->suite, &verargs);
	char connect[32];
	int ret;

	self->port = free_port();
	snprintf(port, sizeof(port), "%d", self->port);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", self->port);
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", self->port);
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--listen",
				 listen,
				 "--http",
				 NULL };

		self->helper = spawn(argv, self->helper_log);
	}
	ASSERT_EQ(0, wait_connectable(NULL, self->port, 10000));
	{
		char *argv[] = { "/usr/bin/openssl",
				 "s_client",
				 "-connect",
				 connect,
				 "-servername",
				 "localhost",
				 "-CAfile",
				 self->e.ca,
				 "-verify_return_error",
				 "-ign_eof",
				 "-brief",
				 verargs[0],
				 verargs[1],
				 (char *)cipher,
				 NULL };

		ret = run(argv, req, sizeof(req) - 1, out, sizeof(out), 60);
	}
	EXPECT_EQ(0, ret) TH_LOG("s_client said:\n%s", out);
	EXPECT_NE(NULL, strstr(out, "HTTP/1.1 200")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, variant->name)) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "Verification: OK")) TH_LOG("%s", out);
}

/* The client's last flight, "ping", close_notify and FIN, all in one burst; then "pong". */
static int client_ping_and_half_close(struct client *c)
{
	char buf[8];
	ssize_t n;
	int ret;

	ret = peer_write(c->ssl, c->fd, "ping", 4, false);
	if (ret)
		return client_fail(c, ret, "write");
	SSL_shutdown(c->ssl);
	ret = peer_flush(c->ssl, c->fd);
	if (ret)
		return client_fail(c, ret, "flush");
	shutdown(c->fd, SHUT_WR);
	n = peer_read(c->ssl, c->fd, buf, sizeof(buf));
	if (n != 4 || memcmp(buf, "pong", 4))
		return client_fail(c, n, "no pong after the half-close");
	return 0;
}

/*
 * A client that says its last word and half-closes right behind its Finished: the FIN
 * may be in before danced installs kTLS (the kernel takes the ULP only on ESTABLISHED
 * sockets). Its data must still reach the server, and the server's answer the client.
 */
TEST_F(peers, client_half_closing_behind_its_finished_loses_nothing)
{
	struct dance_result *r = calloc(1, sizeof(*r));
	uint8_t buf[16];
	size_t off;
	int i, fd;

	for (i = 0; i < 8; i++) {
		struct client c = { .ctx = self->cctx,
				    .port = self->port,
				    .hold_last_flight = true,
				    .after = client_ping_and_half_close };

		client_start(&c);
		fd = accept_handshake(self->lfd, self->d, "www", r);
		ASSERT_LE(0, fd) TH_LOG("round %d: %s", i, r->reason);
		off = 0;
		EXPECT_EQ(4, server_read(fd, r, &off, buf, sizeof(buf))) TH_LOG("round %d", i);
		EXPECT_EQ(0, memcmp(buf, "ping", 4));
		/* Then the end of its stream, in the result or from the socket. */
		if (!(r->flags & DANCE_RES_PEER_CLOSED))
			EXPECT_EQ(0, dance_recv(fd, buf, sizeof(buf), 0));
		EXPECT_EQ(4, send(fd, "pong", 4, MSG_NOSIGNAL));
		EXPECT_EQ(0, client_join(&c)) TH_LOG("round %d: %s", i, c.err);
		close(fd);
		client_free(&c);
	}
	free(r);
}

/* curl against a front-door service whose backend is the example server. */
TEST_F(peers, curl_through_front_door)
{
	char backend[160], url[64], out[16384];
	int port, ret;

	/* A second danced: this one accepts for the service itself. */
	danced_stop(&self->e, SIGTERM);
	port = free_port();
	snprintf(backend, sizeof(backend), "%.100s/www.sock", self->e.dir);
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\n[service www]\ncertificate = %s\nkey = %s\n"
			      "listen = 127.0.0.1:%d\nbackend_socket = %s\n",
			      self->e.srv_cert, self->e.srv_key, port, backend));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	{
		char *argv[] = { (char *)bin("dance-echo"), "--backend", backend, "--http", NULL };

		self->helper = spawn(argv, self->helper_log);
	}
	ASSERT_EQ(0, wait_connectable(NULL, port, 10000));
	snprintf(url, sizeof(url), "https://localhost:%d/", port);
	{
		char *argv[] = { "/usr/bin/curl",
				 "-sS",
				 "--max-time",
				 "60",
				 "--cacert",
				 self->e.ca,
				 (char *)variant->curl_version,
				 variant->suite.version == TLS1_3_VERSION ? "--tlsv1.3" : "1.2",
				 (char *)variant->curl_cipher_opt,
				 (char *)variant->suite.cipher,
				 url,
				 NULL };

		/* "--tlsv1.3 --tlsv1.3" is harmless; TLS 1.2 needs "--tls-max 1.2". */
		ret = run(argv, NULL, 0, out, sizeof(out), 90);
	}
	EXPECT_EQ(0, ret) TH_LOG("curl said:\n%s", out);
	EXPECT_NE(NULL, strstr(out, variant->name)) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "sni=localhost")) TH_LOG("%s", out);
}

/* danced as the TLS client, against openssl s_server (which answers lines reversed). */
TEST_F(peers, danced_client_against_s_server)
{
	char accept_port[16], connect[32], out[4096], *const *verargs;
	const char *cipher = suite_cli_args(&variant->suite, &verargs);
	int port, ret;

	port = free_port();
	snprintf(accept_port, sizeof(accept_port), "%d", port);
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
	{
		char *argv[] = { "/usr/bin/openssl",
				 "s_server",
				 "-accept",
				 accept_port,
				 "-cert",
				 self->e.srv_cert,
				 "-key",
				 self->e.srv_key,
				 "-rev",
				 verargs[0],
				 verargs[1],
				 (char *)cipher,
				 NULL };

		self->helper = spawn(argv, self->helper_log);
	}
	ASSERT_EQ(0, wait_connectable(NULL, port, 10000));
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--connect",
				 connect,
				 "--name",
				 "localhost",
				 "--service",
				 "upstream",
				 NULL };
		static const char line[] = "hello from danced the client\n";

		ret = run(argv, line, sizeof(line) - 1, out, sizeof(out), 60);
	}
	EXPECT_EQ(0, ret) TH_LOG("dance-echo said:\n%s", out);
	EXPECT_NE(NULL, strstr(out, "tneilc eht decnad morf olleh")) TH_LOG("%s", out);
}

static int client_bulk(struct client *c)
{
	static uint8_t buf[65536];
	EVP_MD_CTX *in = EVP_MD_CTX_new(), *out = EVP_MD_CTX_new();
	uint64_t state = 0x0123456789abcdefULL;
	size_t done;
	ssize_t n;
	int ret = 0;

	EVP_DigestInit_ex(in, EVP_sha256(), NULL);
	EVP_DigestInit_ex(out, EVP_sha256(), NULL);
	for (done = 0; done < BULK; done += sizeof(buf)) {
		pair_pattern(&state, buf, sizeof(buf));
		EVP_DigestUpdate(out, buf, sizeof(buf));
		ret = peer_write(c->ssl, c->fd, buf, sizeof(buf), true);
		if (ret) {
			client_fail(c, ret, "bulk write");
			goto out;
		}
	}
	for (done = 0; done < BULK; done += n) {
		n = peer_read(c->ssl, c->fd, buf, sizeof(buf));
		if (n <= 0) {
			ret = client_fail(c, n, "bulk read ended early");
			goto out;
		}
		EVP_DigestUpdate(in, buf, n);
	}
	EVP_DigestFinal_ex(out, c->hash, NULL);
	EVP_DigestFinal_ex(in, c->got_hash, NULL);
out:
	EVP_MD_CTX_free(in);
	EVP_MD_CTX_free(out);
	return ret;
}

/* 16 MiB each way between an OpenSSL client and a server that got its socket back. */
TEST_F_TIMEOUT(peers, bulk_16mib_each_way_through_return_mode, 600)
{
	static uint8_t buf[65536];
	struct client c = { .ctx = self->cctx, .port = self->port, .after = client_bulk };
	struct dance_result *r = calloc(1, sizeof(*r));
	uint8_t got_hash[32], sent_hash[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t state = 0x0fedcba987654321ULL;
	size_t done, pend = 0, off;
	ssize_t n;
	int fd;

	client_start(&c);
	fd = accept_handshake(self->lfd, self->d, NULL, r);
	ASSERT_LE(0, fd) TH_LOG("%s", r->reason);
	EXPECT_EQ(variant->suite.version, r->tls_version);
	EXPECT_STREQ("ok", r->reason);
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (done = 0; done < BULK; done += n) {
		n = server_read(fd, r, &pend, buf, sizeof(buf));
		ASSERT_LT(0, n) TH_LOG("read: %s", strerror(errno));
		EVP_DigestUpdate(md, buf, n);
	}
	EVP_DigestFinal_ex(md, got_hash, NULL);
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (done = 0; done < BULK; done += sizeof(buf)) {
		pair_pattern(&state, buf, sizeof(buf));
		EVP_DigestUpdate(md, buf, sizeof(buf));
		for (off = 0; off < sizeof(buf); off += n) {
			n = send(fd, buf + off, sizeof(buf) - off, MSG_NOSIGNAL);
			ASSERT_LT(0, n);
		}
	}
	EVP_DigestFinal_ex(md, sent_hash, NULL);
	ASSERT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
	EXPECT_EQ(0, memcmp(got_hash, c.hash, 32));
	EXPECT_EQ(0, memcmp(sent_hash, c.got_hash, 32));
	client_free(&c);
	EVP_MD_CTX_free(md);
	close(fd);
	free(r);
}

static const char early[] = "sent by the client right behind its Finished";

static int client_early(struct client *c)
{
	char buf[64];
	ssize_t n;
	int i, ret = 0;

	for (i = 0; i < 3 && !ret; i++)
		ret = peer_write(c->ssl, c->fd, early, sizeof(early), false);
	if (!ret)
		ret = peer_flush(c->ssl, c->fd); /* with the held Finished, in one segment */
	if (ret)
		return client_fail(c, ret, "early write");
	n = peer_read(c->ssl, c->fd, buf, sizeof(buf));
	if (n != 2 || memcmp(buf, "ok", 2))
		return client_fail(c, n, "no answer through kTLS");
	return 0;
}

TEST_F(peers, data_right_behind_finished_is_neither_lost_nor_duplicated)
{
	struct client c = { .ctx = self->cctx,
			    .port = self->port,
			    .after = client_early,
			    .hold_last_flight = true };
	struct dance_result *r = calloc(1, sizeof(*r));
	uint8_t buf[3 * sizeof(early) + 64];
	size_t got = 0, pend = 0;
	ssize_t n;
	int fd;

	client_start(&c);
	fd = accept_handshake(self->lfd, self->d, NULL, r);
	ASSERT_LE(0, fd) TH_LOG("%s", r->reason);
	/* TLS 1.3: Finished and data arrive together, so danced decrypted some or all. */
	if (variant->suite.version == TLS1_3_VERSION)
		EXPECT_LT(0U, r->pending_len);
	while (got < 3 * sizeof(early)) {
		n = server_read(fd, r, &pend, buf + got, 3 * sizeof(early) - got);
		ASSERT_LT(0, n);
		got += n;
	}
	EXPECT_EQ(0, memcmp(buf, early, sizeof(early)));
	EXPECT_EQ(0, memcmp(buf + sizeof(early), early, sizeof(early)));
	EXPECT_EQ(0, memcmp(buf + 2 * sizeof(early), early, sizeof(early)));
	/* Nothing more: not a byte twice. */
	EXPECT_EQ(-1, dance_recv(fd, buf, sizeof(buf), MSG_DONTWAIT));
	EXPECT_EQ(EAGAIN, errno);
	ASSERT_EQ(2, send(fd, "ok", 2, 0));
	ASSERT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
	client_free(&c);
	close(fd);
	free(r);
}

/* ---- client authentication -------------------------------------------------------- */

FIXTURE(auth)
{
	struct env e;
	int lfd, port;
	struct dance *d;
	struct dance_result *r;
};

FIXTURE_SETUP(auth)
{
	ASSERT_EQ(0, env_init(&self->e));
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\n[service www]\ncertificate = %s\nkey = %s\n"
			      "client_auth = required\nca = %s\n",
			      self->e.srv_cert, self->e.srv_key, self->e.cli_ca));
	ASSERT_EQ(0, danced_start(&self->e));
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(auth)
{
	dance_close(self->d);
	close(self->lfd);
	free(self->r);
	env_fini(&self->e);
}

struct s_client_job {
	struct env *e;
	int port;
	const char *name; /* SNI; default localhost */
	const char *cert, *key;
	const char *groups; /* -groups; default s_client's own */
	char out[8192];
	int ret;
};

static void *s_client_job(void *arg)
{
	struct s_client_job *j = arg;
	char connect[32];
	char *argv[24];
	int n = 0;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", j->port);
	argv[n++] = "/usr/bin/openssl";
	argv[n++] = "s_client";
	argv[n++] = "-connect";
	argv[n++] = connect;
	argv[n++] = "-CAfile";
	argv[n++] = j->e->ca;
	argv[n++] = "-brief";
	argv[n++] = "-servername";
	argv[n++] = (char *)(j->name ?: "localhost");
	argv[n++] = "-verify_hostname";
	argv[n++] = (char *)(j->name ?: "localhost");
	argv[n++] = "-ign_eof"; /* stay until the server closes: kTLS needs a live connection */
	if (j->cert) {
		argv[n++] = "-cert";
		argv[n++] = (char *)j->cert;
		argv[n++] = "-key";
		argv[n++] = (char *)j->key;
	}
	if (j->groups) {
		argv[n++] = "-groups";
		argv[n++] = (char *)j->groups;
	}
	argv[n] = NULL;
	j->ret = run(argv, "x", 1, j->out, sizeof(j->out), 60);
	return NULL;
}

/* Run @j against danced in return mode: 0, or the handshake's failure (in @r). */
static int s_client_attempt(struct __test_metadata *_metadata, struct s_client_job *j, int lfd,
			    struct dance *d, struct dance_result *r)
{
	pthread_t t;
	int fd;

	pthread_create(&t, NULL, s_client_job, j);
	fd = accept_handshake(lfd, d, NULL, r);
	if (fd >= 0)
		close(fd); /* s_client leaves when we close */
	pthread_join(t, NULL);
	TH_LOG("s_client (exit %d) said:\n%s", j->ret, j->out);
	return fd < 0 ? fd : 0;
}

static int auth_attempt(struct __test_metadata *_metadata, FIXTURE_DATA(auth) * self,
			const char *cert, const char *key)
{
	struct s_client_job j = { .e = &self->e, .port = self->port, .cert = cert, .key = key };

	return s_client_attempt(_metadata, &j, self->lfd, self->d, self->r);
}

TEST_F(auth, required_certificate_missing_is_refused_with_its_reason)
{
	EXPECT_EQ(-EACCES, auth_attempt(_metadata, self, NULL, NULL));
	EXPECT_EQ(-EACCES, self->r->status);
	EXPECT_NE(NULL, strstr(self->r->reason, "presented no certificate"))
	TH_LOG("%s", self->r->reason);
	EXPECT_TRUE(log_contains(&self->e, "presented no certificate"));
}

TEST_F(auth, certificate_from_an_unknown_ca_is_refused_with_its_reason)
{
	EXPECT_EQ(-EACCES, auth_attempt(_metadata, self, self->e.bad_cert, self->e.bad_key));
	EXPECT_NE(NULL, strstr(self->r->reason, "client certificate rejected"))
	TH_LOG("%s", self->r->reason);
	EXPECT_NE(NULL, strstr(self->r->reason, "issuer")) TH_LOG("%s", self->r->reason);
}

TEST_F(auth, verified_client_is_named_in_the_result)
{
	EXPECT_EQ(0, auth_attempt(_metadata, self, self->e.cli_cert, self->e.cli_key));
	EXPECT_EQ((uint32_t)DANCE_AUTH_X509, self->r->auth);
	EXPECT_NE(NULL, strstr(self->r->peer_subject, "CN=client.example.test"))
	TH_LOG("%s", self->r->peer_subject);
	EXPECT_STREQ("client.example.test", self->r->peer_names);
	EXPECT_NE(0U, self->r->cookie);
	/* The offload (kTLS keys, BPF maps, result) took time, and less than the whole. */
	EXPECT_LT(0U, self->r->offload_us);
	EXPECT_GT(self->r->handshake_us, self->r->offload_us);
}

/* ---- key exchange groups ---------------------------------------------------------- */

/*
 * The group never reaches the kernel, but operators choose it (post-quantum hybrids
 * first, or not) and must see what was negotiated: in the result and in the log.
 */
FIXTURE(kex)
{
	struct env e;
	int lfd, port;
	struct dance *d;
	struct dance_result *r;
	char peer_said[8192]; /* s_client's output */
};

FIXTURE_SETUP(kex)
{
	ASSERT_EQ(0, env_init(&self->e));
	self->lfd = tcp_listen_any(&self->port);
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(kex)
{
	dance_close(self->d);
	close(self->lfd);
	free(self->r);
	env_fini(&self->e);
}

static void kex_start(struct __test_metadata *_metadata, FIXTURE_DATA(kex) * self,
		      const char *groups_line)
{
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\nlog_level = info\n[service www]\ncertificate = %s\n"
			      "key = %s\n%s\n",
			      self->e.srv_cert, self->e.srv_key, groups_line));
	ASSERT_EQ(0, danced_start(&self->e));
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
}

/* s_client offering @groups (NULL: its default); the server's fd, or its failure. */
static int kex_attempt(struct __test_metadata *_metadata, FIXTURE_DATA(kex) * self,
		       const char *groups)
{
	struct s_client_job j = { .e = &self->e, .port = self->port, .groups = groups };
	int ret = s_client_attempt(_metadata, &j, self->lfd, self->d, self->r);

	memcpy(self->peer_said, j.out, sizeof(self->peer_said));
	return ret;
}

#if OPENSSL_VERSION_NUMBER >= 0x30500000L
/* OpenSSL 3.5 on both ends, defaults on both: the hybrid post-quantum group. */
TEST_F(kex, defaults_negotiate_the_hybrid_post_quantum_group)
{
	kex_start(_metadata, self, "");
	ASSERT_EQ(0, kex_attempt(_metadata, self, NULL)) TH_LOG("%s", self->r->reason);
	EXPECT_STREQ("X25519MLKEM768", self->r->group);
	EXPECT_TRUE(log_contains(&self->e, "group=X25519MLKEM768"));
	/* And the peer, which nobody here wrote, agrees. */
	EXPECT_NE(NULL, strstr(self->peer_said, "Negotiated TLS1.3 group: X25519MLKEM768"));
}

TEST_F(kex, hybrid_named_by_the_client_is_taken)
{
	kex_start(_metadata, self, "groups = X25519MLKEM768:X25519");
	ASSERT_EQ(0, kex_attempt(_metadata, self, "X25519MLKEM768"))
	TH_LOG("%s", self->r->reason);
	EXPECT_STREQ("X25519MLKEM768", self->r->group);
}

/* A service that takes only the hybrid refuses a client that cannot do it. */
TEST_F(kex, hybrid_only_service_refuses_a_classical_client)
{
	kex_start(_metadata, self, "groups = X25519MLKEM768");
	EXPECT_GT(0, kex_attempt(_metadata, self, "X25519"));
	EXPECT_GT(0, self->r->status);
	EXPECT_STREQ("", self->r->group);
}
#endif

/* A client that offers only X25519 still gets a handshake, and the result says so. */
TEST_F(kex, classical_client_gets_x25519)
{
	kex_start(_metadata, self, "");
	ASSERT_EQ(0, kex_attempt(_metadata, self, "X25519")) TH_LOG("%s", self->r->reason);
	EXPECT_STREQ("x25519", self->r->group);
	EXPECT_TRUE(log_contains(&self->e, "group=x25519"));
	EXPECT_NE(NULL, strstr(self->peer_said, "Peer Temp Key: X25519,"));
}

/*
 * The service's list bounds what is used: a client whose first key share is outside it
 * is asked (HelloRetryRequest) for one inside.
 */
TEST_F(kex, the_service_list_bounds_the_group)
{
	kex_start(_metadata, self, "groups = P-256");
	ASSERT_EQ(0, kex_attempt(_metadata, self, "X25519:P-256")) TH_LOG("%s", self->r->reason);
	EXPECT_STREQ("secp256r1", self->r->group);
}

/* A group OpenSSL does not know fails the load, and says which key. */
TEST_F(kex, unknown_group_fails_the_load)
{
	char out[2048];

	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\n[service www]\ncertificate = %s\nkey = %s\n"
			      "groups = X25519:NoSuchGroup\n",
			      self->e.srv_cert, self->e.srv_key));
	EXPECT_NE(0, danced_start(&self->e));
	EXPECT_TRUE(log_contains(&self->e, "groups"));
	{
		char *argv[] = { (char *)bin("danced"), "-n", "-c", self->e.conf, NULL };

		EXPECT_NE(0, run(argv, NULL, 0, out, sizeof(out), 30));
		EXPECT_NE(NULL, strstr(out, "[service www]: groups")) TH_LOG("%s", out);
	}
}

/* ---- robustness ------------------------------------------------------------------- */

FIXTURE(robust)
{
	struct env e;
	int lfd, port;
	struct dance *d;
	SSL_CTX *cctx;
};

/* The service's handshake_timeout comes from [danced] unless @danced_extra sets one. */
static void robust_start(struct __test_metadata *_metadata, FIXTURE_DATA(robust) * self,
			 const char *danced_extra)
{
	ASSERT_EQ(0,
		  env_conf(&self->e, "%s\n%s[service www]\ncertificate = %s\nkey = %s\n",
			   danced_extra,
			   strstr(danced_extra, "handshake_timeout") ? "" :
								       "handshake_timeout = 2s\n",
			   self->e.srv_cert, self->e.srv_key));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
}

FIXTURE_SETUP(robust)
{
	ASSERT_EQ(0, env_init(&self->e));
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	self->cctx = client_ctx(&self->e, NULL, NULL, NULL);
	self->d = NULL;
}

FIXTURE_TEARDOWN(robust)
{
	if (self->d)
		dance_close(self->d);
	SSL_CTX_free(self->cctx);
	close(self->lfd);
	env_fini(&self->e);
}

/* A TCP client that never speaks: its socket comes back with a timeout, not a hang. */
TEST_F(robust, silent_client_times_out)
{
	struct dance_result *r = calloc(1, sizeof(*r));
	int cfd, fd;
	long t0;

	robust_start(_metadata, self, "workers = 1");
	cfd = tcp_connect(self->port);
	ASSERT_LE(0, cfd);
	t0 = ms_now();
	fd = accept_handshake(self->lfd, self->d, NULL, r);
	EXPECT_EQ(-ETIMEDOUT, fd);
	EXPECT_EQ(-ETIMEDOUT, r->status);
	EXPECT_NE(NULL, strstr(r->reason, "timed out")) TH_LOG("%s", r->reason);
	/* The reason says who stalled: the client, which sent nothing at all. */
	EXPECT_NE(NULL, strstr(r->reason, "waiting for the peer")) TH_LOG("%s", r->reason);
	EXPECT_NE(NULL, strstr(r->reason, "0 bytes received, 0 sent")) TH_LOG("%s", r->reason);
	EXPECT_EQ(0U, r->offload_us); /* nothing was offloaded */
	EXPECT_LE(1900, ms_now() - t0);
	/* danced shut the connection down: the client sees the end. */
	{
		char b;

		EXPECT_EQ(0, recv(cfd, &b, 1, 0));
	}
	close(cfd);
	free(r);
}

/*
 * A client that sends its ClientHello and then stalls: the timeout names the peer as the
 * one that stopped, and how far the handshake got (the server's whole flight went out).
 */
TEST_F(robust, stalled_client_timeout_says_where_it_stopped)
{
	struct dance_result *r = calloc(1, sizeof(*r));
	unsigned int rx = 0, tx = 0;
	const char *counts;
	SSL *ssl;
	int cfd, fd;

	robust_start(_metadata, self, "workers = 1");
	cfd = tcp_connect(self->port);
	ASSERT_LE(0, cfd);
	fcntl(cfd, F_SETFL, O_NONBLOCK);
	ssl = SSL_new(self->cctx);
	SSL_set_fd(ssl, cfd);
	/* The ClientHello goes out; the client never reads the answer. */
	EXPECT_EQ(-1, SSL_connect(ssl));
	EXPECT_EQ(SSL_ERROR_WANT_READ, SSL_get_error(ssl, -1));
	fd = accept_handshake(self->lfd, self->d, NULL, r);
	EXPECT_EQ(-ETIMEDOUT, fd);
	EXPECT_EQ(-ETIMEDOUT, r->status);
	EXPECT_NE(NULL, strstr(r->reason, "waiting for the peer")) TH_LOG("%s", r->reason);
	/* The counts follow the TLS state's closing quote. */
	counts = strstr(r->reason, "\", ");
	ASSERT_NE(NULL, counts) TH_LOG("%s", r->reason);
	ASSERT_EQ(2, sscanf(counts, "\", %u bytes received, %u sent", &rx, &tx))
	TH_LOG("%s", r->reason);
	/* The ClientHello in, the server's flight (a certificate, so hundreds of bytes) out. */
	EXPECT_LT(100U, rx) TH_LOG("%s", r->reason);
	EXPECT_LT(rx, tx) TH_LOG("%s", r->reason);
	EXPECT_EQ(NULL, strstr(r->reason, "not started")) TH_LOG("%s", r->reason);
	SSL_free(ssl);
	close(cfd);
	free(r);
}

/* Beyond max_handshakes, a request is answered "busy" at once. */
TEST_F(robust, busy_beyond_max_handshakes)
{
	struct dance_params p = { 0 };
	struct dance_result *r = calloc(1, sizeof(*r));
	int cfd[3], sfd[3], i, ret;
	long t0;

	robust_start(_metadata, self, "workers = 1\nmax_handshakes = 2");
	for (i = 0; i < 3; i++) {
		cfd[i] = tcp_connect(self->port);
		sfd[i] = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, sfd[i]);
	}
	ASSERT_EQ(0, dance_submit(self->d, sfd[0], &p, 1));
	ASSERT_EQ(0, dance_submit(self->d, sfd[1], &p, 2));
	usleep(200000); /* both are in flight, waiting for silent clients */
	t0 = ms_now();
	ASSERT_EQ(0, dance_submit(self->d, sfd[2], &p, 3));
	for (;;) {
		struct pollfd pfd = { .fd = dance_fd(self->d), .events = POLLIN };

		ASSERT_EQ(1, poll(&pfd, 1, 5000));
		ret = dance_complete(self->d, r);
		if (ret == -EAGAIN)
			continue;
		ASSERT_EQ(0, ret);
		break;
	}
	EXPECT_EQ(3U, r->id);
	EXPECT_EQ(-EBUSY, r->status);
	EXPECT_NE(NULL, strstr(r->reason, "busy")) TH_LOG("%s", r->reason);
	EXPECT_GT(1000, ms_now() - t0);
	for (i = 0; i < 3; i++)
		close(cfd[i]);
	free(r);
}

static int raw_result(int ch, struct dance_result *r)
{
	const char *why;
	ssize_t n = recv(ch, r, sizeof(*r), 0);

	if (n < 0)
		return -errno;
	if (dance_result_check(r, n, &why))
		return -EBADMSG;
	return 0;
}

TEST_F(robust, malformed_handoffs_each_get_their_own_status)
{
	struct dance_request req = { 0 };
	struct dance_result *r = calloc(1, sizeof(*r));
	int ch, conn, peer, udp, fds[2], before, i;

	robust_start(_metadata, self, "workers = 1");
	ch = raw_channel(self->e.sock);
	ASSERT_LE(0, ch);
	usleep(100000);
	before = danced_fds(&self->e);
	dance_hdr_init(&req.hdr, DANCE_MSG_HANDSHAKE);
	req.id = 7;
	conn = tcp_connect(self->port);
	peer = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	udp = socket(AF_INET, SOCK_DGRAM, 0);

	/* 1: a version this danced does not speak */
	req.hdr.version = DANCE_PROTO_VERSION + 1;
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &peer, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EPROTONOSUPPORT, r->status);
	req.hdr.version = DANCE_PROTO_VERSION;
	/* 2: truncated */
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req) - 10, &peer, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EBADMSG, r->status);
	EXPECT_NE(NULL, strstr(r->reason, "truncated")) TH_LOG("%s", r->reason);
	/* 3: no descriptor */
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), NULL, 0));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EBADF, r->status);
	EXPECT_EQ(7U, r->id);
	/* 4: two descriptors */
	fds[0] = peer;
	fds[1] = peer;
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), fds, 2));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-ETOOMANYREFS, r->status);
	/* 5: not TCP */
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &udp, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EPROTOTYPE, r->status);
	/* 6: a listening socket */
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &self->lfd, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-ENOTCONN, r->status);
	EXPECT_NE(NULL, strstr(r->reason, "listening")) TH_LOG("%s", r->reason);
	/* 7: not a socket at all */
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &ch /* a unix socket */, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EPROTOTYPE, r->status);
	i = open("/dev/null", O_RDONLY);
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &i, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-ENOTSOCK, r->status);
	close(i);
	/* 8: a socket that already carries a ULP */
	ASSERT_EQ(0, setsockopt(peer, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")));
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &peer, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EALREADY, r->status);
	/* 9: an unknown service, and bad magic */
	strcpy(req.service, "nope");
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &conn, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-ENOENT, r->status);
	req.service[0] = '\0';
	req.hdr.magic = 0x12345678;
	ASSERT_EQ(0, send_raw(ch, &req, sizeof(req), &conn, 1));
	ASSERT_EQ(0, raw_result(ch, r));
	EXPECT_EQ(-EPROTO, r->status);
	/* Nothing leaked: danced holds as many descriptors as before. */
	usleep(100000);
	EXPECT_EQ(before, danced_fds(&self->e));
	/* And it still serves: a real handshake on the same channel's neighbour. */
	{
		struct client c = { .ctx = self->cctx, .port = self->port };
		int fd;

		client_start(&c);
		fd = accept_handshake(self->lfd, self->d, NULL, r);
		EXPECT_LE(0, fd) TH_LOG("%s", r->reason);
		EXPECT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
		client_free(&c);
		close(fd);
	}
	close(ch);
	close(conn);
	close(peer);
	close(udp);
	free(r);
}

/* ---- many connections -------------------------------------------------------------- */

/* A non-blocking OpenSSL client over a socket, for driving many at once with poll(). */
struct nbc {
	int fd;
	SSL *ssl;
	bool done;
};

static int nbc_step(struct nbc *c)
{
	int ret = SSL_do_handshake(c->ssl), err;

	if (ret == 1) {
		c->done = true;
		return 1;
	}
	err = SSL_get_error(c->ssl, ret);
	return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static int many_handshakes(struct __test_metadata *_metadata, FIXTURE_DATA(robust) * self, int n,
			   int *ok_out, int *fds_out, struct nbc *cl)
{
	struct dance_params p = { 0 };
	struct dance_result *r = calloc(1, sizeof(*r));
	struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));
	int i, ok = 0, results = 0, ret, fd;

	for (i = 0; i < n; i++) {
		cl[i].fd = tcp_connect(self->port);
		if (cl[i].fd < 0)
			return -1;
		fcntl(cl[i].fd, F_SETFL, O_NONBLOCK);
		cl[i].ssl = SSL_new(self->cctx);
		SSL_set_fd(cl[i].ssl, cl[i].fd);
		SSL_set_connect_state(cl[i].ssl);
		SSL_set_tlsext_host_name(cl[i].ssl, "localhost");
		fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0 || dance_submit(self->d, fd, &p, i + 1))
			return -2;
		fds_out[i] = fd;
	}
	while (results < n) {
		int k = 0;

		for (i = 0; i < n; i++) {
			if (!cl[i].done && nbc_step(&cl[i]) < 0) {
				TH_LOG("client %d: %s", i, pair_ssl_error());
				cl[i].done = true;
			}
			if (!cl[i].done) {
				pfd[k].fd = cl[i].fd;
				pfd[k++].events = POLLIN;
			}
		}
		pfd[k].fd = dance_fd(self->d);
		pfd[k++].events = POLLIN;
		if (poll(pfd, k, 30000) <= 0)
			break;
		while ((ret = dance_complete(self->d, r)) == 0) {
			results++;
			if (!r->status)
				ok++;
			else
				TH_LOG("request %llu: %s", (unsigned long long)r->id, r->reason);
		}
	}
	*ok_out = ok;
	free(pfd);
	free(r);
	return results;
}

TEST_F_TIMEOUT(robust, thousand_concurrent_handshakes_complete, 600)
{
	enum { N = 1000 };
	struct nbc *cl = calloc(N, sizeof(*cl));
	int *fds = calloc(N, sizeof(int));
	struct rlimit rl = { 4 * N, 4 * N };
	int ok = 0, i;

	/* Both ends of every connection live in this process. */
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &rl));
	/* All from 127.0.0.1: one source may hold them all here. */
	robust_start(_metadata, self,
		     "workers = 2\nhandshake_timeout = 120s\nsource_max_handshakes = 1000");
	EXPECT_EQ(N, many_handshakes(_metadata, self, N, &ok, fds, cl));
	EXPECT_EQ(N, ok);
	for (i = 0; i < N; i++) {
		SSL_free(cl[i].ssl);
		close(cl[i].fd);
		close(fds[i]);
	}
	free(cl);
	free(fds);
}

/* kill -9 danced: the connections it already offloaded keep working without it. */
TEST_F_TIMEOUT(robust, established_connections_survive_kill_9, 300)
{
	enum { N = 100 };
	struct nbc *cl = calloc(N, sizeof(*cl));
	int *fds = calloc(N, sizeof(int));
	struct dance_result *r = calloc(1, sizeof(*r));
	char msg[32], buf[64];
	int ok = 0, i, working = 0;

	robust_start(_metadata, self, "workers = 2\nhandshake_timeout = 60s");
	ASSERT_EQ(N, many_handshakes(_metadata, self, N, &ok, fds, cl));
	ASSERT_EQ(N, ok);
	EXPECT_EQ(128 + SIGKILL, danced_stop(&self->e, SIGKILL));
	for (i = 0; i < N; i++) {
		struct pollfd pfd = { .fd = fds[i], .events = POLLIN };
		int n = snprintf(msg, sizeof(msg), "ping %d", i);
		ssize_t got;

		fcntl(cl[i].fd, F_SETFL, 0);
		if (SSL_write(cl[i].ssl, msg, n) != n)
			continue;
		if (poll(&pfd, 1, 10000) != 1)
			continue;
		got = dance_recv(fds[i], buf, sizeof(buf), 0);
		if (got != n || memcmp(buf, msg, n) || send(fds[i], buf, got, 0) != got)
			continue;
		if (SSL_read(cl[i].ssl, buf, sizeof(buf)) == n && !memcmp(buf, msg, n))
			working++;
	}
	EXPECT_EQ(N, working);
	/* A new danced takes new handshakes; libdance reconnects on its own. */
	ASSERT_EQ(0, danced_start(&self->e));
	{
		struct client c = { .ctx = self->cctx, .port = self->port };
		int fd;

		client_start(&c);
		fd = accept_handshake(self->lfd, self->d, NULL, r);
		EXPECT_LE(0, fd) TH_LOG("%s", r->reason);
		EXPECT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
		client_free(&c);
		close(fd);
	}
	for (i = 0; i < N; i++) {
		SSL_free(cl[i].ssl);
		close(cl[i].fd);
		close(fds[i]);
	}
	free(cl);
	free(fds);
	free(r);
}

/* SIGHUP while handshakes run: none is lost, and new ones use the new configuration. */
TEST_F_TIMEOUT(robust, reload_under_load_loses_no_handshake, 600)
{
	enum { ROUNDS = 6, N = 40 };
	struct nbc *cl = calloc(N, sizeof(*cl));
	int *fds = calloc(N, sizeof(int));
	int ok, i, round, total_ok = 0, total = 0;

	robust_start(_metadata, self, "workers = 2\nhandshake_timeout = 60s");
	for (round = 0; round < ROUNDS; round++) {
		pid_t hupper = fork();

		if (!hupper) {
			/* Reload a few times while this round's handshakes run. */
			for (i = 0; i < 5; i++) {
				usleep(30000);
				kill(self->e.pid, SIGHUP);
			}
			_exit(0);
		}
		memset(cl, 0, N * sizeof(*cl));
		total += many_handshakes(_metadata, self, N, &ok, fds, cl);
		total_ok += ok;
		waitpid(hupper, NULL, 0);
		for (i = 0; i < N; i++) {
			SSL_free(cl[i].ssl);
			close(cl[i].fd);
			close(fds[i]);
		}
	}
	EXPECT_EQ(ROUNDS * N, total);
	EXPECT_EQ(ROUNDS * N, total_ok);
	EXPECT_TRUE(log_contains(&self->e, "reloaded"));
	free(cl);
	free(fds);
}

/* A configuration that no longer loads is refused; danced keeps serving the old one. */
TEST_F(robust, bad_reload_keeps_the_running_configuration)
{
	struct dance_result *r = calloc(1, sizeof(*r));
	struct client c = { .ctx = self->cctx, .port = self->port };
	int fd;

	robust_start(_metadata, self, "workers = 1");
	ASSERT_EQ(0,
		  env_conf(&self->e, "workers = 1\n[service www]\ncertificate = relative.pem\n"));
	kill(self->e.pid, SIGHUP);
	usleep(300000);
	EXPECT_TRUE(log_contains(&self->e, "keeping the running configuration"));
	client_start(&c);
	fd = accept_handshake(self->lfd, self->d, NULL, r);
	EXPECT_LE(0, fd) TH_LOG("%s", r->reason);
	EXPECT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
	client_free(&c);
	close(fd);
	free(r);
}

/* SNI picks the service, its certificate and its name in the result. */
TEST_F(robust, sni_selects_the_service)
{
	static const char *const names[] = { "localhost", "other.example.test" };
	struct dance_result *r = calloc(1, sizeof(*r));
	int i;

	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\n[service www]\ncertificate = %s\nkey = %s\n"
			      "default = yes\n[service other]\ncertificate = %s\nkey = %s\n"
			      "server_names = other.example.test\n",
			      self->e.srv_cert, self->e.srv_key, self->e.other_cert,
			      self->e.other_key));
	ASSERT_EQ(0, danced_start(&self->e));
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	for (i = 0; i < 2; i++) {
		struct s_client_job j = { .e = &self->e, .port = self->port, .name = names[i] };
		pthread_t t;
		int fd;

		pthread_create(&t, NULL, s_client_job, &j);
		fd = accept_handshake(self->lfd, self->d, NULL, r);
		EXPECT_LE(0, fd) TH_LOG("%s", r->reason);
		if (fd >= 0)
			close(fd);
		pthread_join(t, NULL);
		EXPECT_STREQ(i ? "other" : "www", r->service);
		EXPECT_STREQ(names[i], r->sni);
		/* The client verified the certificate for the name it asked for. */
		EXPECT_NE(NULL, strstr(j.out, "Verification: OK")) TH_LOG("%s", j.out);
		EXPECT_NE(NULL, strstr(j.out, names[i])) TH_LOG("%s", j.out);
	}
	free(r);
}

/* danced as client refuses a server whose certificate does not name what it asked for. */
TEST_F(robust, client_role_refuses_the_wrong_server_name)
{
	char accept_port[16], connect[32], out[4096];
	pid_t srv;
	int port, ret;

	ASSERT_EQ(0, env_conf(&self->e, "workers = 1\n[service upstream]\nrole = client\nca = %s\n",
			      self->e.ca));
	ASSERT_EQ(0, danced_start(&self->e));
	port = free_port();
	snprintf(accept_port, sizeof(accept_port), "%d", port);
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
	{
		char *argv[] = {
			"/usr/bin/openssl", "s_server", "-accept",	 accept_port, "-cert",
			self->e.srv_cert,   "-key",	self->e.srv_key, "-rev",      NULL
		};

		srv = spawn(argv, NULL);
	}
	ASSERT_EQ(0, wait_connectable(NULL, port, 10000));
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--connect",
				 connect,
				 "--name",
				 "not-this-server.example",
				 NULL };

		ret = run(argv, "x\n", 2, out, sizeof(out), 60);
	}
	EXPECT_EQ(1, ret) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "server certificate rejected")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "mismatch")) TH_LOG("%s", out);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
}

/* client_auth = optional: no certificate is fine (auth none), a verified one is named. */
TEST_F(robust, optional_client_auth_accepts_both)
{
	struct dance_result *r = calloc(1, sizeof(*r));
	int i;

	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\n[service www]\ncertificate = %s\nkey = %s\n"
			      "client_auth = optional\nca = %s\n",
			      self->e.srv_cert, self->e.srv_key, self->e.cli_ca));
	ASSERT_EQ(0, danced_start(&self->e));
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	for (i = 0; i < 2; i++) {
		struct s_client_job j = { .e = &self->e, .port = self->port };
		pthread_t t;
		int fd;

		if (i) {
			j.cert = self->e.cli_cert;
			j.key = self->e.cli_key;
		}
		pthread_create(&t, NULL, s_client_job, &j);
		fd = accept_handshake(self->lfd, self->d, NULL, r);
		EXPECT_LE(0, fd) TH_LOG("%s", r->reason);
		if (fd >= 0)
			close(fd);
		pthread_join(t, NULL);
		EXPECT_EQ((uint32_t)(i ? DANCE_AUTH_X509 : DANCE_AUTH_NONE), r->auth);
	}
	free(r);
}

/* ---- front-door mode --------------------------------------------------------------- */

FIXTURE(front)
{
	struct env e;
	int port, port2;
	char backend[160], backend2[160];
	SSL_CTX *cctx;
};

FIXTURE_SETUP(front)
{
	ASSERT_EQ(0, env_init(&self->e));
	self->port = free_port(); /* for danced to take */
	self->port2 = free_port();
	snprintf(self->backend, sizeof(self->backend), "%.100s/www.sock", self->e.dir);
	snprintf(self->backend2, sizeof(self->backend2), "%.100s/api.sock", self->e.dir);
	ASSERT_EQ(
		0,
		env_conf(&self->e,
			 "workers = 2\n[service www]\ncertificate = %s\nkey = %s\n"
			 "listen = 127.0.0.1:%d\nbackend_socket = %s\nhandshake_timeout = 60s\n"
			 "[service api]\ncertificate = %s\nkey = %s\nserver_names = api.localhost\n"
			 "listen = 127.0.0.1:%d\nbackend_socket = %s\nhandshake_timeout = 60s\n",
			 self->e.srv_cert, self->e.srv_key, self->port, self->backend,
			 self->e.srv_cert, self->e.srv_key, self->port2, self->backend2));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	self->cctx = client_ctx(&self->e, NULL, NULL, NULL);
}

FIXTURE_TEARDOWN(front)
{
	SSL_CTX_free(self->cctx);
	env_fini(&self->e);
}

static int client_ping(struct client *c)
{
	char buf[8];
	ssize_t n = peer_read(c->ssl, c->fd, buf, sizeof(buf));

	if (n != 4 || memcmp(buf, "ping", 4))
		return client_fail(c, n, "no ping from the backend");
	return peer_write(c->ssl, c->fd, "pong", 4, true);
}

/* Serve one socket from a backend of @svc: ping through kTLS, expect pong. */
static void backend_serve_svc(struct __test_metadata *_metadata, struct dance *b, const char *svc)
{
	struct dance_result *r = calloc(1, sizeof(*r));
	char buf[8];
	int fd;

	fd = dance_accept(b, r);
	ASSERT_LE(0, fd) TH_LOG("%d %s", fd, r->reason);
	EXPECT_EQ(0, r->status);
	EXPECT_STREQ(svc, r->service);
	ASSERT_EQ(4, send(fd, "ping", 4, 0));
	ASSERT_EQ(4, dance_recv(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "pong", 4));
	close(fd);
	free(r);
}

static void backend_serve(struct __test_metadata *_metadata, struct dance *b)
{
	backend_serve_svc(_metadata, b, "www");
}

/* No backend: danced does not accept (the kernel's backlog holds the client); then one comes. */
TEST_F(front, waits_for_a_backend_then_hands_over)
{
	struct client c = { .ctx = self->cctx, .port = self->port, .after = client_ping };
	struct dance *b;

	client_start(&c);
	usleep(1500000);
	EXPECT_FALSE(c.handshaken);
	ASSERT_EQ(0, dance_listen(self->backend, 4, &b));
	backend_serve(_metadata, b);
	EXPECT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
	client_free(&c);
	dance_close(b);
}

/* Each front-door service has its own listener and backends; the second works too. */
TEST_F(front, every_service_serves_through_its_own_backends)
{
	struct client c = { .ctx = self->cctx, .port = self->port2, .after = client_ping };
	struct dance *b;

	ASSERT_EQ(0, dance_listen(self->backend2, 4, &b));
	client_start(&c);
	backend_serve_svc(_metadata, b, "api");
	EXPECT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
	client_free(&c);
	dance_close(b);
	EXPECT_FALSE(log_contains(&self->e, "unknown user_data"));
}

/* Two backends with room: finished sockets are spread over both. */
TEST_F_TIMEOUT(front, spreads_over_backends, 300)
{
	enum { N = 16 };
	struct dance *b[2];
	int got[2] = { 0, 0 }, i, k;

	ASSERT_EQ(0, dance_listen(self->backend, N, &b[0]));
	ASSERT_EQ(0, dance_listen(self->backend, N, &b[1]));
	usleep(300000); /* both READY windows are in */
	for (i = 0; i < N; i++) {
		struct client c = { .ctx = self->cctx, .port = self->port, .after = client_ping };
		struct pollfd pfd[2] = { { .fd = dance_fd(b[0]), .events = POLLIN },
					 { .fd = dance_fd(b[1]), .events = POLLIN } };

		client_start(&c);
		ASSERT_LT(0, poll(pfd, 2, 60000));
		k = pfd[0].revents & POLLIN ? 0 : 1;
		backend_serve(_metadata, b[k]);
		got[k]++;
		EXPECT_EQ(0, client_join(&c)) TH_LOG("%s", c.err);
		client_free(&c);
	}
	EXPECT_EQ(N, got[0] + got[1]);
	EXPECT_LT(0, got[0]);
	EXPECT_LT(0, got[1]);
	dance_close(b[0]);
	dance_close(b[1]);
}

DANCED_HARNESS_MAIN
