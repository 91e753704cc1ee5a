// SPDX-License-Identifier: GPL-2.0
/*
 * floor - what one TLS 1.3 handshake costs an OpenSSL server with nothing around it
 *
 * Runs COUNT full handshakes in one process, client and server joined by a BIO pair, and
 * does every server-side call (SSL_new, each SSL_do_handshake step, SSL_free) inside one
 * of the floor_server_*() functions below. Under
 *     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='floor_server_*'
 * callgrind counts the server's instructions only: what any server built on this OpenSSL
 * must pay for the same handshake, with no sockets, no event loop and no application. The
 * settings are the leanest OpenSSL has, and danced's: no tickets, no session cache, no
 * automatic chain building, released buffers. bench/insns compares servers against it.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <valgrind/callgrind.h>

static const char usage[] =
	"NAME\n"
	"    floor - the library floor: OpenSSL TLS 1.3 handshakes in one process\n"
	"\n"
	"SYNOPSIS\n"
	"    floor -c CERT -k KEY [-N COUNT] [-W WARM] [-G GROUPS] [-s SUITES]\n"
	"          [-m x509 -a CAFILE | -m cert | -m rpk] [-C CERT -K KEY]\n"
	"\n"
	"DESCRIPTION\n"
	"    Makes COUNT full TLS 1.3 handshakes (no tickets, no resumption) between\n"
	"    an OpenSSL client and an OpenSSL server over a BIO pair, then one\n"
	"    application byte each way. Every server-side call runs inside a function\n"
	"    whose name starts with floor_server_, so that\n"
	"        valgrind --tool=callgrind --collect-atstart=no \\\n"
	"            --toggle-collect='floor_server_*' floor ...\n"
	"    counts the server's instructions alone: the floor that any server on this\n"
	"    OpenSSL pays for the same handshake.\n"
	"\n"
	"OPTIONS\n"
	"    -c CERT, -k KEY  the server's certificate (PEM) and key\n"
	"    -N COUNT         handshakes (default 100)\n"
	"    -W WARM          handshakes first, before callgrind's counters are\n"
	"                     zeroed (default 3): one-time setup is not counted\n"
	"    -G GROUPS        key exchange groups (default X25519)\n"
	"    -s SUITES        TLS 1.3 ciphersuites (default TLS_AES_128_GCM_SHA256)\n"
	"    -m none          no client authentication (the default)\n"
	"    -m x509          ask for a client certificate and verify its chain\n"
	"                     against CAFILE (-a), as an X.509 mTLS server does\n"
	"    -m cert          ask for a client certificate and skip the chain check:\n"
	"                     the key is proved by CertificateVerify, the name is\n"
	"                     left to DANE (what a DANE server must do in TLS)\n"
	"    -m rpk           as cert, but the client sends its key alone, a raw\n"
	"                     public key (RFC 7250; OpenSSL 3.2 or later)\n"
	"    -a CAFILE        the CA that signs client certificates (-m x509)\n"
	"    -C CERT, -K KEY  the client's certificate and key (-m x509, cert, rpk)\n"
	"    -h               this text\n"
	"\n"
	"OUTPUT\n"
	"    handshakes=COUNT mode=MODE group=GROUP suite=SUITE\n"
	"\n"
	"EXIT STATUS\n"
	"    0 when every handshake succeeded, 1 when one failed, 2 on bad usage.\n";

enum mode { MODE_NONE, MODE_X509, MODE_CERT, MODE_RPK };

/* The chain check a DANE server skips: the TLSA record decides after the handshake. */
static int skip_chain(X509_STORE_CTX *store, void *arg)
{
	(void)arg;
	X509_STORE_CTX_set_error(store, X509_V_OK);
	return 1;
}

static SSL_CTX *ctx_new(const SSL_METHOD *m, const char *groups, const char *suites)
{
	SSL_CTX *ctx = SSL_CTX_new(m);

	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, groups) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
	return ctx;
}

/* The server's calls, each in a function callgrind toggles collection on. */
static __attribute__((noinline)) SSL *floor_server_new(SSL_CTX *ctx, BIO *bio)
{
	SSL *s = SSL_new(ctx);

	if (s) {
		SSL_set_bio(s, bio, bio);
		SSL_set_accept_state(s);
	}
	return s;
}

static __attribute__((noinline)) int floor_server_step(SSL *s)
{
	return SSL_do_handshake(s);
}

static __attribute__((noinline)) int floor_server_io(SSL *s, char *b)
{
	size_t n;

	if (SSL_read_ex(s, b, 1, &n) != 1)
		return -1;
	return SSL_write_ex(s, b, 1, &n) == 1 ? 0 : -1;
}

static __attribute__((noinline)) void floor_server_free(SSL *s)
{
	SSL_free(s);
}

