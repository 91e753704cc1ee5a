// SPDX-License-Identifier: GPL-2.0
/*
 * bulk - what moving application data costs the server after the handshake: kTLS send(),
 * kTLS sendfile(), userspace SSL_write(), and the receive side (kTLS recv(), SSL_read()),
 * in MB per server CPU-second.
 *
 * One process, loopback TCP. The server thread does a TLS 1.3 handshake with OpenSSL,
 * then either installs kTLS with danced's own code (ktls.c, from the traffic secrets, as
 * every danced socket gets it) or keeps OpenSSL's records in user space, and moves
 * -M MB. Its CPU time (CLOCK_THREAD_CPUTIME_ID, user and system) over the transfer is
 * the figure; the client thread is the peer, always userspace OpenSSL, and checks every
 * byte it receives so that a fast wrong answer cannot pass as a result.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../agent/ktls.h"

static const char usage[] =
	"NAME\n"
	"    bulk - server CPU per byte after the handshake: kTLS against SSL_write\n"
	"\n"
	"SYNOPSIS\n"
	"    bulk -c CERT -k KEY [-m MODE] [-s SUITE] [-M MB] [-b CHUNK] [-f FILE_MB]\n"
	"\n"
	"DESCRIPTION\n"
	"    Makes one TLS 1.3 connection over loopback TCP between a server thread and\n"
	"    a client thread of this process, then moves MB megabytes in one direction\n"
	"    and reports the server thread's CPU time for it (user plus system, from\n"
	"    CLOCK_THREAD_CPUTIME_ID). kTLS is installed with danced's own code from the\n"
	"    traffic secrets, as on every socket danced hands back. The client is\n"
	"    userspace OpenSSL and checks every byte it receives.\n"
	"\n"
	"    Needs a kernel with the tls module (danced's VM rig; `make bench` runs it).\n"
	"\n"
	"OPTIONS\n"
	"    -c CERT, -k KEY  the server's certificate and key (PEM)\n"
	"    -m MODE          what the server does (default send):\n"
	"                       send      kTLS TX, send(2) of CHUNK bytes at a time\n"
	"                       sendfile  kTLS TX, sendfile(2) from a FILE_MB file in /tmp\n"
	"                       ssl-write userspace records, SSL_write(3)\n"
	"                       recv      kTLS RX, recv(2) (the client sends)\n"
	"                       ssl-read  userspace records, SSL_read(3) (the client sends)\n"
	"    -s SUITE         TLS 1.3 ciphersuite (default TLS_AES_128_GCM_SHA256;\n"
	"                     TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256)\n"
	"    -M MB            megabytes to move (default 256)\n"
	"    -b CHUNK         bytes per send, write or read call (default 16384)\n"
	"    -f FILE_MB       the block the stream repeats (default 16): the sendfile\n"
	"                     source, sent again and again until MB are out; CHUNK\n"
	"                     must divide it\n"
	"    -h               this text\n"
	"\n"
	"OUTPUT\n"
	"    mode=M suite=S bytes=N server_cpu_s=C mb_per_cpu_s=R wall_s=W\n"
	"\n"
	"EXIT STATUS\n"
	"    0 on success; 1 when setup, the handshake, kTLS or a check failed; 2 on\n"
	"    bad usage.\n";

enum mode { M_SEND, M_SENDFILE, M_SSL_WRITE, M_RECV, M_SSL_READ };
static const char *const mode_names[] = { "send", "sendfile", "ssl-write", "recv", "ssl-read" };

static struct {
	enum mode mode;
	const char *suite;
	size_t total, chunk, file_len;
	int port;
	char err[256];
} g = { .mode = M_SEND, .suite = "TLS_AES_128_GCM_SHA256", .chunk = 16384 };

/*
 * The stream is one block of -f FILE_MB bytes, over and over: the sendfile source, and
 * what send() and SSL_write() send slices of (CHUNK divides it, so a slice never wraps).
 * The receiver compares every byte with it; the sender does no per-byte work.
 */
static uint8_t *block;

static void block_fill(void)
{
	size_t i;

	for (i = 0; i < g.file_len; i++)
		block[i] = (uint8_t)(i * 2654435761u >> 13);
}

static const uint8_t *slice(size_t off)
{
	return block + off % g.file_len;
}

static SSL_CTX *ctx_new(const SSL_METHOD *m)
{
	SSL_CTX *ctx = SSL_CTX_new(m);

	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, g.suite) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, "X25519") != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

