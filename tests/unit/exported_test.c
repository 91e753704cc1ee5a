// SPDX-License-Identifier: GPL-2.0
/*
 * exported_test.c - host unit tests of agent/exported.c: exported authenticators
 * (RFC 9261) from the exporter values of an in-memory handshake, against the tests'
 * own implementation (tests/lib/ea.c). No kernel: this runs on the build machine's
 * OpenSSL (3.0 on Debian 12) and in the Debian 13 root (3.5), and under ASan, where
 * every truncation and every flipped byte of an authenticator goes through the parser.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/pem.h>

#include "../harness.h"
#include "../lib/ea.h"
#include "../lib/pair.h"
#include "../lib/pki.h"
#include "../lib/record.h"
#include "../../agent/agent.h"

/* What main.c defines for the stages; the archive's other users want them. */
struct agent agent;

uint64_t now_ns(void)
{
	return 0;
}

static const struct pair_suite tls13 = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", 0 };
static const struct pair_suite tls13_384 = { TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", 0 };
static const struct pair_suite tls12 = { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", 0 };

FIXTURE(exp)
{
	char dir[64], path[8][160];
	struct config *cfg;
	struct state *st;
	SSL_CTX *cctx, *sctx;
	SSL *client, *server;
	X509 *cli, *srv, *stranger;
	EVP_PKEY *cli_k, *stranger_k;
	struct dance_ea *m;
	struct dance_result *res;
	struct dane_check d;
	struct ktls_conn kc; /* the server's, as danced attaches it: the key log's secrets */
	struct fail f;
	uint8_t out[DANCE_EA_DATA_MAX], auth[TEA_MAX];
	uint32_t out_len;
};

/*
 * A handshake in memory, its server side kept as connection @cookie of service www; the
 * client offers post_handshake_auth when @pha.
 */
static int connect_pair_pha(FIXTURE_DATA(exp) * self, const struct pair_suite *suite, bool no_ems,
			    uint64_t cookie, bool pha)
{
	SSL_free(self->client);
	SSL_free(self->server);
	SSL_CTX_free(self->cctx);
	SSL_CTX_free(self->sctx);
	self->cctx = pair_ctx(false, suite, false, 0);
	self->sctx = pair_ctx(true, suite, true, 0);
	if (!self->cctx || !self->sctx)
		return -ENOMEM;
	if (no_ems)
		SSL_CTX_set_options(self->cctx, SSL_OP_NO_EXTENDED_MASTER_SECRET);
	self->client = pair_mem_ssl(self->cctx);
	self->server = pair_mem_ssl(self->sctx);
	ktls_conn_wipe(&self->kc);
	if (ktls_conn_attach(&self->kc, self->server))
		return -EIO;
	/* As danced does: each entry also keeps a transcript, which the store must free. */
	SSL_set_post_handshake_auth(self->client, pha);
	ktls_transcript_want(&self->kc);
	if (pair_mem_handshake(self->client, self->server))
		return -EPROTO;
	exported_keep(self->server, &self->kc, cookie, "www", true);
	return 0;
}

static int connect_pair(FIXTURE_DATA(exp) * self, const struct pair_suite *suite, bool no_ems,
			uint64_t cookie)
{
	return connect_pair_pha(self, suite, no_ems, cookie, true);
}

/* One operation on connection @cookie, as a DANCE_MSG_EA would ask for it. */
static int op(FIXTURE_DATA(exp) * self, uint64_t cookie, uint32_t what, uint32_t flags,
	      const uint8_t *req, size_t req_len, const uint8_t *auth, size_t auth_len)
{
	struct svc *svc = NULL;

	memset(self->m, 0, sizeof(*self->m));
	memset(self->res, 0, sizeof(*self->res));
	memset(&self->f, 0, sizeof(self->f));
	verify_dane_end(&self->d);
	memset(&self->d, 0, sizeof(self->d));
	self->m->op = what;
	self->m->flags = flags;
	self->m->request_len = req_len;
	self->m->auth_len = auth_len;
	if (req_len)
		memcpy(self->m->data, req, req_len);
	if (auth_len)
		memcpy(self->m->data + req_len, auth, auth_len);
	return exported_op(self->m, cookie, self->st, &svc, self->out, &self->out_len, &self->d,
			   self->res, &self->f);
}

FIXTURE_SETUP(exp)
{
	static const char *const names[] = { "client.example", NULL };
	struct pki_ca ca = { 0 };
	char err[512];
	FILE *f;
	int i;

	strcpy(self->dir, "/tmp/danced-exported-XXXXXX");
	ASSERT_NE(NULL, mkdtemp(self->dir));
	for (i = 0; i < 8; i++) {
		char dir[sizeof(self->dir)];

		memcpy(dir, self->dir, sizeof(dir)); /* gcc cannot tell the fields apart */
		snprintf(self->path[i], sizeof(self->path[i]), "%s/%d.pem", dir, i);
	}
	/* 0 the CA, 1/2 a client it issued, 3/4 the server, 5/6 a stranger, 7 the config */
	ASSERT_EQ(0, pki_ca_new(&ca, "clients"));
	ASSERT_EQ(0, pki_ca_write(&ca, self->path[0], NULL));
	ASSERT_EQ(0, pki_leaf(&ca, "client", names, 0, self->path[1], self->path[2]));
	ASSERT_EQ(0, pki_leaf(NULL, "server", names, 1, self->path[3], self->path[4]));
	ASSERT_EQ(0, pki_leaf(NULL, "stranger", names, 0, self->path[5], self->path[6]));
	pki_ca_free(&ca);
	f = fopen(self->path[7], "w");
	ASSERT_NE(NULL, f);
	fprintf(f,
		"[danced]\nexported_authenticators = 16\nbpf_policy = no\n"
		"[service www]\ncertificate = %s\nkey = %s\nclient_auth = optional\nca = %s\n",
		self->path[3], self->path[4], self->path[0]);
	fclose(f);
	ASSERT_EQ(0, handshake_init());
	ASSERT_EQ(0, ktls_init());
	ASSERT_EQ(0, config_load(self->path[7], &self->cfg, err, sizeof(err))) TH_LOG("%s", err);
	ASSERT_EQ(0, state_new(self->cfg, &self->st, err, sizeof(err))) TH_LOG("%s", err);
	ASSERT_EQ(0, exported_init(self->cfg, err, sizeof(err))) TH_LOG("%s", err);
	self->cli = pki_read_cert(self->path[1]);
	self->cli_k = pki_read_key(self->path[2]);
	self->srv = pki_read_cert(self->path[3]);
	self->stranger = pki_read_cert(self->path[5]);
	self->stranger_k = pki_read_key(self->path[6]);
	ASSERT_TRUE(self->cli && self->cli_k && self->srv && self->stranger && self->stranger_k);
	self->m = calloc(1, sizeof(*self->m));
	self->res = calloc(1, sizeof(*self->res));
	ASSERT_EQ(0, connect_pair(self, &tls13, false, 42));
}

FIXTURE_TEARDOWN(exp)
{
	char cmd[128];

	verify_dane_end(&self->d);
	exported_fini();
	SSL_free(self->client);
	SSL_free(self->server);
	SSL_CTX_free(self->cctx);
	SSL_CTX_free(self->sctx);
	X509_free(self->cli);
	X509_free(self->srv);
	X509_free(self->stranger);
	EVP_PKEY_free(self->cli_k);
	EVP_PKEY_free(self->stranger_k);
	if (self->st)
		state_put(self->st); /* frees the config with it */
	free(self->m);
	free(self->res);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", self->dir);
	if (system(cmd))
		TH_LOG("cannot remove %s", self->dir);
}

/* danced's request, answered by the client with @cert/@key: the authenticator's length. */
static int answer(FIXTURE_DATA(exp) * self, X509 *cert, EVP_PKEY *key, uint8_t *req,
		  uint32_t *req_len)
{
	if (op(self, 42, DANCE_EA_REQUEST, DANCE_EA_NO_DANE, NULL, 0, NULL, 0) != V_DONE)
		return -EIO;
	memcpy(req, self->out, self->out_len);
	*req_len = self->out_len;
	return tea_authenticate(self->client, req, *req_len, cert, NULL, key, NULL, self->auth,
				sizeof(self->auth));
}

TEST_F(exp, client_proves_an_x509_identity_once)
{
	uint8_t req[1024];
	uint32_t rl;
	int al = answer(self, self->cli, self->cli_k, req, &rl);

	ASSERT_LT(0, al);
	EXPECT_EQ(13, req[0]); /* danced was the TLS server: a CertificateRequest */
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
	TH_LOG("%s", self->f.why);
	EXPECT_EQ((uint32_t)DANCE_AUTH_EA_X509, self->res->auth);
	EXPECT_EQ(42U, self->res->cookie);
	EXPECT_EQ(TLS1_3_VERSION, self->res->tls_version);
	EXPECT_NE(NULL, strstr(self->res->peer_subject, "CN=client"));
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al));
	EXPECT_EQ(-EALREADY, self->f.status);
	/* A stranger's certificate is genuine but proves nothing to this service. */
	al = answer(self, self->stranger, self->stranger_k, req, &rl);
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al));
	EXPECT_EQ(-EACCES, self->f.status);
	EXPECT_EQ(0, strncmp(self->f.why, "client certificate rejected", 27))
	TH_LOG("%s", self->f.why);
}

