// SPDX-License-Identifier: GPL-2.0
/*
 * ea_test.c - exported authenticators (RFC 9261) on sockets danced offloaded, in the VM.
 *
 * The peer is userspace OpenSSL with the tests' own RFC 9261 code (tests/lib/ea.c), which
 * shares nothing with danced's: every authenticator danced validates was made by it, and
 * every one danced makes is judged by it, from exporter values OpenSSL computes on the
 * peer's side. The messages travel over the TLS connection itself, framed by a 4-byte
 * length: the server's side through kTLS, the peer's through SSL_read/SSL_write. Names
 * are proved by DANE against a real Knot DNS serving signed zones, or by X.509; the
 * kernel's policy follows the proved name.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/dnsfix.h"
#include "../lib/ea.h"
#include "../lib/pki.h"
#include "../../agent/lib/dance.h"
#include "danced.h"

#define Z "fixture.example"
#define SENSOR1 "sensor1._device." Z /* its TLSA record names ee's key */
#define SENSOR7 "sensor7._device." Z /* its TLSA record names other's key */

/* ---- the peer: a TLS client on OpenSSL, handed to danced's server side -------------- */

struct peer {
	int port;
	int version; /* 0: TLS 1.3 */
	bool no_ems;
	bool pha; /* offers post_handshake_auth */
	const char *cert, *key; /* a client certificate in the handshake, or NULL */
	const char *name; /* dane_clientid in the handshake, or NULL */
	SSL_CTX *ctx;
	SSL *ssl;
	int fd; /* the peer's socket */
	int sfd; /* the server's: kTLS, after danced */
	bool ok;
	/* Reset the connection once the handshake is done and this holds a DNS answer. */
	struct dnsfix *reset_while_held;
	pthread_t thread;
	uint8_t ext[256];
};

static int clientid_add(SSL *ssl, unsigned int type, unsigned int context,
			const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			int *al, void *arg)
{
	struct peer *p = arg;
	size_t n;

	if (!p->name || context != SSL_EXT_TLS1_3_CERTIFICATE || chainidx)
		return 0;
	n = strlen(p->name);
	p->ext[0] = n;
	memcpy(p->ext + 1, p->name, n);
	*out = p->ext;
	*outlen = n + 1;
	return 1;
}

static int clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
			  const unsigned char *in, size_t inlen, X509 *x, size_t chainidx, int *al,
			  void *arg)
{
	return 1;
}

/*
 * The client is gone while danced still waits for DNS: an RST, which TCP turns into
 * TCP_CLOSE on the server's socket before danced has given it an identity. Then the
 * answer may come.
 */
static void peer_reset_while_held(struct peer *p)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct tcp_info ti;
	socklen_t len;
	int i;

	for (i = 0; i < 500 && !dnsfix_held(p->reset_while_held, false); i++)
		usleep(10000);
	setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(p->fd);
	p->fd = -1;
	for (i = 0; i < 500; i++) {
		len = sizeof(ti);
		if (p->sfd >= 0 && !getsockopt(p->sfd, IPPROTO_TCP, TCP_INFO, &ti, &len) &&
		    ti.tcpi_state == TCP_CLOSE)
			break;
		usleep(10000);
	}
	dnsfix_release(p->reset_while_held, NULL);
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;

	p->fd = tcp_connect(p->port);
	if (p->fd < 0)
		return NULL;
	p->ssl = SSL_new(p->ctx);
	SSL_set_fd(p->ssl, p->fd);
	SSL_set_tlsext_host_name(p->ssl, "localhost");
	SSL_set_post_handshake_auth(p->ssl, p->pha);
	p->ok = SSL_connect(p->ssl) == 1;
	if (p->ok && p->reset_while_held)
		peer_reset_while_held(p);
	return NULL;
}

FIXTURE(ea)
{
	struct env e;
	struct dnsfix f;
	int lfd, port;
	struct dance *d;
	struct dance_result *r;
	char ee_cert[160], ee_key[160], other_cert[160], other_key[160];
	X509 *ee, *other, *cli, *bad, *srv;
	EVP_PKEY *ee_k, *other_k, *cli_k, *bad_k, *srv_k;
	uint8_t req[TEA_MAX], auth[TEA_MAX], buf[TEA_MAX];
};

