// SPDX-License-Identifier: GPL-2.0
/*
 * ktls_test.c - kTLS installed from real OpenSSL handshakes, against the real kernel.
 *
 * Runs in the VM rig (the build hosts have no kTLS). Each test is one loopback TCP
 * connection: one side ("ktls") handshakes with OpenSSL and then hands its keys to the
 * kernel with ktls_install(); the other side ("peer") stays a plain OpenSSL endpoint in a
 * thread, whose bytes the test moves by hand so it can put data right behind Finished.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/pair.h"
#include "../../agent/ktls.h"
#include "../../agent/lib/dance.h"

#define BULK (16u << 20)

struct peer {
	SSL *ssl;
	int fd;
	bool hold_last_flight;
	int (*after)(struct peer *p);
	int ret;
	char err[160];
	uint8_t hash[32]; /* of what the peer sent */
	uint8_t got_hash[32]; /* of what the peer received */
	const char *expect_close; /* read this, then expect close_notify */
};

static int peer_failed(struct peer *p, int ret, const char *what)
{
	snprintf(p->err, sizeof(p->err), "peer: %s (%d; %s)", what, ret, pair_ssl_error());
	return ret ? ret : -EPROTO;
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	p->ret = peer_handshake(p->ssl, p->fd, p->hold_last_flight);
	if (p->ret)
		peer_failed(p, p->ret, "handshake");
	else if (p->after)
		p->ret = p->after(p);
	return NULL;
}

FIXTURE(ktls)
{
	int kfd, pfd;
	SSL_CTX *kctx, *pctx;
	SSL *kssl;
	struct ktls_conn kc;
	struct peer peer;
	pthread_t thread;
	bool started;
};

FIXTURE_VARIANT(ktls)
{
	struct pair_suite suite;
	bool ktls_server; /* which end of the connection goes to the kernel */
};

#define VARIANT(name, ver, cipher, kcipher, server)                       \
	FIXTURE_VARIANT_ADD(ktls, name)                                   \
	{                                                                 \
		.suite = { ver, cipher, kcipher }, .ktls_server = server, \
	}

VARIANT(tls12_aes_128_gcm_server, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256",
	TLS_CIPHER_AES_GCM_128, true);
VARIANT(tls12_aes_128_gcm_client, TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256",
	TLS_CIPHER_AES_GCM_128, false);
VARIANT(tls12_aes_256_gcm_server, TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384",
	TLS_CIPHER_AES_GCM_256, true);
VARIANT(tls12_aes_256_gcm_client, TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384",
	TLS_CIPHER_AES_GCM_256, false);
VARIANT(tls12_chacha20_server, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305",
	TLS_CIPHER_CHACHA20_POLY1305, true);
VARIANT(tls12_chacha20_client, TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305",
	TLS_CIPHER_CHACHA20_POLY1305, false);
VARIANT(tls13_aes_128_gcm_server, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128,
	true);
VARIANT(tls13_aes_128_gcm_client, TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128,
	false);
VARIANT(tls13_aes_256_gcm_server, TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256,
	true);
VARIANT(tls13_aes_256_gcm_client, TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256,
	false);
VARIANT(tls13_chacha20_server, TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256",
	TLS_CIPHER_CHACHA20_POLY1305, true);
VARIANT(tls13_chacha20_client, TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256",
	TLS_CIPHER_CHACHA20_POLY1305, false);

