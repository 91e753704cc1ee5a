// SPDX-License-Identifier: GPL-2.0
/*
 * dane_test.c - DANE client authentication (draft-ietf-dance-client-auth) end to end,
 * in the VM: a real Knot DNS server serves signed, unsigned, bogus and expired zones
 * with TLSA records made from certificates generated here; danced validates DNSSEC
 * itself and decides; the tests check every row of the draft's decision table, the
 * legacy TLS 1.2 mode, the request_client_auth flag, the allow-list, the cache, a DNS
 * server that goes away and comes back, and danced as a DANE client.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <bpf/bpf.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/dnsfix.h"
#include "../lib/pki.h"
#include "../../agent/lib/dance.h"
#include "danced.h"

#define CLIENTID 65282 /* danced's default dane_clientid codepoint */
#define TLS_FLAGS 62
#define REQ_CLIENT_AUTH 80
#define Z "fixture.example"

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return x;
}

/* ---- a DANE client, written on OpenSSL for the test ---------------------------------- */

struct dclient {
	int port;
	const char *sni;
	const char *name; /* NULL: no dane_clientid; "": an empty one */
	const char *cert, *key;
	int version;
	bool legacy; /* the old drafts' TLS 1.2 signal in ClientHello */
	bool flag; /* request_client_auth */
	bool rpk; /* offer only a raw public key (RFC 7250) as client certificate */
	bool x509_then_rpk; /* offer both, a certificate first */
	/* what happened */
	bool got_cr, cr_had_clientid, cr_echoed_flag;
	bool handshake_ok;
	unsigned long err; /* the first OpenSSL error, e.g. an alert from danced */
	char reply[16];
	pthread_t thread;
	uint8_t ext[256];
};

static int dc_clientid_add(SSL *ssl, unsigned int type, unsigned int context,
			   const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			   int *al, void *arg)
{
	struct dclient *c = arg;
	size_t n;

	if (!c->name || (context == SSL_EXT_TLS1_3_CERTIFICATE && chainidx) ||
	    (context == SSL_EXT_CLIENT_HELLO && !c->legacy))
		return 0;
	n = strlen(c->name);
	c->ext[0] = n;
	memcpy(c->ext + 1, c->name, n);
	*out = c->ext;
	*outlen = n + 1;
	return 1;
}

static int dc_clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
			     const unsigned char *in, size_t inlen, X509 *x, size_t chainidx,
			     int *al, void *arg)
{
	struct dclient *c = arg;

	if (context == SSL_EXT_TLS1_3_CERTIFICATE_REQUEST)
		c->cr_had_clientid = inlen == 1 && in[0] == 0;
	return 1;
}

static int dc_flags_add(SSL *ssl, unsigned int type, unsigned int context,
			const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			int *al, void *arg)
{
	static const unsigned char bit80[REQ_CLIENT_AUTH / 8 + 1] = {
		[REQ_CLIENT_AUTH / 8] = 1 << (REQ_CLIENT_AUTH % 8)
	};
	struct dclient *c = arg;

	if (!c->flag)
		return 0;
	*out = bit80;
	*outlen = sizeof(bit80);
	return 1;
}

static int dc_flags_parse(SSL *ssl, unsigned int type, unsigned int context,
			  const unsigned char *in, size_t inlen, X509 *x, size_t chainidx, int *al,
			  void *arg)
{
	struct dclient *c = arg;

	if (context == SSL_EXT_TLS1_3_CERTIFICATE_REQUEST)
		c->cr_echoed_flag = inlen > REQ_CLIENT_AUTH / 8 &&
				    (in[REQ_CLIENT_AUTH / 8] & (1 << (REQ_CLIENT_AUTH % 8)));
	return 1;
}

/* OpenSSL asks for the client certificate only when a CertificateRequest came. */
static int dc_cert_cb(SSL *ssl, void *arg)
{
	((struct dclient *)arg)->got_cr = true;
	return 1;
}

static void *dclient_main(void *arg)
{
	struct dclient *c = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	unsigned int cid_ctx = SSL_EXT_TLS1_3_CERTIFICATE_REQUEST | SSL_EXT_TLS1_3_CERTIFICATE;
	SSL *ssl = NULL;
	int fd = -1, n;

	SSL_CTX_set_min_proto_version(ctx, c->version ?: TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, c->version ?: TLS1_3_VERSION);
	if (c->legacy)
		cid_ctx = SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_2_SERVER_HELLO;
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	else
		cid_ctx |= SSL_EXT_TLS1_3_RAW_PUBLIC_KEY;
	if (c->rpk) {
		static const unsigned char rpk_only[] = { TLSEXT_cert_type_rpk };

		SSL_CTX_set1_client_cert_type(ctx, rpk_only, sizeof(rpk_only));
	}
	if (c->x509_then_rpk) {
		static const unsigned char both[] = { TLSEXT_cert_type_x509, TLSEXT_cert_type_rpk };

		SSL_CTX_set1_client_cert_type(ctx, both, sizeof(both));
	}
#endif
	SSL_CTX_add_custom_ext(ctx, CLIENTID, cid_ctx, dc_clientid_add, NULL, c, dc_clientid_parse,
			       c);
	SSL_CTX_add_custom_ext(ctx, TLS_FLAGS,
			       SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_3_CERTIFICATE_REQUEST,
			       dc_flags_add, NULL, c, dc_flags_parse, c);
	SSL_CTX_set_cert_cb(ctx, dc_cert_cb, c);
	if (c->cert) {
		SSL_CTX_use_certificate_chain_file(ctx, c->cert);
		SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM);
	}
	fd = tcp_connect(c->port);
	if (fd < 0)
		goto out;
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, c->sni ?: "localhost");
	if (SSL_connect(ssl) != 1)
		goto out;
	c->handshake_ok = true;
	/* danced refuses after the handshake: the alert is what the first read sees. */
	if (SSL_write(ssl, "ping", 4) != 4)
		goto out;
	n = SSL_read(ssl, c->reply, sizeof(c->reply) - 1);
	if (n > 0)
		c->reply[n] = '\0';
out:
	if (!c->reply[0])
		c->err = ERR_peek_error();
	ERR_clear_error();
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	return NULL;
}

static bool refused_with_handshake_failure(const struct dclient *c)
{
	return ERR_GET_REASON(c->err) == SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE;
}

/* ---- the world: certificates, zones, danced ------------------------------------------ */