/* Hand a new connection from @p to danced (service www) and wait for both ends. */
static int peer_connect(struct __test_metadata *_metadata, FIXTURE_DATA(ea) * self, struct peer *p)
{
	struct dance_params dp = { 0 };
	int ret;

	p->port = self->port;
	p->fd = p->sfd = -1;
	p->ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(p->ctx, p->version ?: TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(p->ctx, p->version ?: TLS1_3_VERSION);
	if (p->no_ems)
		SSL_CTX_set_options(p->ctx, SSL_OP_NO_EXTENDED_MASTER_SECRET);
	SSL_CTX_add_custom_ext(p->ctx, TEA_CLIENTID,
			       SSL_EXT_TLS1_3_CERTIFICATE_REQUEST | SSL_EXT_TLS1_3_CERTIFICATE,
			       clientid_add, NULL, p, clientid_parse, p);
	if (p->cert) {
		SSL_CTX_use_certificate_chain_file(p->ctx, p->cert);
		SSL_CTX_use_PrivateKey_file(p->ctx, p->key, SSL_FILETYPE_PEM);
	}
	pthread_create(&p->thread, NULL, peer_main, p);
	p->sfd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (p->sfd < 0)
		return -errno;
	ret = dance_handshake(self->d, p->sfd, &dp, self->r);
	if (ret)
		p->sfd = -1;
	pthread_join(p->thread, NULL);
	if (!ret && !p->ok)
		ret = -EPROTO;
	return ret;
}

static void peer_close(struct peer *p)
{
	SSL_free(p->ssl);
	SSL_CTX_free(p->ctx);
	if (p->fd >= 0)
		close(p->fd);
	if (p->sfd >= 0)
		close(p->sfd);
	p->ssl = NULL;
	p->ctx = NULL;
	p->fd = p->sfd = -1;
}

/* The application's framing: a 4-byte length, then the message. */
static int srv_send(int fd, const uint8_t *msg, size_t len)
{
	uint8_t b[4 + TEA_MAX];

	b[0] = len >> 24, b[1] = len >> 16, b[2] = len >> 8, b[3] = len;
	memcpy(b + 4, msg, len);
	return send(fd, b, 4 + len, MSG_NOSIGNAL) == (ssize_t)(4 + len) ? 0 : -errno;
}

static int srv_recv(int fd, uint8_t *msg, size_t cap)
{
	uint8_t b[4 + TEA_MAX];
	size_t have = 0, want = 4;
	ssize_t n;

	while (have < want) {
		n = dance_recv(fd, b + have, want - have, 0);
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		have += n;
		if (have == 4)
			want = 4 + ((size_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
		if (want > 4 + cap)
			return -EMSGSIZE;
	}
	memcpy(msg, b + 4, want - 4);
	return want - 4;
}

static int peer_send(SSL *ssl, const uint8_t *msg, size_t len)
{
	uint8_t b[4 + TEA_MAX];

	b[0] = len >> 24, b[1] = len >> 16, b[2] = len >> 8, b[3] = len;
	memcpy(b + 4, msg, len);
	return SSL_write(ssl, b, 4 + len) == (int)(4 + len) ? 0 : -EIO;
}

static int peer_recv(SSL *ssl, uint8_t *msg, size_t cap)
{
	uint8_t b[4 + TEA_MAX];
	size_t have = 0, want = 4;
	int n;

	while (have < want) {
		n = SSL_read(ssl, b + have, want - have);
		if (n <= 0)
			return -EIO;
		have += n;
		if (have == 4)
			want = 4 + ((size_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
		if (want > 4 + cap)
			return -EMSGSIZE;
	}
	memcpy(msg, b + 4, want - 4);
	return want - 4;
}

FIXTURE_SETUP(ea)
{
	static const char *const names[] = { "ignored.example", NULL };
	char parent[8192], child[2048], b[1024], c[1024];
	size_t n = 0;

	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	snprintf(self->ee_cert, sizeof(self->ee_cert), "%.100s/ee.pem", self->e.dir);
	snprintf(self->ee_key, sizeof(self->ee_key), "%.100s/ee.key", self->e.dir);
	snprintf(self->other_cert, sizeof(self->other_cert), "%.100s/other.pem", self->e.dir);
	snprintf(self->other_key, sizeof(self->other_key), "%.100s/other.key", self->e.dir);
	ASSERT_EQ(0, pki_leaf(NULL, "a DANE-EE device", names, 0, self->ee_cert, self->ee_key));
	ASSERT_EQ(0, pki_leaf(NULL, "another device", names, 0, self->other_cert, self->other_key));
	self->ee = pki_read_cert(self->ee_cert);
	self->other = pki_read_cert(self->other_cert);
	self->cli = pki_read_cert(self->e.cli_cert);
	self->bad = pki_read_cert(self->e.bad_cert);
	self->srv = pki_read_cert(self->e.srv_cert);
	self->ee_k = pki_read_key(self->ee_key);
	self->other_k = pki_read_key(self->other_key);
	self->cli_k = pki_read_key(self->e.cli_key);
	self->bad_k = pki_read_key(self->e.bad_key);
	self->srv_k = pki_read_key(self->e.srv_key);
	ASSERT_TRUE(self->ee && self->other && self->cli && self->bad && self->srv);
	ASSERT_TRUE(self->ee_k && self->other_k && self->cli_k && self->bad_k && self->srv_k);

	ASSERT_EQ(0, dnsfix_tlsa(self->ee, 3, 1, 1, b, sizeof(b)));
	ASSERT_EQ(0, dnsfix_tlsa(self->other, 3, 1, 1, c, sizeof(c)));
	n += snprintf(parent + n, sizeof(parent) - n,
		      "sensor1._device IN TLSA %s\nsensor7._device IN TLSA %s\n"
		      "mismatch IN TLSA %s\ndown1 IN TLSA %s\n",
		      b, c, c, b);
	snprintf(child, sizeof(child), "client IN TLSA %s\n", b);
	{
		struct dnsfix_zones z = {
			.parent = parent, .insecure = child, .bogus = child, .expired = child
		};
		char dir[200];

		snprintf(dir, sizeof(dir), "%.100s/dns", self->e.dir);
		ASSERT_EQ(0, mkdir(dir, 0700));
		ASSERT_EQ(0, dnsfix_start(&self->f, dir, 53, &z));
	}
	snprintf(self->e.bpf_pin, sizeof(self->e.bpf_pin), "danced-ea-%d", getpid());
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 2\nlog_level = debug\n"
			      "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n"
			      "dns_stub = " Z ". %s\n"
			      "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			      "dane = optional\ndane_names = " Z "\nclient_auth = optional\n"
			      "ca = %s\ntls_min = 1.2\nhandshake_timeout = 8s\n"
			      "[service me]\nrole = client\nverify = none\n"
			      "identity = " SENSOR1 "\ncertificate = %s\nkey = %s\nca = %s\n"
			      /* asks nobody in the handshake: proofs come after it */
			      "[service later]\ncertificate = %s\nkey = %s\nclient_auth = after\n"
			      "ca = %s\ndane = optional\ndane_names = " Z "\n",
			      self->f.trust_anchor, self->f.stubs[0].addr, self->e.srv_cert,
			      self->e.srv_key, self->e.cli_ca, self->ee_cert, self->ee_key,
			      self->e.ca, self->e.srv_cert, self->e.srv_key, self->e.cli_ca));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(ea)
{
	if (self->d)
		dance_close(self->d);
	free(self->r);
	close(self->lfd);
	danced_stop(&self->e, SIGTERM);
	dnsfix_fini(&self->f);
	X509_free(self->ee);
	X509_free(self->other);
	X509_free(self->cli);
	X509_free(self->bad);
	X509_free(self->srv);
	EVP_PKEY_free(self->ee_k);
	EVP_PKEY_free(self->other_k);
	EVP_PKEY_free(self->cli_k);
	EVP_PKEY_free(self->bad_k);
	EVP_PKEY_free(self->srv_k);
	env_fini(&self->e);
}

/*
 * The whole exchange over the connection: danced makes the request, it travels to the
 * peer through kTLS, the peer answers with @cert/@key (and @name in dane_clientid), the
 * answer travels back, and danced judges it. Returns dance_ea_validate()'s status.
 */
static int prove(struct __test_metadata *_metadata, FIXTURE_DATA(ea) * self, struct peer *p,
		 unsigned int flags, X509 *cert, EVP_PKEY *key, const char *name)
{
	int req_len, auth_len;

	if (dance_ea_request(self->d, p->sfd, flags, NULL, self->r))
		return self->r->status;
	req_len = self->r->pending_len;
	memcpy(self->req, self->r->pending, req_len);
	if (srv_send(p->sfd, self->req, req_len))
		return -EIO;
	if (peer_recv(p->ssl, self->buf, sizeof(self->buf)) != req_len ||
	    memcmp(self->buf, self->req, req_len))
		return -EIO;
	auth_len = tea_authenticate(p->ssl, self->buf, req_len, cert, NULL, key, name, self->auth,
				    sizeof(self->auth));
	if (auth_len < 0)
		return auth_len;
	if (peer_send(p->ssl, self->auth, auth_len))
		return -EIO;
	if (srv_recv(p->sfd, self->buf, sizeof(self->buf)) != auth_len)
		return -EIO;
	return dance_ea_validate(self->d, p->sfd, self->req, req_len, self->buf, auth_len, self->r);
}

/* Bytes both ways through the connection, after whatever happened on it. */
static void expect_data_flows(struct __test_metadata *_metadata, struct peer *p)
{
	uint8_t b[16];

	ASSERT_EQ(0, srv_send(p->sfd, (const uint8_t *)"after", 5));
	ASSERT_EQ(5, peer_recv(p->ssl, b, sizeof(b)));
	EXPECT_EQ(0, memcmp(b, "after", 5));
	ASSERT_EQ(0, peer_send(p->ssl, (const uint8_t *)"reply!", 6));
	ASSERT_EQ(6, srv_recv(p->sfd, b, sizeof(b)));
	EXPECT_EQ(0, memcmp(b, "reply!", 6));
}

static void expect_dane_proof(struct __test_metadata *_metadata, FIXTURE_DATA(ea) * self,
			      int version)
{
	struct peer p = { .version = version };
	const uint8_t *ctx;

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth); /* anonymous so far */
	ASSERT_EQ(0, prove(_metadata, self, &p, 0, self->ee, self->ee_k, SENSOR1))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_DANE, self->r->auth);
	EXPECT_STREQ(SENSOR1, self->r->verified_name);
	EXPECT_EQ(3, self->r->tlsa_usage);
	EXPECT_EQ(1, self->r->tlsa_selector);
	EXPECT_EQ(1, self->r->tlsa_mtype);
	EXPECT_STREQ("www", self->r->service);
	EXPECT_EQ(version ?: TLS1_3_VERSION, self->r->tls_version);
	/* danced's request: a CertificateRequest with 32 random bytes of context */
	EXPECT_EQ(13, self->req[0]);
	EXPECT_EQ(32, tea_request_context(
			      self->req,
			      4 + (self->req[1] << 16 | self->req[2] << 8 | self->req[3]), &ctx));
	expect_data_flows(_metadata, &p);
	peer_close(&p);
}

TEST_F(ea, anonymous_client_proves_its_name_by_dane)
{
	expect_dane_proof(_metadata, self, 0);
}

TEST_F(ea, tls12_with_extended_master_secret_proves_by_dane)
{
	expect_dane_proof(_metadata, self, TLS1_2_VERSION);
}

TEST_F(ea, tls12_without_extended_master_secret_is_refused)
{
	struct peer p = { .version = TLS1_2_VERSION, .no_ems = true };
	int n;

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-EPROTO, dance_ea_request(self->d, p.sfd, 0, NULL, self->r));
	EXPECT_EQ(0, strncmp(self->r->reason, "ea-no-ems", 9)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(0U, self->r->pending_len);
	/* Nor does danced answer the peer's request there; the peer refuses too. */
	n = tea_request(p.ssl, (const uint8_t *)"0123456789abcdef", 16, false, NULL, self->req,
			sizeof(self->req));
	ASSERT_LT(0, n);
	EXPECT_EQ(-EPROTO, dance_ea_authenticate(self->d, p.sfd, self->req, n, 0, self->r));
	EXPECT_EQ(-EPROTO, tea_values(p.ssl, true, self->buf, self->buf + 64));
	expect_data_flows(_metadata, &p);
	peer_close(&p);
}

TEST_F(ea, client_proves_an_x509_identity)
{
	struct peer p = { 0 };

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	ASSERT_EQ(0, prove(_metadata, self, &p, DANCE_EA_NO_DANE, self->cli, self->cli_k, NULL))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_X509, self->r->auth);
	EXPECT_STREQ("", self->r->verified_name);
	EXPECT_NE(NULL, strstr(self->r->peer_subject, "CN=")) TH_LOG("%s", self->r->peer_subject);
	/* A certificate from a CA the service does not trust proves nothing. */
	EXPECT_EQ(-EACCES,
		  prove(_metadata, self, &p, DANCE_EA_NO_DANE, self->bad, self->bad_k, NULL));
	EXPECT_EQ(0, strncmp(self->r->reason, "client certificate rejected", 27))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);
	/* Without dane_clientid on a DANE request, X.509 still decides. */
	EXPECT_EQ(0, prove(_metadata, self, &p, DANCE_EA_DANE, self->cli, self->cli_k, NULL))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_X509, self->r->auth);
	expect_data_flows(_metadata, &p);
	peer_close(&p);
}

