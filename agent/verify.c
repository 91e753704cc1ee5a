// SPDX-License-Identifier: GPL-2.0
/*
 * verify.c - who the peer is: X.509 verification set-up per service, the DANCE
 * extensions, the server's DANE decision, the verified identity for the result, and the
 * reason a verification failed.
 *
 * Receives a struct tls inside or after its handshake, and for DANE the client's chain
 * and a TLSA answer; hands back a verdict and text for the result and the log. OpenSSL
 * does the chain, CertificateVerify and DANE matching; this file decides what they mean.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent.h"

/* Whether this server service verifies X.509 client certificates in the handshake. */
static bool x509_in_handshake(const struct svc_config *cfg)
{
	return cfg->verify == VERIFY_OPTIONAL || cfg->verify == VERIFY_REQUIRED;
}

/* Whether this server service sends a CertificateRequest to every client. */
static bool always_requests(const struct svc_config *cfg)
{
	return x509_in_handshake(cfg) || cfg->dane == DANE_REQUIRED;
}

/* A server-role client that named itself in dane_clientid is judged by DANE alone. */
static bool dane_client(const struct tls *t)
{
	return !t->client && t->svc->cfg->dane != DANE_OFF && t->dane_sent;
}

/*
 * The server's verdict on each certificate of the client's chain, inside OpenSSL's
 * handshake (DANE clients never get here: see chain_cb()).
 */
static int verify_cb(int preverify, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls *t = SSL_get_app_data(ssl);
	const struct svc_config *cfg = t->svc->cfg;

	if (t->client)
		return preverify;
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	/* A raw public key names nobody: only its TLSA record can, after the handshake. */
	if (X509_STORE_CTX_get0_rpk(store)) {
		if (dane_client(t))
			return 1;
		X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
		fail_set(t->fail, -EACCES,
			 "rpk-without-dane: the client presented a raw public key without "
			 "dane_clientid; only DANE can authenticate one");
		return 0;
	}
#endif
	if (cfg->dane == DANE_REQUIRED) {
		/* Maps to the handshake_failure alert the draft asks for. */
		X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
		fail_set(t->fail, -EACCES,
			 "dane-missing: the client presented a certificate without dane_clientid "
			 "(dane = required)");
		return 0;
	}
	if (!x509_in_handshake(cfg))
		return 1; /* asked for DANE or by the client's flag: no X.509 policy to apply */
	return preverify;
}

/*
 * The whole chain check. A DANE client's chain is matched against its TLSA records after
 * the handshake (OpenSSL 3.0 cannot pause a server's verification for DNS), so building
 * and verifying it against the service's CAs now would be work thrown away: skip it.
 * CertificateVerify, which proves the key, is checked by OpenSSL either way.
 */
static int chain_cb(X509_STORE_CTX *store, void *arg)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls *t = SSL_get_app_data(ssl);

	(void)arg;
	if (t && dane_client(t)) {
		X509_STORE_CTX_set_error(store, X509_V_OK);
		return 1;
	}
	return X509_verify_cert(store);
}

/**
 * verify_setup_ctx - trust anchors and verification mode of one service
 *
 * Server role: client_auth none sends no CertificateRequest; optional asks and checks
 * whatever comes; required fails the handshake without a verified certificate. Client
 * role: verify=required checks the server's chain and name (set per connection).
 *
 * Return: 0, or -EINVAL with @err naming the unreadable CA file.
 */
