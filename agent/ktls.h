/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ktls.h - the kTLS stage: from a finished OpenSSL handshake to keys in the kernel.
 *
 * A connection embeds a struct ktls_conn and attaches it to its SSL before the
 * handshake starts; OpenSSL callbacks then record the traffic secrets and count
 * records per direction. After the handshake, ktls_install() moves the socket to
 * kernel TLS. Nothing here allocates per connection.
 */
#ifndef DANCED_KTLS_H
#define DANCED_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <linux/tls.h>
#include <openssl/ssl.h>

/* Older libc headers lack these; the values are uapi. */
#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* SHA-384 is the largest hash of any suite kTLS can carry. */
#define KTLS_SECRET_MAX 48

enum ktls_dir {
	KTLS_TX,
	KTLS_RX,
};

/* One direction of a connection, as the handshake left it. */
struct ktls_half {
	uint64_t seq; /* records already protected under the current key */
	uint8_t secret[KTLS_SECRET_MAX]; /* TLS 1.3: current application traffic secret */
	uint8_t secret_len;
	bool epoch; /* the application epoch has begun: seq counts from there */
};

struct ktls_conn {
	struct ktls_half tx;
	struct ktls_half rx;
	int err; /* first error seen inside an OpenSSL callback, or 0 */
	const char *err_why;
	bool ulp; /* ktls_attach_ulp() put the tls ULP on the socket already */
	/* TLS 1.3 exporter_master_secret, for RFC 9261's values (exported.c); wiped with
	   the traffic secrets */
	uint8_t exporter[KTLS_SECRET_MAX];
	uint8_t exporter_len;
	/*
	 * TLS 1.3 post-handshake authentication (RFC 8446 section 4.6.2) needs the
	 * transcript through the client's Finished, carried on as a hash state: kept only
	 * when asked for (ktls_transcript_want()) and the ClientHello offers
	 * post_handshake_auth. Until the suite is known, both hashes run: [0] SHA-256,
	 * [1] SHA-384.
	 */
	EVP_MD_CTX *th[2];
	uint8_t th_state; /* enum ktls_th */
};

enum ktls_th {
	KTLS_TH_OFF,
	KTLS_TH_WANT, /* waiting for the ClientHello */
	KTLS_TH_HASHING,
	KTLS_TH_DONE, /* through the client's Finished: ktls_transcript_take() */
};

/* Every crypto_info layout we hand to SOL_TLS. */
union ktls_crypto_info {
	struct tls_crypto_info info;
	struct tls12_crypto_info_aes_gcm_128 aes_gcm_128;
	struct tls12_crypto_info_aes_gcm_256 aes_gcm_256;
	struct tls12_crypto_info_aes_ccm_128 aes_ccm_128;
	struct tls12_crypto_info_chacha20_poly1305 chacha20_poly1305;
};

/* A control record met by ktls_recv(). */
struct ktls_record {
	uint8_t type; /* TLS ContentType: 21 alert, 22 handshake, 23 data */
	uint8_t alert_level;
	uint8_t alert_desc;
	size_t len; /* bytes of a handshake record left in the caller's buffer */
};

#define KTLS_CONTENT_ALERT 21
#define KTLS_CONTENT_HANDSHAKE 22
#define KTLS_CONTENT_DATA 23

/* Suites we may negotiate because kTLS can carry them, in OpenSSL's syntax. */
#define KTLS_TLS13_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define KTLS_TLS12_CIPHERS                                           \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* The kernel edge; only tests replace it. */
extern int (*ktls_setsockopt)(int fd, int level, int name, const void *val, socklen_t len);

int ktls_init(void);
void ktls_fini(void);
int ktls_ctx_prepare(SSL_CTX *ctx);
bool ktls_cipher_supported(const SSL_CIPHER *c);
int ktls_conn_attach(struct ktls_conn *kc, SSL *ssl);
void ktls_conn_wipe(struct ktls_conn *kc);
int ktls_crypto_info(const struct ktls_conn *kc, SSL *ssl, enum ktls_dir dir,
		     union ktls_crypto_info *ci, socklen_t *len, const char **why);
int ktls_attach_ulp(struct ktls_conn *kc, int fd, const char **why);
int ktls_install(struct ktls_conn *kc, SSL *ssl, int fd, const char **why);
ssize_t ktls_recv(int fd, void *buf, size_t len, int flags, struct ktls_record *rec);
int ktls_send_record(int fd, uint8_t type, const void *buf, size_t len);
int ktls_send_alert(int fd, uint8_t level, uint8_t desc);
int ktls_exporter(const struct ktls_conn *kc, const char *digest, const char *label, uint8_t *out,
		  size_t out_len);
void ktls_transcript_want(struct ktls_conn *kc);
EVP_MD_CTX *ktls_transcript_take(struct ktls_conn *kc);
int ktls_client_finished_key(const struct ktls_conn *kc, SSL *ssl, uint8_t *out, size_t len);

/* Key schedule pieces, exported for the RFC 8448 / PRF vector tests. */
int ktls_hkdf_expand_label(const char *digest, const uint8_t *secret, size_t secret_len,
			   const char *label, uint8_t *out, size_t out_len);
int ktls_hkdf_expand_label_ctx(const char *digest, const uint8_t *secret, size_t secret_len,
			       const char *label, const uint8_t *ctx, size_t ctx_len, uint8_t *out,
			       size_t out_len);
int ktls_tls12_prf(const char *digest, const uint8_t *secret, size_t secret_len, const char *label,
		   const uint8_t *seed1, size_t seed1_len, const uint8_t *seed2, size_t seed2_len,
		   uint8_t *out, size_t out_len);

#endif