TEST_F(ea, danced_proves_the_server_to_the_client)
{
	struct peer p = { 0 };
	struct tea_found found = { 0 };
	int n;

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	/* The client asks (a ClientCertificateRequest, through the connection). */
	n = tea_request(p.ssl, (const uint8_t *)"client context 1", 16, false, "localhost",
			self->req, sizeof(self->req));
	ASSERT_LT(0, n);
	ASSERT_EQ(0, peer_send(p.ssl, self->req, n));
	ASSERT_EQ(n, srv_recv(p.sfd, self->buf, sizeof(self->buf)));
	ASSERT_EQ(0, dance_ea_authenticate(self->d, p.sfd, self->buf, n, 0, self->r))
	TH_LOG("%s", self->r->reason);
	ASSERT_LT(0U, self->r->pending_len);
	ASSERT_EQ(0, srv_send(p.sfd, self->r->pending, self->r->pending_len));
	ASSERT_EQ((int)self->r->pending_len, peer_recv(p.ssl, self->auth, sizeof(self->auth)));
	ASSERT_EQ(0, tea_validate(p.ssl, self->req, n, self->auth, self->r->pending_len, &found));
	EXPECT_EQ(0, X509_cmp(found.leaf, self->srv));
	EXPECT_STREQ("", found.dane_name);
	X509_free(found.leaf);

	/* Once per context. */
	EXPECT_EQ(-EALREADY, dance_ea_authenticate(self->d, p.sfd, self->req, n, 0, self->r));
	EXPECT_EQ(0, strncmp(self->r->reason, "ea-context-used", 15)) TH_LOG("%s", self->r->reason);

	/* The empty authenticator: an authenticated refusal. */
	n = tea_request(p.ssl, (const uint8_t *)"client context 2", 16, false, NULL, self->req,
			sizeof(self->req));
	ASSERT_EQ(0, dance_ea_authenticate(self->d, p.sfd, self->req, n, DANCE_EA_REFUSE, self->r))
	TH_LOG("%s", self->r->reason);
	memset(&found, 0, sizeof(found));
	EXPECT_EQ(-ENODATA, tea_validate(p.ssl, self->req, n, self->r->pending,
					 self->r->pending_len, &found));
	EXPECT_TRUE(found.empty);

	/* A spontaneous server authenticator (no request at all). */
	ASSERT_EQ(0, dance_ea_authenticate(self->d, p.sfd, NULL, 0, 0, self->r))
	TH_LOG("%s", self->r->reason);
	memset(&found, 0, sizeof(found));
	EXPECT_EQ(0, tea_validate(p.ssl, NULL, 0, self->r->pending, self->r->pending_len, &found));
	EXPECT_EQ(0, X509_cmp(found.leaf, self->srv));
	X509_free(found.leaf);

	/* A request of the wrong kind (a CertificateRequest to the TLS server) is malformed. */
	memcpy(self->buf, self->req, n);
	self->buf[0] = 13;
	EXPECT_EQ(-EBADMSG, dance_ea_authenticate(self->d, p.sfd, self->buf, n, 0, self->r));
	expect_data_flows(_metadata, &p);
	peer_close(&p);
}

/* Finished again over the (altered) Certificate and CertificateVerify, as a peer would. */
static void refinish(SSL *ssl, const uint8_t *req, size_t req_len, uint8_t *auth, size_t len)
{
	uint8_t hc[64], fk[64], h[EVP_MAX_MD_SIZE];
	struct tea_parts parts;
	unsigned int hl, ml;
	const EVP_MD *md;
	int hlen = tea_values(ssl, true, hc, fk);
	EVP_MD_CTX *m = EVP_MD_CTX_new();

	tea_split(auth, len, &parts);
	md = hlen == 48 ? EVP_sha384() : EVP_sha256();
	EVP_DigestInit_ex(m, md, NULL);
	EVP_DigestUpdate(m, hc, hlen);
	EVP_DigestUpdate(m, req, req_len);
	EVP_DigestUpdate(m, auth, parts.fin_off);
	EVP_DigestFinal_ex(m, h, &hl);
	EVP_MD_CTX_free(m);
	HMAC(md, fk, hlen, h, hl, auth + parts.fin_off + 4, &ml);
}

/* The peer's answer to the last request, altered by @tamper, sent to danced to judge. */
static int validate_altered(FIXTURE_DATA(ea) * self, struct peer *p, int req_len, int auth_len)
{
	return dance_ea_validate(self->d, p->sfd, self->req, req_len, self->auth, auth_len,
				 self->r);
}

static int fresh_request(FIXTURE_DATA(ea) * self, struct peer *p)
{
	if (dance_ea_request(self->d, p->sfd, 0, NULL, self->r))
		return self->r->status;
	memcpy(self->req, self->r->pending, self->r->pending_len);
	return self->r->pending_len;
}

#define EXPECT_REASON(code) \
	EXPECT_EQ(0, strncmp(self->r->reason, code, strlen(code))) TH_LOG("%s", self->r->reason)

