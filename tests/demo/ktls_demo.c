// SPDX-License-Identifier: GPL-2.0
/*
 * ktls_demo.c - a TLS echo server whose records are encrypted by the kernel.
 *
 * Each connection is handshaken with OpenSSL (throwaway certificate), then moved to
 * kTLS with ktls_install(); from there on the server only calls plain send() and
 * ktls_recv(), and the kernel does the record crypto. `make demo` points
 * `openssl s_client` at it inside the VM rig.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "../../agent/ktls.h"
#include "../lib/pair.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ktls_demo [-p PORT] [-n CONNECTIONS]\n"
		   "Echo server on 127.0.0.1:PORT (default 4433) that offloads each TLS 1.2/1.3\n"
		   "connection to kernel TLS after the handshake, then exits after CONNECTIONS\n"
		   "connections (default 2).\n");
}

static int serve(SSL_CTX *ctx, int fd)
{
	struct ktls_conn kc;
	struct ktls_record rec;
	const char *why = NULL;
	char buf[4096], out[4200];
	SSL *ssl = SSL_new(ctx);
	ssize_t n;
	int ret = -ENOMEM, len;

	if (!ssl)
		goto out;
	SSL_set_fd(ssl, fd);
	ret = ktls_conn_attach(&kc, ssl);
	if (ret)
		goto out_free;
	ret = -EPROTO;
	if (SSL_accept(ssl) != 1) {
		fprintf(stderr, "ktls_demo: handshake failed: %s\n", pair_ssl_error());
		goto out_wipe;
	}
	printf("ktls_demo: %s %s handshake done in userspace (OpenSSL)\n", SSL_get_version(ssl),
	       SSL_get_cipher_name(ssl));
	ret = ktls_install(&kc, ssl, fd, &why);
	if (ret) {
		fprintf(stderr, "ktls_demo: kTLS install failed: %s (%s)\n", why, strerror(-ret));
		goto out_wipe;
	}
	printf("ktls_demo: kTLS TX and RX installed; echoing with plain send()/recvmsg()\n");
	fflush(stdout);
	while ((n = ktls_recv(fd, buf, sizeof(buf), 0, &rec)) > 0) {
		len = snprintf(out, sizeof(out), "kTLS echo: %.*s", (int)n, buf);
		if (send(fd, out, len, MSG_NOSIGNAL) != len)
			break;
		printf("ktls_demo: echoed %zd bytes\n", n);
		fflush(stdout);
	}
	printf("ktls_demo: connection ended (%s)\n",
	       n == 0 ? (rec.type == KTLS_CONTENT_ALERT ? "close_notify" : "EOF") :
			strerror((int)-n));
	ktls_send_alert(fd, SSL3_AL_WARNING, SSL_AD_CLOSE_NOTIFY);
	ret = 0;
out_wipe:
	ktls_conn_wipe(&kc);
out_free:
	SSL_free(ssl);
out:
	return ret;
}

int main(int argc, char **argv)
{
	struct pair_suite any = { TLS1_3_VERSION, KTLS_TLS13_CIPHERSUITES, 0 };
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int port = 4433, conns = 2, opt, lfd, fd, one = 1;
	SSL_CTX *ctx;

	while ((opt = getopt(argc, argv, "p:n:h")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			conns = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (ktls_init()) {
		fprintf(stderr, "ktls_demo: OpenSSL lacks HKDF or the TLS 1.2 PRF\n");
		return 1;
	}
	ctx = pair_ctx(true, &any, true, 0);
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, KTLS_TLS12_CIPHERS)) {
		fprintf(stderr, "ktls_demo: cannot set up TLS: %s\n", pair_ssl_error());
		return 1;
	}
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 16)) {
		fprintf(stderr, "ktls_demo: cannot listen on 127.0.0.1:%d: %s\n", port,
			strerror(errno));
		return 1;
	}
	printf("ktls_demo: listening on 127.0.0.1:%d\n", port);
	fflush(stdout);
	while (conns-- > 0) {
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		serve(ctx, fd);
		close(fd);
	}
	SSL_CTX_free(ctx);
	return 0;
}
