/* SPDX-License-Identifier: GPL-2.0 */
/*
 * clientid.h - dane_clientid (draft-ietf-dance-client-auth) for the benchmarks' OpenSSL
 * clients, dance-bench and inflight: the ClientName in the first CertificateEntry of a
 * TLS 1.3 Certificate when the server asks, and the server's empty one accepted in its
 * CertificateRequest.
 */
#ifndef DANCED_BENCH_CLIENTID_H
#define DANCED_BENCH_CLIENTID_H

#include <openssl/ssl.h>

/* Where the ClientName goes: a CertificateEntry of a certificate or a raw public key. */
#ifdef SSL_EXT_TLS1_3_RAW_PUBLIC_KEY
#define BENCH_CLIENTID_ENTRY (SSL_EXT_TLS1_3_CERTIFICATE | SSL_EXT_TLS1_3_RAW_PUBLIC_KEY)
#else
#define BENCH_CLIENTID_ENTRY SSL_EXT_TLS1_3_CERTIFICATE
#endif

/* The ClientName (a length byte, then the name): the SSL's app data, else the ext's arg. */
static inline int bench_clientid_add(SSL *ssl, unsigned int type, unsigned int context,
				     const unsigned char **out, size_t *outlen, X509 *x,
				     size_t chainidx, int *al, void *arg)
{
	const unsigned char *id = SSL_get_app_data(ssl) ?: arg;

	(void)type, (void)x, (void)al;
	/* The first entry only: of a certificate chain, or the one raw public key. */
	if (!id || !id[0] || chainidx || !(context & BENCH_CLIENTID_ENTRY))
		return 0;
	*out = id;
	*outlen = id[0] + 1;
	return 1;
}

static inline int bench_clientid_parse(SSL *ssl, unsigned int type, unsigned int context,
				       const unsigned char *in, size_t inlen, X509 *x,
				       size_t chainidx, int *al, void *arg)
{
	(void)ssl, (void)type, (void)context, (void)in, (void)inlen, (void)x, (void)chainidx;
	(void)al, (void)arg;
	return 1;
}

/*
 * Send dane_clientid at @codepoint: @name for every connection (it must outlive @ctx),
 * or NULL to send each SSL's app data (none when it has none). Return: 1, or 0.
 */
static inline int bench_clientid_register(SSL_CTX *ctx, unsigned int codepoint,
					  const unsigned char *name)
{
	return SSL_CTX_add_custom_ext(ctx, codepoint,
				      SSL_EXT_TLS1_3_CERTIFICATE_REQUEST | BENCH_CLIENTID_ENTRY,
				      bench_clientid_add, NULL, (void *)name, bench_clientid_parse,
				      NULL);
}

#endif