TEST_F(ea, every_tampering_is_refused_with_its_own_reason)
{
	struct peer p = { 0 }, q = { 0 };
	struct tea_parts parts;
	int rl, al;

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	ASSERT_EQ(0, peer_connect(_metadata, self, &q)) TH_LOG("%s", self->r->reason);

	/* The signature, with Finished made again: CertificateVerify alone is wrong. */
	rl = fresh_request(self, &p);
	ASSERT_LT(0, rl);
	al = tea_authenticate(p.ssl, self->req, rl, self->ee, NULL, self->ee_k, SENSOR1, self->auth,
			      sizeof(self->auth));
	ASSERT_LT(0, al);
	ASSERT_EQ(0, tea_split(self->auth, al, &parts));
	self->auth[parts.cv_off + parts.cv_len - 3] ^= 0x40;
	refinish(p.ssl, self->req, rl, self->auth, al);
	EXPECT_EQ(-EACCES, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-signature");

	/* A key that is not the certificate's, Finished correct: the signature fails. */
	rl = fresh_request(self, &p);
	al = tea_authenticate(p.ssl, self->req, rl, self->ee, NULL, self->other_k, SENSOR1,
			      self->auth, sizeof(self->auth));
	ASSERT_LT(0, al);
	EXPECT_EQ(-EACCES, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-signature");

	/* The Finished MAC. */
	rl = fresh_request(self, &p);
	al = tea_authenticate(p.ssl, self->req, rl, self->ee, NULL, self->ee_k, SENSOR1, self->auth,
			      sizeof(self->auth));
	self->auth[al - 1] ^= 1;
	EXPECT_EQ(-EACCES, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-finished");
	/* ... which left the request unanswered: the genuine answer still counts, once. */
	self->auth[al - 1] ^= 1;
	EXPECT_EQ(0, validate_altered(self, &p, rl, al)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_DANE, self->r->auth);
	EXPECT_EQ(-EALREADY, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-context-used");

	/* A context danced never asked with. */
	rl = fresh_request(self, &p);
	self->req[5] ^= 0xff; /* inside the context */
	al = tea_authenticate(p.ssl, self->req, rl, self->ee, NULL, self->ee_k, SENSOR1, self->auth,
			      sizeof(self->auth));
	ASSERT_LT(0, al);
	EXPECT_EQ(-ESRCH, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-context-unknown");

	/* An authenticator made on another connection (other exporter values). */
	rl = fresh_request(self, &p);
	al = tea_authenticate(q.ssl, self->req, rl, self->ee, NULL, self->ee_k, SENSOR1, self->auth,
			      sizeof(self->auth));
	ASSERT_LT(0, al);
	EXPECT_EQ(-EACCES, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-finished");

	/* The empty authenticator: genuine, and a refusal. */
	rl = fresh_request(self, &p);
	al = tea_authenticate(p.ssl, self->req, rl, NULL, NULL, NULL, NULL, self->auth,
			      sizeof(self->auth));
	ASSERT_LT(0, al);
	EXPECT_EQ(-EACCES, validate_altered(self, &p, rl, al));
	EXPECT_REASON("ea-empty");
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);

	/* Cut short, and the request without its authenticator. */
	rl = fresh_request(self, &p);
	al = tea_authenticate(p.ssl, self->req, rl, self->ee, NULL, self->ee_k, SENSOR1, self->auth,
			      sizeof(self->auth));
	EXPECT_EQ(-EBADMSG, validate_altered(self, &p, rl, al - 1));
	EXPECT_REASON("ea-malformed");
	EXPECT_EQ(-EINVAL, dance_ea_validate(self->d, p.sfd, self->req, rl, NULL, 0, self->r));
	/* After all that, the genuine answer to that request still proves the name. */
	EXPECT_EQ(0, validate_altered(self, &p, rl, al)) TH_LOG("%s", self->r->reason);

	/* Nothing kept for a socket danced never offloaded. */
	EXPECT_EQ(-ENOENT, dance_ea_request(self->d, self->lfd, 0, NULL, self->r));
	EXPECT_REASON("ea-unknown");
	expect_data_flows(_metadata, &p);
	expect_data_flows(_metadata, &q);
	peer_close(&p);
	peer_close(&q);
}

static void expect_dane_refusal(struct __test_metadata *_metadata, FIXTURE_DATA(ea) * self,
				struct peer *p, const char *name, const char *code)
{
	EXPECT_EQ(-EACCES, prove(_metadata, self, p, 0, self->ee, self->ee_k, name))
	TH_LOG("%s: %s", name, self->r->reason);
	EXPECT_REASON(code);
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);
	EXPECT_STREQ("", self->r->verified_name);
}

TEST_F_TIMEOUT(ea, dane_decides_the_proved_name_and_fails_closed, 120)
{
	struct peer p = { 0 };
	long t0;

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	expect_dane_refusal(_metadata, self, &p, "mismatch." Z, "tlsa-mismatch");
	expect_dane_refusal(_metadata, self, &p, "client.insecure." Z, "tlsa-insecure");
	expect_dane_refusal(_metadata, self, &p, "client.bogus." Z, "tlsa-bogus");
	expect_dane_refusal(_metadata, self, &p, "nobody." Z, "tlsa-none");
	expect_dane_refusal(_metadata, self, &p, "device.example.org", "name-not-allowed");
	expect_dane_refusal(_metadata, self, &p, "bad name." Z, "dane-badname");
	/* The right key under another name is not that name. */
	EXPECT_EQ(-EACCES, prove(_metadata, self, &p, 0, self->ee, self->ee_k, SENSOR7));
	EXPECT_REASON("tlsa-mismatch");
	/* DNS down: unknown is never authenticated, and the answer comes in the deadline. */
	ASSERT_EQ(0, dnsfix_stop(&self->f));
	t0 = ms_now();
	EXPECT_NE(0, prove(_metadata, self, &p, 0, self->ee, self->ee_k, "down1." Z));
	EXPECT_TRUE(!strncmp(self->r->reason, "dns-", 4) || !strncmp(self->r->reason, "tlsa-", 5))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);
	EXPECT_GT(8000 + 2000, ms_now() - t0);
	/* The connection is unharmed by all of it. */
	expect_data_flows(_metadata, &p);
	peer_close(&p);
}

/* danced as the TLS client: the test is a TLS server on OpenSSL. */
struct upstream {
	SSL_CTX *ctx;
	SSL *ssl;
	int lfd, port, fd;
	bool ok;
	pthread_t thread;
};

static void *upstream_main(void *arg)
{
	struct upstream *u = arg;

	u->fd = accept4(u->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (u->fd < 0)
		return NULL;
	u->ssl = SSL_new(u->ctx);
	SSL_set_fd(u->ssl, u->fd);
	u->ok = SSL_accept(u->ssl) == 1;
	return NULL;
}

/*
 * danced's client role (service me) connects to an OpenSSL server, @u; returns the
 * client's socket, offloaded, or -1.
 */
static int upstream_connect(struct __test_metadata *_metadata, FIXTURE_DATA(ea) * self,
			    struct upstream *u)
{
	struct dance_params dp = { .service = "me", .peer_name = "localhost", .client = 1 };
	int fd;

	memset(u, 0, sizeof(*u));
	u->fd = -1;
	u->ctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_set_min_proto_version(u->ctx, TLS1_3_VERSION);
	EXPECT_EQ(1, SSL_CTX_use_certificate_chain_file(u->ctx, self->e.srv_cert));
	EXPECT_EQ(1, SSL_CTX_use_PrivateKey_file(u->ctx, self->e.srv_key, SSL_FILETYPE_PEM));
	u->lfd = tcp_listen_any(&u->port);
	if (u->lfd < 0)
		return -1;
	pthread_create(&u->thread, NULL, upstream_main, u);
	fd = tcp_connect(u->port);
	EXPECT_LE(0, fd);
	EXPECT_EQ(0, dance_handshake(self->d, fd, &dp, self->r)) TH_LOG("%s", self->r->reason);
	pthread_join(u->thread, NULL);
	EXPECT_TRUE(u->ok);
	return u->ok ? fd : -1;
}

static void upstream_close(struct upstream *u)
{
	SSL_free(u->ssl);
	SSL_CTX_free(u->ctx);
	close(u->fd);
	close(u->lfd);
}

TEST_F(ea, danced_client_proves_its_name_and_checks_the_server)
{
	struct upstream u;
	struct tea_found found = { 0 };
	int fd, n, rl;

	fd = upstream_connect(_metadata, self, &u);
	ASSERT_LE(0, fd);

	/* The server asks danced's client for a name (DANE), and checks the answer itself. */
	n = tea_request(u.ssl, (const uint8_t *)"server asks", 11, true, NULL, self->req,
			sizeof(self->req));
	ASSERT_LT(0, n);
	ASSERT_EQ(0, peer_send(u.ssl, self->req, n));
	ASSERT_EQ(n, srv_recv(fd, self->buf, sizeof(self->buf)));
	ASSERT_EQ(0, dance_ea_authenticate(self->d, fd, self->buf, n, 0, self->r))
	TH_LOG("%s", self->r->reason);
	ASSERT_EQ(0, srv_send(fd, self->r->pending, self->r->pending_len));
	ASSERT_EQ((int)self->r->pending_len, peer_recv(u.ssl, self->auth, sizeof(self->auth)));
	ASSERT_EQ(0, tea_validate(u.ssl, self->req, n, self->auth, self->r->pending_len, &found));
	EXPECT_EQ(0, X509_cmp(found.leaf, self->ee));
	EXPECT_STREQ(SENSOR1, found.dane_name);
	X509_free(found.leaf);
	/* A client never authenticates unasked. */
	EXPECT_EQ(-EINVAL, dance_ea_authenticate(self->d, fd, NULL, 0, 0, self->r));
	EXPECT_REASON("ea-spontaneous");

	/* danced's client asks the server (ClientCertificateRequest, with server_name). */
	ASSERT_EQ(0, dance_ea_request(self->d, fd, 0, "localhost", self->r))
	TH_LOG("%s", self->r->reason);
	rl = self->r->pending_len;
	memcpy(self->req, self->r->pending, rl);
	EXPECT_EQ(17, self->req[0]);
	n = tea_authenticate(u.ssl, self->req, rl, self->srv, NULL, self->srv_k, NULL, self->auth,
			     sizeof(self->auth));
	ASSERT_LT(0, n);
	EXPECT_EQ(0, dance_ea_validate(self->d, fd, self->req, rl, self->auth, n, self->r))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_X509, self->r->auth);
	/* A certificate the service's CA did not issue proves nothing. */
	ASSERT_EQ(0, dance_ea_request(self->d, fd, 0, NULL, self->r));
	rl = self->r->pending_len;
	memcpy(self->req, self->r->pending, rl);
	n = tea_authenticate(u.ssl, self->req, rl, self->other, NULL, self->other_k, NULL,
			     self->auth, sizeof(self->auth));
	EXPECT_EQ(-EACCES, dance_ea_validate(self->d, fd, self->req, rl, self->auth, n, self->r));
	EXPECT_REASON("server certificate rejected");
	/* The name danced asked for is the name the certificate must carry. */
	ASSERT_EQ(0, dance_ea_request(self->d, fd, 0, "elsewhere.example", self->r));
	rl = self->r->pending_len;
	memcpy(self->req, self->r->pending, rl);
	n = tea_authenticate(u.ssl, self->req, rl, self->srv, NULL, self->srv_k, NULL, self->auth,
			     sizeof(self->auth));
	ASSERT_LT(0, n);
	EXPECT_EQ(-EACCES, dance_ea_validate(self->d, fd, self->req, rl, self->auth, n, self->r));
	EXPECT_REASON("server certificate rejected");
	EXPECT_STREQ("", self->r->peer_subject); /* an unproven certificate names nobody */
	/* A spontaneous server authenticator is judged the same way. */
	n = tea_authenticate(u.ssl, NULL, 0, self->srv, NULL, self->srv_k, NULL, self->auth,
			     sizeof(self->auth));
	ASSERT_LT(0, n);
	EXPECT_EQ(0, dance_ea_validate(self->d, fd, NULL, 0, self->auth, n, self->r))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-EALREADY, dance_ea_validate(self->d, fd, NULL, 0, self->auth, n, self->r));

	/* Forgotten on request: nothing more to do on that socket. */
	EXPECT_EQ(0, dance_ea_forget(self->d, fd, self->r));
	EXPECT_EQ(-ENOENT, dance_ea_request(self->d, fd, 0, NULL, self->r));
	EXPECT_EQ(-ENOENT, dance_ea_forget(self->d, fd, self->r));
	close(fd);
	upstream_close(&u);
}

/*
 * The kernel follows the proof at once: a socket allowed for the device name it proved in
 * its handshake proves another name by an exported authenticator, and from then on its
 * I/O is judged by that name.
 */
TEST_F(ea, kernel_policy_follows_the_proved_name)
{
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = DANCED_VERDICT_DENY };
	struct danced_rule allow = { .verdict = DANCED_VERDICT_ALLOW }, deny = { 0 };
	struct peer p = { .cert = self->other_cert, .key = self->other_key, .name = SENSOR7 };
	struct danced_service_key sk = { .port = self->port };
	struct danced_ident id;
	struct danced_rule_key k;
	char path[160], out[4096];
	struct stat st;
	int services, rules, identities;

	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/services", self->e.bpf_pin);
	services = bpf_obj_get(path);
	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/rules", self->e.bpf_pin);
	rules = bpf_obj_get(path);
	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/identities", self->e.bpf_pin);
	identities = bpf_obj_get(path);
	ASSERT_LE(0, services);
	ASSERT_LE(0, rules);
	ASSERT_LE(0, identities);
	ASSERT_EQ(0, stat("/proc/self/ns/net", &st));
	sk.netns = st.st_ino;
	ASSERT_EQ(0, bpf_map_update_elem(services, &sk, &svc, BPF_ANY));
	ASSERT_TRUE(danced_rule_key_init(&k, sk.netns, sk.port, "elpmaxe.erutxif.ecived_.7rosnes.",
					 true));
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));
	ASSERT_TRUE(danced_rule_key_init(&k, sk.netns, sk.port, "elpmaxe.erutxif.ecived_.1rosnes.",
					 true));
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &deny, BPF_ANY));

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	ASSERT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth) TH_LOG("%s", self->r->reason);
	EXPECT_STREQ(SENSOR7, self->r->verified_name);
	expect_data_flows(_metadata, &p); /* sensor7 is allowed */
	ASSERT_EQ(0, prove(_metadata, self, &p, 0, self->ee, self->ee_k, SENSOR1))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_DANE, self->r->auth);
	ASSERT_EQ(0, bpf_map_lookup_elem(identities, &self->r->cookie, &id));
	EXPECT_EQ((__u32)DANCED_AUTH_EA_DANE, id.auth);
	EXPECT_EQ(0, strncmp(id.rname, "elpmaxe.erutxif.ecived_.1rosnes.", 32));
	/* sensor1 is denied: the kernel refuses the server's I/O from now on. */
	EXPECT_EQ(-1, send(p.sfd, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	{
		char *const argv[] = { (char *)bin("dancectl"), "--pin-path", path, "identities",
				       NULL };

		snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s", self->e.bpf_pin);
		memset(out, 0, sizeof(out));
		EXPECT_EQ(0, run(argv, NULL, 0, out, sizeof(out) - 1, 10));
		EXPECT_NE(NULL, strstr(out, "ea-dane")) TH_LOG("%s", out);
		EXPECT_NE(NULL, strstr(out, SENSOR1)) TH_LOG("%s", out);
	}
	/* An allow rule for sensor1 that takes X.509 only does not admit its DANE proof. */
	allow.proof = DANCED_PROOF_X509;
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));
	EXPECT_EQ(-1, send(p.sfd, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	allow.proof = DANCED_PROOF_DANE;
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));
	expect_data_flows(_metadata, &p);
	peer_close(&p);
	close(services);
	close(rules);
	close(identities);
}

