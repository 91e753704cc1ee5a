// SPDX-License-Identifier: GPL-2.0
/*
 * ktls.c - install the record keys of a finished OpenSSL handshake into kernel TLS.
 *
 * Receives an SSL whose handshake is complete and the TCP socket under it. Derives each
 * direction's key, IV/salt and next record sequence number itself (OpenSSL 3.0 cannot
 * offload TLS 1.3 receive), and gives them to the kernel with TCP_ULP "tls" and
 * SOL_TLS TLS_RX/TLS_TX. The caller keeps the fd; once this succeeds the socket carries
 * plaintext only and the SSL object must never touch it again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include "ktls.h"

static int ktls_real_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, level, name, val, len);
}

int (*ktls_setsockopt)(int fd, int level, int name, const void *val,
		       socklen_t len) = ktls_real_setsockopt;

/*
 * Fetched once: fetching by name per handshake is where OpenSSL 3.0 spends its time.
 * HMAC is computed here over a digest context each worker thread keeps per suite hash
 * (RFC 2104: H(K ^ opad || H(K ^ ipad || m))): re-keying an EVP_MAC context costs about
 * 17,000 instructions in OpenSSL 3.5 (parameter parsing, a digest context per pad), and a
 * second re-key to wipe it again, where the two digests here cost a few thousand. The key
 * schedule's two functions are written over it, checked by the RFC 8448 and PRF test
 * vectors.
 */
static int ktls_ex_index = -1;

enum { KTLS_SHA256, KTLS_SHA384, KTLS_NDIGESTS };
static const char *const ktls_digest_names[KTLS_NDIGESTS] = { "SHA2-256", "SHA2-384" };
static const size_t ktls_digest_len[KTLS_NDIGESTS] = { 32, 48 };
static const size_t ktls_block_len[KTLS_NDIGESTS] = { 64, 128 };
static EVP_MD *ktls_md[KTLS_NDIGESTS];
/* Hash(""), the context of every TLS 1.3 exporter value (ktls_exporter()). */
static uint8_t ktls_empty_hash[KTLS_NDIGESTS][KTLS_SECRET_MAX];
static pthread_key_t ktls_hmac_key;
static bool ktls_hmac_key_made;

struct ktls_hmacs {
	EVP_MD_CTX *ctx[KTLS_NDIGESTS];
};

static void ktls_hmacs_free(void *p)
{
	struct ktls_hmacs *h = p;
	int i;

	for (i = 0; h && i < KTLS_NDIGESTS; i++)
		EVP_MD_CTX_free(h->ctx[i]);
	free(h);
}

/* "SHA256", "SHA2-256", "sha-256" ...: its index, or -1. */
static int ktls_digest_index(const char *digest)
{
	if (!digest)
		return -1;
	if (strstr(digest, "256"))
		return KTLS_SHA256;
	if (strstr(digest, "384"))
		return KTLS_SHA384;
	return -1;
}

/* This thread's digest context for hash @i, or NULL. */
static EVP_MD_CTX *ktls_md_ctx(int i)
{
	struct ktls_hmacs *h;

	if (i < 0 || !ktls_hmac_key_made)
		return NULL;
	h = pthread_getspecific(ktls_hmac_key);
	if (!h) {
		h = calloc(1, sizeof(*h));
		if (!h || pthread_setspecific(ktls_hmac_key, h)) {
			free(h);
			return NULL;
		}
	}
	if (!h->ctx[i])
		h->ctx[i] = EVP_MD_CTX_new();
	return h->ctx[i];
}

/*
 * HMAC(key, a || b || c) with hash @i into @out (the digest's length). Keys here are
 * traffic, exporter and master secrets, never longer than a block, so RFC 2104's hashing
 * of long keys is not needed (-EINVAL if one were).
 */
static int ktls_hmac3(int i, const uint8_t *key, size_t key_len, const void *a, size_t a_len,
		      const void *b, size_t b_len, const void *c, size_t c_len, uint8_t *out,
		      size_t out_max)
{
	EVP_MD_CTX *h = ktls_md_ctx(i);
	uint8_t pad[128], inner[KTLS_SECRET_MAX];
	size_t bl, hl, k;
	int ret = -EIO;

	if (!h)
		return -EIO;
	bl = ktls_block_len[i];
	hl = ktls_digest_len[i];
	if (key_len > bl || out_max < hl)
		return -EINVAL;
	for (k = 0; k < bl; k++)
		pad[k] = (k < key_len ? key[k] : 0) ^ 0x36;
	if (EVP_DigestInit_ex2(h, ktls_md[i], NULL) != 1 || EVP_DigestUpdate(h, pad, bl) != 1 ||
	    EVP_DigestUpdate(h, a, a_len) != 1 || EVP_DigestUpdate(h, b, b_len) != 1 ||
	    EVP_DigestUpdate(h, c, c_len) != 1 || EVP_DigestFinal_ex(h, inner, NULL) != 1)
		goto out;
	for (k = 0; k < bl; k++)
		pad[k] ^= 0x36 ^ 0x5c;
	if (EVP_DigestInit_ex2(h, ktls_md[i], NULL) != 1 || EVP_DigestUpdate(h, pad, bl) != 1 ||
	    EVP_DigestUpdate(h, inner, hl) != 1 || EVP_DigestFinal_ex(h, out, NULL) != 1)
		goto out;
	ret = 0;
out:
	/*
	 * The context's chaining state now holds the last digest: the HMAC itself, a key
	 * or IV. A fresh start overwrites it with the hash's constants; it is cheaper than
	 * freeing the context, which the next derivation would allocate again.
	 */
	EVP_DigestInit_ex2(h, ktls_md[i], NULL);
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(inner, sizeof(inner));
	return ret;
}

