// SPDX-License-Identifier: GPL-2.0
/*
 * verify.c - who the peer is: X.509 verification set-up per service, the verified
 * identity that goes into the result, and the reason a verification failed.
 *
 * Receives an SSL after its handshake (or its failure); hands back text for the result
 * and the log. OpenSSL does the chain and CertificateVerify checks; this file decides
 * what they mean for the operator.
 */
#include <errno.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent.h"

/* Whether this server service sends a CertificateRequest to every client. */
static bool always_requests(const struct svc_config *cfg)
{
	return cfg->verify != VERIFY_NONE || cfg->dane == DANE_REQUIRED;
}

/*
 * The server's verdict on the client's chain, inside OpenSSL's handshake. A client that
 * named itself in dane_clientid is judged by DANE after the handshake (OpenSSL 3.0 cannot
 * pause here for the DNS), so its chain passes now; CertificateVerify is still checked.
 */
static int verify_cb(int preverify, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct conn *c = SSL_get_app_data(ssl);
	const struct svc_config *cfg = c->svc->cfg;

	if (cfg->role != ROLE_SERVER)
		return preverify;
	if (cfg->dane != DANE_OFF && c->dane_sent)
		return 1;
	if (cfg->dane == DANE_REQUIRED) {
		/* Maps to the handshake_failure alert the draft asks for. */
		X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
		c->fail_status = -EACCES;
		c->fail_reason = "dane-missing: the client presented a certificate without "
				 "dane_clientid (dane = required)";
		return 0;
	}
	if (cfg->verify == VERIFY_NONE)
		return 1; /* asked for DANE or by the client's flag: no X.509 policy to apply */
	return preverify;
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
		if (cfg->dane == DANE_OPTIONAL && cfg->verify == VERIFY_NONE)
			mode = SSL_VERIFY_NONE;
		if (cfg->ca && cfg->verify != VERIFY_NONE) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);

			if (names)
				SSL_CTX_set_client_CA_list(ctx, names);
			ERR_clear_error();
		}
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
 */
static int clientid_add(SSL *ssl, unsigned int type, unsigned int context,
			const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
			int *al, void *arg)
{
	static const unsigned char empty_name[] = { 0 };
	struct conn *c = SSL_get_app_data(ssl);
	const struct svc_config *cfg = c->svc->cfg;
	size_t n;

	(void)type, (void)x, (void)al, (void)arg;
	if (cfg->role == ROLE_SERVER) {
		if (context == SSL_EXT_TLS1_3_CERTIFICATE_REQUEST && cfg->dane != DANE_OFF) {
			*out = empty_name;
			*outlen = sizeof(empty_name);
			return 1;
		}
		if (context == SSL_EXT_TLS1_2_SERVER_HELLO && c->dane_sent) {
			*out = empty_name;
			*outlen = 0;
			return 1;
		}
		return 0;
	}
	if (context != SSL_EXT_TLS1_3_CERTIFICATE || chainidx || !c->server_wants_dane ||
	    !cfg->identity[0])
		return 0;
	n = strlen(cfg->identity);
	c->ext_buf[0] = n;
	memcpy(c->ext_buf + 1, cfg->identity, n);
	*out = c->ext_buf;
	*outlen = n + 1;
	return 1;
}

static int clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
			  const unsigned char *in, size_t inlen, X509 *x, size_t chainidx, int *al,
			  void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);
	const struct svc_config *cfg = c->svc->cfg;

	(void)type, (void)x, (void)arg;
	if (cfg->role == ROLE_CLIENT) {
		if (context != SSL_EXT_TLS1_3_CERTIFICATE_REQUEST)
			return 1;
		/* -11 and later send a zero-length ClientName; earlier drafts nothing at all. */
		if (inlen > 1 || (inlen == 1 && in[0])) {
			*al = SSL_AD_DECODE_ERROR;
			return 0;
		}
		c->server_wants_dane = true;
		return 1;
	}
	if (cfg->dane == DANE_OFF)
		return 1;
	if (context == SSL_EXT_CLIENT_HELLO) {
		/* The old drafts' TLS 1.2 signal, only where the operator opted in. */
		if (!cfg->dane_tls12_legacy)
			return 1;
	} else if (context != SSL_EXT_TLS1_3_CERTIFICATE || chainidx) {
		return 1;
	}
	if (!inlen || in[0] != inlen - 1) {
		*al = SSL_AD_DECODE_ERROR;
		return 0;
	}
	if (!in[0]) {
		/* A zero-length name from a client: the draft's handshake_failure. */
		c->fail_status = -EACCES;
		c->fail_reason = "dane-empty: the client sent dane_clientid with an empty name";
		*al = SSL_AD_HANDSHAKE_FAILURE;
		return 0;
	}
	memcpy(c->dane_name, in + 1, in[0]);
	c->dane_name[in[0]] = '\0';
	c->dane_sent = true;
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
	struct conn *c = SSL_get_app_data(ssl);
	unsigned int bit = c->st->cfg->request_client_auth_flag;

	(void)type, (void)x, (void)chainidx, (void)al, (void)arg;
	if (context != SSL_EXT_TLS1_3_CERTIFICATE_REQUEST || !c->flag_echo)
		return 0;
	memset(c->ext_buf, 0, bit / 8 + 1);
	c->ext_buf[bit / 8] = 1u << (bit % 8);
	*out = c->ext_buf;
	*outlen = bit / 8 + 1;
	return 1;
}