int verify_setup_ctx(SSL_CTX *ctx, const struct svc_config *cfg, char *err, size_t errlen)
{
	int mode = SSL_VERIFY_NONE;

	if (cfg->ca && SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
		snprintf(err, errlen, "[service %s]: ca %s: %s", cfg->name, cfg->ca,
			 ERR_reason_error_string(ERR_peek_last_error()) ?: "cannot load");
		ERR_clear_error();
		return -EINVAL;
	}
	if (cfg->role == ROLE_SERVER) {
		if (cfg->verify == VERIFY_OPTIONAL || cfg->dane != DANE_OFF)
			mode = SSL_VERIFY_PEER;
		if (cfg->verify == VERIFY_REQUIRED)
			mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		/* dane = optional alone asks only clients that set request_client_auth. */
		if (cfg->dane == DANE_OPTIONAL && !x509_in_handshake(cfg))
			mode = SSL_VERIFY_NONE;
		if (cfg->ca && x509_in_handshake(cfg)) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);

			if (names)
				SSL_CTX_set_client_CA_list(ctx, names);
			ERR_clear_error();
		}
		SSL_CTX_set_cert_verify_callback(ctx, chain_cb, NULL);
	} else if (cfg->verify == VERIFY_REQUIRED || cfg->verify == VERIFY_DANE_OR_PKIX) {
		mode = SSL_VERIFY_PEER; /* DANE turns it on per connection, after the lookup */
	}
	if (cfg->role == ROLE_CLIENT &&
	    (cfg->verify == VERIFY_DANE || cfg->verify == VERIFY_DANE_OR_PKIX) &&
	    SSL_CTX_dane_enable(ctx) <= 0) {
		snprintf(err, errlen, "[service %s]: cannot enable DANE in OpenSSL", cfg->name);
		return -EINVAL;
	}
	SSL_CTX_set_verify(ctx, mode, verify_cb);
	return 0;
}

/* ---- the DANCE extensions ---------------------------------------------------------- */

/*
 * dane_clientid (draft-ietf-dance-client-auth): opaque ClientName<0..255>.
 * Server: an empty name in every CertificateRequest of a DANE service; the client's name
 * from the first CertificateEntry; in legacy mode, the name from a TLS 1.2 ClientHello,
 * acknowledged by an empty extension in ServerHello.
 * Client: the configured identity in the first CertificateEntry, when the server's
 * CertificateRequest carried the extension (both empty encodings the drafts used).
 * OpenSSL copies what an add callback returns before the callback's thread does anything
 * else, so one buffer per thread serves every connection.
 */
static __thread uint8_t ext_buf[256];

/* A raw public key's entry carries extensions just as a certificate's does. */
#ifdef SSL_EXT_TLS1_3_RAW_PUBLIC_KEY
#define EXT_RAW_PUBLIC_KEY SSL_EXT_TLS1_3_RAW_PUBLIC_KEY
#else
#define EXT_RAW_PUBLIC_KEY 0
#endif

static bool entry_context(unsigned int context)
{
	return context == SSL_EXT_TLS1_3_CERTIFICATE ||
	       (EXT_RAW_PUBLIC_KEY && context == EXT_RAW_PUBLIC_KEY);
}

static int clientid_add(SSL *ssl, unsigned int type, unsigned int context,
			const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			int *al, void *arg)
{
	static const unsigned char empty_name[] = { 0 };
	struct tls *t = SSL_get_app_data(ssl);
	const struct svc_config *cfg = t->svc->cfg;
	size_t n;

	(void)type, (void)x, (void)al, (void)arg;
	if (!t->client) {
		if (context == SSL_EXT_TLS1_3_CERTIFICATE_REQUEST && cfg->dane != DANE_OFF) {
			*out = empty_name;
			*outlen = sizeof(empty_name);
			return 1;
		}
		if (context == SSL_EXT_TLS1_2_SERVER_HELLO && t->dane_sent) {
			*out = empty_name;
			*outlen = 0;
			return 1;
		}
		return 0;
	}
	if (!entry_context(context) || chainidx || !t->server_wants_dane || !cfg->identity[0])
		return 0;
	n = strlen(cfg->identity);
	ext_buf[0] = n;
	memcpy(ext_buf + 1, cfg->identity, n);
	*out = ext_buf;
	*outlen = n + 1;
	return 1;
}