/*
 * An anonymous client on a protected port: the kernel refuses the server's I/O, so the
 * proof cannot come over the connection, until the operator gives the service a proof
 * window. Then the exchange passes for that long after the server asked, the proved
 * name decides from then on, and a window that ran out refuses again.
 */
TEST_F(ea, anonymous_client_proves_in_band_within_the_proof_window)
{
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = DANCED_VERDICT_DENY };
	struct danced_rule allow = { .verdict = DANCED_VERDICT_ALLOW };
	struct danced_service_key sk = { .port = self->port };
	struct peer p = { 0 }, q = { 0 };
	char path[160], pin[160], port[16], out[4096];
	struct danced_rule_key k;
	struct stat st;
	int services, rules;

	snprintf(pin, sizeof(pin), "/sys/fs/bpf/%.60s", self->e.bpf_pin);
	snprintf(path, sizeof(path), "%.100s/services", pin);
	services = bpf_obj_get(path);
	snprintf(path, sizeof(path), "%.100s/rules", pin);
	rules = bpf_obj_get(path);
	ASSERT_LE(0, services);
	ASSERT_LE(0, rules);
	ASSERT_EQ(0, stat("/proc/self/ns/net", &st));
	sk.netns = st.st_ino;
	ASSERT_EQ(0, bpf_map_update_elem(services, &sk, &svc, BPF_ANY));
	ASSERT_TRUE(danced_rule_key_init(&k, sk.netns, sk.port, "elpmaxe.erutxif.ecived_.1rosnes.",
					 true));
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));

	/* No window: asking for a proof changes nothing for the connection. */
	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-1, send(p.sfd, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	ASSERT_EQ(0, dance_ea_request(self->d, p.sfd, 0, NULL, self->r));
	EXPECT_EQ(-1, send(p.sfd, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	peer_close(&p);

	/* The operator's window, through dancectl (the sweep it runs finds nobody to cut). */
	snprintf(port, sizeof(port), "%d", self->port);
	{
		char *const set[] = {
			(char *)bin("dancectl"), "-p", pin, "policy", "window", port, "5", NULL
		};
		char *const list[] = {
			(char *)bin("dancectl"), "-p", pin, "--json", "policy", "list", NULL
		};
		char *const bad[] = {
			(char *)bin("dancectl"), "-p", pin, "policy", "window", port, "3601", NULL
		};

		EXPECT_EQ(0, run(set, NULL, 0, out, sizeof(out) - 1, 10)) TH_LOG("%s", out);
		memset(out, 0, sizeof(out));
		EXPECT_EQ(0, run(list, NULL, 0, out, sizeof(out) - 1, 10));
		EXPECT_NE(NULL, strstr(out, "\"proof_window\":5")) TH_LOG("%s", out);
		EXPECT_EQ(2, run(bad, NULL, 0, out, sizeof(out) - 1, 10));
	}

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-1, send(p.sfd, "x", 1, MSG_NOSIGNAL)); /* nothing asked yet */
	EXPECT_EQ(EACCES, errno);
	ASSERT_EQ(0, prove(_metadata, self, &p, 0, self->ee, self->ee_k, SENSOR1))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_DANE, self->r->auth);
	expect_data_flows(_metadata, &p); /* by its name now, not by the window */

	/* A window that ran out: refused again, and the proof cannot come in-band. */
	svc.proof_window = 1;
	ASSERT_EQ(0, bpf_map_update_elem(services, &sk, &svc, BPF_ANY));
	ASSERT_EQ(0, peer_connect(_metadata, self, &q)) TH_LOG("%s", self->r->reason);
	ASSERT_EQ(0, dance_ea_request(self->d, q.sfd, 0, NULL, self->r));
	EXPECT_EQ(1, send(q.sfd, "x", 1, MSG_NOSIGNAL));
	usleep(1200000);
	EXPECT_EQ(-1, send(q.sfd, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	/* One window per socket: asking again does not open another. */
	ASSERT_EQ(0, dance_ea_request(self->d, q.sfd, 0, NULL, self->r));
	EXPECT_EQ(-1, send(q.sfd, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	/* The one that proved its name is unaffected. */
	expect_data_flows(_metadata, &p);
	peer_close(&p);
	peer_close(&q);
	close(services);
	close(rules);
}

/* danced's status line (SIGUSR1): the newest, once it came; how many there were. */
static int status_line(FIXTURE_DATA(ea) * self, char *last, size_t max)
{
	char line[512];
	FILE *f = fopen(self->e.log, "r");
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "status:")) {
			snprintf(last, max, "%s", line);
			n++;
		}
	if (f)
		fclose(f);
	return n;
}

static bool status_says(FIXTURE_DATA(ea) * self, const char *what)
{
	char last[512] = "";
	int before = status_line(self, last, sizeof(last)), i;

	kill(self->e.pid, SIGUSR1);
	for (i = 0; i < 50 && status_line(self, last, sizeof(last)) == before; i++)
		usleep(100000);
	if (!strstr(last, what))
		fprintf(stderr, "# danced said: %s", last);
	return strstr(last, what) != NULL;
}

/* ---- TLS 1.3 post-handshake authentication ----------------------------------------- */

struct pha_client {
	struct peer *p;
	uint8_t got[16];
	int n;
	pthread_t thread;
};

/* The client reads on: OpenSSL answers the CertificateRequest on the way to the data. */
static void *pha_client_main(void *arg)
{
	struct pha_client *c = arg;

	c->n = peer_recv(c->p->ssl, c->got, sizeof(c->got));
	return NULL;
}

/*
 * The server asks the client on @p for a certificate (@cert, @key: what the client then
 * has; NULL: none), the client answers as it reads, and the server hands the answer to
 * danced; then data flows both ways, whatever the verdict. Returns the verdict.
 */
static int pha(struct __test_metadata *_metadata, FIXTURE_DATA(ea) * self, struct peer *p,
	       unsigned int flags, const char *cert, const char *key)
{
	struct timeval tv = { .tv_sec = 20 };
	struct pha_client c = { .p = p };
	uint8_t b[16];
	int ret, rl;

	setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(p->sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (cert) {
		EXPECT_EQ(1, SSL_use_certificate_file(p->ssl, cert, SSL_FILETYPE_PEM));
		EXPECT_EQ(1, SSL_use_PrivateKey_file(p->ssl, key, SSL_FILETYPE_PEM));
	}
	ret = dance_pha_request(self->d, p->sfd, flags, self->r);
	if (ret)
		return ret;
	rl = self->r->pending_len;
	memcpy(self->req, self->r->pending, rl);
	EXPECT_EQ(13, self->req[0]); /* a CertificateRequest */
	pthread_create(&c.thread, NULL, pha_client_main, &c);
	/* Whatever the client sent first is its answer: it waits, untouched. */
	EXPECT_EQ(-1, dance_recv(p->sfd, b, sizeof(b), MSG_PEEK));
	EXPECT_EQ(ENOMSG, errno);
	ret = dance_pha_validate(self->d, p->sfd, self->req, rl, self->r);
	EXPECT_EQ(0, srv_send(p->sfd, (const uint8_t *)"after", 5));
	pthread_join(c.thread, NULL);
	EXPECT_EQ(5, c.n);
	EXPECT_EQ(0, memcmp(c.got, "after", 5));
	EXPECT_EQ(0, peer_send(p->ssl, (const uint8_t *)"reply!", 6));
	EXPECT_EQ(6, srv_recv(p->sfd, b, sizeof(b)));
	EXPECT_EQ(0, memcmp(b, "reply!", 6));
	return ret;
}

/* An anonymous client proves an X.509 identity after the handshake, on kTLS. */
TEST_F(ea, pha_client_proves_an_x509_identity)
{
	struct peer p = { .pha = true };

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);
	EXPECT_EQ(0, pha(_metadata, self, &p, DANCE_EA_NO_DANE, self->e.cli_cert, self->e.cli_key))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_PHA_X509, self->r->auth);
	EXPECT_NE(NULL, strstr(self->r->peer_subject, "CN=")) TH_LOG("%s", self->r->peer_subject);
	/* Asked again, it proves again: each request has its own context. */
	EXPECT_EQ(0, pha(_metadata, self, &p, DANCE_EA_NO_DANE, NULL, NULL))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_PHA_X509, self->r->auth);
	peer_close(&p);
}