FIXTURE(dane)
{
	struct env e;
	struct dnsfix f;
	int lfd, port;
	struct dance *d;
	struct dance_result *r;
	/* identities */
	char ee_cert[160], ee_key[160]; /* self-signed: DANE-EE */
	char other_cert[160], other_key[160]; /* another self-signed key */
	char dev_ca[160], dev7_cert[160], dev7_key[160], dev9_cert[160], dev9_key[160];
	char pkix_cert[160], pkix_key[160]; /* from the CA danced trusts, SAN device73 */
	char srv_ee_cert[160], srv_ee_key[160]; /* a server identity for the client role */
	int srv_port;
};

/* A TLSA RDATA in presentation form; an empty string (a zone error) if it does not fit. */
static char *tlsa(X509 *x, int u, int s, int m, char *buf, size_t max)
{
	if (dnsfix_tlsa(x, u, s, m, buf, max))
		buf[0] = '\0';
	return buf;
}

#define P(field, name) snprintf(self->field, sizeof(self->field), "%.100s/" name, self->e.dir)

FIXTURE_SETUP(dane)
{
	static const char *const ee_names[] = { "ignored.example", NULL };
	static const char *const dev7[] = { "sensor7._device." Z, NULL };
	static const char *const dev9[] = { "sensor9._device." Z, NULL };
	static const char *const pkix[] = { "device73." Z, NULL };
	static const char *const srv[] = { "server." Z, NULL };
	char parent[32768], child[4096], a[2][2048], b[2048], c[2048], rpk_services[2048] = "";
	struct pki_ca devca = { 0 }, cli = { 0 };
	X509 *ee, *other, *dev, *pk, *cli_ca, *srv_ee;
	size_t n = 0;
	FILE *f;
	int i;

	/* A client that danced refused may still be writing. */
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	P(ee_cert, "ee.pem");
	P(ee_key, "ee.key");
	P(other_cert, "other-ee.pem");
	P(other_key, "other-ee.key");
	P(dev_ca, "device-ca.pem");
	P(dev7_cert, "sensor7.pem");
	P(dev7_key, "sensor7.key");
	P(dev9_cert, "sensor9.pem");
	P(dev9_key, "sensor9.key");
	P(pkix_cert, "device73.pem");
	P(pkix_key, "device73.key");
	P(srv_ee_cert, "server-ee.pem");
	P(srv_ee_key, "server-ee.key");
	ASSERT_EQ(0, pki_leaf(NULL, "a DANE-EE client", ee_names, 0, self->ee_cert, self->ee_key));
	ASSERT_EQ(0,
		  pki_leaf(NULL, "someone else", ee_names, 0, self->other_cert, self->other_key));
	ASSERT_EQ(0, pki_ca_new(&devca, "the organisation's device CA"));
	ASSERT_EQ(0, pki_ca_write(&devca, self->dev_ca, NULL));
	ASSERT_EQ(0, pki_leaf(&devca, "sensor7", dev7, 0, self->dev7_cert, self->dev7_key));
	ASSERT_EQ(0, pki_leaf(&devca, "sensor9", dev9, 0, self->dev9_cert, self->dev9_key));
	pki_ca_free(&devca);
	/* PKIX usages need a chain to the CA danced trusts (ca = the client CA). */
	f = fopen(self->e.cli_ca, "r");
	ASSERT_NE(NULL, f);
	cli.cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	{
		char kp[200];

		snprintf(kp, sizeof(kp), "%.100s/client-ca.key", self->e.dir);
		f = fopen(kp, "r");
		ASSERT_NE(NULL, f);
		cli.key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	ASSERT_EQ(0, pki_leaf(&cli, "device73", pkix, 0, self->pkix_cert, self->pkix_key));
	pki_ca_free(&cli);
	ASSERT_EQ(0, pki_leaf(NULL, "server", srv, 1, self->srv_ee_cert, self->srv_ee_key));

	ee = load_cert(self->ee_cert);
	other = load_cert(self->other_cert);
	dev = load_cert(self->dev_ca);
	pk = load_cert(self->pkix_cert);
	cli_ca = load_cert(self->e.cli_ca);
	srv_ee = load_cert(self->srv_ee_cert);
	ASSERT_TRUE(ee && other && dev && pk && cli_ca && srv_ee);

	/* Every owner-name form of the draft, and every usage, selector and matching type. */
	n += snprintf(parent + n, sizeof(parent) - n, "_smtp-client.device1 IN TLSA %s\n",
		      tlsa(ee, 3, 1, 1, b, sizeof(b)));
	for (i = 0; i < 6; i++) {
		int s = i / 3, m = i % 3;

		n += snprintf(parent + n, sizeof(parent) - n, "ee%d%d IN TLSA %s\n", s, m,
			      tlsa(ee, 3, s, m, b, sizeof(b)));
	}
	n += snprintf(parent + n, sizeof(parent) - n, "sensor7._device IN TLSA %s\n",
		      tlsa(dev, 2, 1, 1, b, sizeof(b)));
	n += snprintf(parent + n, sizeof(parent) - n, "*._device IN TLSA %s\n",
		      tlsa(dev, 2, 0, 1, b, sizeof(b)));
	n += snprintf(parent + n, sizeof(parent) - n, "device73 IN TLSA %s\n",
		      tlsa(pk, 1, 1, 1, b, sizeof(b)));
	n += snprintf(parent + n, sizeof(parent) - n, "pkixta IN TLSA %s\n",
		      tlsa(cli_ca, 0, 0, 1, b, sizeof(b)));
	/* Digest agility (RFC 7671 section 9): the strongest digest present is the one used. */
	tlsa(other, 3, 1, 2, c, sizeof(c));
	n += snprintf(parent + n, sizeof(parent) - n,
		      "agile-strong-wrong IN TLSA %s\n"
		      "agile-strong-wrong IN TLSA %s\n",
		      tlsa(ee, 3, 1, 1, b, sizeof(b)), c);
	n += snprintf(parent + n, sizeof(parent) - n, "agile-strong-right IN TLSA %s\n",
		      tlsa(ee, 3, 1, 2, a[0], sizeof(a[0])));
	n += snprintf(parent + n, sizeof(parent) - n, "agile-strong-right IN TLSA %s\n",
		      tlsa(other, 3, 1, 1, a[1], sizeof(a[1])));
	n += snprintf(parent + n, sizeof(parent) - n, "mismatch IN TLSA %s\n",
		      tlsa(other, 3, 1, 1, b, sizeof(b)));
	/* Usage 4, selector 2, matching type 9: unknown, so unusable. */
	tlsa(ee, 3, 1, 1, b, sizeof(b));
	n += snprintf(
		parent + n, sizeof(parent) - n,
		"unusable IN TLSA 4 1 1 %s\nunusable IN TLSA 3 2 1 %s\nunusable IN TLSA 3 1 9 %s\n",
		b + 6, b + 6, b + 6);
	n += snprintf(parent + n, sizeof(parent) - n, "short 3 IN TLSA %s\n", b);
	n += snprintf(parent + n, sizeof(parent) - n, "down1 IN TLSA %s\ndown2 IN TLSA %s\n", b, b);
	/* The server identity danced-as-client checks, at _PORT._tcp.server. */
	self->srv_port = free_port();
	n += snprintf(parent + n, sizeof(parent) - n, "_%d._tcp.server IN TLSA %s\n",
		      self->srv_port, tlsa(srv_ee, 3, 1, 1, c, sizeof(c)));
	n += snprintf(parent + n, sizeof(parent) - n, "_%d._tcp.wrongkey IN TLSA %s\n",
		      self->srv_port, tlsa(other, 3, 1, 1, c, sizeof(c)));
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
	X509_free(ee);
	X509_free(other);
	X509_free(dev);
	X509_free(pk);
	X509_free(cli_ca);
	X509_free(srv_ee);

	/* Raw public keys where OpenSSL has them (3.2); a 3.0 danced refuses the setting. */
	if (OPENSSL_VERSION_NUMBER >= 0x30200000L)
		snprintf(rpk_services, sizeof(rpk_services),
			 "[service rpk]\ncertificate = %s\nkey = %s\nserver_names = rpk.localhost\n"
			 "dane = required\ntls_min = 1.3\ndane_names = " Z "\n"
			 "client_certificate_types = rpk, x509\n"
			 "[service x509only]\ncertificate = %s\nkey = %s\n"
			 "server_names = x509.localhost\ndane = required\ntls_min = 1.3\n"
			 "dane_names = " Z "\nclient_certificate_types = x509\n"
			 "[service upstream-rpk]\nrole = client\nverify = dane\n"
			 "server_certificate_types = rpk\n"
			 "[service me-rpk]\nrole = client\nverify = none\n"
			 "identity = _smtp-client.device1." Z "\ncertificate = %s\nkey = %s\n"
			 "client_certificate_types = rpk\n",
			 self->e.srv_cert, self->e.srv_key, self->e.srv_cert, self->e.srv_key,
			 self->ee_cert, self->ee_key);
	ASSERT_EQ(
		0,
		env_conf(&self->e,
			 "workers = 2\nlog_level = debug\n"
			 "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n"
			 "dns_stub = " Z ". %s\n"
			 "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			 "dane = required\ntls_min = 1.3\ndane_names = " Z "\nca = %s\n"
			 "handshake_timeout = 8s\n"
			 "[service opt]\ncertificate = %s\nkey = %s\nserver_names = opt.localhost\n"
			 "dane = optional\ndane_names = " Z "\nclient_auth = optional\nca = %s\n"
			 "[service strict]\ncertificate = %s\nkey = %s\n"
			 "server_names = strict.localhost\ndane = required\ntls_min = 1.3\n"
			 "dane_names = _device." Z "\n"
			 "[service legacy]\ncertificate = %s\nkey = %s\n"
			 "server_names = legacy.localhost\ndane = required\ntls_min = 1.2\n"
			 "dane_tls12_legacy = yes\ndane_names = " Z "\n"
			 "[service flagged]\ncertificate = %s\nkey = %s\n"
			 "server_names = flag.localhost\ndane = optional\ndane_names = " Z "\n"
			 "%s"
			 "[service upstream]\nrole = client\nverify = dane\n"
			 "[service me]\nrole = client\nverify = none\n"
			 "identity = _smtp-client.device1." Z "\ncertificate = %s\nkey = %s\n",
			 self->f.trust_anchor, self->f.stubs[0].addr, self->e.srv_cert,
			 self->e.srv_key, self->e.cli_ca, self->e.srv_cert, self->e.srv_key,
			 self->e.cli_ca, self->e.srv_cert, self->e.srv_key, self->e.srv_cert,
			 self->e.srv_key, self->e.srv_cert, self->e.srv_key, rpk_services,
			 self->ee_cert, self->ee_key));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	self->r = calloc(1, sizeof(*self->r));
}

FIXTURE_TEARDOWN(dane)
{
	if (self->d)
		dance_close(self->d);
	free(self->r);
	close(self->lfd);
	danced_stop(&self->e, SIGTERM);
	dnsfix_fini(&self->f);
	env_fini(&self->e);
}

/*
 * One client against danced in return mode: the test is the server, which hands the
 * socket over and, when danced says yes, answers "pong" through kTLS.
 */
static int attempt(struct __test_metadata *_metadata, FIXTURE_DATA(dane) * self, struct dclient *c)
{
	struct dance_params p = { 0 };
	char buf[8];
	int fd, ret;

	c->port = self->port;
	memset(self->r, 0, sizeof(*self->r));
	pthread_create(&c->thread, NULL, dclient_main, c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = dance_handshake(self->d, fd, &p, self->r);
	if (!ret) {
		/* The client's ping often arrives during the DNS lookup: it is in pending. */
		if (self->r->pending_len == 4 || dance_recv(fd, buf, sizeof(buf), 0) == 4)
			send(fd, "pong", 4, 0);
		close(fd);
	}
	pthread_join(c->thread, NULL);
	return ret;
}

static void expect_dane_ok(struct __test_metadata *_metadata, FIXTURE_DATA(dane) * self,
			   struct dclient *c, const char *name, int usage, int sel, int mtype)
{
	int ret = attempt(_metadata, self, c);

	EXPECT_EQ(0, ret) TH_LOG("%s: %s", name, self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth) TH_LOG("%s", name);
	EXPECT_STREQ(name, self->r->verified_name);
	EXPECT_EQ(usage, self->r->tlsa_usage) TH_LOG("%s", name);
	EXPECT_EQ(sel, self->r->tlsa_selector) TH_LOG("%s", name);
	EXPECT_EQ(mtype, self->r->tlsa_mtype) TH_LOG("%s", name);
	EXPECT_STREQ("pong", c->reply) TH_LOG("%s", name);
}

static void expect_refused(struct __test_metadata *_metadata, FIXTURE_DATA(dane) * self,
			   struct dclient *c, int status, const char *code)
{
	int ret = attempt(_metadata, self, c);

	EXPECT_EQ(status, ret) TH_LOG("%s: %s", code, self->r->reason);
	EXPECT_EQ(0, strncmp(self->r->reason, code, strlen(code)))
	TH_LOG("want %s: %s", code, self->r->reason);
	EXPECT_STREQ("", c->reply);
	EXPECT_TRUE(refused_with_handshake_failure(c))
	TH_LOG("%s: client saw %s", code, ERR_reason_error_string(c->err));
	EXPECT_STREQ("", self->r->verified_name);
}

#define CLIENT(...) ((struct dclient){ __VA_ARGS__ })

TEST_F(dane, every_owner_name_form_authenticates)
{
	struct dclient c;

	/* Format 1, service-specific, DANE-EE. */
	c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert, .key = self->ee_key);
	expect_dane_ok(_metadata, self, &c, "_smtp-client.device1." Z, 3, 1, 1);
	EXPECT_TRUE(c.cr_had_clientid);
	/* Format 2, a device under _device, DANE-TA with the chain the client sent. */
	c = CLIENT(.name = "sensor7._device." Z, .cert = self->dev7_cert, .key = self->dev7_key);
	expect_dane_ok(_metadata, self, &c, "sensor7._device." Z, 2, 1, 1);
	/* The wildcard *._device. */
	c = CLIENT(.name = "sensor9._device." Z, .cert = self->dev9_cert, .key = self->dev9_key);
	expect_dane_ok(_metadata, self, &c, "sensor9._device." Z, 2, 0, 1);
	/* Format 3, freeform, PKIX-EE: needs the chain to the service's CA and the SAN. */
	c = CLIENT(.name = "device73." Z, .cert = self->pkix_cert, .key = self->pkix_key);
	expect_dane_ok(_metadata, self, &c, "device73." Z, 1, 1, 1);
}

TEST_F(dane, every_selector_and_matching_type)
{
	char name[64];
	int s, m;

	for (s = 0; s < 2; s++)
		for (m = 0; m < 3; m++) {
			struct dclient c =
				CLIENT(.name = name, .cert = self->ee_cert, .key = self->ee_key);

			snprintf(name, sizeof(name), "ee%d%d." Z, s, m);
			expect_dane_ok(_metadata, self, &c, name, 3, s, m);
		}
}

TEST_F(dane, pkix_ta_needs_the_name_in_the_certificate)
{
	/* 0 0 1 at pkixta: the CA matches, but the certificate names device73 only. */
	struct dclient c =
		CLIENT(.name = "pkixta." Z, .cert = self->pkix_cert, .key = self->pkix_key);

	expect_refused(_metadata, self, &c, -EACCES, "tlsa-mismatch");
	EXPECT_NE(NULL, strstr(self->r->reason, "mismatch")) TH_LOG("%s", self->r->reason);
}

TEST_F(dane, digest_agility_uses_the_strongest_digest)
{
	struct dclient c =
		CLIENT(.name = "agile-strong-right." Z, .cert = self->ee_cert, .key = self->ee_key);

	expect_dane_ok(_metadata, self, &c, "agile-strong-right." Z, 3, 1, 2);
	c = CLIENT(.name = "agile-strong-wrong." Z, .cert = self->ee_cert, .key = self->ee_key);
	expect_refused(_metadata, self, &c, -EACCES, "tlsa-mismatch");
}

/*
 * The decision table, row by row: only a secure match authenticates. Each row runs over
 * TLS 1.3 (the name in the client's Certificate) and over the legacy TLS 1.2 signal (the
 * name in ClientHello), which must decide exactly the same.
 */
static void row_refused(struct __test_metadata *_metadata, FIXTURE_DATA(dane) * self,
			const char *name, const char *code)
{
	int legacy;

	for (legacy = 0; legacy < 2; legacy++) {
		struct dclient c = CLIENT(.name = name, .cert = self->ee_cert, .key = self->ee_key,
					  .sni = legacy ? "legacy.localhost" : NULL,
					  .version = legacy ? TLS1_2_VERSION : 0, .legacy = legacy);

		/* Without the legacy signal taking effect, the reason would be dane-missing. */
		expect_refused(_metadata, self, &c, -EACCES, code);
	}
}

TEST_F(dane, secure_records_that_do_not_match)
{
	row_refused(_metadata, self, "mismatch." Z, "tlsa-mismatch");
}

TEST_F(dane, secure_records_all_unusable)
{
	row_refused(_metadata, self, "unusable." Z, "tlsa-unusable");
}

TEST_F(dane, secure_no_records)
{
	row_refused(_metadata, self, "nobody." Z, "tlsa-none");
}

TEST_F(dane, insecure_zone)
{
	row_refused(_metadata, self, "client.insecure." Z, "tlsa-insecure");
}

TEST_F(dane, bogus_signatures)
{
	row_refused(_metadata, self, "client.bogus." Z, "tlsa-bogus");
}

TEST_F(dane, expired_signatures)
{
	row_refused(_metadata, self, "client.expired." Z, "tlsa-bogus");
	EXPECT_NE(NULL, strstr(self->r->reason, "expired")) TH_LOG("%s", self->r->reason);
}

TEST_F(dane, empty_name_is_a_handshake_failure)
{
	int legacy;

	for (legacy = 0; legacy < 2; legacy++) {
		struct dclient c = CLIENT(.name = "", .cert = self->ee_cert, .key = self->ee_key,
					  .sni = legacy ? "legacy.localhost" : NULL,
					  .version = legacy ? TLS1_2_VERSION : 0, .legacy = legacy);

		EXPECT_EQ(-EACCES, attempt(_metadata, self, &c)) TH_LOG("%s", self->r->reason);
		EXPECT_NE(NULL, strstr(self->r->reason, "dane-empty"))
		TH_LOG("%s", self->r->reason);
		EXPECT_TRUE(refused_with_handshake_failure(&c))
		TH_LOG("%s", ERR_reason_error_string(c.err));
	}
}

TEST_F(dane, required_without_the_extension_fails)
{
	struct dclient c = CLIENT(.cert = self->ee_cert, .key = self->ee_key);

	EXPECT_EQ(-EACCES, attempt(_metadata, self, &c));
	EXPECT_NE(NULL, strstr(self->r->reason, "dane-missing")) TH_LOG("%s", self->r->reason);
	EXPECT_TRUE(refused_with_handshake_failure(&c))
	TH_LOG("%s", ERR_reason_error_string(c.err));
}

TEST_F(dane, required_refuses_tls12)
{
	struct dclient c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert,
				  .key = self->ee_key, .version = TLS1_2_VERSION);

	EXPECT_NE(0, attempt(_metadata, self, &c));
	EXPECT_FALSE(c.handshake_ok);
}