static int clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
			  const unsigned char *in, size_t inlen, X509 *x, size_t chainidx, int *al,
			  void *arg)
{
	struct tls *t = SSL_get_app_data(ssl);
	const struct svc_config *cfg = t->svc->cfg;

	(void)type, (void)x, (void)arg;
	if (t->client) {
		if (context != SSL_EXT_TLS1_3_CERTIFICATE_REQUEST)
			return 1;
		/* -11 and later send a zero-length ClientName; earlier drafts nothing at all. */
		if (inlen > 1 || (inlen == 1 && in[0])) {
			*al = SSL_AD_DECODE_ERROR;
			return 0;
		}
		t->server_wants_dane = true;
		return 1;
	}
	if (cfg->dane == DANE_OFF)
		return 1;
	if (context == SSL_EXT_CLIENT_HELLO) {
		/* The old drafts' TLS 1.2 signal, only where the operator opted in. */
		if (!cfg->dane_tls12_legacy)
			return 1;
	} else if (!entry_context(context) || chainidx) {
		return 1;
	}
	if (!inlen || in[0] != inlen - 1) {
		*al = SSL_AD_DECODE_ERROR;
		return 0;
	}
	if (!in[0]) {
		/* A zero-length name from a client: the draft's handshake_failure. */
		fail_set(t->fail, -EACCES,
			 "dane-empty: the client sent dane_clientid with an empty name");
		*al = SSL_AD_HANDSHAKE_FAILURE;
		return 0;
	}
	/* Kept as sent, zero bytes included: verify_dane_begin() judges the whole name. */
	memcpy(t->dane_name, in + 1, in[0]);
	t->dane_name[in[0]] = '\0';
	t->dane_name_len = in[0];
	t->dane_sent = true;
	if (context == SSL_EXT_CLIENT_HELLO)
		/* Old drafts: a CertificateRequest only for clients that sent the signal. */
		SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_cb);
	return 1;
}

/*
 * The request_client_auth TLS flag (draft-jhoyla-req-mtls-flag) in tls_flags
 * (draft-ietf-tls-tlsflags): a bit string, flag 8i+j in octet i as bit j, LSB first.
 * A client that sets it gets a CertificateRequest, with the flag echoed, from a service
 * that would not otherwise ask.
 */
static int flags_add(SSL *ssl, unsigned int type, unsigned int context, const unsigned char **out,
		     size_t *outlen, X509 *x, size_t chainidx, int *al, void *arg)
{
	struct tls *t = SSL_get_app_data(ssl);
	unsigned int bit = t->st->cfg->request_client_auth_flag;

	(void)type, (void)x, (void)chainidx, (void)al, (void)arg;
	if (context != SSL_EXT_TLS1_3_CERTIFICATE_REQUEST || !t->flag_echo)
		return 0;
	memset(ext_buf, 0, bit / 8 + 1);
	ext_buf[bit / 8] = 1u << (bit % 8);
	*out = ext_buf;
	*outlen = bit / 8 + 1;
	return 1;
}

static int flags_parse(SSL *ssl, unsigned int type, unsigned int context, const unsigned char *in,
		       size_t inlen, X509 *x, size_t chainidx, int *al, void *arg)
{
	struct tls *t = SSL_get_app_data(ssl);
	const struct svc_config *cfg = t->svc->cfg;
	unsigned int bit = t->st->cfg->request_client_auth_flag;

	(void)type, (void)x, (void)chainidx, (void)arg;
	if (context != SSL_EXT_CLIENT_HELLO)
		return 1;
	/* Minimal encoding only: empty, all-zero or trailing-zero octets are illegal. */
	if (!inlen || !in[inlen - 1]) {
		*al = SSL_AD_ILLEGAL_PARAMETER;
		return 0;
	}
	if (bit / 8 >= inlen || !(in[bit / 8] & (1u << (bit % 8))) || !cfg->request_client_auth)
		return 1;
	t->flag_echo = true;
	if (!always_requests(cfg) && SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE)
		SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_cb);
	return 1;
}

/**
 * verify_ext_add - register dane_clientid and tls_flags on one context
 *
 * Every server context gets the same callbacks: SNI may move a connection to another
 * service's context, and the callbacks read that service's settings.
 *
 * Return: 0, or -EINVAL when OpenSSL refuses a codepoint (one it handles itself).
 */
