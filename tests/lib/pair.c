// SPDX-License-Identifier: GPL-2.0
/*
 * pair.c - TLS endpoints for tests.
 *
 * A "peer" is an OpenSSL endpoint over memory BIOs: the test moves its bytes to and from
 * a real socket (peer_*) or another memory endpoint (pair_*) by hand, so it can, for
 * example, put application data in the same TCP segment as the final Finished.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../../agent/ktls.h"
#include "pair.h"

static EVP_PKEY *pair_key;
static X509 *pair_cert;

/* One throwaway ECDSA P-256 identity per process is plenty for offload tests. */
static int pair_identity(void)
{
	X509_NAME *name;

	if (pair_cert)
		return 0;
	pair_key = EVP_EC_gen("P-256");
	pair_cert = X509_new();
	if (!pair_key || !pair_cert)
		return -ENOMEM;
	ASN1_INTEGER_set(X509_get_serialNumber(pair_cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(pair_cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(pair_cert), 3600);
	X509_set_pubkey(pair_cert, pair_key);
	name = X509_get_subject_name(pair_cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(pair_cert, name);
	if (!X509_sign(pair_cert, pair_key, EVP_sha256()))
		return -EIO;
	return 0;
}

/**
 * pair_ctx - a context that offers exactly one version and suite
 * @ktls: prepare it for offload (key log, no read-ahead) as the agent does
 * @tickets: TLS 1.3 session tickets the server sends after the handshake
 */
SSL_CTX *pair_ctx(bool server, const struct pair_suite *suite, bool ktls, int tickets)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, suite->version);
	SSL_CTX_set_max_proto_version(ctx, suite->version);
	/*
	 * A test peer may use any suite, even one OpenSSL 3.5 keeps out of its default
	 * security level (the 8-byte tags of CCM_8): tests show that danced refuses them.
	 */
	SSL_CTX_set_security_level(ctx, 0);
	if (suite->version == TLS1_3_VERSION) {
		if (!SSL_CTX_set_ciphersuites(ctx, suite->cipher))
			goto fail;
	} else if (!SSL_CTX_set_cipher_list(ctx, suite->cipher)) {
		goto fail;
	}
	SSL_CTX_set_num_tickets(ctx, tickets);
	if (server && (pair_identity() || !SSL_CTX_use_certificate(ctx, pair_cert) ||
		       !SSL_CTX_use_PrivateKey(ctx, pair_key)))
		goto fail;
	if (ktls && ktls_ctx_prepare(ctx))
		goto fail;
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* A connected loopback TCP pair; kTLS needs TCP, so never socketpair(). */
int pair_tcp(int *client, int *server)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	int lfd, one = 1, ret = -errno;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0)
		return -errno;
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (*client < 0)
		goto out_listen;
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen) ||
	    connect(*client, (struct sockaddr *)&addr, sizeof(addr)))
		goto out_client;
	*server = accept(lfd, NULL, NULL);
	if (*server < 0)
		goto out_client;
	setsockopt(*client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(lfd);
	return 0;
out_client:
	ret = -errno;
	close(*client);
out_listen:
	close(lfd);
	return ret;
}

/* An SSL over two memory BIOs; an empty read BIO means "want read", not EOF. */
SSL *pair_mem_ssl(SSL_CTX *ctx)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());

	if (!ssl || !rbio || !wbio) {
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		return NULL;
	}
	BIO_set_mem_eof_return(rbio, -1);
	SSL_set_bio(ssl, rbio, wbio);
	return ssl;
}

/* Take what @ssl has written and not yet sent ("the wire"). */
size_t pair_wire(SSL *ssl, uint8_t *buf, size_t max)
{
	int n = BIO_read(SSL_get_wbio(ssl), buf, max);

	return n > 0 ? n : 0;
}

void pair_feed(SSL *ssl, const void *buf, size_t len)
{
	BIO_write(SSL_get_rbio(ssl), buf, len);
}

static bool pair_step(SSL *ssl, bool *done)
{
	int ret;

	if (*done)
		return true;
	ret = SSL_do_handshake(ssl);
	if (ret == 1) {
		*done = true;
		return true;
	}
	return SSL_get_error(ssl, ret) == SSL_ERROR_WANT_READ;
}

/*
 * Run both handshakes in memory. Bytes move only to a side that is still handshaking,
 * so whatever a side writes after its peer finished (TLS 1.3 tickets, say) stays on
 * "the wire" (its write BIO) for the test to inspect.
 */