/* The allow-list is checked before any query: a refused name is never looked up. */
TEST_F(dane, name_outside_the_allow_list_is_never_looked_up)
{
	struct dclient c = CLIENT(.sni = "strict.localhost", .name = "_smtp-client.device1." Z,
				  .cert = self->ee_cert, .key = self->ee_key);

	dnsfix_reset_counts(&self->f);
	expect_refused(_metadata, self, &c, -EACCES, "name-not-allowed");
	EXPECT_EQ(0, dnsfix_queries(&self->f, "_smtp-client.device1." Z "."));
	/* Inside the list, the same service authenticates. */
	c = CLIENT(.sni = "strict.localhost", .name = "sensor7._device." Z, .cert = self->dev7_cert,
		   .key = self->dev7_key);
	expect_dane_ok(_metadata, self, &c, "sensor7._device." Z, 2, 1, 1);
}

TEST_F(dane, second_handshake_comes_from_the_cache_until_the_ttl)
{
	struct dclient c = CLIENT(.name = "short." Z, .cert = self->ee_cert, .key = self->ee_key);

	dnsfix_reset_counts(&self->f);
	expect_dane_ok(_metadata, self, &c, "short." Z, 3, 1, 1);
	EXPECT_EQ(0, self->r->dns_cached);
	EXPECT_LT(0, dnsfix_queries(&self->f, "short." Z "."));
	dnsfix_reset_counts(&self->f);
	c = CLIENT(.name = "short." Z, .cert = self->ee_cert, .key = self->ee_key);
	expect_dane_ok(_metadata, self, &c, "short." Z, 3, 1, 1);
	EXPECT_EQ(1, self->r->dns_cached);
	EXPECT_EQ(0, dnsfix_queries(&self->f, "short." Z "."));
	/* Its TTL is 3 s: after it, danced asks again. */
	sleep(4);
	c = CLIENT(.name = "short." Z, .cert = self->ee_cert, .key = self->ee_key);
	expect_dane_ok(_metadata, self, &c, "short." Z, 3, 1, 1);
	EXPECT_EQ(0, self->r->dns_cached);
	EXPECT_LT(0, dnsfix_queries(&self->f, "short." Z "."));
}