int verify_ext_add(SSL_CTX *ctx, const struct config *cfg, bool server, char *err, size_t errlen)
{
	unsigned int clientid_ctx = SSL_EXT_TLS_ONLY | SSL_EXT_TLS1_3_CERTIFICATE_REQUEST |
				    SSL_EXT_TLS1_3_CERTIFICATE | EXT_RAW_PUBLIC_KEY;

	if (server)
		clientid_ctx |= SSL_EXT_CLIENT_HELLO | SSL_EXT_TLS1_2_SERVER_HELLO;
	if (SSL_CTX_add_custom_ext(ctx, cfg->dane_clientid_codepoint, clientid_ctx, clientid_add,
				   NULL, NULL, clientid_parse, NULL) != 1) {
		snprintf(err, errlen, "dane_clientid_codepoint %u: OpenSSL refuses it",
			 cfg->dane_clientid_codepoint);
		return -EINVAL;
	}
	if (server && SSL_CTX_add_custom_ext(ctx, cfg->tls_flags_codepoint,
					     SSL_EXT_TLS_ONLY | SSL_EXT_CLIENT_HELLO |
						     SSL_EXT_TLS1_3_CERTIFICATE_REQUEST,
					     flags_add, NULL, NULL, flags_parse, NULL) != 1) {
		snprintf(err, errlen, "tls_flags_codepoint %u: OpenSSL refuses it",
			 cfg->tls_flags_codepoint);
		return -EINVAL;
	}
	return 0;
}

/* ---- the server's DANE decision ------------------------------------------------------ */

/**
 * verify_dane_begin - after a completed handshake: does DANE decide, and at which name?
 * @d: filled with the client's chain and the name when the answer is V_LOOKUP
 *
 * Runs before the SSL goes, so that the decision no longer needs it.
 *
 * Return: V_DONE when DANE has nothing to say (dane = optional and no dane_clientid: the
 * X.509 policy already ruled); V_LOOKUP with d->name; V_FAIL with @f saying why.
 */
enum verdict verify_dane_begin(struct tls *t, struct dane_check *d, struct fail *f)
{
	const struct svc_config *cfg = t->svc->cfg;
	STACK_OF(X509) * chain;
	int ret;

	if (!t->dane_sent) {
		if (cfg->dane != DANE_REQUIRED)
			return V_DONE;
		fail_set(f, -EACCES,
			 "dane-missing: the client did not send dane_clientid (dane = required)");
		return V_FAIL;
	}
	if (SSL_version(t->ssl) < TLS1_3_VERSION && !cfg->dane_tls12_legacy) {
		fail_set(f, -EACCES, "dane-tls12: DANE client authentication needs TLS 1.3");
		return V_FAIL;
	}
	ret = dane_name_check(cfg, t->dane_name, t->dane_name_len, d->name, sizeof(d->name));
	if (ret == -EPERM) {
		fail_set(f, -EACCES, "name-not-allowed: %.100s is outside dane_names", d->name);
		return V_FAIL;
	}
	if (ret) {
		/* Zero bytes included: the name verified must be the name on the wire. */
		fail_set(f, -EACCES,
			 "dane-badname: dane_clientid is not a usable DNS name (A-labels: letters, "
			 "digits, hyphen, underscore; no zero byte)");
		return V_FAIL;
	}
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	d->rpk = SSL_get0_peer_rpk(t->ssl);
	if (d->rpk) {
		EVP_PKEY_up_ref(d->rpk);
		d->is_rpk = true;
		return V_LOOKUP;
	}
#endif
	d->leaf = SSL_get1_peer_certificate(t->ssl);
	if (!d->leaf) {
		fail_set(f, -EACCES,
			 "dane-nocert: the client named itself but presented no certificate");
		return V_FAIL;
	}
	/* On a server, the peer chain does not include the leaf. */
	chain = SSL_get_peer_cert_chain(t->ssl);
	if (chain && sk_X509_num(chain) > 0) {
		d->chain = X509_chain_up_ref(chain);
		if (!d->chain) {
			fail_set(f, -ENOMEM, "out of memory for the client's chain");
			return V_FAIL;
		}
	}
	return V_LOOKUP;
}

