/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ea.h - exported authenticators (RFC 9261) for test peers on a userspace OpenSSL SSL: a
 * second implementation, written apart from danced's, so that the tests check danced
 * against something it shares no code with.
 *
 * Messages are TLS handshake messages (type, 24-bit length, body) with no record layer.
 * Every function that needs the exporter refuses TLS 1.2 without extended master secret
 * with -EPROTO, as RFC 9261 requires.
 */
#ifndef DANCED_TESTS_EA_H
#define DANCED_TESTS_EA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#define TEA_CLIENTID 65282 /* danced's default dane_clientid codepoint */
#define TEA_MAX 16384

/*
 * The exporter values (RFC 9261, "Authenticator Keys") of the side that sends: @client_sent
 * picks the "client" labels, which make the two values the TLS client's authenticators use.
 * @hc gets the handshake context, @fk the finished MAC key. Returns the hash length (32 or
 * 48) or a negative errno; -EPROTO for TLS 1.2 without EMS, -ENOTCONN before the handshake
 * is done.
 */
int tea_values(SSL *ssl, bool client_sent, uint8_t hc[64], uint8_t fk[64]);

/*
 * A request: CertificateRequest (13) when @ssl is the TLS server, ClientCertificateRequest (17)
 * when it is the client. @ctx/@ctx_len the certificate_request_context (at most 255 bytes);
 * @dane adds an empty dane_clientid; @server_name (client only, may be NULL) adds server_name.
 * It does not look at the protocol version, so a test can make a request on a connection
 * where the peer must refuse to answer it. Returns the length written to @out, or a negative
 * errno (-ENOSPC if @cap is too small).
 */
int tea_request(SSL *ssl, const uint8_t *ctx, size_t ctx_len, bool dane, const char *server_name,
		uint8_t *out, size_t cap);

/*
 * An authenticator from @ssl's side for @req, a request made by the peer (NULL/0: spontaneous,
 * TLS server only, with 32 random bytes as its context), with @cert/@key (@cert NULL: the
 * empty authenticator, which needs a request). @dane_name, if not NULL and the request has
 * dane_clientid, goes into the leaf's dane_clientid. @chain (may be NULL) adds untrusted
 * intermediates after the leaf. @key is not checked against @cert, so a test can sign with
 * the wrong one. Returns the length written, or a negative errno: -EBADMSG for a malformed
 * request or one of the wrong type, -EOPNOTSUPP when no offered scheme suits @key.
 * (struct stack_st_X509 is what STACK_OF(X509) expands to, written out because clang-format
 * takes the macro for a multiplication.)
 */
int tea_authenticate(SSL *ssl, const uint8_t *req, size_t req_len, X509 *cert,
		     struct stack_st_X509 *chain, EVP_PKEY *key, const char *dane_name,
		     uint8_t *out, size_t cap);

/* What a validation found. */
struct tea_found {
	X509 *leaf; /* the caller frees it */
	char dane_name[256]; /* the leaf's dane_clientid, or "" */
	bool empty; /* a well-formed empty authenticator */
};

/*
 * Validate @auth made by the peer of @ssl answering @req (which @ssl made; NULL for spontaneous
 * server authenticators). Returns 0 when valid (found filled), -ENODATA for a well-formed empty
 * authenticator (found->empty set), -EBADMSG malformed, -EKEYREJECTED CertificateVerify does
 * not verify, -EBADE Finished does not match, -ESRCH context does not match the request's,
 * -EPROTO TLS 1.2 without EMS, -EINVAL for a TLS server with no @req. Checks run structure
 * first, then context, signature and Finished, so a test that breaks one part gets that part's
 * error. A Certificate extension the request did not ask for is malformed (-EBADMSG).
 */
int tea_validate(SSL *ssl, const uint8_t *req, size_t req_len, const uint8_t *auth, size_t auth_len,
		 struct tea_found *found);

/*
 * Where the parts are inside an authenticator, for tests that tamper with one: offsets of each
 * message's start and its total encoded length; 0 lengths for absent ones. Returns 0 or
 * -EBADMSG.
 */
struct tea_parts {
	size_t cert_off, cert_len, cv_off, cv_len, fin_off, fin_len;
};

int tea_split(const uint8_t *auth, size_t len, struct tea_parts *p);

/* A request's certificate_request_context: its length, or -EBADMSG; *ctx points into @req. */
int tea_request_context(const uint8_t *req, size_t len, const uint8_t **ctx);

#endif