/* The DNS server stops: fail closed within the deadline; it comes back: success again. */
TEST_F_TIMEOUT(dane, dns_server_down_fails_closed_and_recovers, 120)
{
	struct dclient c = CLIENT(.name = "down1." Z, .cert = self->ee_cert, .key = self->ee_key);
	long t0;
	int i, ret = -1;

	ASSERT_EQ(0, dnsfix_stop(&self->f));
	t0 = ms_now();
	ret = attempt(_metadata, self, &c);
	EXPECT_NE(0, ret);
	EXPECT_TRUE(!strncmp(self->r->reason, "dns-", 4)) TH_LOG("%s", self->r->reason);
	EXPECT_GT(8000 + 2000, ms_now() - t0); /* within the 8 s handshake deadline */
	EXPECT_TRUE(refused_with_handshake_failure(&c));
	EXPECT_EQ(0U, self->r->auth);
	ASSERT_EQ(0, dnsfix_restart(&self->f));
	for (i = 0; i < 10 && ret; i++) {
		c = CLIENT(.name = "down2." Z, .cert = self->ee_cert, .key = self->ee_key);
		ret = attempt(_metadata, self, &c);
		if (ret)
			sleep(1);
	}
	EXPECT_EQ(0, ret) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth);
}

/* How many lines of danced's log contain @needle. */
static int log_count(FIXTURE_DATA(dane) * self, const char *needle)
{
	FILE *f = fopen(self->e.log, "r");
	char line[1024];
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		n += !!strstr(line, needle);
	if (f)
		fclose(f);
	return n;
}