FIXTURE_SETUP(ktls)
{
	int cfd, sfd;

	ASSERT_EQ(0, ktls_init());
	ASSERT_EQ(0, pair_tcp(&cfd, &sfd));
	self->kfd = variant->ktls_server ? sfd : cfd;
	self->pfd = variant->ktls_server ? cfd : sfd;
	/* No tickets unless a test asks: the agent turns them off too. */
	self->kctx = pair_ctx(variant->ktls_server, &variant->suite, true, 0);
	self->pctx = pair_ctx(!variant->ktls_server, &variant->suite, false, 0);
	ASSERT_NE(NULL, self->kctx) TH_LOG("%s", pair_ssl_error());
	ASSERT_NE(NULL, self->pctx) TH_LOG("%s", pair_ssl_error());
	self->kssl = SSL_new(self->kctx);
	self->peer.ssl = pair_mem_ssl(self->pctx);
	ASSERT_NE(NULL, self->kssl);
	ASSERT_NE(NULL, self->peer.ssl);
	self->peer.fd = self->pfd;
	ASSERT_TRUE(SSL_set_fd(self->kssl, self->kfd));
	if (variant->ktls_server) {
		SSL_set_accept_state(self->kssl);
		SSL_set_connect_state(self->peer.ssl);
	} else {
		SSL_set_connect_state(self->kssl);
		SSL_set_accept_state(self->peer.ssl);
	}
	ASSERT_EQ(0, ktls_conn_attach(&self->kc, self->kssl));
}

FIXTURE_TEARDOWN(ktls)
{
	/* Unblock the peer before freeing what it uses. */
	shutdown(self->kfd, SHUT_RDWR);
	shutdown(self->pfd, SHUT_RDWR);
	if (self->started)
		pthread_join(self->thread, NULL);
	SSL_free(self->kssl);
	SSL_free(self->peer.ssl);
	SSL_CTX_free(self->kctx);
	SSL_CTX_free(self->pctx);
	close(self->kfd);
	close(self->pfd);
	ktls_conn_wipe(&self->kc);
}

/* Both handshakes: the peer's in its thread, ours (blocking) here. */
static void handshake(struct __test_metadata *_metadata, FIXTURE_DATA(ktls) * self,
		      int (*after)(struct peer *p))
{
	int ret;

	self->peer.after = after;
	ASSERT_EQ(0, pthread_create(&self->thread, NULL, peer_main, &self->peer));
	self->started = true;
	ret = SSL_do_handshake(self->kssl);
	ASSERT_EQ(1, ret) TH_LOG("handshake: %s", pair_ssl_error());
}

static void join(struct __test_metadata *_metadata, FIXTURE_DATA(ktls) * self)
{
	ASSERT_EQ(0, pthread_join(self->thread, NULL));
	self->started = false;
	ASSERT_EQ(0, self->peer.ret) TH_LOG("%s", self->peer.err);
}

static void install(struct __test_metadata *_metadata, FIXTURE_DATA(ktls) * self,
		    const FIXTURE_VARIANT(ktls) * variant)
{
	struct tls_crypto_info info;
	socklen_t len = sizeof(info);
	const char *why = NULL;

	ASSERT_EQ(0, ktls_install(&self->kc, self->kssl, self->kfd, &why)) TH_LOG("%s", why);
	/* The kernel now holds the keys; asking for the header only reports the suite. */
	ASSERT_EQ(0, getsockopt(self->kfd, SOL_TLS, TLS_TX, &info, &len));
	EXPECT_EQ(variant->suite.ktls_cipher, info.cipher_type);
	EXPECT_EQ(variant->suite.version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION,
		  info.version);
	len = sizeof(info);
	ASSERT_EQ(0, getsockopt(self->kfd, SOL_TLS, TLS_RX, &info, &len));
	EXPECT_EQ(variant->suite.ktls_cipher, info.cipher_type);
}

/* A counter of /proc/net/tls_stat; before tls.ko loads, every counter is zero. */
static long tls_stat(const char *name)
{
	char key[64];
	long val = -1, v;
	FILE *f = fopen("/proc/net/tls_stat", "r");

	if (!f)
		return errno == ENOENT ? 0 : -1;
	while (fscanf(f, "%63s %ld", key, &v) == 2)
		if (!strcmp(key, name))
			val = v;
	fclose(f);
	return val;
}

/* Read exactly @len bytes of application data through kTLS. */
static ssize_t ktls_read_full(int fd, uint8_t *buf, size_t len)
{
	struct ktls_record rec;
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = ktls_recv(fd, buf + off, len - off, 0, &rec);
		if (n <= 0)
			return n ? n : (ssize_t)off;
		off += n;
	}
	return off;
}