/* The client names itself in dane_clientid; DANE decides, and the kernel follows. */
TEST_F(ea, pha_client_proves_its_name_by_dane)
{
	struct peer p = { .pha = true, .name = SENSOR1 };
	struct danced_ident id;
	char path[160];
	int identities;

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);
	EXPECT_EQ(0, pha(_metadata, self, &p, 0, self->ee_cert, self->ee_key))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_PHA_DANE, self->r->auth);
	EXPECT_STREQ(SENSOR1, self->r->verified_name);
	EXPECT_EQ(3, self->r->tlsa_usage);
	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/identities", self->e.bpf_pin);
	identities = bpf_obj_get(path);
	ASSERT_LE(0, identities);
	ASSERT_EQ(0, bpf_map_lookup_elem(identities, &self->r->cookie, &id));
	EXPECT_EQ((__u32)DANCED_AUTH_PHA_DANE, id.auth);
	EXPECT_EQ(0, strncmp(id.rname, "elpmaxe.erutxif.ecived_.1rosnes.", 32));
	close(identities);
	peer_close(&p);
}

/* Refusals, each with its reason; the connection carries data on after every one. */
TEST_F(ea, pha_refusals_say_why)
{
	struct peer p = { .pha = true, .name = SENSOR1 };
	struct peer q = { 0 };
	struct peer v12 = { .pha = true, .version = TLS1_2_VERSION };

	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	/* A key the TLSA record at the name does not match. */
	EXPECT_EQ(-EACCES, pha(_metadata, self, &p, 0, self->other_cert, self->other_key));
	EXPECT_REASON("tlsa-mismatch");
	EXPECT_EQ((uint32_t)DANCE_AUTH_NONE, self->r->auth);
	/*
	 * Asked without DANE, OpenSSL's client still names itself (it remembers that an
	 * earlier request asked): a name nobody asked for is not taken.
	 */
	EXPECT_EQ(-EBADMSG,
		  pha(_metadata, self, &p, DANCE_EA_NO_DANE, self->ee_cert, self->ee_key));
	EXPECT_REASON("pha-unasked");
	peer_close(&p);

	/* A certificate from a CA the service does not trust. */
	p = (struct peer){ .pha = true };
	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-EACCES,
		  pha(_metadata, self, &p, DANCE_EA_NO_DANE, self->e.bad_cert, self->e.bad_key));
	EXPECT_REASON("client certificate rejected");
	peer_close(&p);

	/* A client that has no certificate declines with an empty one. */
	p = (struct peer){ .pha = true };
	ASSERT_EQ(0, peer_connect(_metadata, self, &p)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-EACCES, pha(_metadata, self, &p, DANCE_EA_NO_DANE, NULL, NULL));
	EXPECT_REASON("pha-empty");
	peer_close(&p);

	/* A client that did not offer post_handshake_auth is never asked. */
	ASSERT_EQ(0, peer_connect(_metadata, self, &q)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-EPROTO, dance_pha_request(self->d, q.sfd, 0, self->r));
	EXPECT_REASON("pha-not-offered");
	EXPECT_EQ(0U, self->r->pending_len);
	expect_data_flows(_metadata, &q);
	peer_close(&q);

	/* Nor is a TLS 1.2 connection. */
	ASSERT_EQ(0, peer_connect(_metadata, self, &v12)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(-EPROTO, dance_pha_request(self->d, v12.sfd, 0, self->r));
	EXPECT_REASON("pha-version");
	expect_data_flows(_metadata, &v12);
	peer_close(&v12);
}