/* The peer: userspace OpenSSL, the side whose CPU is not measured. */
static void *client_main(void *arg)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(g.port) };
	SSL_CTX *ctx = ctx_new(TLS_client_method());
	uint8_t *b = malloc(g.chunk);
	bool sending = g.mode == M_RECV || g.mode == M_SSL_READ;
	size_t off = 0;
	SSL *ssl = NULL;
	int fd = -1, n;

	(void)arg;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!ctx || !b || fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		snprintf(g.err, sizeof(g.err), "client: setup or connect: %s", strerror(errno));
		goto out;
	}
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_connect(ssl) != 1) {
		snprintf(g.err, sizeof(g.err), "client: handshake: %s",
			 ERR_reason_error_string(ERR_peek_last_error()) ?: "?");
		goto out;
	}
	while (off < g.total) {
		size_t k = g.total - off < g.chunk ? g.total - off : g.chunk;

		if (sending) {
			n = SSL_write(ssl, slice(off), k);
		} else {
			/* Never past the block's end: one memcmp per read. */
			if (k > g.file_len - off % g.file_len)
				k = g.file_len - off % g.file_len;
			n = SSL_read(ssl, b, k);
			if (n > 0) {
				if (memcmp(b, slice(off), n)) {
					snprintf(g.err, sizeof(g.err),
						 "client: wrong bytes at offset %zu", off);
					goto out;
				}
			}
		}
		if (n <= 0) {
			snprintf(g.err, sizeof(g.err), "client: %s at offset %zu: %s",
				 sending ? "SSL_write" : "SSL_read", off,
				 ERR_reason_error_string(ERR_peek_last_error()) ?: "closed");
			goto out;
		}
		off += n;
	}
	if (sending) {
		/* The server says it has everything: one byte back. */
		if (SSL_read(ssl, b, 1) != 1)
			snprintf(g.err, sizeof(g.err), "client: no acknowledgement");
	}
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	free(b);
	return NULL;
}

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The measured part: move g.total bytes. 0, or -1 with g.err set. */
static int server_move(SSL *ssl, int fd, int file_fd, uint8_t *b)
{
	size_t off = 0;
	ssize_t n;

	while (off < g.total) {
		size_t k = g.total - off < g.chunk ? g.total - off : g.chunk;

		switch (g.mode) {
		case M_SEND:
			n = send(fd, slice(off), k, MSG_NOSIGNAL);
			break;
		case M_SSL_WRITE:
			n = SSL_write(ssl, slice(off), k);
			break;
		case M_SENDFILE: {
			off_t at = off % g.file_len;

			if (k > g.file_len - at)
				k = g.file_len - at;
			n = sendfile(fd, file_fd, &at, k);
			break;
		}
		case M_RECV:
		case M_SSL_READ:
		default:
			if (k > g.file_len - off % g.file_len)
				k = g.file_len - off % g.file_len;
			n = g.mode == M_RECV ? recv(fd, b, k, 0) : SSL_read(ssl, b, k);
			/* The same check in both receive modes: the ratio stays fair. */
			if (n > 0 && memcmp(b, slice(off), n)) {
				snprintf(g.err, sizeof(g.err), "server: wrong bytes at offset %zu",
					 off);
				return -1;
			}
			break;
		}
		if (n <= 0) {
			snprintf(g.err, sizeof(g.err), "server: %s at offset %zu: %s",
				 mode_names[g.mode], off, n < 0 ? strerror(errno) : "closed");
			return -1;
		}
		off += n;
	}
	return 0;
}