/* A request is answered the way it was made: EA by EA, post-handshake auth by PHA. */
TEST_F(exp, requests_are_validated_by_their_own_kind)
{
	uint8_t req[1024];
	uint32_t rl;
	int al = answer(self, self->cli, self->cli_k, req, &rl);

	ASSERT_LT(0, al);
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_PHA_VALIDATE, 0, req, rl, self->auth, al));
	EXPECT_EQ(-EINVAL, self->f.status);
	EXPECT_EQ(0, strncmp(self->f.why, "pha-kind", 8)) TH_LOG("%s", self->f.why);
	/* The other way round: a post-handshake request is no exported authenticator's. */
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_PHA_REQUEST, 0, NULL, 0, NULL, 0))
	TH_LOG("%s", self->f.why);
	EXPECT_EQ(13, self->out[0]);
	EXPECT_NE(NULL, strstr(self->res->reason, "post-handshake CertificateRequest"));
	memcpy(req, self->out, self->out_len);
	rl = self->out_len;
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al));
	EXPECT_EQ(0, strncmp(self->f.why, "pha-kind", 8)) TH_LOG("%s", self->f.why);
	/* Both still answerable the right way: the EA answer validates as EA. */
	al = answer(self, self->cli, self->cli_k, req, &rl);
	EXPECT_EQ(V_DONE, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
	TH_LOG("%s", self->f.why);
}