static int peer_bulk(struct peer *p)
{
	static uint8_t buf[65536];
	EVP_MD_CTX *in = EVP_MD_CTX_new(), *out = EVP_MD_CTX_new();
	uint64_t state = 0x9e3779b97f4a7c15ULL;
	size_t got = 0, sent;
	ssize_t n;
	int ret = 0;

	EVP_DigestInit_ex(in, EVP_sha256(), NULL);
	EVP_DigestInit_ex(out, EVP_sha256(), NULL);
	while (got < BULK) {
		n = peer_read(p->ssl, p->fd, buf, sizeof(buf));
		if (n <= 0) {
			ret = peer_failed(p, n, "bulk read ended early");
			goto out;
		}
		EVP_DigestUpdate(in, buf, n);
		got += n;
	}
	for (sent = 0; sent < BULK; sent += sizeof(buf)) {
		pair_pattern(&state, buf, sizeof(buf));
		EVP_DigestUpdate(out, buf, sizeof(buf));
		ret = peer_write(p->ssl, p->fd, buf, sizeof(buf), true);
		if (ret) {
			peer_failed(p, ret, "bulk write");
			goto out;
		}
	}
	EVP_DigestFinal_ex(in, p->got_hash, NULL);
	EVP_DigestFinal_ex(out, p->hash, NULL);
out:
	EVP_MD_CTX_free(in);
	EVP_MD_CTX_free(out);
	return ret;
}