/*
 * Handshakes that need one name at once share one lookup: the DNS server holds its
 * answer until all of them wait, and then danced's resolver reports exactly one answer.
 */
TEST_F(dane, concurrent_lookups_of_one_name_share_one_query)
{
	enum { N = 6 };
	struct dclient c[N];
	struct dance_params p = { 0 };
	struct dance *d;
	int i, fds[N], waited, ret, done;

	ASSERT_EQ(0, dance_open(self->e.sock, &d));
	dnsfix_silence(&self->f, true);
	for (i = 0; i < N; i++) {
		c[i] = CLIENT(.name = "ee01." Z, .cert = self->ee_cert, .key = self->ee_key,
			      .port = self->port);
		pthread_create(&c[i].thread, NULL, dclient_main, &c[i]);
		fds[i] = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_LE(0, fds[i]);
		ASSERT_EQ(0, dance_submit(d, fds[i], &p, i + 1)); /* ids start at 1 */
	}
	for (waited = 0; waited < 200 && log_count(self, "TLSA ee01." Z ": asking") < N; waited++)
		usleep(50000);
	EXPECT_EQ(N, log_count(self, "TLSA ee01." Z ": asking"));
	dnsfix_silence(&self->f, false);
	for (done = 0; done < N;) {
		struct pollfd pfd = { .fd = dance_fd(d), .events = POLLIN };

		memset(self->r, 0, sizeof(*self->r));
		ret = dance_complete(d, self->r);
		if (ret == -EAGAIN) {
			ASSERT_EQ(1, poll(&pfd, 1, 20000));
			continue;
		}
		ASSERT_EQ(0, ret);
		ASSERT_TRUE(self->r->id >= 1 && self->r->id <= N);
		EXPECT_EQ(0, self->r->status) TH_LOG("%s", self->r->reason);
		EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth);
		EXPECT_STREQ("ee01." Z, self->r->verified_name);
		/* The clients wait for an answer to their ping; none comes, so end them. */
		if (!self->r->status)
			close(fds[self->r->id - 1]);
		done++;
	}
	for (i = 0; i < N; i++)
		pthread_join(c[i].thread, NULL);
	EXPECT_EQ(1, log_count(self, "TLSA ee01." Z ": secure records"));
	dance_close(d);
}

/* With dns_forwarder, the same decisions come through a forwarding resolver. */
TEST_F(dane, through_a_forwarder)
{
	struct dclient c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert,
				  .key = self->ee_key);

	dance_close(self->d);
	self->d = NULL;
	ASSERT_EQ(0, danced_stop(&self->e, SIGTERM));
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\nlog_level = debug\n"
			      "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n"
			      "dns_forwarder = 127.0.0.1\n"
			      "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			      "dane = required\ntls_min = 1.3\ndane_names = " Z "\n",
			      self->f.trust_anchor, self->e.srv_cert, self->e.srv_key));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	expect_dane_ok(_metadata, self, &c, "_smtp-client.device1." Z, 3, 1, 1);
	c = CLIENT(.name = "client.bogus." Z, .cert = self->ee_cert, .key = self->ee_key);
	expect_refused(_metadata, self, &c, -EACCES, "tlsa-bogus");
	c = CLIENT(.name = "client.insecure." Z, .cert = self->ee_cert, .key = self->ee_key);
	expect_refused(_metadata, self, &c, -EACCES, "tlsa-insecure");
}