struct danced_client {
	const char *sock;
	int fd, ret;
	struct dance_result r;
	pthread_t thread;
};

static void *danced_client_main(void *arg)
{
	struct dance_params dp = { .service = "me", .peer_name = "localhost", .client = 1 };
	struct danced_client *c = arg;
	struct dance *d = NULL;

	c->ret = dance_open(c->sock, &d);
	if (!c->ret)
		c->ret = dance_handshake(d, c->fd, &dp, &c->r);
	dance_close(d);
	return NULL;
}

/*
 * danced on both ends, each on kTLS: its server asks after the handshake, its client
 * (which offered post_handshake_auth, having a certificate) answers with its key and
 * its name in dane_clientid, and its server proves that name by DANE.
 */
TEST_F(ea, pha_between_danced_client_and_danced_server_by_dane)
{
	struct danced_client c = { .sock = self->e.sock };
	struct dance_result *cr = calloc(1, sizeof(*cr));
	struct dance *d2 = NULL;
	uint8_t b[16];
	int sfd, rl;

	ASSERT_EQ(0, dance_open(self->e.sock, &d2));
	c.fd = tcp_connect(self->port);
	ASSERT_LE(0, c.fd);
	pthread_create(&c.thread, NULL, danced_client_main, &c);
	sfd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, sfd);
	ASSERT_EQ(0, dance_handshake(self->d, sfd, &(struct dance_params){ 0 }, self->r))
	TH_LOG("%s", self->r->reason);
	pthread_join(c.thread, NULL);
	ASSERT_EQ(0, c.ret) TH_LOG("%s", c.r.reason);

	ASSERT_EQ(0, dance_pha_request(self->d, sfd, DANCE_EA_DANE, self->r))
	TH_LOG("%s", self->r->reason);
	rl = self->r->pending_len;
	memcpy(self->req, self->r->pending, rl);
	/* The client sees the request first, before any data. */
	EXPECT_EQ(-1, dance_recv(c.fd, b, sizeof(b), 0));
	ASSERT_EQ(ENOMSG, errno);
	ASSERT_EQ(0, dance_pha_answer(d2, c.fd, cr)) TH_LOG("%s", cr->reason);
	EXPECT_NE(NULL, strstr(cr->reason, "CertificateVerify")) TH_LOG("%s", cr->reason);
	/* Data the client sends after its answer waits behind it. */
	ASSERT_EQ(5, send(c.fd, "hello", 5, MSG_NOSIGNAL));
	EXPECT_EQ(-1, dance_recv(sfd, b, sizeof(b), 0));
	ASSERT_EQ(ENOMSG, errno);
	ASSERT_EQ(0, dance_pha_validate(self->d, sfd, self->req, rl, self->r))
	TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_PHA_DANE, self->r->auth);
	EXPECT_STREQ(SENSOR1, self->r->verified_name);
	ASSERT_EQ(5, dance_recv(sfd, b, sizeof(b), 0));
	EXPECT_EQ(0, memcmp(b, "hello", 5));
	ASSERT_EQ(5, send(sfd, "world", 5, MSG_NOSIGNAL));
	ASSERT_EQ(5, dance_recv(c.fd, b, sizeof(b), 0));
	EXPECT_EQ(0, memcmp(b, "world", 5));
	close(sfd);
	close(c.fd);
	dance_close(d2);
	free(cr);
}

/*
 * openssl s_client against dance-echo --pha: its standard input stays open until the
 * server's verdict line ("OK ..." or "NO ...") is in its output, then closes, so that
 * s_client ends. @out gets what it printed.
 */