/* 16 MiB each way through kTLS, compared by SHA-256 against what the other side saw. */
TEST_F_TIMEOUT(ktls, bulk_16mib_each_way_intact, 600)
{
	static uint8_t buf[65536];
	uint8_t sent_hash[32], got_hash[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t state = 0x243f6a8885a308d3ULL;
	long tx_before = tls_stat("TlsTxSw"), rx_before = tls_stat("TlsRxSw");
	size_t done, off;
	ssize_t n;

	handshake(_metadata, self, peer_bulk);
	install(_metadata, self, variant);
	EXPECT_EQ(tx_before + 1, tls_stat("TlsTxSw"));
	EXPECT_EQ(rx_before + 1, tls_stat("TlsRxSw"));

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (done = 0; done < BULK; done += sizeof(buf)) {
		pair_pattern(&state, buf, sizeof(buf));
		EVP_DigestUpdate(md, buf, sizeof(buf));
		for (off = 0; off < sizeof(buf); off += n) {
			n = send(self->kfd, buf + off, sizeof(buf) - off, MSG_NOSIGNAL);
			ASSERT_LT(0, n) TH_LOG("send: %s", strerror(errno));
		}
	}
	EVP_DigestFinal_ex(md, sent_hash, NULL);

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (done = 0; done < BULK; done += n) {
		n = ktls_read_full(self->kfd, buf, sizeof(buf));
		ASSERT_EQ((ssize_t)sizeof(buf), n) TH_LOG("read: %s", strerror(n < 0 ? -n : 0));
		EVP_DigestUpdate(md, buf, n);
	}
	EVP_DigestFinal_ex(md, got_hash, NULL);
	EVP_MD_CTX_free(md);

	join(_metadata, self);
	EXPECT_EQ(0, memcmp(sent_hash, self->peer.got_hash, 32));
	EXPECT_EQ(0, memcmp(got_hash, self->peer.hash, 32));
}

static const char early[] = "written by the peer right behind its Finished";

/* Finished and data leave in one send(); then wait for our answer through kTLS. */
static int peer_early_data(struct peer *p)
{
	char buf[64];
	ssize_t n;
	int ret;

	ret = peer_write(p->ssl, p->fd, early, sizeof(early), false);
	if (!ret)
		ret = peer_write(p->ssl, p->fd, early, sizeof(early), false);
	if (!ret)
		ret = peer_flush(p->ssl, p->fd);
	if (ret)
		return peer_failed(p, ret, "early write");
	n = peer_read(p->ssl, p->fd, buf, sizeof(buf));
	if (n != 3 || memcmp(buf, "ack", 3))
		return peer_failed(p, n, "no ack through kTLS");
	return 0;
}

TEST_F(ktls, data_right_behind_finished_is_neither_lost_nor_duplicated)
{
	struct pollfd pfd = { .fd = self->kfd, .events = POLLIN };
	char buf[2 * sizeof(early) + 16];
	struct ktls_record rec;

	self->peer.hold_last_flight = true;
	handshake(_metadata, self, peer_early_data);
	/* The data is queued in the kernel (maybe in Finished's own segment) before keys go in. */
	ASSERT_EQ(1, poll(&pfd, 1, 10000));
	install(_metadata, self, variant);
	ASSERT_EQ((ssize_t)(2 * sizeof(early)),
		  ktls_read_full(self->kfd, (uint8_t *)buf, 2 * sizeof(early)));
	EXPECT_STREQ(early, buf);
	EXPECT_STREQ(early, buf + sizeof(early));
	/* Nothing else was pending: not a byte twice. */
	EXPECT_EQ(-EAGAIN, ktls_recv(self->kfd, buf, sizeof(buf), MSG_DONTWAIT, &rec));
	ASSERT_EQ(3, send(self->kfd, "ack", 3, 0));
	join(_metadata, self);
}

static int peer_read_hello(struct peer *p)
{
	char buf[16];
	ssize_t n;

	n = peer_read(p->ssl, p->fd, buf, sizeof(buf));
	if (n != 5 || memcmp(buf, "hello", 5))
		return peer_failed(p, n, "no hello after the tickets");
	if (peer_write(p->ssl, p->fd, "world", 5, true))
		return peer_failed(p, 0, "write");
	return 0;
}

/*
 * TLS 1.3 tickets written by OpenSSL before offload use up sequence numbers on the
 * server's send side and, unread, arrive at a kTLS client as handshake records.
 */
TEST_F(ktls, session_tickets_keep_the_sequence)
{
	bool tls13 = variant->suite.version == TLS1_3_VERSION;
	struct ktls_record rec;
	uint8_t buf[4096];
	ssize_t n;
	int tickets = 0;

	if (variant->ktls_server)
		SSL_set_num_tickets(self->kssl, 2);
	else
		SSL_set_num_tickets(self->peer.ssl, 2);
	handshake(_metadata, self, peer_read_hello);
	install(_metadata, self, variant);
	ASSERT_EQ(5, send(self->kfd, "hello", 5, 0));
	while ((n = ktls_recv(self->kfd, buf, sizeof(buf), 0, &rec)) == -ENOMSG) {
		EXPECT_EQ(SSL3_MT_NEWSESSION_TICKET, buf[0]);
		tickets++;
	}
	ASSERT_EQ(5, n) TH_LOG("ktls_recv: %zd", n);
	EXPECT_EQ(0, memcmp(buf, "world", 5));
	EXPECT_EQ(tls13 && !variant->ktls_server ? 2 : 0, tickets);
	join(_metadata, self);
}

static int peer_send_one(struct peer *p)
{
	return peer_write(p->ssl, p->fd, "tamper-proof", 12, true);
}

TEST_F(ktls, wrong_key_fails_with_ebadmsg)
{
	union ktls_crypto_info rx, tx;
	socklen_t rx_len, tx_len;
	const char *why;
	long errors = tls_stat("TlsDecryptError");
	char buf[64];

	handshake(_metadata, self, peer_send_one);
	join(_metadata, self);
	ASSERT_EQ(0, ktls_crypto_info(&self->kc, self->kssl, KTLS_RX, &rx, &rx_len, &why));
	ASSERT_EQ(0, ktls_crypto_info(&self->kc, self->kssl, KTLS_TX, &tx, &tx_len, &why));
	((uint8_t *)&rx)[sizeof(rx.info) +
			 (variant->suite.ktls_cipher == TLS_CIPHER_CHACHA20_POLY1305 ? 12 : 8)] ^=
		0x01; /* first key byte */
	ASSERT_EQ(0, setsockopt(self->kfd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")));
	ASSERT_EQ(0, setsockopt(self->kfd, SOL_TLS, TLS_RX, &rx, rx_len));
	ASSERT_EQ(0, setsockopt(self->kfd, SOL_TLS, TLS_TX, &tx, tx_len));
	OPENSSL_cleanse(&rx, sizeof(rx));
	OPENSSL_cleanse(&tx, sizeof(tx));
	EXPECT_EQ(-1, recv(self->kfd, buf, sizeof(buf), 0));
	EXPECT_EQ(EBADMSG, errno);
	EXPECT_EQ(errors + 1, tls_stat("TlsDecryptError"));
}

static int send_record(int fd, uint8_t type, const void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(1)] = { 0 };
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov,
			      .msg_iovlen = 1,
			      .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cmsg) = type;
	return sendmsg(fd, &msg, 0) == (ssize_t)len ? 0 : -errno;
}

static int peer_reads_until_error(struct peer *p)
{
	char buf[64];
	ssize_t n = peer_read(p->ssl, p->fd, buf, sizeof(buf));

	/* OpenSSL rejects the bogus message and sends its alert, which peer_read flushes. */
	if (n != -EPROTO)
		return peer_failed(p, n, "the bogus handshake message was accepted");
	return 0;
}

TEST_F(ktls, peer_alert_arrives_as_a_control_record)
{
	/* A handshake message of a type that does not exist (254), sent through kTLS. */
	static const uint8_t bogus[] = { 254, 0, 0, 0 };
	struct ktls_record rec;
	char buf[64];

	handshake(_metadata, self, peer_reads_until_error);
	install(_metadata, self, variant);
	ASSERT_EQ(0, send_record(self->kfd, KTLS_CONTENT_HANDSHAKE, bogus, sizeof(bogus)));
	join(_metadata, self);

	/* Without a control-message buffer the kernel refuses to hand over the alert ... */
	EXPECT_EQ(-1, recv(self->kfd, buf, sizeof(buf), 0));
	EXPECT_EQ(EIO, errno);
	/* ... with one, the record comes with its type: a fatal unexpected_message. */
	EXPECT_EQ(-ECONNABORTED, ktls_recv(self->kfd, buf, sizeof(buf), 0, &rec));
	EXPECT_EQ(KTLS_CONTENT_ALERT, rec.type);
	EXPECT_EQ(SSL3_AL_FATAL, rec.alert_level);
	EXPECT_EQ(SSL_AD_UNEXPECTED_MESSAGE, rec.alert_desc);
}

static int peer_says_bye(struct peer *p)
{
	char buf[16];
	ssize_t n;
	int ret;

	ret = peer_write(p->ssl, p->fd, "bye", 3, false);
	if (ret)
		return peer_failed(p, ret, "write");
	if (SSL_shutdown(p->ssl) < 0 || peer_flush(p->ssl, p->fd))
		return peer_failed(p, 0, "close_notify");
	n = peer_read(p->ssl, p->fd, buf, sizeof(buf));
	if (n != 0)
		return peer_failed(p, n, "our close_notify did not end the peer's stream");
	return 0;
}

TEST_F(ktls, close_notify_is_end_of_stream)
{
	struct ktls_record rec;
	char buf[16];

	handshake(_metadata, self, peer_says_bye);
	install(_metadata, self, variant);
	ASSERT_EQ(3, ktls_recv(self->kfd, buf, sizeof(buf), 0, &rec));
	EXPECT_EQ(0, memcmp(buf, "bye", 3));
	EXPECT_EQ(-1, recv(self->kfd, buf, sizeof(buf), 0));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(0, ktls_recv(self->kfd, buf, sizeof(buf), 0, &rec));
	EXPECT_EQ(KTLS_CONTENT_ALERT, rec.type);
	EXPECT_EQ(SSL_AD_CLOSE_NOTIFY, rec.alert_desc);
	/* And ours ends the peer's stream. */
	ASSERT_EQ(0, ktls_send_alert(self->kfd, SSL3_AL_WARNING, SSL_AD_CLOSE_NOTIFY));
	join(_metadata, self);
}

/* What the real kernel says when offload is impossible, and what we make of it. */
FIXTURE(refusal)
{
	int cfd, sfd;
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	struct ktls_conn kc;
};

FIXTURE_SETUP(refusal)
{
	struct pair_suite suite = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256",
				    TLS_CIPHER_AES_GCM_128 };
	uint8_t buf[16384];

	ASSERT_EQ(0, ktls_init());
	ASSERT_EQ(0, pair_tcp(&self->cfd, &self->sfd));
	self->cctx = pair_ctx(false, &suite, true, 0);
	self->sctx = pair_ctx(true, &suite, true, 0);
	self->c = pair_mem_ssl(self->cctx);
	self->s = pair_mem_ssl(self->sctx);
	ASSERT_EQ(0, ktls_conn_attach(&self->kc, self->s));
	ASSERT_EQ(0, pair_mem_handshake(self->c, self->s));
	/* The handshake ran in memory; the TCP pair only carries what follows. */
	while (pair_wire(self->s, buf, sizeof(buf)) > 0)
		continue;
}