/*
 * What the kernel needs to know about a suite. TLS 1.2 GCM/CCM keep a 4-byte implicit
 * IV (the kernel's salt) and send an 8-byte explicit nonce; ChaCha20 and every TLS 1.3
 * suite use a 12-byte IV that is XORed with the sequence number.
 */
struct ktls_suite {
	int nid; /* OpenSSL's cipher NID */
	uint16_t cipher_type; /* TLS_CIPHER_* */
	uint8_t key_len;
	uint8_t salt_len;
	uint8_t iv_len; /* the kernel's iv[] field */
	uint8_t fixed_iv_len; /* TLS 1.2 key block IV per side */
	socklen_t info_len;
	const char *name;
};

static const struct ktls_suite ktls_suites[] = {
	{ NID_aes_128_gcm, TLS_CIPHER_AES_GCM_128, 16, 4, 8, 4,
	  sizeof(struct tls12_crypto_info_aes_gcm_128), "AES-128-GCM" },
	{ NID_aes_256_gcm, TLS_CIPHER_AES_GCM_256, 32, 4, 8, 4,
	  sizeof(struct tls12_crypto_info_aes_gcm_256), "AES-256-GCM" },
	{ NID_aes_128_ccm, TLS_CIPHER_AES_CCM_128, 16, 4, 8, 4,
	  sizeof(struct tls12_crypto_info_aes_ccm_128), "AES-128-CCM" },
	{ NID_chacha20_poly1305, TLS_CIPHER_CHACHA20_POLY1305, 32, 0, 12, 12,
	  sizeof(struct tls12_crypto_info_chacha20_poly1305), "ChaCha20-Poly1305" },
};

static const struct ktls_suite *ktls_suite_of(const SSL_CIPHER *c)
{
	const char *name = SSL_CIPHER_get_name(c);
	int nid = SSL_CIPHER_get_cipher_nid(c);
	size_t i;

	/* The kernel's CCM has a 16-byte tag; CCM_8 suites share the NID but not the tag. */
	if (nid == NID_aes_128_ccm && (strstr(name, "CCM8") || strstr(name, "CCM_8")))
		return NULL;
	for (i = 0; i < sizeof(ktls_suites) / sizeof(ktls_suites[0]); i++)
		if (ktls_suites[i].nid == nid)
			return &ktls_suites[i];
	return NULL;
}

/**
 * ktls_cipher_supported - can the kernel carry records of this suite?
 *
 * Lets configuration refuse, at load time, suites that would only fail at offload.
 */
bool ktls_cipher_supported(const SSL_CIPHER *c)
{
	return ktls_suite_of(c) != NULL;
}

static void ktls_fail(struct ktls_conn *kc, int err, const char *why)
{
	if (!kc->err) {
		kc->err = err;
		kc->err_why = why;
	}
}

/**
 * ktls_hkdf_expand_label_ctx - HKDF-Expand-Label of RFC 8446 section 7.1
 * @digest: OpenSSL digest name of the suite's hash
 * @label: label without the "tls13 " prefix
 * @ctx: the context (a hash, for the exporter), @ctx_len bytes, at most 255
 *
 * HKDF-Expand (RFC 5869 section 2.3): T(i) = HMAC(secret, T(i-1) || info || i).
 *
 * Return: 0, -EINVAL for an oversized label, context or output, -EIO when OpenSSL fails
 * (or the digest is neither SHA-256 nor SHA-384, the only ones of kTLS-capable suites).
 */
int ktls_hkdf_expand_label_ctx(const char *digest, const uint8_t *secret, size_t secret_len,
			       const char *label, const uint8_t *ctx, size_t ctx_len, uint8_t *out,
			       size_t out_len)
{
	static const char prefix[] = "tls13 ";
	int i = ktls_digest_index(digest);
	uint8_t info[2 + 1 + 255 + 1 + 255], t[KTLS_SECRET_MAX];
	size_t llen = strlen(label), hlen, done = 0, tlen = 0, n = 0;
	uint8_t ctr = 0;
	int ret = 0;

	if (llen + sizeof(prefix) - 1 > 255 || out_len > 0xffff || ctx_len > 255)
		return -EINVAL;
	if (i < 0)
		return -EIO;
	hlen = ktls_digest_len[i];
	if (out_len > 255 * hlen)
		return -EINVAL;
	/* struct HkdfLabel { uint16 length; opaque label<7..255>; opaque context<0..255>; } */
	info[n++] = out_len >> 8;
	info[n++] = out_len & 0xff;
	info[n++] = sizeof(prefix) - 1 + llen;
	memcpy(info + n, prefix, sizeof(prefix) - 1);
	n += sizeof(prefix) - 1;
	memcpy(info + n, label, llen);
	n += llen;
	info[n++] = ctx_len;
	if (ctx_len)
		memcpy(info + n, ctx, ctx_len);
	n += ctx_len;
	while (done < out_len) {
		ctr++;
		ret = ktls_hmac3(i, secret, secret_len, t, tlen, info, n, &ctr, 1, t, sizeof(t));
		if (ret)
			break;
		tlen = hlen;
		memcpy(out + done, t, out_len - done < hlen ? out_len - done : hlen);
		done += hlen;
	}
	OPENSSL_cleanse(t, sizeof(t));
	return ret;
}

int ktls_hkdf_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
			   const char *label, uint8_t *out, size_t out_len)
{
	return ktls_hkdf_expand_label_ctx(digest, secret, secret_len, label, NULL, 0, out, out_len);
}