/* The kernel's policy: a valid DANE identity the rules do not allow moves no data. */
TEST_F(dane, kernel_policy_holds_a_dane_client_the_rules_do_not_allow)
{
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = DANCED_VERDICT_DENY };
	struct danced_rule allow = { .verdict = DANCED_VERDICT_ALLOW }, deny = { 0 };
	struct dclient c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert,
				  .key = self->ee_key);
	struct danced_service_key sk = { .port = self->port };
	struct dance_params p = { 0 };
	struct danced_rule_key k;
	char path[160], buf[8];
	struct stat st;
	int fd, services, rules;

	dance_close(self->d);
	self->d = NULL;
	ASSERT_EQ(0, danced_stop(&self->e, SIGTERM));
	snprintf(self->e.bpf_pin, sizeof(self->e.bpf_pin), "danced-dane-%d", getpid());
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\n"
			      "dns_trust_anchor_file = none\ndns_trust_anchor = %s\n"
			      "dns_stub = " Z ". %s\n"
			      "[service www]\ncertificate = %s\nkey = %s\ndefault = yes\n"
			      "dane = required\ntls_min = 1.3\ndane_names = " Z "\n",
			      self->f.trust_anchor, self->f.stubs[0].addr, self->e.srv_cert,
			      self->e.srv_key));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/services", self->e.bpf_pin);
	services = bpf_obj_get(path);
	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/rules", self->e.bpf_pin);
	rules = bpf_obj_get(path);
	ASSERT_LE(0, services);
	ASSERT_LE(0, rules);
	/* Everything under the zone (a rule as zeros leave it: DANE), except one name. */
	ASSERT_EQ(0, stat("/proc/self/ns/net", &st));
	sk.netns = st.st_ino;
	ASSERT_EQ(0, bpf_map_update_elem(services, &sk, &svc, BPF_ANY));
	ASSERT_TRUE(danced_rule_key_init(&k, sk.netns, sk.port, "elpmaxe.erutxif.", false));
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));
	expect_dane_ok(_metadata, self, &c, "_smtp-client.device1." Z, 3, 1, 1);
	ASSERT_TRUE(danced_rule_key_init(&k, sk.netns, sk.port,
					 "elpmaxe.erutxif.1ecived.tneilc-ptms_.", true));
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &deny, BPF_ANY));

	/* DANE still says yes; the kernel says no, both ways, to a server that never checks. */
	c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert, .key = self->ee_key,
		   .port = self->port);
	pthread_create(&c.thread, NULL, dclient_main, &c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dance_handshake(self->d, fd, &p, self->r)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth);
	EXPECT_EQ(0U, self->r->pending_len); /* its ping, if early, is withheld */
	EXPECT_EQ(-1, dance_recv(fd, buf, sizeof(buf), 0));
	EXPECT_EQ(EACCES, errno);
	EXPECT_EQ(-1, send(fd, "pong", 4, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	close(fd);
	pthread_join(c.thread, NULL);
	EXPECT_STREQ("", c.reply);
	usleep(500000);
	EXPECT_TRUE(log_contains(&self->e, "policy: refused"));
	EXPECT_TRUE(log_contains(&self->e, ": _smtp-client.device1." Z));

	/*
	 * A rule for X.509 certificates that carry the name does not admit its DANE proof;
	 * any admits both.
	 */
	allow.proof = DANCED_PROOF_X509;
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));
	c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert, .key = self->ee_key,
		   .port = self->port);
	pthread_create(&c.thread, NULL, dclient_main, &c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dance_handshake(self->d, fd, &p, self->r)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth);
	EXPECT_EQ(-1, send(fd, "pong", 4, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	close(fd);
	pthread_join(c.thread, NULL);
	usleep(500000);
	EXPECT_TRUE(log_contains(&self->e, "(proven by dane, which its rule does not accept)"));
	allow.proof = DANCED_PROOF_ANY;
	ASSERT_EQ(0, bpf_map_update_elem(rules, &k, &allow, BPF_ANY));
	c = CLIENT(.name = "_smtp-client.device1." Z, .cert = self->ee_cert, .key = self->ee_key,
		   .port = self->port);
	pthread_create(&c.thread, NULL, dclient_main, &c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dance_handshake(self->d, fd, &p, self->r)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ(4, send(fd, "pong", 4, MSG_NOSIGNAL));
	close(fd);
	pthread_join(c.thread, NULL);
	close(services);
	close(rules);
}

/* The old drafts' TLS 1.2 signal: only where the operator opted in. */
TEST_F(dane, legacy_tls12_mode)
{
	struct dclient c = CLIENT(.sni = "legacy.localhost", .name = "_smtp-client.device1." Z,
				  .cert = self->ee_cert, .key = self->ee_key,
				  .version = TLS1_2_VERSION, .legacy = true);

	expect_dane_ok(_metadata, self, &c, "_smtp-client.device1." Z, 3, 1, 1);
	EXPECT_EQ(0x0303, self->r->tls_version);
	/* Without the signal, a TLS 1.2 client cannot name itself, and is refused. */
	c = CLIENT(.sni = "legacy.localhost", .cert = self->ee_cert, .key = self->ee_key,
		   .version = TLS1_2_VERSION);
	EXPECT_EQ(-EACCES, attempt(_metadata, self, &c));
	EXPECT_NE(NULL, strstr(self->r->reason, "dane-missing")) TH_LOG("%s", self->r->reason);
}

/* dane = optional without client_auth asks only clients that set request_client_auth. */
TEST_F(dane, request_client_auth_flag_brings_the_certificate_request)
{
	struct dclient c = CLIENT(.sni = "flag.localhost", .name = "_smtp-client.device1." Z,
				  .cert = self->ee_cert, .key = self->ee_key);

	EXPECT_EQ(0, attempt(_metadata, self, &c)) TH_LOG("%s", self->r->reason);
	EXPECT_FALSE(c.got_cr);
	EXPECT_EQ(0U, self->r->auth);
	c = CLIENT(.sni = "flag.localhost", .name = "_smtp-client.device1." Z,
		   .cert = self->ee_cert, .key = self->ee_key, .flag = true);
	expect_dane_ok(_metadata, self, &c, "_smtp-client.device1." Z, 3, 1, 1);
	EXPECT_TRUE(c.got_cr);
	EXPECT_TRUE(c.cr_echoed_flag);
	EXPECT_TRUE(c.cr_had_clientid);
}

struct cmd_job {
	char **argv;
	const char *in;
	char out[8192];
	int ret;
	pthread_t thread;
};

static void *cmd_job_main(void *arg)
{
	struct cmd_job *j = arg;

	j->ret = run(j->argv, j->in, strlen(j->in), j->out, sizeof(j->out), 60);
	return NULL;
}

/* openssl s_client with an ordinary client certificate: dane = optional falls back to X.509. */
TEST_F(dane, s_client_falls_back_to_x509_where_dane_is_optional)
{
	char connect[32];
	char *argv[] = { "/usr/bin/openssl",
			 "s_client",
			 "-connect",
			 connect,
			 "-servername",
			 "opt.localhost",
			 "-cert",
			 self->e.cli_cert,
			 "-key",
			 self->e.cli_key,
			 "-ign_eof",
			 "-brief",
			 NULL };
	struct cmd_job j = { .argv = argv, .in = "x" };
	struct dance_params p = { 0 };
	int fd;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", self->port);
	pthread_create(&j.thread, NULL, cmd_job_main, &j);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, dance_handshake(self->d, fd, &p, self->r)) TH_LOG("%s", self->r->reason);
	close(fd);
	pthread_join(j.thread, NULL);
	EXPECT_STREQ("opt", self->r->service);
	EXPECT_EQ((uint32_t)DANCE_AUTH_X509, self->r->auth);
	EXPECT_NE(NULL, strstr(self->r->peer_subject, "client.example.test"));
	EXPECT_STREQ("", self->r->verified_name);
}

/* danced as the client: the server is authenticated by its TLSA at _PORT._tcp.NAME. */
TEST_F(dane, danced_client_authenticates_the_server_by_tlsa)
{
	char port[16], connect[32], out[4096];
	pid_t srv;
	int ret;

	snprintf(port, sizeof(port), "%d", self->srv_port);
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", self->srv_port);
	{
		char *argv[] = { "/usr/bin/openssl", "s_server", "-accept",	   port,   "-cert",
				 self->srv_ee_cert,  "-key",	 self->srv_ee_key, "-rev", NULL };

		srv = spawn(argv, NULL);
	}
	ASSERT_EQ(0, wait_connectable(NULL, self->srv_port, 10000));
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--connect",
				 connect,
				 "--name",
				 "server." Z,
				 "--service",
				 "upstream",
				 NULL };

		ret = run(argv, "hello dane\n", 11, out, sizeof(out), 60);
	}
	EXPECT_EQ(0, ret) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "enad olleh")) TH_LOG("%s", out);
	/* The same server under a name whose TLSA holds another key: refused. */
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--connect",
				 connect,
				 "--name",
				 "wrongkey." Z,
				 "--service",
				 "upstream",
				 NULL };

		ret = run(argv, "hello\n", 6, out, sizeof(out), 60);
	}
	EXPECT_EQ(1, ret) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "server certificate rejected")) TH_LOG("%s", out);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
}