/* Only a TLS 1.3 client that offered post_handshake_auth is asked. */
TEST_F(exp, post_handshake_auth_needs_the_offer)
{
	ASSERT_EQ(0, connect_pair(self, &tls13, false, 43));
	EXPECT_EQ(V_DONE, op(self, 43, DANCE_EA_PHA_REQUEST, 0, NULL, 0, NULL, 0))
	TH_LOG("%s", self->f.why);
	ASSERT_EQ(0, connect_pair_pha(self, &tls13, false, 44, false));
	EXPECT_EQ(V_FAIL, op(self, 44, DANCE_EA_PHA_REQUEST, 0, NULL, 0, NULL, 0));
	EXPECT_EQ(0, strncmp(self->f.why, "pha-not-offered", 15)) TH_LOG("%s", self->f.why);
	ASSERT_EQ(0, connect_pair(self, &tls12, false, 45));
	EXPECT_EQ(V_FAIL, op(self, 45, DANCE_EA_PHA_REQUEST, 0, NULL, 0, NULL, 0));
	EXPECT_EQ(0, strncmp(self->f.why, "pha-version", 11)) TH_LOG("%s", self->f.why);
}

TEST_F(exp, danced_authenticates_the_server_to_its_client)
{
	struct tea_found found = { 0 };
	uint8_t req[512];
	int n;

	n = tea_request(self->client, (const uint8_t *)"ctx", 3, false, NULL, req, sizeof(req));
	ASSERT_LT(0, n);
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_AUTHENTICATE, 0, req, n, NULL, 0))
	TH_LOG("%s", self->f.why);
	ASSERT_EQ(0, tea_validate(self->client, req, n, self->out, self->out_len, &found));
	EXPECT_EQ(0, X509_cmp(found.leaf, self->srv));
	X509_free(found.leaf);
	/* The same context again: never a second authenticator. */
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_AUTHENTICATE, 0, req, n, NULL, 0));
	EXPECT_EQ(-EALREADY, self->f.status);
	/* Unasked, with a scheme from the ClientHello's list: one the client takes. */
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_AUTHENTICATE, 0, NULL, 0, NULL, 0))
	TH_LOG("%s", self->f.why);
	memset(&found, 0, sizeof(found));
	EXPECT_EQ(0, tea_validate(self->client, NULL, 0, self->out, self->out_len, &found));
	EXPECT_EQ(0, X509_cmp(found.leaf, self->srv));
	X509_free(found.leaf);
	EXPECT_NE(NULL,
		  strstr(self->res->reason, "spontaneous authenticator, signature scheme 0x0403"))
	TH_LOG("%s", self->res->reason);
}