/**
 * verify_dane_pack - keep the client's chain as DER while its TLSA lookup is out
 *
 * A parsed certificate takes about 5 KB of heap, its DER a few hundred bytes; the wait
 * can be long and many sockets may wait at once. An answer from the cache never waits,
 * so the parsing again in verify_dane_match() is paid only beside a real DNS lookup.
 *
 * Return: 0, or -ENOMEM (the parsed chain is then kept, which works too).
 */
int verify_dane_pack(struct dane_check *d)
{
	int i, n = d->chain ? sk_X509_num(d->chain) : 0, len, total;
	uint8_t *p;

	if (d->is_rpk) {
		/* Its SubjectPublicKeyInfo: under a hundred bytes for an EC key. */
		total = i2d_PUBKEY(d->rpk, NULL);
		if (total <= 0 || !(d->der = malloc(total)))
			return -ENOMEM;
		p = d->der;
		i2d_PUBKEY(d->rpk, &p);
		d->der_len = total;
		EVP_PKEY_free(d->rpk);
		d->rpk = NULL;
		return 0;
	}
	total = i2d_X509(d->leaf, NULL);
	for (i = 0; i < n && total > 0; i++) {
		len = i2d_X509(sk_X509_value(d->chain, i), NULL);
		total = len > 0 ? total + len : -1;
	}
	if (total <= 0 || !(d->der = malloc(total)))
		return -ENOMEM;
	p = d->der;
	i2d_X509(d->leaf, &p);
	for (i = 0; i < n; i++)
		i2d_X509(sk_X509_value(d->chain, i), &p);
	d->der_len = total;
	X509_free(d->leaf);
	sk_X509_pop_free(d->chain, X509_free);
	d->leaf = NULL;
	d->chain = NULL;
	return 0;
}

/* The chain parsed again from its DER, when it was packed. */
static int dane_unpack(struct dane_check *d)
{
	const uint8_t *p = d->der, *end = d->der + d->der_len;
	X509 *x;

	if (d->is_rpk) {
		if (!d->rpk && d->der)
			d->rpk = d2i_PUBKEY(NULL, &p, end - p);
		return d->rpk ? 0 : -ENOMEM;
	}
	if (d->leaf || !d->der)
		return 0;
	d->leaf = d2i_X509(NULL, &p, end - p);
	if (!d->leaf)
		return -ENOMEM;
	while (p < end) {
		x = d2i_X509(NULL, &p, end - p);
		if (!x || (!d->chain && !(d->chain = sk_X509_new_null())) ||
		    !sk_X509_push(d->chain, x)) {
			X509_free(x);
			return -ENOMEM;
		}
	}
	return 0;
}

void verify_dane_end(struct dane_check *d)
{
	EVP_PKEY_free(d->rpk);
	d->rpk = NULL;
	d->is_rpk = false;
	X509_free(d->leaf);
	sk_X509_pop_free(d->chain, X509_free);
	free(d->der);
	d->leaf = NULL;
	d->chain = NULL;
	d->der = NULL;
	d->der_len = 0;
}

/**
 * verify_dane_match - the client's chain against the TLSA answer for d->name
 * @res: on success, auth, verified_name and the record that matched
 *
 * OpenSSL's own DANE verifier does the matching (every usage, selector and matching type,
 * with digest agility), driven from a scratch SSL of st->dane_ctx; PKIX usages use the
 * service's CA store and need d->name as a SAN dNSName. Unusable records are ignored;
 * none usable is a failure.
 *
 * Return: 0, -EACCES (or the answer's status) with @f saying why, or -ENOMEM.
 */