/**
 * ktls_exporter - TLS-Exporter(label, "", out_len) of RFC 8446 section 7.5 (TLS 1.3)
 *
 * HKDF-Expand-Label(Derive-Secret(exporter_master_secret, label, ""), "exporter",
 * Hash(""), out_len), from the exporter secret the key log gave: two HMACs with the
 * context kept at start, where SSL_export_keying_material() costs about 50,000
 * instructions a call (OpenSSL 3.5: it fetches its KDF every time).
 *
 * @digest: the suite's hash, as OpenSSL names it
 *
 * Return: 0; -ENOENT without the secret (TLS 1.2, or OpenSSL did not log it); -EINVAL,
 * -EIO as ktls_hkdf_expand_label_ctx().
 */
int ktls_exporter(const struct ktls_conn *kc, const char *digest, const char *label, uint8_t *out,
		  size_t out_len)
{
	int i = ktls_digest_index(digest), ret;
	uint8_t derived[KTLS_SECRET_MAX];
	const uint8_t *empty;
	size_t hlen;

	if (!kc->exporter_len || i < 0)
		return -ENOENT;
	empty = ktls_empty_hash[i];
	hlen = ktls_digest_len[i];
	if (hlen != kc->exporter_len)
		return -EIO;
	ret = ktls_hkdf_expand_label_ctx(digest, kc->exporter, kc->exporter_len, label, empty, hlen,
					 derived, hlen);
	if (!ret)
		ret = ktls_hkdf_expand_label_ctx(digest, derived, hlen, "exporter", empty, hlen,
						 out, out_len);
	OPENSSL_cleanse(derived, sizeof(derived));
	return ret;
}

/**
 * ktls_tls12_prf - the TLS 1.2 PRF of RFC 5246 section 5: P_hash(secret, label + seeds)
 *
 * P_hash: A(0) = seed, A(i) = HMAC(secret, A(i-1)); out = HMAC(secret, A(1) || seed) ||
 * HMAC(secret, A(2) || seed) || ..., where seed = label || seed1 || seed2.
 *
 * Return: 0, -EIO when OpenSSL fails.
 */
int ktls_tls12_prf(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
		   const uint8_t *seed1, size_t seed1_len, const uint8_t *seed2, size_t seed2_len,
		   uint8_t *out, size_t out_len)
{
	int i = ktls_digest_index(digest);
	uint8_t seed[128], a[KTLS_SECRET_MAX], t[KTLS_SECRET_MAX];
	size_t llen = strlen(label), slen, hlen, done = 0;
	int ret;

	if (i < 0 || llen + seed1_len + seed2_len > sizeof(seed))
		return -EIO;
	hlen = ktls_digest_len[i];
	memcpy(seed, label, llen);
	memcpy(seed + llen, seed1, seed1_len);
	memcpy(seed + llen + seed1_len, seed2, seed2_len);
	slen = llen + seed1_len + seed2_len;
	ret = ktls_hmac3(i, secret, secret_len, seed, slen, NULL, 0, NULL, 0, a, sizeof(a));
	while (!ret && done < out_len) {
		ret = ktls_hmac3(i, secret, secret_len, a, hlen, seed, slen, NULL, 0, t, sizeof(t));
		if (ret)
			break;
		memcpy(out + done, t, out_len - done < hlen ? out_len - done : hlen);
		done += hlen;
		ret = ktls_hmac3(i, secret, secret_len, a, hlen, NULL, 0, NULL, 0, a, sizeof(a));
	}
	OPENSSL_cleanse(a, sizeof(a));
	OPENSSL_cleanse(t, sizeof(t));
	return ret;
}

static const char *ktls_digest_of(SSL *ssl)
{
	const EVP_MD *md = SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(ssl));

	return md ? EVP_MD_get0_name(md) : NULL;
}