/*
 * Every prefix and every single flipped byte of a valid authenticator is refused, and
 * the genuine one still validates afterwards: nothing a peer sends consumes a request
 * before it proved itself. Under ASan this walks the parser over every cut.
 */
TEST_F(exp, every_cut_and_every_flipped_byte_is_refused)
{
	uint8_t req[1024];
	uint32_t rl;
	int al = answer(self, self->cli, self->cli_k, req, &rl), i, bit;
	uint8_t *cut;

	ASSERT_LT(0, al);
	for (i = 1; i < al; i++) {
		/* In a buffer of exactly that length, so that a read past it is caught. */
		cut = malloc(i);
		memcpy(cut, self->auth, i);
		EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, cut, i))
		TH_LOG("cut at %d", i);
		EXPECT_GT(0, self->f.status);
		free(cut);
	}
	for (i = 0; i < al; i++) {
		bit = 1 << (i % 8);
		self->auth[i] ^= bit;
		EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
		TH_LOG("byte %d flipped", i);
		self->auth[i] ^= bit;
	}
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
	TH_LOG("%s", self->f.why);
}

/*
 * Post-handshake authentication with OpenSSL's client as the other end: danced's
 * CertificateRequest goes to it sealed with the server's keys (tests/lib/record.c, as
 * kTLS would), and OpenSSL's Certificate, CertificateVerify and Finished, opened the
 * same way, are what danced judges: genuine, they prove the client; cut short or with
 * any byte flipped, never.
 */