/* One handshake and one byte each way; 0, or -1 with OpenSSL's errors queued. */
static int one(SSL_CTX *sctx, SSL_CTX *cctx)
{
	BIO *sb = NULL, *cb = NULL;
	SSL *s = NULL, *c = NULL;
	int sr = 0, cr = 0, i, ret = -1;
	char b = 'x';
	size_t n;

	if (BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
		return -1;
	s = floor_server_new(sctx, sb);
	c = SSL_new(cctx);
	if (!s || !c) {
		BIO_free(sb);
		BIO_free(cb);
		goto out;
	}
	SSL_set_bio(c, cb, cb);
	SSL_set_connect_state(c);
	SSL_set_tlsext_host_name(c, "localhost");
	/* Lock step: a flight each way at most, a few steps in all. */
	for (i = 0; i < 32 && (sr != 1 || cr != 1); i++) {
		if (cr != 1) {
			cr = SSL_do_handshake(c);
			if (cr != 1 && SSL_get_error(c, cr) != SSL_ERROR_WANT_READ)
				goto out;
		}
		if (sr != 1) {
			sr = floor_server_step(s);
			if (sr != 1 && SSL_get_error(s, sr) != SSL_ERROR_WANT_READ)
				goto out;
		}
	}
	if (sr != 1 || cr != 1 || SSL_write_ex(c, &b, 1, &n) != 1 || floor_server_io(s, &b) ||
	    SSL_read_ex(c, &b, 1, &n) != 1)
		goto out;
	ret = 0;
out:
	SSL_free(c);
	floor_server_free(s);
	return ret;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL, *ca = NULL, *ccert = NULL, *ckey = NULL;
	const char *groups = "X25519", *suites = "TLS_AES_128_GCM_SHA256", *mname = "none";
	SSL_CTX *sctx = NULL, *cctx = NULL;
	enum mode mode = MODE_NONE;
	long count = 100, warm = 3, i;
	int opt, ret = 1;

	while ((opt = getopt(argc, argv, "c:k:N:W:G:s:m:a:C:K:h")) != -1) {
		switch (opt) {
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'N':
			count = strtol(optarg, NULL, 10);
			break;
		case 'W':
			warm = strtol(optarg, NULL, 10);
			break;
		case 'G':
			groups = optarg;
			break;
		case 's':
			suites = optarg;
			break;
		case 'm':
			mname = optarg;
			if (!strcmp(optarg, "none"))
				mode = MODE_NONE;
			else if (!strcmp(optarg, "x509"))
				mode = MODE_X509;
			else if (!strcmp(optarg, "cert"))
				mode = MODE_CERT;
			else if (!strcmp(optarg, "rpk"))
				mode = MODE_RPK;
			else {
				fprintf(stderr, "floor: -m %s: none, x509, cert or rpk\n", optarg);
				return 2;
			}
			break;
		case 'a':
			ca = optarg;
			break;
		case 'C':
			ccert = optarg;
			break;
		case 'K':
			ckey = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			fputs("usage: floor -c CERT -k KEY [-N COUNT] [-m none|x509|cert|rpk] ...; "
			      "floor -h explains\n",
			      stderr);
			return 2;
		}
	}
	if (!cert || !key || count < 1 || warm < 0 || (mode != MODE_NONE && (!ccert || !ckey)) ||
	    (mode == MODE_X509 && !ca)) {
		fprintf(stderr, "floor: needs -c and -k, a COUNT of at least 1, -C and -K with "
				"-m x509 or cert, and -a with -m x509 (floor -h explains)\n");
		return 2;
	}
	sctx = ctx_new(TLS_server_method(), groups, suites);
	cctx = ctx_new(TLS_client_method(), groups, suites);
	if (!sctx || !cctx || SSL_CTX_use_certificate_chain_file(sctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "floor: server setup (%s, %s, groups %s, suites %s): %s\n", cert,
			key, groups, suites, ERR_reason_error_string(ERR_peek_last_error()));
		goto out;
	}
	if (mode != MODE_NONE) {
		if (SSL_CTX_use_certificate_chain_file(cctx, ccert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(cctx, ckey, SSL_FILETYPE_PEM) != 1 ||
		    (ca && SSL_CTX_load_verify_locations(sctx, ca, NULL) != 1)) {
			fprintf(stderr, "floor: client identity %s, %s or CA %s: %s\n", ccert, ckey,
				ca ?: "-", ERR_reason_error_string(ERR_peek_last_error()));
			goto out;
		}
		SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		if (mode == MODE_CERT || mode == MODE_RPK)
			SSL_CTX_set_cert_verify_callback(sctx, skip_chain, NULL);
	}
	if (mode == MODE_RPK) {
#ifdef TLSEXT_cert_type_rpk
		static const unsigned char rpk[] = { TLSEXT_cert_type_rpk };

		/* The client offers only its key; the server takes it. */
		if (SSL_CTX_set1_client_cert_type(cctx, rpk, sizeof(rpk)) != 1 ||
		    SSL_CTX_set1_client_cert_type(sctx, rpk, sizeof(rpk)) != 1)
			goto out;
#else
		fprintf(stderr, "floor: -m rpk: %s has no raw public keys (OpenSSL 3.2 or later)\n",
			OpenSSL_version(OPENSSL_VERSION));
		goto out;
#endif
	}
	for (i = 0; i < warm + count; i++) {
		/* Lazy initialisation inside OpenSSL is paid once, not per handshake. */
		if (i == warm)
			CALLGRIND_ZERO_STATS;
		if (one(sctx, cctx)) {
			fprintf(stderr, "floor: handshake %ld failed: %s\n", i + 1,
				ERR_reason_error_string(ERR_peek_last_error()) ?: "unknown");
			goto out;
		}
	}
	printf("handshakes=%ld mode=%s group=%s suite=%s\n", count, mname, groups, suites);
	ret = 0;
out:
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	return ret;
}