static int ktls_hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t out_max)
{
	size_t i;

	if (hex_len % 2 || hex_len / 2 > out_max)
		return -EINVAL;
	for (i = 0; i < hex_len / 2; i++) {
		int hi = OPENSSL_hexchar2int(hex[2 * i]);
		int lo = OPENSSL_hexchar2int(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = hi << 4 | lo;
	}
	return hex_len / 2;
}

/*
 * OpenSSL 3.0 has no API for the TLS 1.3 application traffic secrets; the key log
 * callback is the supported way out. Lines look like
 * "CLIENT_TRAFFIC_SECRET_0 <client_random hex> <secret hex>". OpenSSL wipes the line
 * after we return.
 */
static void ktls_keylog_cb(const SSL *ssl, const char *line)
{
	static const char client[] = "CLIENT_TRAFFIC_SECRET_0 ";
	static const char server[] = "SERVER_TRAFFIC_SECRET_0 ";
	static const char exporter[] = "EXPORTER_SECRET ";
	struct ktls_conn *kc = SSL_get_ex_data(ssl, ktls_ex_index);
	struct ktls_half *half;
	const char *hex;
	int n;

	if (!kc)
		return;
	if (!strncmp(line, exporter, sizeof(exporter) - 1)) {
		/* For RFC 9261 (exported.c); without it, the slow way is still there. */
		hex = strchr(line + sizeof(exporter) - 1, ' ');
		n = hex ? ktls_hex_decode(hex + 1, strlen(hex + 1), kc->exporter,
					  sizeof(kc->exporter)) :
			  -1;
		kc->exporter_len = n > 0 ? n : 0;
		return;
	}
	if (!strncmp(line, client, sizeof(client) - 1))
		half = SSL_is_server(ssl) ? &kc->rx : &kc->tx;
	else if (!strncmp(line, server, sizeof(server) - 1))
		half = SSL_is_server(ssl) ? &kc->tx : &kc->rx;
	else
		return;
	hex = strchr(line + sizeof(client) - 1, ' ');
	if (!hex) {
		ktls_fail(kc, -EPROTO, "malformed key log line from OpenSSL");
		return;
	}
	hex++;
	n = ktls_hex_decode(hex, strlen(hex), half->secret, sizeof(half->secret));
	if (n < 0) {
		ktls_fail(kc, -EPROTO, "malformed traffic secret from OpenSSL");
		return;
	}
	half->secret_len = n;
}

/* RFC 8446 section 7.2: application_traffic_secret_N+1. */
static void ktls_next_secret(struct ktls_conn *kc, struct ktls_half *half, SSL *ssl)
{
	const char *digest = ktls_digest_of(ssl);
	uint8_t next[KTLS_SECRET_MAX];

	if (!half->epoch || !half->secret_len || !digest ||
	    ktls_hkdf_expand_label(digest, half->secret, half->secret_len, "traffic upd", next,
				   half->secret_len)) {
		ktls_fail(kc, -EPROTO, "KeyUpdate before the application traffic secret was known");
		return;
	}
	memcpy(half->secret, next, half->secret_len);
	OPENSSL_cleanse(next, sizeof(next));
	half->seq = 0;
}

/* ---- the transcript, for post-handshake authentication --------------------------- */

#define KTLS_EXT_POST_HANDSHAKE_AUTH 49

/* Does this ClientHello (header included) carry post_handshake_auth? */
static bool ktls_hello_offers_pha(const uint8_t *m, size_t len)
{
	size_t i = 4 + 2 + 32, end, type, n;

	if (len < i + 1)
		return false;
	i += 1 + m[i]; /* legacy_session_id */
	if (len < i + 2)
		return false;
	i += 2 + (m[i] << 8 | m[i + 1]); /* cipher_suites */
	if (len < i + 1)
		return false;
	i += 1 + m[i]; /* legacy_compression_methods */
	if (len < i + 2)
		return false;
	end = i + 2 + (m[i] << 8 | m[i + 1]);
	if (end > len)
		return false;
	for (i += 2; i + 4 <= end; i += 4 + n) {
		type = m[i] << 8 | m[i + 1];
		n = m[i + 2] << 8 | m[i + 3];
		if (type == KTLS_EXT_POST_HANDSHAKE_AUTH)
			return true;
	}
	return false;
}

static void ktls_transcript_free(struct ktls_conn *kc)
{
	EVP_MD_CTX_free(kc->th[0]);
	EVP_MD_CTX_free(kc->th[1]);
	kc->th[0] = kc->th[1] = NULL;
}

/**
 * ktls_transcript_want - keep the transcript if the client offers post-handshake auth
 *
 * Call after ktls_conn_attach(), before the handshake. Costs nothing for a client that
 * does not offer it; for one that does, a hash state (two until the ServerHello).
 */
void ktls_transcript_want(struct ktls_conn *kc)
{
	kc->th_state = KTLS_TH_WANT;
}

/*
 * The suite is chosen (ServerHello, or HelloRetryRequest): one hash goes on, by the
 * suite in the message itself, which a client reads before OpenSSL has taken it in.
 * TLS_AES_256_GCM_SHA384 is the only TLS 1.3 suite on SHA-384. After a
 * HelloRetryRequest the transcript starts over from message_hash (RFC 8446 section
 * 4.4.1): the hash of the first ClientHello, wrapped as a handshake message.
 */
static bool ktls_transcript_choose(struct ktls_conn *kc, const uint8_t *msg, size_t len)
{
	static const uint8_t hrr_random[32] = {
		0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c,
		0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb,
		0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
	};
	size_t i = 4 + 2 + 32;
	uint8_t wrap[4 + EVP_MAX_MD_SIZE];
	unsigned int hl = 0;
	int keep;

	if (len < i + 1 || len < i + 1 + msg[i] + 2)
		return false;
	i += 1 + msg[i]; /* legacy_session_id_echo */
	keep = (msg[i] << 8 | msg[i + 1]) == 0x1302;
	EVP_MD_CTX_free(kc->th[!keep]);
	kc->th[0] = kc->th[keep];
	kc->th[1] = NULL;
	if (memcmp(msg + 6, hrr_random, 32))
		return true;
	wrap[0] = 254; /* message_hash */
	wrap[1] = wrap[2] = 0;
	if (!EVP_DigestFinal_ex(kc->th[0], wrap + 4, &hl) ||
	    !EVP_DigestInit_ex(kc->th[0], keep ? EVP_sha384() : EVP_sha256(), NULL))
		return false;
	wrap[3] = hl;
	return EVP_DigestUpdate(kc->th[0], wrap, 4 + hl);
}

/* One handshake message, header included, in the order of the transcript. */
static void ktls_transcript_feed(struct ktls_conn *kc, int write_p, const uint8_t *msg, size_t len,
				 SSL *ssl)
{
	bool ok = true;

	if (kc->th_state == KTLS_TH_WANT) {
		kc->th_state = KTLS_TH_OFF;
		if (msg[0] != SSL3_MT_CLIENT_HELLO || !ktls_hello_offers_pha(msg, len))
			return;
		kc->th[0] = EVP_MD_CTX_new();
		kc->th[1] = EVP_MD_CTX_new();
		ok = kc->th[0] && kc->th[1] && EVP_DigestInit_ex(kc->th[0], EVP_sha256(), NULL) &&
		     EVP_DigestInit_ex(kc->th[1], EVP_sha384(), NULL) &&
		     EVP_DigestUpdate(kc->th[0], msg, len) && EVP_DigestUpdate(kc->th[1], msg, len);
		kc->th_state = KTLS_TH_HASHING;
	} else if (kc->th_state == KTLS_TH_HASHING) {
		if (kc->th[1] && msg[0] == SSL3_MT_SERVER_HELLO)
			ok = ktls_transcript_choose(kc, msg, len);
		ok = ok && !kc->th[1] && EVP_DigestUpdate(kc->th[0], msg, len);
		/* The client's Finished ends what a CertificateRequest is bound to. */
		if (msg[0] == SSL3_MT_FINISHED && !write_p == !!SSL_is_server(ssl))
			kc->th_state = KTLS_TH_DONE;
	}
	if (!ok) {
		/* Without a transcript, post-handshake authentication is refused later. */
		ktls_transcript_free(kc);
		kc->th_state = KTLS_TH_OFF;
	}
}

/**
 * ktls_transcript_take - the transcript hash state through the client's Finished
 *
 * Return: the hash state, now the caller's (EVP_MD_CTX_free()), or NULL when it was not
 * kept (not asked for, not offered, not TLS 1.3, or the handshake did not finish).
 */
EVP_MD_CTX *ktls_transcript_take(struct ktls_conn *kc)
{
	EVP_MD_CTX *m = NULL;

	if (kc->th_state == KTLS_TH_DONE && !kc->th[1]) {
		m = kc->th[0];
		kc->th[0] = NULL;
	}
	ktls_transcript_free(kc);
	kc->th_state = KTLS_TH_OFF;
	return m;
}

/**
 * ktls_client_finished_key - HKDF-Expand-Label(client_application_traffic_secret_0,
 * "finished", "", @len): what a post-handshake Finished is a MAC under (RFC 8446
 * section 4.4.4), while neither side has sent a KeyUpdate
 *
 * Return: 0, -EPROTO without the secret, or -EIO.
 */
int ktls_client_finished_key(const struct ktls_conn *kc, SSL *ssl, uint8_t *out, size_t len)
{
	const struct ktls_half *h = SSL_is_server(ssl) ? &kc->rx : &kc->tx;
	const char *digest = ktls_digest_of(ssl);

	if (!h->secret_len || !digest || len != h->secret_len)
		return -EPROTO;
	return ktls_hkdf_expand_label(digest, h->secret, h->secret_len, "finished", out, len);
}

/*
 * Count records per direction so that the kernel continues the exact sequence numbers
 * the handshake left off at. OpenSSL reports each record header as it is written or
 * read, then each handshake message once it is fully written or parsed, so the message
 * that ends an epoch is seen after the header of the record that carried it:
 *  - TLS 1.2: the new epoch starts after the ChangeCipherSpec record; Finished is its
 *    record 0. OpenSSL 3.0 reports a received CCS only as a record header, so the
 *    header is what we watch in both directions.
 *  - TLS 1.3: the application epoch starts after Finished; each KeyUpdate starts another.
 *    Its middlebox-compatibility CCS records are not epoch changes.
 * A second epoch start would be renegotiation or post-handshake authentication, which
 * the kernel cannot carry, so it poisons the connection instead of skewing the count.
 */
static void ktls_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
			SSL *ssl, void *arg)
{
	struct ktls_conn *kc = arg;
	struct ktls_half *half = write_p ? &kc->tx : &kc->rx;
	const uint8_t *msg = buf;

	if (!len)
		return;
	switch (content_type) {
	case SSL3_RT_HEADER:
		if (msg[0] != SSL3_RT_CHANGE_CIPHER_SPEC || SSL_version(ssl) == TLS1_3_VERSION) {
			half->seq++;
			break;
		}
		if (half->epoch)
			ktls_fail(kc, -EPROTO, "TLS 1.2 renegotiation cannot be offloaded");
		half->epoch = true;
		half->seq = 0;
		break;
	case SSL3_RT_HANDSHAKE:
		if (kc->th_state == KTLS_TH_WANT || kc->th_state == KTLS_TH_HASHING)
			ktls_transcript_feed(kc, write_p, msg, len, ssl);
		if (version != TLS1_3_VERSION)
			break;
		if (msg[0] == SSL3_MT_FINISHED) {
			if (half->epoch)
				ktls_fail(kc, -EPROTO,
					  "post-handshake authentication cannot be offloaded");
			half->epoch = true;
			half->seq = 0;
		} else if (msg[0] == SSL3_MT_KEY_UPDATE) {
			ktls_next_secret(kc, half, ssl);
		}
		break;
	}
}