TEST_F(exp, post_handshake_answers_from_openssl_and_every_flipped_byte)
{
	union ktls_crypto_info tx, rx;
	uint8_t wire[16384], req[1024], ans[8192], pt[16384], type, b[16];
	size_t n, wl, off, rec, pl, al = 0;
	uint64_t rseq;
	const char *why;
	socklen_t len;
	uint32_t rl;
	int i, bit;

	ASSERT_EQ(1, SSL_use_certificate(self->client, self->cli));
	ASSERT_EQ(1, SSL_use_PrivateKey(self->client, self->cli_k));
	ASSERT_EQ(0, ktls_crypto_info(&self->kc, self->server, KTLS_TX, &tx, &len, &why))
	TH_LOG("%s", why);
	ASSERT_EQ(0, ktls_crypto_info(&self->kc, self->server, KTLS_RX, &rx, &len, &why))
	TH_LOG("%s", why);
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_PHA_REQUEST, DANCE_EA_NO_DANE, NULL, 0, NULL, 0))
	TH_LOG("%s", self->f.why);
	rl = self->out_len;
	memcpy(req, self->out, rl);
	ASSERT_EQ(0, record_seal(&tx, record_seq(&tx), 22, req, rl, wire, &wl));
	pair_feed(self->client, wire, wl);
	EXPECT_GT(0, SSL_read(self->client, b, sizeof(b))); /* it answers, then waits */
	n = pair_wire(self->client, wire, sizeof(wire));
	ASSERT_LT(0U, n);
	for (off = 0, rseq = record_seq(&rx); off < n; off += rec, rseq++) {
		rec = record_next(wire + off, n - off);
		ASSERT_LT(0U, rec);
		ASSERT_EQ(0, record_open(&rx, rseq, wire + off, rec, &type, pt, &pl));
		ASSERT_EQ(22, type);
		ASSERT_GE(sizeof(ans) - al, pl);
		memcpy(ans + al, pt, pl);
		al += pl;
	}
	EXPECT_EQ(11, ans[0]); /* Certificate first */
	for (i = 1; i < (int)al; i++) {
		EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_PHA_VALIDATE, 0, req, rl, ans, i))
		TH_LOG("cut at %d", i);
	}
	for (i = 0; i < (int)al; i++) {
		bit = 1 << (i % 8);
		ans[i] ^= bit;
		EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_PHA_VALIDATE, 0, req, rl, ans, al))
		TH_LOG("byte %d flipped", i);
		ans[i] ^= bit;
	}
	ASSERT_EQ(V_DONE, op(self, 42, DANCE_EA_PHA_VALIDATE, 0, req, rl, ans, al))
	TH_LOG("%s", self->f.why);
	EXPECT_EQ((uint32_t)DANCE_AUTH_PHA_X509, self->res->auth);
	EXPECT_NE(NULL, strstr(self->res->peer_subject, "CN=client"));
	/* Once. */
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_PHA_VALIDATE, 0, req, rl, ans, al));
	EXPECT_EQ(-EALREADY, self->f.status);
}

