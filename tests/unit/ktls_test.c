// SPDX-License-Identifier: GPL-2.0
/*
 * ktls_test.c - host unit tests for agent/ktls.c; no kTLS needed.
 *
 * Real OpenSSL handshakes run in memory; setsockopt is replaced by a recorder so the
 * tests see the exact crypto_info bytes that would reach the kernel. Those bytes are
 * then checked against OpenSSL's own record layer through tests/lib/record.c: they must
 * open the peer's records and seal records the peer accepts.
 */
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/pair.h"
#include "../lib/record.h"
#include "../../agent/ktls.h"

/* setsockopt recorder: the kernel edge, replaced. */
struct call {
	int level, name;
	socklen_t len;
	union ktls_crypto_info ci;
	char ulp[8];
};

static struct call calls[4];
static int ncalls, fail_at = -1, fail_errno;

static int record_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct call *c = &calls[ncalls < 4 ? ncalls : 3];

	(void)fd;
	memset(c, 0, sizeof(*c));
	c->level = level;
	c->name = name;
	c->len = len;
	if (level == SOL_TLS)
		memcpy(&c->ci, val, len < sizeof(c->ci) ? len : sizeof(c->ci));
	else
		memcpy(c->ulp, val, len < sizeof(c->ulp) ? len : sizeof(c->ulp));
	if (ncalls++ == fail_at) {
		errno = fail_errno;
		return -1;
	}
	return 0;
}

static void recorder_reset(int fail_index, int err)
{
	memset(calls, 0, sizeof(calls));
	ncalls = 0;
	fail_at = fail_index;
	fail_errno = err;
	ktls_setsockopt = record_setsockopt;
}

static bool all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len--)
		if (*b++)
			return false;
	return true;
}

static size_t hex(const char *s, uint8_t *out)
{
	size_t n = 0;

	for (; s[0] && s[1]; s += 2)
		out[n++] = OPENSSL_hexchar2int(s[0]) << 4 | OPENSSL_hexchar2int(s[1]);
	return n;
}

static size_t info_size(int cipher)
{
	switch (cipher) {
	case TLS_CIPHER_AES_GCM_128:
		return sizeof(struct tls12_crypto_info_aes_gcm_128);
	case TLS_CIPHER_AES_GCM_256:
		return sizeof(struct tls12_crypto_info_aes_gcm_256);
	case TLS_CIPHER_AES_CCM_128:
		return sizeof(struct tls12_crypto_info_aes_ccm_128);
	case TLS_CIPHER_CHACHA20_POLY1305:
		return sizeof(struct tls12_crypto_info_chacha20_poly1305);
	}
	return 0;
}

/* Both ends of an in-memory connection, each with its ktls_conn attached. */
struct ends {
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	struct ktls_conn ckc, skc;
};

static int ends_open(struct ends *e, const struct pair_suite *suite, int tickets)
{
	if (ktls_init())
		return -1;
	e->cctx = pair_ctx(false, suite, true, 0);
	e->sctx = pair_ctx(true, suite, true, tickets);
	if (!e->cctx || !e->sctx)
		return -2;
	e->c = pair_mem_ssl(e->cctx);
	e->s = pair_mem_ssl(e->sctx);
	if (!e->c || !e->s || ktls_conn_attach(&e->ckc, e->c) || ktls_conn_attach(&e->skc, e->s))
		return -3;
	return pair_mem_handshake(e->c, e->s) ? -4 : 0;
}

static void ends_close(struct ends *e)
{
	SSL_free(e->c);
	SSL_free(e->s);
	SSL_CTX_free(e->cctx);
	SSL_CTX_free(e->sctx);
}

/* Move userspace application records both ways, as a server would before offload. */
static void exchange(struct __test_metadata *_metadata, struct ends *e, int records)
{
	uint8_t wire[65536], buf[64];
	size_t n;
	int i;

	for (i = 0; i < records; i++) {
		ASSERT_EQ(5, SSL_write(e->c, "c2s-x", 5));
		ASSERT_EQ(5, SSL_write(e->s, "s2c-x", 5));
	}
	n = pair_wire(e->c, wire, sizeof(wire));
	pair_feed(e->s, wire, n);
	n = pair_wire(e->s, wire, sizeof(wire));
	pair_feed(e->c, wire, n);
	for (i = 0; i < records; i++) {
		ASSERT_EQ(5, SSL_read(e->s, buf, sizeof(buf)));
		ASSERT_EQ(0, memcmp(buf, "c2s-x", 5));
		ASSERT_EQ(5, SSL_read(e->c, buf, sizeof(buf)));
		ASSERT_EQ(0, memcmp(buf, "s2c-x", 5));
	}
	ASSERT_EQ(0, SSL_has_pending(e->c));
	ASSERT_EQ(0, SSL_has_pending(e->s));
}