/**
 * ktls_init - fetch the algorithms the key schedule needs; call once at start-up.
 *
 * Return: 0, or -ENOSYS when this OpenSSL lacks HMAC with SHA-256 or SHA-384.
 */
int ktls_init(void)
{
	int i;

	if (ktls_ex_index < 0)
		ktls_ex_index = SSL_get_ex_new_index(0, "danced ktls_conn", NULL, NULL, NULL);
	if (ktls_ex_index < 0)
		goto fail;
	if (!ktls_hmac_key_made) {
		if (pthread_key_create(&ktls_hmac_key, ktls_hmacs_free))
			goto fail;
		ktls_hmac_key_made = true;
	}
	for (i = 0; i < KTLS_NDIGESTS; i++) {
		if (ktls_md[i])
			continue;
		ktls_md[i] = EVP_MD_fetch(NULL, ktls_digest_names[i], NULL);
		if (!ktls_md[i] || !EVP_Digest("", 0, ktls_empty_hash[i], NULL, ktls_md[i], NULL))
			goto fail;
	}
	return 0;
fail:
	ktls_fini();
	return -ENOSYS;
}

void ktls_fini(void)
{
	int i;

	if (ktls_hmac_key_made) {
		ktls_hmacs_free(pthread_getspecific(ktls_hmac_key));
		pthread_setspecific(ktls_hmac_key, NULL);
	}
	for (i = 0; i < KTLS_NDIGESTS; i++) {
		EVP_MD_free(ktls_md[i]);
		ktls_md[i] = NULL;
	}
}