/* OpenSSL's own exporter, where danced has no exporter secret: the same values. */
TEST_F(exp, openssl_exporter_gives_the_same_values)
{
	uint8_t req[1024];
	uint32_t rl;
	int al;

	ASSERT_LT(0, self->kc.exporter_len); /* the key log gave it: 42 took the fast path */
	exported_keep(self->server, NULL, 42, "www", true);
	al = answer(self, self->cli, self->cli_k, req, &rl);
	ASSERT_LT(0, al);
	EXPECT_EQ(V_DONE, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
	TH_LOG("%s", self->f.why);
}

TEST_F(exp, sha384_suites_use_48_byte_values)
{
	uint8_t req[1024];
	uint32_t rl;
	int al;

	ASSERT_EQ(0, connect_pair(self, &tls13_384, false, 42));
	al = answer(self, self->cli, self->cli_k, req, &rl);
	ASSERT_LT(0, al);
	/* Finished closes it: type 20, a 3-byte length of 48, the HMAC-SHA384. */
	EXPECT_EQ(20, self->auth[al - 52]);
	EXPECT_EQ(48, self->auth[al - 49]);
	EXPECT_EQ(V_DONE, op(self, 42, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
	TH_LOG("%s", self->f.why);
}

TEST_F(exp, tls12_needs_extended_master_secret)
{
	uint8_t req[1024];
	uint32_t rl;
	int al;

	ASSERT_EQ(0, connect_pair(self, &tls12, false, 43));
	ASSERT_EQ(V_DONE, op(self, 43, DANCE_EA_REQUEST, 0, NULL, 0, NULL, 0));
	memcpy(req, self->out, self->out_len);
	rl = self->out_len;
	al = tea_authenticate(self->client, req, rl, self->cli, NULL, self->cli_k, NULL, self->auth,
			      sizeof(self->auth));
	ASSERT_LT(0, al);
	EXPECT_EQ(V_DONE, op(self, 43, DANCE_EA_VALIDATE, 0, req, rl, self->auth, al))
	TH_LOG("%s", self->f.why);

	ASSERT_EQ(0, connect_pair(self, &tls12, true, 44));
	EXPECT_EQ(V_FAIL, op(self, 44, DANCE_EA_REQUEST, 0, NULL, 0, NULL, 0));
	EXPECT_EQ(-EPROTO, self->f.status);
	EXPECT_EQ(0, strncmp(self->f.why, "ea-no-ems", 9)) TH_LOG("%s", self->f.why);
	EXPECT_EQ(0U, self->out_len);
}

/* The store keeps the last exported_authenticators connections, and no more. */
TEST_F(exp, the_store_is_a_ring_of_the_most_recent_connections)
{
	struct exported_stats st;
	uint64_t c;

	exported_stats(&st);
	EXPECT_EQ(1U, st.live);
	EXPECT_EQ(16U, st.cap);
	EXPECT_EQ(1U, st.pha); /* the fixture's client offered post-handshake auth */
	for (c = 100; c < 116; c++)
		exported_keep(self->server, NULL, c, "www", true);
	exported_stats(&st);
	EXPECT_EQ(16U, st.live);
	EXPECT_EQ(1ULL, st.evicted); /* 42 made room for 115 */
	EXPECT_EQ(0U, st.pha); /* and its transcript went with it */
	EXPECT_EQ(V_FAIL, op(self, 42, DANCE_EA_REQUEST, 0, NULL, 0, NULL, 0));
	EXPECT_EQ(-ENOENT, self->f.status);
	EXPECT_EQ(0, strncmp(self->f.why, "ea-unknown", 10));
	EXPECT_EQ(V_DONE, op(self, 100, DANCE_EA_REQUEST, 0, NULL, 0, NULL, 0));
	/* Closed sockets (the BPF hook) and forgotten ones go at once. */
	for (c = 100; c < 116; c++)
		EXPECT_TRUE(exported_forget(c));
	EXPECT_FALSE(exported_forget(100));
	exported_stats(&st);
	EXPECT_EQ(0U, st.live);
	EXPECT_EQ(V_FAIL, op(self, 100, DANCE_EA_FORGET, 0, NULL, 0, NULL, 0));
	EXPECT_EQ(-ENOENT, self->f.status);
	/* A full ring again, after many deletions: the index still finds every entry. */
	for (c = 1000; c < 1100; c++) {
		exported_keep(self->server, NULL, c, "www", true);
		if (c % 3 == 0)
			exported_forget(c);
	}
	for (c = 1084; c < 1100; c++)
		EXPECT_EQ(c % 3 ? V_DONE : V_FAIL,
			  op(self, c, DANCE_EA_REQUEST, 0, NULL, 0, NULL, 0))
	TH_LOG("cookie %llu", (unsigned long long)c);
}

static void hex(const char *s, uint8_t *out)
{
	size_t i;

	for (i = 0; i < 32; i++)
		sscanf(s + 2 * i, "%2hhx", &out[i]);
}

/*
 * danced's derivation and labels against the values specs.md section 4.7 computed from
 * RFC 8448's exporter_master_secret: TLS-Exporter(label, "", 32) =
 * HKDF-Expand-Label(Derive-Secret(ems, label, ""), "exporter", SHA-256(""), 32).
 */
TEST(exporter_gives_the_values_computed_from_rfc8448)
{
	static const char *const want[2][2] = {
		{ "3ce40ddfb5a8566480bb683fa63f43f1d6d52ab962854a98a3c080d81ed5631f",
		  "b5920228102885ce3bbc879252d7c4ae80f47616cdc91456338427e7890941b0" },
		{ "34db53a0d817c518dc905f36e253a11271904ea43778358aaeb85d377a4fe0fb",
		  "d7571ccc1577b04277765da1c875d933be15717b3ecf45d0708431fa077df54d" },
	};
	struct ktls_conn kc = { 0 };
	uint8_t got[32], w[32];
	int i, j;

	ASSERT_EQ(0, ktls_init());
	hex("fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50", kc.exporter);
	kc.exporter_len = 32;
	for (i = 0; i < 2; i++)
		for (j = 0; j < 2; j++) {
			ASSERT_EQ(0, ktls_exporter(&kc, "SHA256", exported_labels[i][j], got, 32));
			hex(want[i][j], w);
			EXPECT_EQ(0, memcmp(got, w, 32)) TH_LOG("%s", exported_labels[i][j]);
		}
	/* Without the secret (TLS 1.2), danced falls back to OpenSSL's exporter. */
	kc.exporter_len = 0;
	EXPECT_EQ(-ENOENT, ktls_exporter(&kc, "SHA256", exported_labels[0][0], got, 32));
}

DANCED_HARNESS_MAIN