/*
 * Install on @me (with the recorder in place) and return the captured RX and TX
 * crypto_info. Checks the call sequence and that the ktls_conn was wiped.
 */
static void capture(struct __test_metadata *_metadata, SSL *me, struct ktls_conn *kc,
		    const struct pair_suite *suite, union ktls_crypto_info *rx,
		    union ktls_crypto_info *tx)
{
	const char *why = "unset";

	recorder_reset(-1, 0);
	ASSERT_EQ(0, ktls_install(kc, me, -1, &why)) TH_LOG("why: %s", why);
	ASSERT_EQ(NULL, why);
	ASSERT_EQ(3, ncalls);
	EXPECT_EQ(SOL_TCP, calls[0].level);
	EXPECT_EQ(TCP_ULP, calls[0].name);
	EXPECT_EQ(4U, calls[0].len);
	EXPECT_STREQ("tls", calls[0].ulp);
	EXPECT_EQ(SOL_TLS, calls[1].level);
	EXPECT_EQ(TLS_RX, calls[1].name);
	EXPECT_EQ(SOL_TLS, calls[2].level);
	EXPECT_EQ(TLS_TX, calls[2].name);
	EXPECT_EQ(info_size(suite->ktls_cipher), (size_t)calls[1].len);
	EXPECT_EQ(info_size(suite->ktls_cipher), (size_t)calls[2].len);
	EXPECT_EQ(suite->version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION,
		  calls[1].ci.info.version);
	EXPECT_EQ(suite->ktls_cipher, calls[1].ci.info.cipher_type);
	EXPECT_EQ(calls[1].ci.info.version, calls[2].ci.info.version);
	EXPECT_EQ(calls[1].ci.info.cipher_type, calls[2].ci.info.cipher_type);
	EXPECT_TRUE(all_zero(kc, sizeof(*kc)));
	*rx = calls[1].ci;
	*tx = calls[2].ci;
}

/* Open every record on @wire with @rx from its rec_seq on; expect @n data records. */
static void open_all(struct __test_metadata *_metadata, const union ktls_crypto_info *rx,
		     const uint8_t *wire, size_t len, int skip_handshake, const char *expect, int n)
{
	uint64_t seq = record_seq(rx);
	uint8_t pt[16384], type;
	size_t rl, ptl;
	int data = 0;

	while ((rl = record_next(wire, len))) {
		ASSERT_EQ(0, record_open(rx, seq++, wire, rl, &type, pt, &ptl));
		if (type == KTLS_CONTENT_HANDSHAKE && skip_handshake-- > 0) {
			EXPECT_EQ(SSL3_MT_NEWSESSION_TICKET, pt[0]);
		} else {
			ASSERT_EQ(KTLS_CONTENT_DATA, type);
			ASSERT_EQ(strlen(expect), ptl);
			ASSERT_EQ(0, memcmp(pt, expect, ptl));
			data++;
		}
		wire += rl;
		len -= rl;
	}
	EXPECT_EQ(0U, len);
	EXPECT_EQ(n, data);
}

/* Seal @n records with @tx and make sure @peer reads them back. */
static void seal_for(struct __test_metadata *_metadata, const union ktls_crypto_info *tx, SSL *peer,
		     const char *msg, int n)
{
	uint64_t seq = record_seq(tx);
	uint8_t rec[16384 + 64], buf[64];
	size_t rl;
	int i;

	for (i = 0; i < n; i++) {
		ASSERT_EQ(0, record_seal(tx, seq++, KTLS_CONTENT_DATA, (const uint8_t *)msg,
					 strlen(msg), rec, &rl));
		pair_feed(peer, rec, rl);
	}
	for (i = 0; i < n; i++) {
		ASSERT_EQ((int)strlen(msg), SSL_read(peer, buf, sizeof(buf)))
		TH_LOG("peer rejected our record %d: %s", i, pair_ssl_error());
		ASSERT_EQ(0, memcmp(buf, msg, strlen(msg)));
	}
}

/*
 * Offload one side of a finished connection (server when @server_side) and prove the
 * captured keys against the other side: its queued records open, ours are accepted.
 */