/* danced as client (service @service, SNI @sni) to danced as server, in return mode. */
static void danced_to_danced(struct __test_metadata *_metadata, FIXTURE_DATA(dane) * self,
			     const char *sni, const char *service)
{
	char connect[32];
	char *argv[] = { (char *)bin("dance-echo"),
			 "--handoff",
			 self->e.sock,
			 "--connect",
			 connect,
			 "--name",
			 (char *)sni,
			 "--service",
			 (char *)service,
			 NULL };
	struct cmd_job j = { .argv = argv, .in = "ping" };
	struct dance_params p = { 0 };
	char buf[8];
	int fd;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", self->port);
	pthread_create(&j.thread, NULL, cmd_job_main, &j);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, dance_handshake(self->d, fd, &p, self->r)) TH_LOG("%s", self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_DANE, self->r->auth);
	EXPECT_STREQ("_smtp-client.device1." Z, self->r->verified_name);
	/* The client half-closes after "ping": pending may hold it, and close_notify. */
	if (!self->r->status &&
	    (self->r->pending_len == 4 || dance_recv(fd, buf, sizeof(buf), 0) == 4))
		send(fd, "pong", 4, 0);
	close(fd);
	pthread_join(j.thread, NULL);
	EXPECT_NE(NULL, strstr(j.out, "pong")) TH_LOG("%s", j.out);
}

/* ---- raw public keys (RFC 7250) ------------------------------------------------------- */

#if OPENSSL_VERSION_NUMBER >= 0x30200000L
#define RPK_CLIENT(n)                                                                 \
	CLIENT(.sni = "rpk.localhost", .name = n, .rpk = true, .cert = self->ee_cert, \
	       .key = self->ee_key)

/* A raw key is what DANE-EE SPKI records are made for: every matching type works. */
TEST_F(dane, raw_public_key_is_authenticated_by_its_tlsa_record)
{
	static const int mtypes[] = { 1, 0, 2 };
	char name[64];
	size_t i;

	for (i = 0; i < 3; i++) {
		struct dclient c = RPK_CLIENT(name);

		snprintf(name, sizeof(name), "ee1%d." Z, mtypes[i]);
		expect_dane_ok(_metadata, self, &c, name, 3, 1, mtypes[i]);
		EXPECT_EQ(DANCE_CERT_RPK, self->r->peer_cert_type) TH_LOG("%s", name);
		EXPECT_STREQ("", self->r->peer_subject);
	}
}

TEST_F(dane, raw_public_key_not_in_the_rrset_is_refused)
{
	struct dclient c = RPK_CLIENT("mismatch." Z);

	expect_refused(_metadata, self, &c, -EACCES, "tlsa-mismatch");
}

/* Usages 0-2 need a chain, and selector 0 a certificate: a raw key has neither. */
TEST_F(dane, raw_public_key_cannot_use_ca_or_certificate_records)
{
	struct dclient ca = RPK_CLIENT("sensor7._device." Z);
	struct dclient full = RPK_CLIENT("ee01." Z);

	expect_refused(_metadata, self, &ca, -EACCES, "tlsa-unusable");
	EXPECT_NE(NULL, strstr(self->r->reason, "raw public key")) TH_LOG("%s", self->r->reason);
	expect_refused(_metadata, self, &full, -EACCES, "tlsa-unusable");
}

TEST_F(dane, raw_public_key_without_dane_clientid_is_refused)
{
	struct dclient c = RPK_CLIENT(NULL);

	expect_refused(_metadata, self, &c, -EACCES, "rpk-without-dane");
}

/* The same service still takes certificates, and says which the client used. */
TEST_F(dane, service_taking_both_still_takes_a_certificate)
{
	struct dclient c = CLIENT(.sni = "rpk.localhost", .name = "ee11." Z, .cert = self->ee_cert,
				  .key = self->ee_key);

	expect_dane_ok(_metadata, self, &c, "ee11." Z, 3, 1, 1);
	EXPECT_EQ(DANCE_CERT_X509, self->r->peer_cert_type);
	EXPECT_NE(NULL, strstr(self->r->peer_subject, "DANE-EE"))
	TH_LOG("%s", self->r->peer_subject);
}