/**
 * ktls_ctx_prepare - make an SSL_CTX produce handshakes that kTLS can take over
 *
 * Installs the key log callback (OpenSSL allows one per context) and turns off what
 * cannot survive the hand-over: read-ahead (ciphertext past Finished would be lost),
 * renegotiation, and compression. Suite selection stays with the caller; use
 * KTLS_TLS13_CIPHERSUITES and KTLS_TLS12_CIPHERS.
 *
 * Return: 0, or -EINVAL when ktls_init() has not run.
 */
int ktls_ctx_prepare(SSL_CTX *ctx)
{
	if (ktls_ex_index < 0)
		return -EINVAL;
	SSL_CTX_set_keylog_callback(ctx, ktls_keylog_cb);
	SSL_CTX_set_read_ahead(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	return 0;
}

/**
 * ktls_conn_attach - start recording what kTLS will need; call before the handshake
 *
 * Return: 0, or -EINVAL when ktls_init() has not run or OpenSSL refuses the ex_data.
 */
int ktls_conn_attach(struct ktls_conn *kc, SSL *ssl)
{
	memset(kc, 0, sizeof(*kc));
	if (ktls_ex_index < 0 || !SSL_set_ex_data(ssl, ktls_ex_index, kc))
		return -EINVAL;
	SSL_set_msg_callback(ssl, ktls_msg_cb);
	SSL_set_msg_callback_arg(ssl, kc);
	return 0;
}

/* Forget the secrets; safe to call more than once. */
void ktls_conn_wipe(struct ktls_conn *kc)
{
	ktls_transcript_free(kc);
	OPENSSL_cleanse(kc, sizeof(*kc));
}

static void ktls_put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

/* TLS 1.3: key and IV from the direction's application traffic secret. */
static int ktls_keys13(const struct ktls_half *half, const struct ktls_suite *s, SSL *ssl,
		       uint8_t *key, uint8_t *iv, const char **why)
{
	const char *digest = ktls_digest_of(ssl);

	*why = "no TLS 1.3 traffic secret: ktls_ctx_prepare() was not called on this SSL_CTX";
	if (!half->secret_len)
		return -EPROTO;
	*why = "HKDF-Expand-Label failed in OpenSSL";
	if (!digest ||
	    ktls_hkdf_expand_label(digest, half->secret, half->secret_len, "key", key,
				   s->key_len) ||
	    ktls_hkdf_expand_label(digest, half->secret, half->secret_len, "iv", iv, 12))
		return -EIO;
	return 0;
}

/*
 * TLS 1.2 (RFC 5246 section 6.3): the key block is client_write_key, server_write_key,
 * client_write_IV, server_write_IV; AEAD suites have no MAC keys.
 */
static int ktls_keys12(SSL *ssl, const struct ktls_suite *s, enum ktls_dir dir, uint8_t *key,
		       uint8_t *iv, const char **why)
{
	bool client_side = SSL_is_server(ssl) == (dir == KTLS_RX);
	uint8_t block[2 * 32 + 2 * 12], master[SSL_MAX_MASTER_KEY_LENGTH];
	uint8_t crandom[SSL3_RANDOM_SIZE], srandom[SSL3_RANDOM_SIZE];
	const char *digest = ktls_digest_of(ssl);
	size_t mlen, klen = s->key_len, ilen = s->fixed_iv_len;
	int ret;

	ret = -EPROTO;
	*why = "no TLS 1.2 session master secret";
	mlen = SSL_SESSION_get_master_key(SSL_get0_session(ssl), master, sizeof(master));
	if (!mlen || !digest)
		goto out;
	SSL_get_client_random(ssl, crandom, sizeof(crandom));
	SSL_get_server_random(ssl, srandom, sizeof(srandom));
	ret = -EIO;
	*why = "TLS 1.2 key expansion failed in OpenSSL";
	if (ktls_tls12_prf(digest, master, mlen, "key expansion", srandom, sizeof(srandom), crandom,
			   sizeof(crandom), block, 2 * klen + 2 * ilen))
		goto out;
	memcpy(key, block + (client_side ? 0 : klen), klen);
	memcpy(iv, block + 2 * klen + (client_side ? 0 : ilen), ilen);
	ret = 0;
out:
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(master, sizeof(master));
	return ret;
}

/**
 * ktls_crypto_info - build the SOL_TLS crypto_info for one direction
 * @kc: what the handshake recorded, attached with ktls_conn_attach()
 * @ci: filled in; holds key material, so the caller wipes it
 * @len: the exact struct size the kernel expects for this cipher
 * @why: on error, a sentence for the operator
 *
 * Return: 0; -EINPROGRESS before the handshake is complete; -EPROTONOSUPPORT for a
 * version other than TLS 1.2/1.3; -EOPNOTSUPP for a cipher kTLS cannot carry; -EPROTO
 * when the record count or secrets are unusable (see @why); -EIO when OpenSSL fails.
 */
int ktls_crypto_info(const struct ktls_conn *kc, SSL *ssl, enum ktls_dir dir,
		     union ktls_crypto_info *ci, socklen_t *len, const char **why)
{
	const struct ktls_half *half = dir == KTLS_TX ? &kc->tx : &kc->rx;
	uint8_t key[32], iv[12], *p;
	const struct ktls_suite *s;
	int version, ret;

	memset(ci, 0, sizeof(*ci));
	*why = "the TLS handshake has not completed";
	if (!SSL_is_init_finished(ssl))
		return -EINPROGRESS;
	if (kc->err) {
		*why = kc->err_why;
		return kc->err;
	}
	version = SSL_version(ssl);
	*why = "only TLS 1.2 and TLS 1.3 can be offloaded to kTLS";
	if (version != TLS1_2_VERSION && version != TLS1_3_VERSION)
		return -EPROTONOSUPPORT;
	s = ktls_suite_of(SSL_get_current_cipher(ssl));
	*why = "the negotiated cipher cannot be offloaded to kTLS (AES-GCM, AES-128-CCM and "
	       "ChaCha20-Poly1305 can)";
	if (!s)
		return -EOPNOTSUPP;
	*why = "record sequence unknown: ktls_conn_attach() must run before the handshake";
	if (!half->epoch)
		return -EPROTO;

	if (version == TLS1_3_VERSION)
		ret = ktls_keys13(half, s, ssl, key, iv, why);
	else
		ret = ktls_keys12(ssl, s, dir, key, iv, why);
	if (ret)
		goto out;

	/* Every tls12_crypto_info_* is { info, iv[], key[], salt[], rec_seq[8] }. */
	ci->info.version = version == TLS1_3_VERSION ? TLS_1_3_VERSION : TLS_1_2_VERSION;
	ci->info.cipher_type = s->cipher_type;
	p = (uint8_t *)ci + sizeof(ci->info);
	if (version == TLS1_2_VERSION && s->salt_len) {
		/* Explicit nonce: the kernel counts it up from here; the sequence is unique. */
		ktls_put_be64(p, half->seq);
		memcpy(p + s->iv_len + s->key_len, iv, s->salt_len);
	} else {
		/* The 12-byte IV: salt is its first 4 bytes where the cipher has a salt. */
		memcpy(p, iv + s->salt_len, s->iv_len);
		memcpy(p + s->iv_len + s->key_len, iv, s->salt_len);
	}
	memcpy(p + s->iv_len, key, s->key_len);
	ktls_put_be64(p + s->iv_len + s->key_len + s->salt_len, half->seq);
	*len = s->info_len;
	*why = NULL;
out:
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(iv, sizeof(iv));
	return ret;
}

/* Turn the kernel's errno into something an operator can act on. */
static const char *ktls_ulp_why(int err)
{
	switch (err) {
	case ENOENT:
		return "the kernel has no TLS ULP: load the tls module (modprobe tls) or build "
		       "the kernel with CONFIG_TLS";
	case ENOTCONN:
		return "the socket is not an established TCP connection (kTLS needs state "
		       "ESTABLISHED)";
	case EEXIST:
		return "the socket already has an upper-layer protocol (kTLS already installed?)";
	case ENOPROTOOPT:
	case EOPNOTSUPP:
		return "not a TCP socket, or this kernel has no TCP_ULP support";
	case ENOTSOCK:
		return "the descriptor is not a socket";
	case EBADF:
		return "bad file descriptor";
	case EPERM:
	case EACCES:
		return "setting TCP_ULP was denied by a security policy (LSM or BPF)";
	case ENOMEM:
		return "the kernel is out of memory";
	default:
		return "setsockopt(TCP_ULP, \"tls\") failed";
	}
}

static const char *ktls_key_why(int err)
{
	switch (err) {
	case ENOENT:
		return "the kernel cannot load the cipher for kTLS (crypto module missing, or "
		       "no modprobe to load it)";
	case EINVAL:
		return "the kernel rejected this TLS version and cipher for kTLS (not supported "
		       "by this kernel)";
	case EBUSY:
		return "keys are already installed for this direction and this kernel cannot "
		       "rekey";
	case ENOPROTOOPT:
		return "SOL_TLS is unavailable on this socket: the tls ULP is not attached";
	case EOPNOTSUPP:
		return "this kernel does not support this kTLS configuration";
	case EPERM:
	case EACCES:
		return "installing kTLS keys was denied by a security policy (LSM or BPF)";
	case ENOMEM:
		return "the kernel is out of memory";
	default:
		return "setsockopt(SOL_TLS) failed";
	}
}

/**
 * ktls_attach_ulp - put the tls upper-layer protocol on a socket before its handshake
 * @kc: remembers it, so that ktls_install() does not try again
 *
 * The kernel takes the ULP only on an ESTABLISHED socket (tls_init()), but the keys at
 * any time after. A peer that sends its last data and FIN right behind its Finished
 * would otherwise leave the socket in CLOSE_WAIT before the keys are ready, and make
 * offload impossible. Without keys the ULP passes bytes through unchanged, so the
 * handshake runs over it as over plain TCP.
 *
 * Return: 0, or the negated errno of setsockopt(TCP_ULP) with @why saying what to do.
 */
int ktls_attach_ulp(struct ktls_conn *kc, int fd, const char **why)
{
	if (ktls_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		*why = ktls_ulp_why(errno);
		return -errno;
	}
	kc->ulp = true;
	return 0;
}

/**
 * ktls_install - move a socket whose handshake just finished to kernel TLS
 * @kc: attached before the handshake; wiped on return, whatever the outcome
 * @ssl: the finished handshake; must not read or write @fd afterwards
 * @fd: the connected TCP socket under @ssl
 * @why: on error, a sentence for the operator (static storage)
 *
 * Receive is installed before transmit, so a kernel that cannot decrypt leaves nothing
 * half-done on the sending side. On failure the socket may carry the tls ULP without
 * keys; it must then be closed, since userspace TLS cannot resume over it safely.
 * Ciphertext that OpenSSL already buffered past the handshake would be lost to the
 * kernel, so its presence is an error rather than a silent loss.
 *
 * Return: 0, any error of ktls_crypto_info(), -EPROTO when OpenSSL holds unread
 * records, or the negated errno of the failing setsockopt (ENOENT, ENOTCONN, EEXIST,
 * ENOPROTOOPT, EINVAL, EBUSY, ...), with @why saying which step and what to do.
 */
int ktls_install(struct ktls_conn *kc, SSL *ssl, int fd, const char **why)
{
	union ktls_crypto_info tx, rx;
	socklen_t tx_len = 0, rx_len = 0;
	BIO *rbio = SSL_get_rbio(ssl);
	int ret;

	ret = ktls_crypto_info(kc, ssl, KTLS_RX, &rx, &rx_len, why);
	if (ret)
		goto out;
	ret = ktls_crypto_info(kc, ssl, KTLS_TX, &tx, &tx_len, why);
	if (ret)
		goto out;
	/*
	 * After close_notify nothing counts (RFC 8446 6.1): OpenSSL 3.5's record layer still
	 * reports the spent alert record as pending then, and nothing would be lost.
	 */
	ret = -EPROTO;
	*why = "the TLS library holds received bytes past the handshake; they would be lost";
	if (!(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) &&
	    (SSL_has_pending(ssl) || (rbio && BIO_pending(rbio) > 0)))
		goto out;

	if (!kc->ulp && ktls_setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls"))) {
		ret = -errno;
		*why = ktls_ulp_why(errno);
		goto out;
	}
	if (ktls_setsockopt(fd, SOL_TLS, TLS_RX, &rx, rx_len)) {
		ret = -errno;
		*why = ktls_key_why(errno);
		goto out;
	}
	if (ktls_setsockopt(fd, SOL_TLS, TLS_TX, &tx, tx_len)) {
		ret = -errno;
		*why = ktls_key_why(errno);
		goto out;
	}
	ret = 0;
	*why = NULL;
out:
	OPENSSL_cleanse(&tx, sizeof(tx));
	OPENSSL_cleanse(&rx, sizeof(rx));
	ktls_conn_wipe(kc);
	return ret;
}

/**
 * ktls_recv - read application data from a kTLS socket, surfacing control records
 * @rec: filled with the type of the record read, and alert details
 *
 * The kernel returns non-data records whole, with their type in a control message; a
 * reader without one gets EIO. close_notify is the end of the stream, like a FIN.
 *
 * Return: bytes of application data (> 0); 0 at end of stream (FIN or close_notify);
 * -ECONNABORTED when the peer sent a fatal alert (@rec has level and description);
 * -ENOMSG for a handshake record (in @buf, @rec->len bytes); -EBADMSG when a record
 * fails authentication; or another negated errno of recvmsg().
 */
ssize_t ktls_recv(int fd, void *buf, size_t len, int flags, struct ktls_record *rec)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))];
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg;
	const uint8_t *p = buf;
	ssize_t n;

	for (;;) {
		memset(rec, 0, sizeof(*rec));
		msg.msg_controllen = sizeof(cbuf);
		n = recvmsg(fd, &msg, flags);
		if (n < 0)
			return -errno;
		rec->type = KTLS_CONTENT_DATA;
		cmsg = CMSG_FIRSTHDR(&msg);
		if (cmsg && cmsg->cmsg_level == SOL_TLS && cmsg->cmsg_type == TLS_GET_RECORD_TYPE)
			rec->type = *CMSG_DATA(cmsg);
		if (rec->type == KTLS_CONTENT_DATA)
			return n;
		if (rec->type == KTLS_CONTENT_HANDSHAKE) {
			rec->len = n;
			return -ENOMSG;
		}
		if (rec->type != KTLS_CONTENT_ALERT || n < 2)
			return -EPROTO;
		rec->alert_level = p[0];
		rec->alert_desc = p[1];
		if (p[1] == SSL_AD_CLOSE_NOTIFY)
			return 0;
		/* user_canceled is a warning that a close_notify follows; keep reading. */
		if (p[1] == SSL_AD_USER_CANCELLED && p[0] == SSL3_AL_WARNING)
			continue;
		return -ECONNABORTED;
	}
}

/**
 * ktls_send_record - send one record of @type (alert, handshake) through kTLS
 *
 * Return: 0, or the negated errno of sendmsg(): -EAGAIN when the socket's send buffer is
 * full (the record is dropped rather than waited for).
 */
int ktls_send_record(int fd, uint8_t type, const void *buf, size_t len)
{
	char cbuf[CMSG_SPACE(sizeof(uint8_t))] = { 0 };
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	ssize_t n;

	cmsg->cmsg_level = SOL_TLS;
	cmsg->cmsg_type = TLS_SET_RECORD_TYPE;
	cmsg->cmsg_len = CMSG_LEN(sizeof(uint8_t));
	*CMSG_DATA(cmsg) = type;
	/* Never wait: a peer that does not read cannot stall the worker that writes. */
	n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return -errno;
	return n == (ssize_t)len ? 0 : -EIO;
}

/* An alert record (close_notify: level 1, desc 0); ktls_send_record()'s returns. */
int ktls_send_alert(int fd, uint8_t level, uint8_t desc)
{
	uint8_t alert[2] = { level, desc };

	return ktls_send_record(fd, KTLS_CONTENT_ALERT, alert, sizeof(alert));
}