FIXTURE_TEARDOWN(refusal)
{
	SSL_free(self->c);
	SSL_free(self->s);
	SSL_CTX_free(self->cctx);
	SSL_CTX_free(self->sctx);
	close(self->cfd);
	close(self->sfd);
	ktls_conn_wipe(&self->kc);
}

TEST_F(refusal, socket_that_is_no_longer_established)
{
	struct pollfd pfd = { .fd = self->sfd, .events = POLLRDHUP };
	const char *why = NULL;

	close(self->cfd);
	self->cfd = -1;
	ASSERT_EQ(1, poll(&pfd, 1, 5000)); /* FIN arrived: CLOSE_WAIT */
	EXPECT_EQ(-ENOTCONN, ktls_install(&self->kc, self->s, self->sfd, &why));
	ASSERT_NE(NULL, why);
	EXPECT_NE(NULL, strstr(why, "ESTABLISHED")) TH_LOG("%s", why);
}

TEST_F(refusal, socket_that_already_has_a_ulp)
{
	const char *why = NULL;

	ASSERT_EQ(0, setsockopt(self->sfd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")));
	EXPECT_EQ(-EEXIST, ktls_install(&self->kc, self->s, self->sfd, &why));
	ASSERT_NE(NULL, why);
	EXPECT_NE(NULL, strstr(why, "already has an upper-layer protocol")) TH_LOG("%s", why);
}

TEST_F(refusal, descriptor_that_is_not_tcp)
{
	int udp = socket(AF_INET, SOCK_DGRAM, 0);
	const char *why = NULL;
	int ret;

	ASSERT_LE(0, udp);
	ret = ktls_install(&self->kc, self->s, udp, &why);
	EXPECT_TRUE(ret == -ENOPROTOOPT || ret == -EOPNOTSUPP) TH_LOG("ret %d", ret);
	ASSERT_NE(NULL, why);
	EXPECT_NE(NULL, strstr(why, "not a TCP socket")) TH_LOG("%s", why);
	close(udp);
}

/*
 * dance_recv() against real control records: both ends of a TLS 1.3 connection are
 * offloaded, so the "server" end can send any record type through the kernel, and the
 * two tickets its OpenSSL wrote before offload reach the client as handshake records.
 */
FIXTURE(recv)
{
	int cfd, sfd;
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	struct ktls_conn ckc, skc;
};

FIXTURE_SETUP(recv)
{
	struct pair_suite suite = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256",
				    TLS_CIPHER_AES_GCM_128 };
	const char *why = NULL;
	uint8_t buf[16384];
	size_t n;

	ASSERT_EQ(0, ktls_init());
	ASSERT_EQ(0, pair_tcp(&self->cfd, &self->sfd));
	self->cctx = pair_ctx(false, &suite, true, 0);
	self->sctx = pair_ctx(true, &suite, true, 2);
	self->c = pair_mem_ssl(self->cctx);
	self->s = pair_mem_ssl(self->sctx);
	ASSERT_EQ(0, ktls_conn_attach(&self->ckc, self->c));
	ASSERT_EQ(0, ktls_conn_attach(&self->skc, self->s));
	ASSERT_EQ(0, pair_mem_handshake(self->c, self->s));
	/* The tickets the server wrote after the handshake go out as they are. */
	n = pair_wire(self->s, buf, sizeof(buf));
	ASSERT_LT(0U, n);
	ASSERT_EQ((ssize_t)n, send(self->sfd, buf, n, 0));
	ASSERT_EQ(0, ktls_install(&self->ckc, self->c, self->cfd, &why)) TH_LOG("%s", why);
	ASSERT_EQ(0, ktls_install(&self->skc, self->s, self->sfd, &why)) TH_LOG("%s", why);
}

FIXTURE_TEARDOWN(recv)
{
	SSL_free(self->c);
	SSL_free(self->s);
	SSL_CTX_free(self->cctx);
	SSL_CTX_free(self->sctx);
	close(self->cfd);
	close(self->sfd);
}

TEST_F(recv, tickets_are_skipped_even_into_a_small_buffer)
{
	char buf[8] = "";

	ASSERT_EQ(5, send(self->sfd, "hello", 5, 0));
	ASSERT_EQ(3, dance_recv(self->cfd, buf, 3, 0)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, memcmp(buf, "hel", 3));
	ASSERT_EQ(2, dance_recv(self->cfd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "lo", 2));
}

TEST_F(recv, peek_leaves_the_data_queued)
{
	char buf[8] = "";

	ASSERT_EQ(5, send(self->sfd, "hello", 5, 0));
	ASSERT_EQ(5, dance_recv(self->cfd, buf, sizeof(buf), MSG_PEEK))
	TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, memcmp(buf, "hello", 5));
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(5, dance_recv(self->cfd, buf, sizeof(buf), 0));
	EXPECT_EQ(0, memcmp(buf, "hello", 5));
}