int pair_mem_handshake(SSL *client, SSL *server)
{
	bool cdone = false, sdone = false;
	uint8_t buf[16384];
	size_t n;
	int i;

	SSL_set_connect_state(client);
	SSL_set_accept_state(server);
	for (i = 0; i < 32 && !(cdone && sdone); i++) {
		if (!pair_step(client, &cdone))
			return -EPROTO;
		while (!sdone && (n = pair_wire(client, buf, sizeof(buf))))
			pair_feed(server, buf, n);
		if (!pair_step(server, &sdone))
			return -EPROTO;
		while (!cdone && (n = pair_wire(server, buf, sizeof(buf))))
			pair_feed(client, buf, n);
	}
	return cdone && sdone ? 0 : -ETIMEDOUT;
}

/* Send everything the peer has written. */
int peer_flush(SSL *ssl, int fd)
{
	uint8_t buf[65536];
	size_t n, off;
	ssize_t w;

	while ((n = pair_wire(ssl, buf, sizeof(buf)))) {
		for (off = 0; off < n; off += w) {
			w = send(fd, buf + off, n - off, MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR) {
				w = 0;
				continue;
			}
			if (w < 0)
				return -errno;
		}
	}
	return 0;
}

/*
 * Block until bytes arrive and hand them to the peer; 0 means the socket saw EOF. A
 * signal does not end the wait: with SO_RCVTIMEO set, the kernel never restarts recv.
 */
int peer_fill(SSL *ssl, int fd)
{
	uint8_t buf[65536];
	ssize_t n;

	do
		n = recv(fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	pair_feed(ssl, buf, n);
	return n;
}

/**
 * peer_handshake - complete the handshake over @fd
 * @hold_last_flight: leave the final flight unsent, so that the caller can queue
 *                    application data behind it and send both in one segment
 */
int peer_handshake(SSL *ssl, int fd, bool hold_last_flight)
{
	int ret, err;

	for (;;) {
		ret = SSL_do_handshake(ssl);
		if (ret == 1)
			return hold_last_flight ? 0 : peer_flush(ssl, fd);
		err = SSL_get_error(ssl, ret);
		if (err != SSL_ERROR_WANT_READ)
			return -EPROTO;
		ret = peer_flush(ssl, fd);
		if (ret)
			return ret;
		ret = peer_fill(ssl, fd);
		if (ret <= 0)
			return ret ? ret : -ECONNRESET;
	}
}

/* Like read(2): bytes, 0 at close_notify or EOF, negative errno on failure. */
ssize_t peer_read(SSL *ssl, int fd, void *buf, size_t len)
{
	int ret, err;

	for (;;) {
		ret = SSL_read(ssl, buf, len);
		if (ret > 0)
			return ret;
		err = SSL_get_error(ssl, ret);
		if (err == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (err != SSL_ERROR_WANT_READ) {
			/* OpenSSL queued an alert saying why; the other side should see it. */
			peer_flush(ssl, fd);
			return -EPROTO;
		}
		ret = peer_fill(ssl, fd);
		if (ret <= 0)
			return ret;
	}
}

int peer_write(SSL *ssl, int fd, const void *buf, size_t len, bool flush)
{
	size_t off = 0, chunk;
	int ret;

	while (off < len) {
		chunk = len - off < 65536 ? len - off : 65536;
		ret = SSL_write(ssl, (const uint8_t *)buf + off, chunk);
		if (ret <= 0)
			return -EPROTO;
		off += ret;
		ret = flush ? peer_flush(ssl, fd) : 0;
		if (ret)
			return ret;
	}
	return 0;
}

/* Deterministic bytes that are not all alike (xorshift64). */
void pair_pattern(uint64_t *state, void *buf, size_t len)
{
	uint8_t *p = buf;
	uint64_t x = *state;
	size_t i;

	for (i = 0; i < len; i++) {
		if (!(i & 7)) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		p[i] = x >> ((i & 7) * 8);
	}
	*state = x;
}

/* The oldest queued OpenSSL error, for test logs. */
const char *pair_ssl_error(void)
{
	static char buf[256];
	unsigned long e = ERR_peek_error();

	if (!e)
		return "no OpenSSL error queued";
	ERR_error_string_n(e, buf, sizeof(buf));
	return buf;
}