static int parse(int argc, char **argv, const char **cert, const char **key)
{
	int opt, i;

	g.total = 256UL << 20;
	g.file_len = 16UL << 20;
	while ((opt = getopt(argc, argv, "c:k:m:s:M:b:f:h")) != -1) {
		switch (opt) {
		case 'c':
			*cert = optarg;
			break;
		case 'k':
			*key = optarg;
			break;
		case 'm':
			for (i = 0; i < 5 && strcmp(optarg, mode_names[i]); i++)
				;
			if (i == 5) {
				fprintf(stderr,
					"bulk: -m %s: send, sendfile, ssl-write, recv or "
					"ssl-read\n",
					optarg);
				return 2;
			}
			g.mode = i;
			break;
		case 's':
			g.suite = optarg;
			break;
		case 'M':
			g.total = strtoul(optarg, NULL, 10) << 20;
			break;
		case 'b':
			g.chunk = strtoul(optarg, NULL, 10);
			break;
		case 'f':
			g.file_len = strtoul(optarg, NULL, 10) << 20;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		default:
			fputs("usage: bulk -c CERT -k KEY [-m MODE] [-s SUITE] [-M MB]; bulk -h "
			      "explains\n",
			      stderr);
			return 2;
		}
	}
	if (!*cert || !*key || !g.total || g.chunk < 1 || g.chunk > (1 << 20) || !g.file_len ||
	    g.file_len % g.chunk) {
		fprintf(stderr, "bulk: needs -c and -k, MB and FILE_MB above 0, and a CHUNK of "
				"1 to 1048576 bytes that divides FILE_MB (bulk -h explains)\n");
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *why = "";
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	struct ktls_conn kc = { 0 };
	char path[] = "/tmp/bulk.XXXXXX";
	int lfd = -1, fd = -1, file_fd = -1, ret;
	bool ktls = false;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	uint8_t *b = NULL;
	double c0, c1, w0, w1;
	pthread_t t;
	bool started = false;

	ret = parse(argc, argv, &cert, &key);
	if (ret)
		return ret;
	ret = 1;
	ktls = g.mode == M_SEND || g.mode == M_SENDFILE || g.mode == M_RECV;
	b = malloc(g.chunk);
	ctx = ctx_new(TLS_server_method());
	if (!b || !ctx || ktls_init() || ktls_ctx_prepare(ctx) ||
	    SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "bulk: server setup (%s, %s, %s): %s\n", cert, key, g.suite,
			ERR_reason_error_string(ERR_peek_last_error()) ?: "out of memory");
		goto out;
	}
	block = malloc(g.file_len);
	if (!block) {
		fprintf(stderr, "bulk: out of memory for a %zu byte block\n", g.file_len);
		goto out;
	}
	block_fill();
	if (g.mode == M_SENDFILE) {
		file_fd = mkstemp(path);
		if (file_fd < 0) {
			fprintf(stderr, "bulk: %s: %s\n", path, strerror(errno));
			goto out;
		}
		unlink(path);
		if (write(file_fd, block, g.file_len) != (ssize_t)g.file_len) {
			fprintf(stderr, "bulk: writing the sendfile source: %s\n", strerror(errno));
			goto out;
		}
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen)) {
		fprintf(stderr, "bulk: listen: %s\n", strerror(errno));
		goto out;
	}
	g.port = ntohs(a.sin_port);
	if (pthread_create(&t, NULL, client_main, NULL)) {
		fprintf(stderr, "bulk: cannot start the client thread\n");
		goto out;
	}
	started = true;
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ssl = fd >= 0 ? SSL_new(ctx) : NULL;
	if (!ssl || !SSL_set_fd(ssl, fd) || ktls_conn_attach(&kc, ssl) || SSL_accept(ssl) != 1) {
		fprintf(stderr, "bulk: server handshake: %s\n",
			ERR_reason_error_string(ERR_peek_last_error()) ?: strerror(errno));
		goto out;
	}
	if (ktls && ktls_install(&kc, ssl, fd, &why)) {
		fprintf(stderr, "bulk: kTLS: %s\n", why);
		goto out;
	}
	c0 = thread_cpu();
	w0 = wall();
	if (server_move(ssl, fd, file_fd, b))
		goto out;
	c1 = thread_cpu();
	w1 = wall();
	if (g.mode == M_RECV || g.mode == M_SSL_READ) {
		char one = 'k';

		if ((g.mode == M_RECV ? send(fd, &one, 1, MSG_NOSIGNAL) :
					SSL_write(ssl, &one, 1)) != 1) {
			fprintf(stderr, "bulk: acknowledgement: %s\n", strerror(errno));
			goto out;
		}
	}
	pthread_join(t, NULL);
	started = false;
	if (g.err[0])
		goto out; /* said below */
	printf("mode=%s suite=%s bytes=%zu server_cpu_s=%.3f mb_per_cpu_s=%.1f wall_s=%.3f\n",
	       mode_names[g.mode], g.suite, g.total, c1 - c0,
	       c1 > c0 ? g.total / 1048576.0 / (c1 - c0) : 0.0, w1 - w0);
	ret = 0;
out:
	if (ret && g.err[0])
		fprintf(stderr, "bulk: %s\n", g.err);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
	if (started)
		pthread_join(t, NULL);
	ktls_conn_wipe(&kc);
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	if (lfd >= 0)
		close(lfd);
	if (file_fd >= 0)
		close(file_fd);
	SSL_CTX_free(ctx);
	free(b);
	free(block);
	return ret;
}