static int s_client_pha(int port, char *const extra[], char *out, size_t max)
{
	char addr[32], *argv[32];
	int in[2], from[2], n = 0, i, status = -1;
	size_t have = 0;
	struct pollfd pfd;
	pid_t pid;
	ssize_t got;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	argv[n++] = "openssl";
	argv[n++] = "s_client";
	argv[n++] = "-connect";
	argv[n++] = addr;
	argv[n++] = "-servername";
	argv[n++] = "localhost";
	argv[n++] = "-tls1_3";
	for (i = 0; extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	if (pipe2(in, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (!pid) {
		dup2(in[0], 0);
		dup2(from[1], 1);
		dup2(from[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(from[1]);
	pfd = (struct pollfd){ .fd = from[0], .events = POLLIN };
	out[0] = '\0';
	while (have + 1 < max && poll(&pfd, 1, 30000) == 1) {
		got = read(from[0], out + have, max - 1 - have);
		if (got <= 0)
			break;
		have += got;
		out[have] = '\0';
		if (strstr(out, "OK ") || strstr(out, "NO "))
			break;
	}
	close(in[1]); /* end of input: s_client closes */
	while (have + 1 < max && poll(&pfd, 1, 10000) == 1) {
		got = read(from[0], out + have, max - 1 - have);
		if (got <= 0)
			break;
		have += got;
		out[have] = '\0';
	}
	kill(pid, SIGTERM);
	close(from[0]);
	waitpid(pid, &status, 0);
	return status;
}

/*
 * A client nobody here wrote: openssl s_client -enable_pha proves its certificate after
 * the handshake to dance-echo --pha, is refused with one the service's CA did not
 * issue, and is never asked when it did not offer post_handshake_auth.
 */
TEST_F(ea, pha_with_openssl_s_client)
{
	char log[160], out[8192], srv[8192];
	int p = free_port();
	pid_t server;
	FILE *f;
	size_t n;

	snprintf(log, sizeof(log), "%.100s/pha-server.log", self->e.dir);
	server = echo_start(&self->e, p, log, "--pha", "--service", "later", NULL);
	ASSERT_LT(0, server) TH_LOG("dance-echo's log: %s", log);
	{
		char *extra[] = { "-enable_pha", "-cert",	  self->e.cli_cert,
				  "-key",	 self->e.cli_key, NULL };

		s_client_pha(p, extra, out, sizeof(out));
		EXPECT_NE(NULL, strstr(out, "OK ")) TH_LOG("%s", out);
		EXPECT_NE(NULL, strstr(out, " pha-x509")) TH_LOG("%s", out);
	}
	{
		char *extra[] = { "-enable_pha", "-cert",	  self->e.bad_cert,
				  "-key",	 self->e.bad_key, NULL };

		s_client_pha(p, extra, out, sizeof(out));
		EXPECT_NE(NULL, strstr(out, "NO client certificate rejected")) TH_LOG("%s", out);
	}
	{
		char *extra[] = { "-cert", self->e.cli_cert, "-key", self->e.cli_key, NULL };

		s_client_pha(p, extra, out, sizeof(out));
		EXPECT_NE(NULL, strstr(out, "NO pha-not-offered")) TH_LOG("%s", out);
	}
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	f = fopen(log, "r");
	ASSERT_NE(NULL, f);
	n = fread(srv, 1, sizeof(srv) - 1, f);
	srv[n] = '\0';
	fclose(f);
	/* Anonymous in the handshake, proved after it. */
	EXPECT_NE(NULL, strstr(srv, "auth=none cert=- name=-")) TH_LOG("%s", srv);
	EXPECT_NE(NULL, strstr(srv, "proof status=0 auth=pha-x509")) TH_LOG("%s", srv);
	EXPECT_NE(NULL, strstr(srv, "proof status=-13 auth=none")) TH_LOG("%s", srv);
	EXPECT_NE(NULL, strstr(srv, "reason=\"pha-not-offered")) TH_LOG("%s", srv);
}

/*
 * A client that resets while danced waits for its TLSA answer: the server's socket is
 * already TCP_CLOSE when danced names it, so no state change will ever come. What
 * danced keeps for it, and its line in "identities", must still go when the server
 * closes it; otherwise every such client would leave an entry behind for good, and
 * enough of them would fill the map that every later handshake needs.
 */
TEST_F(ea, a_client_gone_during_the_dns_wait_leaves_no_state)
{
	struct peer p = { .cert = self->ee_cert, .key = self->ee_key, .name = SENSOR1 };
	struct danced_ident id;
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	char path[160];
	int identities, ret;

	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/identities", self->e.bpf_pin);
	identities = bpf_obj_get(path);
	ASSERT_LE(0, identities);
	EXPECT_TRUE(status_says(self, "exported authenticators: 0 of 16384 connections kept"));
	ASSERT_EQ(0, dnsfix_hold(&self->f, SENSOR1, 0));
	p.reset_while_held = &self->f;
	ret = peer_connect(_metadata, self, &p);
	ASSERT_TRUE(p.ok);
	ASSERT_LE(0, p.sfd) TH_LOG("%d %s", ret, self->r->reason);
	ASSERT_EQ(0, getsockopt(p.sfd, SOL_SOCKET, SO_COOKIE, &cookie, &len));
	/* danced saw the handshake through: it keeps the values until the socket goes. */
	if (!ret) {
		EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth);
		EXPECT_TRUE(status_says(self, "exported authenticators: 1 of 16384"));
	}
	peer_close(&p);
	usleep(300000);
	EXPECT_TRUE(status_says(self, "exported authenticators: 0 of 16384"));
	EXPECT_GT(0, bpf_map_lookup_elem(identities, &cookie, &id));
	EXPECT_EQ(ENOENT, errno);
	close(identities);
}

/* danced's own client connections too: what it keeps goes when the socket closes. */
TEST_F(ea, a_danced_client_connection_closed_leaves_no_state)
{
	struct upstream u;
	int fd;

	fd = upstream_connect(_metadata, self, &u);
	ASSERT_LE(0, fd);
	EXPECT_TRUE(status_says(self, "exported authenticators: 1 of 16384"));
	close(fd);
	usleep(300000);
	EXPECT_TRUE(status_says(self, "exported authenticators: 0 of 16384"));
	upstream_close(&u);
}

/*
 * Thousands of offloaded connections, each leaving its exporter values behind, all
 * closed by the server: the BPF close hook reports each, and danced keeps nothing for
 * any of them. 2,000 by default: under TCG one handshake costs the two emulated cores
 * about 33 ms, so 10,000 take six minutes a kernel; DANCED_EA_CONNS=10000 runs those
 * (the closing note of issue 11 has such a run).
 */
TEST_F_TIMEOUT(ea, thousands_of_closed_connections_leave_no_state, 900)
{
	char port[16], log[160], out[4096], count[16], want[32];
	const char *n = getenv("DANCED_EA_CONNS") ?: "2000";
	pid_t server;
	int ret, p = free_port();

	snprintf(port, sizeof(port), "%d", p);
	snprintf(count, sizeof(count), "%d", atoi(n) > 0 ? atoi(n) : 2000);
	snprintf(want, sizeof(want), "conns=%s ", count);
	snprintf(log, sizeof(log), "%.100s/server.log", self->e.dir);
	server = echo_start(&self->e, p, log, "--http", "--async", NULL);
	ASSERT_LT(0, server) TH_LOG("dance-echo's log: %s", log);
	EXPECT_TRUE(status_says(self, "exported authenticators: 0 of 16384 connections kept"));
	{
		/*
		 * X25519 alone: the key exchange is not what this measures, and TCG is slow.
		 * Each client offers post-handshake auth (-H), so a transcript is kept too.
		 */
		char *argv[] = { (char *)bin("dance-bench"),
				 "-p",
				 port,
				 "-N",
				 count,
				 "-c",
				 "32",
				 "-n",
				 "localhost",
				 "-a",
				 self->e.ca,
				 "-G",
				 "x25519",
				 "-H",
				 NULL };

		ret = run(argv, NULL, 0, out, sizeof(out), 850);
	}
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	EXPECT_EQ(0, ret) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "errors=0")) TH_LOG("%s", out);
	/* Closed as they came: the hook's reports may trail the last close by a moment. */
	usleep(500000);
	EXPECT_TRUE(status_says(self, "exported authenticators: 0 of 16384 connections kept, "
				      "0 pushed out by newer ones; 0 with a transcript"))
	TH_LOG("log: %s", self->e.log);
	/* While one is open, it is kept, with its transcript. */
	{
		struct peer q = { .pha = true };

		ASSERT_EQ(0, peer_connect(_metadata, self, &q)) TH_LOG("%s", self->r->reason);
		EXPECT_TRUE(status_says(self, "exported authenticators: 1 of 16384 connections "
					      "kept, 0 pushed out by newer ones; 1 with a "
					      "transcript"));
		peer_close(&q);
		usleep(300000);
		EXPECT_TRUE(status_says(self, "exported authenticators: 0 of 16384 connections "
					      "kept, 0 pushed out by newer ones; 0 with a "
					      "transcript"));
	}
}

DANCED_HARNESS_MAIN