TEST_F(recv, close_notify_is_end_of_stream_even_in_a_one_byte_buffer)
{
	char b;

	ASSERT_EQ(0, ktls_send_alert(self->sfd, SSL3_AL_WARNING, SSL_AD_CLOSE_NOTIFY));
	EXPECT_EQ(0, dance_recv(self->cfd, &b, 1, 0)) TH_LOG("%s", strerror(errno));
}

TEST_F(recv, fatal_alert_is_econnaborted)
{
	char buf[8];

	ASSERT_EQ(0, ktls_send_alert(self->sfd, SSL3_AL_FATAL, SSL_AD_HANDSHAKE_FAILURE));
	EXPECT_EQ(-1, dance_recv(self->cfd, buf, sizeof(buf), 0));
	EXPECT_EQ(ECONNABORTED, errno);
}

TEST_F(recv, user_canceled_is_skipped)
{
	char buf[8] = "";

	ASSERT_EQ(0, ktls_send_alert(self->sfd, SSL3_AL_WARNING, SSL_AD_USER_CANCELLED));
	ASSERT_EQ(5, send(self->sfd, "after", 5, 0));
	ASSERT_EQ(5, dance_recv(self->cfd, buf, sizeof(buf), 0)) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(0, memcmp(buf, "after", 5));
}

TEST_F(recv, key_update_is_ekeyexpired)
{
	/* KeyUpdate(update_not_requested): type 24, length 1, one byte. */
	static const uint8_t ku[] = { 24, 0, 0, 1, 0 };
	char buf[8];

	ASSERT_EQ(0, send_record(self->sfd, KTLS_CONTENT_HANDSHAKE, ku, sizeof(ku)));
	EXPECT_EQ(-1, dance_recv(self->cfd, buf, sizeof(buf), 0));
	EXPECT_EQ(EKEYEXPIRED, errno);
}

DANCED_HARNESS_MAIN