static void offload_side(struct __test_metadata *_metadata, struct ends *e,
			 const struct pair_suite *suite, bool server_side, uint64_t want_rx,
			 uint64_t want_tx, int queued_tickets)
{
	SSL *me = server_side ? e->s : e->c, *peer = server_side ? e->c : e->s;
	union ktls_crypto_info rx, tx;
	uint8_t wire[65536];
	size_t n;
	int i;

	capture(_metadata, me, server_side ? &e->skc : &e->ckc, suite, &rx, &tx);
	EXPECT_EQ(want_rx, record_seq(&rx));
	EXPECT_EQ(want_tx, record_seq(&tx));
	if (suite->version == TLS1_2_VERSION &&
	    suite->ktls_cipher != TLS_CIPHER_CHACHA20_POLY1305) {
		/* The explicit nonce starts at the sequence number; the kernel counts it up. */
		EXPECT_EQ(0, memcmp((uint8_t *)&rx + 4,
				    (uint8_t *)&rx + info_size(suite->ktls_cipher) - 8, 8));
		EXPECT_EQ(0, memcmp((uint8_t *)&tx + 4,
				    (uint8_t *)&tx + info_size(suite->ktls_cipher) - 8, 8));
	}

	/* The peer's records, including tickets it queued after the handshake. */
	for (i = 0; i < 3; i++)
		ASSERT_EQ(8, SSL_write(peer, "to-ktls!", 8));
	n = pair_wire(peer, wire, sizeof(wire));
	open_all(_metadata, &rx, wire, n, queued_tickets, "to-ktls!", 3);

	/* Our records. Tickets queued on our side reach the peer before them. */
	n = pair_wire(me, wire, sizeof(wire));
	pair_feed(peer, wire, n);
	seal_for(_metadata, &tx, peer, "from-ktls", 3);
	OPENSSL_cleanse(&rx, sizeof(rx));
	OPENSSL_cleanse(&tx, sizeof(tx));
}

FIXTURE(offload)
{
	struct ends e;
};

FIXTURE_VARIANT(offload)
{
	struct pair_suite suite;
};