int verify_dane_match(const struct state *st, const struct svc *svc, struct dane_check *d,
		      const struct tlsa_set *set, struct dance_result *res, struct fail *f)
{
	const unsigned char *data;
	X509_STORE_CTX *x = NULL;
	size_t off = 0, dlen;
	uint8_t usage, sel, mtype;
	const uint8_t *rd;
	uint16_t len;
	int usable = 0, ret;
	SSL *v;

	if (set->outcome != TLSA_SECURE)
		return fail_set(f, set->status ?: -EACCES, "%s", set->why);
	if (dane_unpack(d))
		return fail_set(f, -ENOMEM, "out of memory for the client's chain");
	ret = -ENOMEM;
	v = SSL_new(st->dane_ctx);
	if (!v || SSL_dane_enable(v, d->name) <= 0)
		goto out_nomem;
	/* DANE-EE binds the key, not a name (the draft: the name need not be in it). */
	SSL_dane_set_flags(v, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	while (!tlsa_next(set, &off, &rd, &len)) {
		/* A raw public key has no chain and no name: only DANE-EE SPKI (3 1 x). */
		if (d->is_rpk && (len < 3 || rd[0] != 3 /* DANE-EE */ || rd[1] != 1 /* SPKI */))
			continue;
		if (len >= 3 && SSL_dane_tlsa_add(v, rd[0], rd[1], rd[2], rd + 3, len - 3) > 0)
			usable++;
	}
	ERR_clear_error();
	if (!usable && d->is_rpk) {
		ret = fail_set(f, -EACCES,
			       "tlsa-unusable: none of the %u TLSA records at %s can authenticate "
			       "a raw public key (only DANE-EE SPKI records, 3 1 x, can)",
			       set->n_records, d->name);
		goto out;
	}
	if (!usable) {
		ret = fail_set(
			f, -EACCES,
			"tlsa-unusable: none of the %u TLSA records at %s is usable (unknown "
			"usage, selector or matching type, or malformed)",
			set->n_records, d->name);
		goto out;
	}
	x = X509_STORE_CTX_new();
	if (!x)
		goto out_nomem;
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	if (d->is_rpk) {
		if (!X509_STORE_CTX_init_rpk(x, SSL_CTX_get_cert_store(svc->ctx), d->rpk))
			goto out_nomem;
	} else
#endif
		if (!X509_STORE_CTX_init(x, SSL_CTX_get_cert_store(svc->ctx), d->leaf, d->chain))
		goto out_nomem;
	X509_STORE_CTX_set_purpose(x, X509_PURPOSE_SSL_CLIENT);
	X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(x), d->name, 0);
	X509_VERIFY_PARAM_set_hostflags(X509_STORE_CTX_get0_param(x),
					X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
						X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	X509_STORE_CTX_set0_dane(x, SSL_get0_dane(v));
	if (X509_verify_cert(x) != 1) {
		ret = fail_set(f, -EACCES, "tlsa-mismatch: no usable TLSA record at %s matches: %s",
			       d->name, X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
		goto out;
	}
	if (SSL_get0_dane_tlsa(v, &usage, &sel, &mtype, &data, &dlen) < 0) {
		ret = fail_set(f, -EACCES,
			       "tlsa-mismatch: OpenSSL verified the chain without a "
			       "matching record");
		goto out;
	}
	res->auth = DANCE_AUTH_DANE;
	snprintf(res->verified_name, sizeof(res->verified_name), "%s", d->name);
	res->tlsa_usage = usage;
	res->tlsa_selector = sel;
	res->tlsa_mtype = mtype;
	ret = 0;
	goto out;
out_nomem:
	ret = fail_set(f, -ENOMEM, "out of memory for DANE verification");
out:
	ERR_clear_error();
	X509_STORE_CTX_free(x);
	SSL_free(v);
	return ret;
}

/* ---- the identity in the result ------------------------------------------------------ */

/* Append the peer's SAN dNSNames, space-separated, as far as they fit. */
static void san_names(X509 *cert, char *out, size_t max)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	size_t used = 0;
	int i;

	out[0] = '\0';
	for (i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *name;
		int len;

		if (g->type != GEN_DNS)
			continue;
		name = ASN1_STRING_get0_data(g->d.dNSName);
		len = ASN1_STRING_length(g->d.dNSName);
		/* Names with NULs or spaces would split or cut the list: leave them out. */
		if (len <= 0 || memchr(name, '\0', len) || memchr(name, ' ', len) ||
		    used + (used ? 1 : 0) + len + 1 > max)
			continue;
		if (used)
			out[used++] = ' ';
		memcpy(out + used, name, len);
		used += len;
		out[used] = '\0';
	}
	GENERAL_NAMES_free(gens);
}

/**
 * verify_identity - put who the peer is, as far as the handshake showed, into the result
 *
 * Only a certificate that OpenSSL verified counts: with verification off, or optional
 * and no certificate, the result says DANCE_AUTH_NONE and names nobody. A server-role
 * client that sent dane_clientid is named by verify_dane_match() alone, later. The
 * subject and SAN names of any certificate presented are reported for information.
 */
void verify_identity(struct tls *t, struct dance_result *res)
{
	SSL *ssl = t->ssl;
	X509 *cert = SSL_get0_peer_certificate(ssl);
	const struct svc_config *cfg = t->svc->cfg;

	res->auth = DANCE_AUTH_NONE;
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	if ((t->client ? SSL_get_negotiated_server_cert_type(ssl) :
			 SSL_get_negotiated_client_cert_type(ssl)) == TLSEXT_cert_type_rpk &&
	    SSL_get0_peer_rpk(ssl))
		res->peer_cert_type = DANCE_CERT_RPK;
#endif
	if (t->client && SSL_get0_dane_authority(ssl, NULL, NULL) >= 0) {
		uint8_t u, s, m;

		res->auth = DANCE_AUTH_DANE;
		snprintf(res->verified_name, sizeof(res->verified_name), "%s", t->peer_name);
		if (SSL_get0_dane_tlsa(ssl, &u, &s, &m, NULL, NULL) >= 0) {
			res->tlsa_usage = u;
			res->tlsa_selector = s;
			res->tlsa_mtype = m;
		}
	} else if (cert && !dane_client(t) && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE &&
		   SSL_get_verify_result(ssl) == X509_V_OK && x509_in_handshake(cfg)) {
		res->auth = DANCE_AUTH_X509;
	}
	if (cert)
		verify_describe(cert, res);
}

/* The subject and SAN dNSNames of @cert, for the result: information, not identity. */
void verify_describe(X509 *cert, struct dance_result *res)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n;

	if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(bio, res->peer_subject, sizeof(res->peer_subject) - 1);
		res->peer_subject[n > 0 ? n : 0] = '\0';
	}
	BIO_free(bio);
	san_names(cert, res->peer_names, sizeof(res->peer_names));
}

