/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pair.h - TLS endpoints for tests: contexts with throwaway certificates, a loopback TCP
 * pair, and OpenSSL peers whose bytes the test moves by hand (memory BIOs), so a test
 * decides exactly which records are on the wire and when.
 */
#ifndef DANCED_TESTS_PAIR_H
#define DANCED_TESTS_PAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>

struct pair_suite {
	int version; /* TLS1_2_VERSION or TLS1_3_VERSION */
	const char *cipher; /* OpenSSL name of the one suite to offer */
	int ktls_cipher; /* the TLS_CIPHER_* the kernel should get */
};

SSL_CTX *pair_ctx(bool server, const struct pair_suite *suite, bool ktls, int tickets);
int pair_tcp(int *client, int *server);
SSL *pair_mem_ssl(SSL_CTX *ctx);
int pair_mem_handshake(SSL *client, SSL *server);
size_t pair_wire(SSL *ssl, uint8_t *buf, size_t max);
void pair_feed(SSL *ssl, const void *buf, size_t len);

int peer_flush(SSL *ssl, int fd);
int peer_fill(SSL *ssl, int fd);
int peer_handshake(SSL *ssl, int fd, bool hold_last_flight);
ssize_t peer_read(SSL *ssl, int fd, void *buf, size_t len);
int peer_write(SSL *ssl, int fd, const void *buf, size_t len, bool flush);

void pair_pattern(uint64_t *state, void *buf, size_t len);
const char *pair_ssl_error(void);

#endif