FIXTURE_VARIANT_ADD(offload, tls12_aes_128_gcm){
	.suite = { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", TLS_CIPHER_AES_GCM_128 },
};

FIXTURE_VARIANT_ADD(offload, tls12_aes_256_gcm){
	.suite = { TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", TLS_CIPHER_AES_GCM_256 },
};

FIXTURE_VARIANT_ADD(offload, tls12_chacha20){
	.suite = { TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", TLS_CIPHER_CHACHA20_POLY1305 },
};

FIXTURE_VARIANT_ADD(offload, tls12_aes_128_ccm){
	.suite = { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-CCM", TLS_CIPHER_AES_CCM_128 },
};

FIXTURE_VARIANT_ADD(offload, tls13_aes_128_gcm){
	.suite = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128 },
};

FIXTURE_VARIANT_ADD(offload, tls13_aes_256_gcm){
	.suite = { TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256 },
};

FIXTURE_VARIANT_ADD(offload, tls13_chacha20){
	.suite = { TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", TLS_CIPHER_CHACHA20_POLY1305 },
};

FIXTURE_VARIANT_ADD(offload, tls13_aes_128_ccm){
	.suite = { TLS1_3_VERSION, "TLS_AES_128_CCM_SHA256", TLS_CIPHER_AES_CCM_128 },
};

/* TLS 1.3 servers send two tickets by default; they must be counted, not assumed away. */
FIXTURE_SETUP(offload)
{
	ASSERT_EQ(0, ends_open(&self->e, &variant->suite, 2)) TH_LOG("%s", pair_ssl_error());
}

FIXTURE_TEARDOWN(offload)
{
	ends_close(&self->e);
}

TEST_F(offload, server_keys_match_the_peer)
{
	bool tls13 = variant->suite.version == TLS1_3_VERSION;

	/* TLS 1.3: tickets were sent under the new key; TLS 1.2: Finished was record 0. */
	offload_side(_metadata, &self->e, &variant->suite, true, tls13 ? 0 : 1, tls13 ? 2 : 1, 0);
}

TEST_F(offload, client_keys_match_the_peer)
{
	bool tls13 = variant->suite.version == TLS1_3_VERSION;

	/* The server's two tickets wait on the wire: the kernel will read them at 0 and 1. */
	offload_side(_metadata, &self->e, &variant->suite, false, tls13 ? 0 : 1, tls13 ? 0 : 1,
		     tls13 ? 2 : 0);
}

TEST_F(offload, userspace_records_advance_the_sequence)
{
	bool tls13 = variant->suite.version == TLS1_3_VERSION;
	int first = tls13 ? 0 : 1;

	exchange(_metadata, &self->e, 3);
	/* The client read the two tickets in userspace before the data. */
	offload_side(_metadata, &self->e, &variant->suite, false, first + 3 + (tls13 ? 2 : 0),
		     first + 3, 0);
}

TEST_F(offload, server_and_client_keys_agree)
{
	union ktls_crypto_info crx, ctx_, srx, stx;
	size_t len = info_size(variant->suite.ktls_cipher);

	capture(_metadata, self->e.c, &self->e.ckc, &variant->suite, &crx, &ctx_);
	capture(_metadata, self->e.s, &self->e.skc, &variant->suite, &srx, &stx);
	/* One side's send keys are the other side's receive keys, sequence included. */
	EXPECT_EQ(0, memcmp(&ctx_, &srx, len));
	/* Server TX has run ahead of client RX by the tickets still on the wire. */
	EXPECT_EQ(0, memcmp(&stx, &crx, len - 8));
	EXPECT_FALSE(all_zero((uint8_t *)&stx + 4, len - 12));
}

TEST_F(offload, refuses_bytes_buffered_past_the_handshake)
{
	const char *why = NULL;
	uint8_t wire[4096];
	size_t n;

	/* Data the server sent now sits in the client's read BIO: userspace already has it. */
	ASSERT_EQ(4, SSL_write(self->e.s, "late", 4));
	n = pair_wire(self->e.s, wire, sizeof(wire));
	pair_feed(self->e.c, wire, n);
	recorder_reset(-1, 0);
	EXPECT_EQ(-EPROTO, ktls_install(&self->e.ckc, self->e.c, -1, &why));
	EXPECT_EQ(0, ncalls);
	ASSERT_NE(NULL, why);
	EXPECT_NE(NULL, strstr(why, "would be lost"));
	EXPECT_TRUE(all_zero(&self->e.ckc, sizeof(self->e.ckc)));
}

TEST_F(offload, refuses_plaintext_left_in_the_tls_library)
{
	const char *why = NULL;
	uint8_t wire[4096], buf[2];
	size_t n;

	ASSERT_EQ(6, SSL_write(self->e.c, "abcdef", 6));
	n = pair_wire(self->e.c, wire, sizeof(wire));
	pair_feed(self->e.s, wire, n);
	ASSERT_EQ(2, SSL_read(self->e.s, buf, sizeof(buf)));
	ASSERT_TRUE(SSL_has_pending(self->e.s));
	recorder_reset(-1, 0);
	EXPECT_EQ(-EPROTO, ktls_install(&self->e.skc, self->e.s, -1, &why));
	EXPECT_EQ(0, ncalls);
}

/* KeyUpdate is TLS 1.3 only. */
FIXTURE(offload13)
{
	struct ends e;
};

FIXTURE_VARIANT(offload13)
{
	struct pair_suite suite;
};

FIXTURE_VARIANT_ADD(offload13, aes_128_gcm){
	.suite = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", TLS_CIPHER_AES_GCM_128 },
};

FIXTURE_VARIANT_ADD(offload13, aes_256_gcm){
	.suite = { TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", TLS_CIPHER_AES_GCM_256 },
};

FIXTURE_VARIANT_ADD(offload13, chacha20){
	.suite = { TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", TLS_CIPHER_CHACHA20_POLY1305 },
};

FIXTURE_SETUP(offload13)
{
	ASSERT_EQ(0, ends_open(&self->e, &variant->suite, 0)) TH_LOG("%s", pair_ssl_error());
}

FIXTURE_TEARDOWN(offload13)
{
	ends_close(&self->e);
}

/* A KeyUpdate in userspace before offload: keys rotate, sequence numbers restart. */
TEST_F(offload13, userspace_key_update_rotates_the_keys)
{
	uint8_t wire[4096], buf[16];
	size_t n;

	ASSERT_EQ(1, SSL_key_update(self->e.c, SSL_KEY_UPDATE_REQUESTED));
	ASSERT_EQ(2, SSL_write(self->e.c, "k1", 2)); /* KeyUpdate, then data under key 1 */
	n = pair_wire(self->e.c, wire, sizeof(wire));
	pair_feed(self->e.s, wire, n);
	ASSERT_EQ(2, SSL_read(self->e.s, buf, sizeof(buf)));
	ASSERT_EQ(2, SSL_write(self->e.s, "k2", 2)); /* its own KeyUpdate answers first */
	n = pair_wire(self->e.s, wire, sizeof(wire));
	pair_feed(self->e.c, wire, n);
	ASSERT_EQ(2, SSL_read(self->e.c, buf, sizeof(buf)));

	/* One data record has been sent each way under the updated keys. */
	offload_side(_metadata, &self->e, &variant->suite, true, 1, 1, 0);
}

TEST(rfc8448_hkdf_expand_label)
{
	uint8_t secret[32], out[32], want[32];

	ASSERT_EQ(0, ktls_init());
	/* RFC 8448 section 3, server_application_traffic_secret_0. */
	hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643", secret);
	ASSERT_EQ(0, ktls_hkdf_expand_label("SHA256", secret, 32, "key", out, 16));
	hex("9f02283b6c9c07efc26bb9f2ac92e356", want);
	EXPECT_EQ(0, memcmp(out, want, 16));
	ASSERT_EQ(0, ktls_hkdf_expand_label("SHA256", secret, 32, "iv", out, 12));
	hex("cf782b88dd83549aadf1e984", want);
	EXPECT_EQ(0, memcmp(out, want, 12));
	/* client_application_traffic_secret_0. */
	hex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5", secret);
	ASSERT_EQ(0, ktls_hkdf_expand_label("SHA256", secret, 32, "key", out, 16));
	hex("17422dda596ed5d9acd890e3c63f5051", want);
	EXPECT_EQ(0, memcmp(out, want, 16));
	ASSERT_EQ(0, ktls_hkdf_expand_label("SHA256", secret, 32, "iv", out, 12));
	hex("5b78923dee08579033e523d9", want);
	EXPECT_EQ(0, memcmp(out, want, 12));
	/* A wrong label must not give the same key (the vectors are not trivially met). */
	ASSERT_EQ(0, ktls_hkdf_expand_label("SHA256", secret, 32, "kex", out, 16));
	hex("17422dda596ed5d9acd890e3c63f5051", want);
	EXPECT_NE(0, memcmp(out, want, 16));
	ktls_fini();
}

TEST(rfc8448_crypto_info_bytes)
{
	struct pair_suite suite = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256",
				    TLS_CIPHER_AES_GCM_128 };
	struct tls12_crypto_info_aes_gcm_128 *g;
	union ktls_crypto_info ci;
	const char *why = NULL;
	uint8_t want[16];
	socklen_t len = 0;
	struct ends e = { 0 };

	ASSERT_EQ(0, ends_open(&e, &suite, 0));
	/* Put RFC 8448's server secret where the handshake's secret was. */
	hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643", e.skc.tx.secret);
	ASSERT_EQ(0, ktls_crypto_info(&e.skc, e.s, KTLS_TX, &ci, &len, &why));
	g = &ci.aes_gcm_128;
	EXPECT_EQ(sizeof(*g), (size_t)len);
	EXPECT_EQ(TLS_1_3_VERSION, g->info.version);
	EXPECT_EQ(TLS_CIPHER_AES_GCM_128, g->info.cipher_type);
	hex("9f02283b6c9c07efc26bb9f2ac92e356", want);
	EXPECT_EQ(0, memcmp(g->key, want, 16));
	hex("cf782b88", want);
	EXPECT_EQ(0, memcmp(g->salt, want, 4));
	hex("dd83549aadf1e984", want);
	EXPECT_EQ(0, memcmp(g->iv, want, 8));
	EXPECT_TRUE(all_zero(g->rec_seq, 8));
	ends_close(&e);
}

TEST(key_update_vector)
{
	uint8_t secret[32], next[32], want[32];

	ASSERT_EQ(0, ktls_init());
	/* RFC 8446 7.2 "traffic upd" applied to RFC 8448's server application secret. */
	hex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643", secret);
	ASSERT_EQ(0, ktls_hkdf_expand_label("SHA256", secret, 32, "traffic upd", next, 32));
	hex("51921b8aa3001976eb401d0a4319a8516416a6c56001a357e5d162031e84f916", want);
	EXPECT_EQ(0, memcmp(next, want, 32));
	ktls_fini();
}

TEST(tls12_prf_vector)
{
	uint8_t secret[16], seed[16], out[100], want[100];

	ASSERT_EQ(0, ktls_init());
	/* The IETF TLS list's TLS 1.2 PRF (SHA-256) vector; the seed is given in two parts. */
	hex("9bbe436ba940f017b17652849a71db35", secret);
	hex("a0ba9f936cda311827a6f796ffd5198c", seed);
	hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c"
	    "9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa"
	    "48082d122ee42c5a72e5a5110fff70187347b66",
	    want);
	ASSERT_EQ(0, ktls_tls12_prf("SHA256", secret, 16, "test label", seed, 7, seed + 7, 9, out,
				    100));
	EXPECT_EQ(0, memcmp(out, want, 100));
	ktls_fini();
}

/* Each failing setsockopt gives its errno back and a sentence that says what to do. */
struct failure {
	int at, err;
	const char *says;
};

static const struct failure failures[] = {
	{ 0, ENOENT, "modprobe tls" },
	{ 0, ENOTCONN, "ESTABLISHED" },
	{ 0, EEXIST, "already has an upper-layer protocol" },
	{ 0, ENOPROTOOPT, "not a TCP socket" },
	{ 0, ENOTSOCK, "not a socket" },
	{ 0, EPERM, "security policy" },
	{ 1, ENOENT, "cannot load the cipher" },
	{ 1, EINVAL, "not supported by this kernel" },
	{ 1, EBUSY, "cannot rekey" },
	{ 1, ENOPROTOOPT, "tls ULP is not attached" },
	{ 2, EINVAL, "not supported by this kernel" },
	{ 2, ENOMEM, "out of memory" },
};

TEST(setsockopt_errors_explain_themselves)
{
	struct pair_suite suite = { TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384",
				    TLS_CIPHER_AES_GCM_256 };
	size_t i;

	for (i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
		const struct failure *f = &failures[i];
		const char *why = NULL;
		struct ends e = { 0 };

		ASSERT_EQ(0, ends_open(&e, &suite, 0));
		recorder_reset(f->at, f->err);
		EXPECT_EQ(-f->err, ktls_install(&e.skc, e.s, -1, &why));
		EXPECT_EQ(f->at + 1, ncalls);
		ASSERT_NE(NULL, why);
		EXPECT_NE(NULL, strstr(why, f->says))
		TH_LOG("errno %d at call %d: \"%s\"", f->err, f->at, why);
		/* Key material is gone on the error path too. */
		EXPECT_TRUE(all_zero(&e.skc, sizeof(e.skc)));
		ends_close(&e);
	}
}

TEST(refuses_before_the_handshake_completes)
{
	struct pair_suite suite = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256",
				    TLS_CIPHER_AES_GCM_128 };
	union ktls_crypto_info ci;
	struct ktls_conn kc;
	const char *why = NULL;
	socklen_t len;
	SSL_CTX *ctx;
	SSL *ssl;

	ASSERT_EQ(0, ktls_init());
	ctx = pair_ctx(false, &suite, true, 0);
	ssl = pair_mem_ssl(ctx);
	ASSERT_EQ(0, ktls_conn_attach(&kc, ssl));
	EXPECT_EQ(-EINPROGRESS, ktls_crypto_info(&kc, ssl, KTLS_TX, &ci, &len, &why));
	EXPECT_NE(NULL, strstr(why, "not completed"));
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

TEST(refuses_a_connection_it_did_not_watch)
{
	struct pair_suite suite = { TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256",
				    TLS_CIPHER_AES_GCM_128 };
	struct ktls_conn kc = { 0 };
	const char *why = NULL;
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;

	ASSERT_EQ(0, ktls_init());
	cctx = pair_ctx(false, &suite, true, 0);
	sctx = pair_ctx(true, &suite, true, 0);
	c = pair_mem_ssl(cctx);
	s = pair_mem_ssl(sctx);
	ASSERT_EQ(0, pair_mem_handshake(c, s)); /* no ktls_conn_attach() */
	recorder_reset(-1, 0);
	EXPECT_EQ(-EPROTO, ktls_install(&kc, s, -1, &why));
	EXPECT_NE(NULL, strstr(why, "ktls_conn_attach"));
	EXPECT_EQ(0, ncalls);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
}

TEST(refuses_ciphers_the_kernel_cannot_carry)
{
	static const struct pair_suite suites[] = {
		{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256", 0 }, /* CBC + HMAC */
		{ TLS1_2_VERSION, "ECDHE-ECDSA-AES128-CCM8", 0 }, /* 8-byte tag */
		{ TLS1_3_VERSION, "TLS_AES_128_CCM_8_SHA256", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		const char *why = NULL;
		struct ends e = { 0 };

		ASSERT_EQ(0, ends_open(&e, &suites[i], 0)) TH_LOG("%s", suites[i].cipher);
		recorder_reset(-1, 0);
		EXPECT_EQ(-EOPNOTSUPP, ktls_install(&e.skc, e.s, -1, &why))
		TH_LOG("%s", suites[i].cipher);
		EXPECT_EQ(0, ncalls);
		EXPECT_NE(NULL, strstr(why, "cannot be offloaded"));
		ends_close(&e);
	}
}

/* ---- the transcript kept for post-handshake authentication ------------------------ */

/* What OpenSSL's own post-handshake authentication put on the wire, in plaintext. */
struct pha_seen {
	uint8_t cr[512], cert[4096], cv[512], fin[64];
	size_t cr_len, cert_len, cv_len, fin_len;
};

static void pha_seen_cb(int write_p, int version, int content_type, const void *buf, size_t len,
			SSL *ssl, void *arg)
{
	struct pha_seen *p = arg;
	const uint8_t *m = buf;
	uint8_t *to = NULL;
	size_t *to_len = NULL, cap = 0;

	(void)version, (void)ssl;
	if (content_type != SSL3_RT_HANDSHAKE || !len)
		return;
	if (write_p && m[0] == SSL3_MT_CERTIFICATE_REQUEST)
		to = p->cr, to_len = &p->cr_len, cap = sizeof(p->cr);
	else if (!write_p && m[0] == SSL3_MT_CERTIFICATE)
		to = p->cert, to_len = &p->cert_len, cap = sizeof(p->cert);
	else if (!write_p && m[0] == SSL3_MT_CERTIFICATE_VERIFY)
		to = p->cv, to_len = &p->cv_len, cap = sizeof(p->cv);
	else if (!write_p && m[0] == SSL3_MT_FINISHED)
		to = p->fin, to_len = &p->fin_len, cap = sizeof(p->fin);
	if (to && len <= cap) {
		memcpy(to, buf, len);
		*to_len = len;
	}
}

static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok, (void)x;
	return 1;
}

struct pha_case {
	const struct pair_suite *suite;
	bool offer; /* the client offers post_handshake_auth */
	bool want; /* danced asks for the transcript */
	bool hrr; /* the server's groups force a HelloRetryRequest */
};

/*
 * A handshake as danced's server sees it (ktls_conn attached, transcript wanted), then
 * OpenSSL's own post-handshake authentication on the same connection: the client's
 * Finished must be the MAC, under the finished key danced derived, of danced's
 * transcript extended by the CertificateRequest, Certificate and CertificateVerify that
 * OpenSSL sent. Return the transcript hash state (NULL when danced kept none).
 */
static EVP_MD_CTX *pha_run(struct __test_metadata *_metadata, const struct pha_case *pc,
			   struct pha_seen *seen, uint8_t *fk, size_t *fk_len)
{
	uint8_t wire[65536], buf[16];
	struct ktls_conn kc;
	EVP_MD_CTX *th;
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	size_t n;

	memset(seen, 0, sizeof(*seen));
	cctx = pair_ctx(false, pc->suite, true, 0);
	sctx = pair_ctx(true, pc->suite, true, 0);
	if (!cctx || !sctx)
		return NULL;
	/* The client proves itself with the server's throwaway identity: any will do. */
	SSL_CTX_use_certificate(cctx, SSL_CTX_get0_certificate(sctx));
	SSL_CTX_use_PrivateKey(cctx, SSL_CTX_get0_privatekey(sctx));
#ifdef SSL_OP_NO_RX_CERTIFICATE_COMPRESSION
	/* OpenSSL 3.2+ would send CompressedCertificate (RFC 8879), which danced never asks for. */
	SSL_CTX_set_options(sctx, SSL_OP_NO_RX_CERTIFICATE_COMPRESSION);
#endif
	if (pc->hrr) {
		SSL_CTX_set1_groups_list(cctx, "X25519:P-256");
		SSL_CTX_set1_groups_list(sctx, "P-256");
	}
	c = pair_mem_ssl(cctx);
	s = pair_mem_ssl(sctx);
	SSL_set_post_handshake_auth(c, pc->offer);
	SSL_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_POST_HANDSHAKE, accept_any);
	EXPECT_EQ(0, ktls_conn_attach(&kc, s));
	if (pc->want)
		ktls_transcript_want(&kc);
	EXPECT_EQ(0, pair_mem_handshake(c, s)) TH_LOG("%s", pair_ssl_error());
	EXPECT_EQ(pc->hrr, SSL_get_negotiated_group(s) == NID_X9_62_prime256v1);
	th = ktls_transcript_take(&kc);
	*fk_len = EVP_MD_get_size(SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(s)));
	EXPECT_EQ(0, ktls_client_finished_key(&kc, s, fk, *fk_len));
	ktls_conn_wipe(&kc);
	if (pc->offer) {
		/* OpenSSL's server asks; its client answers; its server checks the answer. */
		SSL_set_msg_callback(s, pha_seen_cb);
		SSL_set_msg_callback_arg(s, seen);
		EXPECT_EQ(1, SSL_verify_client_post_handshake(s));
		EXPECT_EQ(1, SSL_do_handshake(s));
		n = pair_wire(s, wire, sizeof(wire));
		pair_feed(c, wire, n);
		EXPECT_GT(0, SSL_read(c, buf, sizeof(buf)));
		n = pair_wire(c, wire, sizeof(wire));
		pair_feed(s, wire, n);
		EXPECT_GT(0, SSL_read(s, buf, sizeof(buf)));
		EXPECT_EQ(SSL_ERROR_WANT_READ, SSL_get_error(s, -1));
		EXPECT_NE(NULL, SSL_get0_peer_certificate(s)); /* OpenSSL took the answer */
		EXPECT_LT(0U, seen->cr_len);
		EXPECT_LT(0U, seen->cert_len);
		EXPECT_LT(0U, seen->cv_len);
		EXPECT_EQ(4 + *fk_len, seen->fin_len);
	}
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return th;
}

/* HMAC(fk, Hash(transcript || the messages)) against the client's Finished. */
static bool pha_finished_matches(EVP_MD_CTX *th, const struct pha_seen *p, const uint8_t *fk,
				 size_t fk_len, bool skip_cr)
{
	uint8_t h[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
	unsigned int hl = 0, ml = 0;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	bool ok;

	ok = m && EVP_MD_CTX_copy_ex(m, th) && (skip_cr || EVP_DigestUpdate(m, p->cr, p->cr_len)) &&
	     EVP_DigestUpdate(m, p->cert, p->cert_len) && EVP_DigestUpdate(m, p->cv, p->cv_len) &&
	     EVP_DigestFinal_ex(m, h, &hl) &&
	     HMAC(EVP_MD_CTX_get0_md(th), fk, fk_len, h, hl, mac, &ml) && ml == fk_len &&
	     p->fin_len == 4 + fk_len && !memcmp(mac, p->fin + 4, fk_len);
	EVP_MD_CTX_free(m);
	return ok;
}

TEST(transcript_binds_openssl_post_handshake_auth)
{
	static const struct pair_suite s256 = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", 0 };
	static const struct pair_suite s384 = { TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", 0 };
	static const struct pha_case cases[] = {
		{ &s256, true, true, false },
		{ &s384, true, true, false },
		{ &s256, true, true, true },
		{ &s384, true, true, true },
	};
	struct pha_seen seen;
	uint8_t fk[EVP_MAX_MD_SIZE];
	size_t i, fk_len;
	EVP_MD_CTX *th;

	ASSERT_EQ(0, ktls_init());
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		th = pha_run(_metadata, &cases[i], &seen, fk, &fk_len);
		ASSERT_NE(NULL, th) TH_LOG("case %zu", i);
		EXPECT_EQ((int)fk_len, EVP_MD_CTX_get_size(th)) TH_LOG("case %zu", i);
		EXPECT_TRUE(pha_finished_matches(th, &seen, fk, fk_len, false))
		TH_LOG("case %zu", i);
		/* Not a check that passes anyway: without the request it does not match. */
		EXPECT_FALSE(pha_finished_matches(th, &seen, fk, fk_len, true))
		TH_LOG("case %zu", i);
		fk[0] ^= 1;
		EXPECT_FALSE(pha_finished_matches(th, &seen, fk, fk_len, false))
		TH_LOG("case %zu", i);
		EVP_MD_CTX_free(th);
	}
}

TEST(no_transcript_unless_offered_and_wanted)
{
	static const struct pair_suite s256 = { TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", 0 };
	static const struct pha_case not_offered = { &s256, false, true, false };
	static const struct pha_case not_wanted = { &s256, true, false, false };
	struct pha_seen seen;
	uint8_t fk[EVP_MAX_MD_SIZE];
	size_t fk_len;

	ASSERT_EQ(0, ktls_init());
	EXPECT_EQ(NULL, pha_run(_metadata, &not_offered, &seen, fk, &fk_len));
	EXPECT_EQ(NULL, pha_run(_metadata, &not_wanted, &seen, fk, &fk_len));
}

DANCED_HARNESS_MAIN
