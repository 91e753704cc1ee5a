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
		if (cfg->verify == VERIFY_OPTIONAL)
			mode = SSL_VERIFY_PEER;
		else if (cfg->verify == VERIFY_REQUIRED)
			mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		if (cfg->ca && cfg->verify != VERIFY_NONE) {
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca);

			if (names)
				SSL_CTX_set_client_CA_list(ctx, names);
			ERR_clear_error();
		}
	} else if (cfg->verify == VERIFY_REQUIRED) {
		mode = SSL_VERIFY_PEER;
	}
	SSL_CTX_set_verify(ctx, mode, NULL);
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
void verify_identity(SSL *ssl, struct dance_result *res)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	BIO *bio;
	int n;

	res->auth = DANCE_AUTH_NONE;
	if (!cert || SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE ||
	    SSL_get_verify_result(ssl) != X509_V_OK)
		return;
	res->auth = DANCE_AUTH_X509;
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