/**
 * verify_failure - why a handshake failed, in words for the operator
 * @status: set to -EACCES when the peer was not authenticated, else left alone
 *
 * Reads this thread's OpenSSL error queue; the caller clears it. The text lives in a
 * per-thread buffer until the next call: copy it at once.
 */
static bool record_layer_failure(unsigned long e)
{
#ifdef SSL_R_RECORD_LAYER_FAILURE
	return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_RECORD_LAYER_FAILURE;
#else
	(void)e; /* OpenSSL 3.0 names the record's fault itself */
	return false;
#endif
}

const char *verify_failure(SSL *ssl, const struct svc_config *cfg, int *status)
{
	static __thread char buf[DANCE_REASON_MAX];
	unsigned long e = ERR_peek_last_error();
	long v = SSL_get_verify_result(ssl);

	if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
	    ERR_GET_REASON(e) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		*status = -EACCES;
		return "the client presented no certificate (client_auth = required)";
	}
	if (v != X509_V_OK) {
		*status = -EACCES;
		snprintf(buf, sizeof(buf), "%s certificate rejected: %s",
			 cfg->role == ROLE_SERVER ? "client" : "server",
			 X509_verify_cert_error_string(v));
		return buf;
	}
	if (e) {
		unsigned long first = ERR_peek_error();

		/*
		 * OpenSSL 3.2's record layer reports every failure of its own as "record layer
		 * failure" last; the error it raised first says what was wrong with the record.
		 */
		if (record_layer_failure(e) && first != e)
			snprintf(buf, sizeof(buf), "TLS handshake failed: %s (%s)",
				 ERR_reason_error_string(e) ?: "record layer failure",
				 ERR_reason_error_string(first) ?: "unknown OpenSSL error");
		else
			snprintf(buf, sizeof(buf), "TLS handshake failed: %s",
				 ERR_reason_error_string(e) ?: "unknown OpenSSL error");
		return buf;
	}
	return "TLS handshake failed";
}