static int flags_parse(SSL *ssl, unsigned int type, unsigned int context, const unsigned char *in,
		       size_t inlen, X509 *x, size_t chainidx, int *al, void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);
	const struct svc_config *cfg = c->svc->cfg;
	unsigned int bit = c->st->cfg->request_client_auth_flag;

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
	c->flag_echo = true;
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
				    SSL_EXT_TLS1_3_CERTIFICATE;

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

/* ---- DANE matching ------------------------------------------------------------------ */

/**
 * verify_dane - match the peer's certificate against the TLSA records in @c->tlsa
 * @name: the TLSA owner name; for usages 0, 1 and 2 it must be a SAN dNSName too
 * @purpose: X509_PURPOSE_SSL_CLIENT (server role) or X509_PURPOSE_SSL_SERVER
 *
 * OpenSSL's own DANE verifier does the matching (every usage, selector and matching type,
 * with digest agility), driven from a scratch SSL because the connection's SSL has
 * finished its handshake. Unusable records are ignored; none usable is a failure.
 *
 * Return: 0 with @c->tlsa_* naming the record that matched, -EACCES with @why, or
 * -ENOMEM.
 */
int verify_dane(struct conn *c, const char *name, int purpose, const char **why)
{
	static __thread char buf[DANCE_REASON_MAX];
	X509 *leaf = SSL_get0_peer_certificate(c->ssl);
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(c->ssl);
	const unsigned char *data;
	X509_STORE_CTX *x = NULL;
	size_t off = 0, dlen;
	uint8_t usage, sel, mtype;
	const uint8_t *rd;
	uint16_t len;
	int usable = 0, ret = -ENOMEM;
	SSL *v;

	*why = "out of memory for DANE verification";
	v = SSL_new(c->st->dane_ctx);
	if (!v || SSL_dane_enable(v, name) <= 0)
		goto out;
	/* DANE-EE binds the key, not a name (the draft: the name need not be in it). */
	SSL_dane_set_flags(v, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
	while (!tlsa_next(&c->tlsa, &off, &rd, &len))
		if (len >= 3 && SSL_dane_tlsa_add(v, rd[0], rd[1], rd[2], rd + 3, len - 3) > 0)
			usable++;
	ERR_clear_error();
	ret = -EACCES;
	if (!usable) {
		snprintf(
			buf, sizeof(buf),
			"tlsa-unusable: none of the %u TLSA records at %s is usable (unknown usage, "
			"selector or matching type, or malformed)",
			c->tlsa.n_records, name);
		*why = buf;
		goto out;
	}
	*why = "tlsa-mismatch: the peer presented no certificate";
	if (!leaf)
		goto out;
	ret = -ENOMEM;
	*why = "out of memory for DANE verification";
	x = X509_STORE_CTX_new();
	if (!x || !X509_STORE_CTX_init(x, SSL_CTX_get_cert_store(c->svc->ctx), leaf, chain))
		goto out;
	X509_STORE_CTX_set_purpose(x, purpose);
	X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(x), name, 0);
	X509_VERIFY_PARAM_set_hostflags(X509_STORE_CTX_get0_param(x),
					X509_CHECK_FLAG_NEVER_CHECK_SUBJECT |
						X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	X509_STORE_CTX_set0_dane(x, SSL_get0_dane(v));
	ret = -EACCES;
	if (X509_verify_cert(x) != 1) {
		snprintf(buf, sizeof(buf), "tlsa-mismatch: no usable TLSA record at %s matches: %s",
			 name, X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
		*why = buf;
		goto out;
	}
	if (SSL_get0_dane_tlsa(v, &usage, &sel, &mtype, &data, &dlen) < 0) {
		*why = "tlsa-mismatch: OpenSSL verified the chain without a matching record";
		goto out;
	}
	c->tlsa_usage = usage;
	c->tlsa_selector = sel;
	c->tlsa_mtype = mtype;
	ret = 0;
	*why = NULL;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(x);
	SSL_free(v);
	return ret;
}

/**
 * verify_dane_start - the server's DANE decision, after a completed handshake
 *
 * Return: 0 when there is nothing (more) to decide; -EINPROGRESS when the conn waits for
 * DNS (dane_resume() continues); a negative errno with @c->why when the client is
 * refused (the caller sends handshake_failure).
 */
int verify_dane_start(struct conn *c)
{
	const struct svc_config *cfg = c->svc->cfg;
	char name[DANCE_HOST_MAX];
	int ret;

	if (cfg->role != ROLE_SERVER || cfg->dane == DANE_OFF || c->dane_done)
		return 0;
	if (!c->dane_sent) {
		if (cfg->dane == DANE_REQUIRED) {
			snprintf(
				c->why, sizeof(c->why),
				"dane-missing: the client did not send dane_clientid (dane = required)");
			return -EACCES;
		}
		c->dane_done = true; /* dane = optional: the X.509 policy already ruled */
		return 0;
	}
	if (SSL_version(c->ssl) < TLS1_3_VERSION && !cfg->dane_tls12_legacy) {
		snprintf(c->why, sizeof(c->why),
			 "dane-tls12: DANE client authentication needs TLS 1.3");
		return -EACCES;
	}
	if (!SSL_get0_peer_certificate(c->ssl)) {
		snprintf(c->why, sizeof(c->why),
			 "dane-nocert: the client named itself but presented no certificate");
		return -EACCES;
	}
	ret = dane_name_check(cfg, c->dane_name, name, sizeof(name));
	if (ret == -EPERM) {
		snprintf(c->why, sizeof(c->why), "name-not-allowed: %.100s is outside dane_names",
			 name);
		return -EACCES;
	}
	if (ret) {
		snprintf(c->why, sizeof(c->why),
			 "dane-badname: dane_clientid is not a usable DNS name (A-labels, letters, "
			 "digits, hyphen, underscore)");
		return -EACCES;
	}
	snprintf(c->verified_name, sizeof(c->verified_name), "%s", name);
	ret = conn_wait_dns(c, name);
	if (ret)
		return ret;
	return verify_dane_verdict(c);
}

/* The answer is in @c->tlsa: authenticated, or why not. */
int verify_dane_verdict(struct conn *c)
{
	const char *why;
	int ret;

	if (c->tlsa.outcome != TLSA_SECURE) {
		snprintf(c->why, sizeof(c->why), "%s", c->tlsa.why);
		c->verified_name[0] = '\0';
		return c->tlsa.status ?: -EACCES;
	}
	ret = verify_dane(c, c->verified_name, X509_PURPOSE_SSL_CLIENT, &why);
	if (ret) {
		snprintf(c->why, sizeof(c->why), "%s", why);
		c->verified_name[0] = '\0';
		return ret;
	}
	c->auth = DANCE_AUTH_DANE;
	c->dane_done = true;
	return 0;
}

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
 * verify_identity - put the verified peer into the result
 *
 * Only a certificate that OpenSSL verified counts: with verification off, or optional
 * and no certificate, the result says DANCE_AUTH_NONE and names nobody.
 */
void verify_identity(struct conn *c, struct dance_result *res)
{
	SSL *ssl = c->ssl;
	X509 *cert = SSL_get0_peer_certificate(ssl);
	BIO *bio;
	int n;

	res->auth = DANCE_AUTH_NONE;
	if (c->auth == DANCE_AUTH_DANE ||
	    (c->svc->cfg->role == ROLE_CLIENT && SSL_get0_dane_authority(ssl, NULL, NULL) >= 0)) {
		res->auth = DANCE_AUTH_DANE;
		snprintf(res->verified_name, sizeof(res->verified_name), "%s",
			 c->verified_name[0] ? c->verified_name : c->peer_name);
		res->tlsa_usage = c->tlsa_usage;
		res->tlsa_selector = c->tlsa_selector;
		res->tlsa_mtype = c->tlsa_mtype;
		res->dns_cached = c->dns_cached;
		if (c->svc->cfg->role == ROLE_CLIENT) {
			uint8_t u, s, m;

			if (SSL_get0_dane_tlsa(ssl, &u, &s, &m, NULL, NULL) >= 0) {
				res->tlsa_usage = u;
				res->tlsa_selector = s;
				res->tlsa_mtype = m;
			}
		}
	} else if (!cert || SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE ||
		   SSL_get_verify_result(ssl) != X509_V_OK || c->svc->cfg->verify == VERIFY_NONE) {
		return;
	} else {
		res->auth = DANCE_AUTH_X509;
	}
	if (!cert)
		return;
	bio = BIO_new(BIO_s_mem());
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
 * Reads this thread's OpenSSL error queue; the caller clears it.
 */
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
		snprintf(buf, sizeof(buf), "TLS handshake failed: %s",
			 ERR_reason_error_string(e) ?: "unknown OpenSSL error");
		return buf;
	}
	return "TLS handshake failed";
}