/* openssl s_client offers its key bare, but cannot name itself: refused, and why. */
TEST_F(dane, s_client_raw_public_key_without_a_name_is_refused)
{
	char connect[32];
	char *argv[] = {
		"/usr/bin/openssl", "s_client",		  "-connect", connect,	     "-servername",
		"rpk.localhost",    "-enable_client_rpk", "-cert",    self->ee_cert, "-key",
		self->ee_key,	    "-ign_eof",		  "-brief",   NULL
	};
	struct cmd_job j = { .argv = argv, .in = "x" };
	struct dance_params p = { 0 };
	int fd;

	snprintf(connect, sizeof(connect), "127.0.0.1:%d", self->port);
	pthread_create(&j.thread, NULL, cmd_job_main, &j);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EACCES, dance_handshake(self->d, fd, &p, self->r));
	close(fd);
	pthread_join(j.thread, NULL);
	EXPECT_EQ(0, strncmp(self->r->reason, "rpk-without-dane", 16))
	TH_LOG("%s", self->r->reason);
	EXPECT_STREQ("", self->r->verified_name);
	EXPECT_NE(0, j.ret) TH_LOG("%s", j.out);
}

/* gnutls-cli sends its bare key too (RFC 7250 in GnuTLS), and is refused the same way. */
TEST_F(dane, gnutls_raw_public_key_without_a_name_is_refused)
{
	char port[16], pub[200], out[2048];
	char *pubout[] = { "/usr/bin/openssl", "pkey", "-in", self->ee_key,
			   "-pubout",	       "-out", pub,   NULL };
	char *argv[] = { "/usr/bin/gnutls-cli",
			 "--priority",
			 "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CTYPE-CLI-ALL:+CTYPE-CLI-RAWPK",
			 "--rawpkkeyfile",
			 self->ee_key,
			 "--rawpkfile",
			 pub,
			 "--sni-hostname",
			 "rpk.localhost",
			 "--insecure",
			 "-p",
			 port,
			 "127.0.0.1",
			 NULL };
	struct cmd_job j = { .argv = argv, .in = "x" };
	struct dance_params p = { 0 };
	int fd;

	snprintf(pub, sizeof(pub), "%.150s/ee.pub", self->e.dir);
	ASSERT_EQ(0, run(pubout, NULL, 0, out, sizeof(out), 30)) TH_LOG("%s", out);
	snprintf(port, sizeof(port), "%d", self->port);
	pthread_create(&j.thread, NULL, cmd_job_main, &j);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EACCES, dance_handshake(self->d, fd, &p, self->r));
	close(fd);
	pthread_join(j.thread, NULL);
	EXPECT_EQ(0, strncmp(self->r->reason, "rpk-without-dane", 16))
	TH_LOG("%s; gnutls-cli (exit %d) said:\n%s", self->r->reason, j.ret, j.out);
	EXPECT_STREQ("", self->r->verified_name);
}

/*
 * danced as the client takes openssl s_server's bare key (-enable_server_rpk) by its
 * TLSA record at _PORT._tcp.NAME; the same key under a name with another key is refused.
 */
TEST_F(dane, danced_client_authenticates_a_server_raw_public_key_by_tlsa)
{
	char port[16], connect[32], out[4096];
	pid_t srv;
	int ret;

	snprintf(port, sizeof(port), "%d", self->srv_port);
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", self->srv_port);
	{
		char *argv[] = { "/usr/bin/openssl",
				 "s_server",
				 "-accept",
				 port,
				 "-enable_server_rpk",
				 "-cert",
				 self->srv_ee_cert,
				 "-key",
				 self->srv_ee_key,
				 "-rev",
				 NULL };

		srv = spawn(argv, NULL);
	}
	ASSERT_EQ(0, wait_connectable(NULL, self->srv_port, 10000));
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--connect",
				 connect,
				 "--name",
				 "server." Z,
				 "--service",
				 "upstream-rpk",
				 NULL };

		ret = run(argv, "hello dane\n", 11, out, sizeof(out), 60);
	}
	EXPECT_EQ(0, ret) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "enad olleh")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "auth=dane cert=rpk name=server." Z)) TH_LOG("%s", out);
	{
		char *argv[] = { (char *)bin("dance-echo"),
				 "--handoff",
				 self->e.sock,
				 "--connect",
				 connect,
				 "--name",
				 "wrongkey." Z,
				 "--service",
				 "upstream-rpk",
				 NULL };

		ret = run(argv, "hello\n", 6, out, sizeof(out), 60);
	}
	EXPECT_EQ(1, ret) TH_LOG("%s", out);
	EXPECT_EQ(NULL, strstr(out, "olleh")) TH_LOG("%s", out);
	kill(srv, SIGKILL);
	waitpid(srv, NULL, 0);
}

/* danced presenting its raw key with a DANE name, to danced taking raw keys. */
TEST_F(dane, danced_client_raw_public_key_against_danced_server)
{
	danced_to_danced(_metadata, self, "rpk.localhost", "me-rpk");
	EXPECT_EQ(DANCE_CERT_RPK, self->r->peer_cert_type);
	EXPECT_STREQ("rpk", self->r->service);
}

/* A client that offers both gets the service's first choice: rpk, x509 takes the key. */
TEST_F(dane, the_service_order_picks_the_certificate_type)
{
	struct dclient c = CLIENT(.sni = "rpk.localhost", .name = "ee11." Z, .x509_then_rpk = true,
				  .cert = self->ee_cert, .key = self->ee_key);

	expect_dane_ok(_metadata, self, &c, "ee11." Z, 3, 1, 1);
	EXPECT_EQ(DANCE_CERT_RPK, self->r->peer_cert_type);
}

/* A client that can only send a raw key, to a service that takes only certificates. */
TEST_F(dane, raw_public_key_to_an_x509_only_service_is_refused)
{
	struct dclient c = RPK_CLIENT("ee11." Z);

	c.sni = "x509.localhost";
	EXPECT_GT(0, attempt(_metadata, self, &c));
	TH_LOG("reason: %s; client saw %s", self->r->reason, ERR_reason_error_string(c.err));
	EXPECT_FALSE(c.handshake_ok && c.reply[0]);
	EXPECT_STREQ("", self->r->verified_name);
	EXPECT_EQ(0, strncmp(self->r->reason, "cert-type:", 10)) TH_LOG("%s", self->r->reason);
	EXPECT_NE(NULL, strstr(self->r->reason, "client_certificate_types = x509"))
	TH_LOG("%s", self->r->reason);
}
#endif

/* danced as client (with a DANE identity) against danced as server (dane = required). */
TEST_F(dane, danced_client_against_danced_server)
{
	danced_to_danced(_metadata, self, "localhost", "me");
	EXPECT_EQ(DANCE_CERT_X509, self->r->peer_cert_type);
}

DANCED_HARNESS_MAIN
