// SPDX-License-Identifier: GPL-2.0
/*
 * handshake.c - the TLS handshake of one socket, as a stage; and the TLS state (one
 * SSL_CTX per service) that reload replaces.
 *
 * Receives a struct tls whose socket danced holds; OpenSSL reads and writes the tls's
 * buffers through a BIO that never touches the socket, and each call returns what it
 * needs next (bytes to read, bytes to send, done, failed): conn.c moves the bytes. When
 * the handshake is done, records that arrived behind it are decrypted into the pending
 * plaintext, up to a record boundary, so that kTLS starts exactly where OpenSSL stopped.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent.h"

/* ---- the BIO between OpenSSL and a conn's buffers ------------------------------- */

static BIO_METHOD *conn_bio_method;

static int conn_bio_read(BIO *b, char *buf, int len)
{
	struct tls *t = BIO_get_data(b);
	uint32_t n = t->in_len - t->in_off;

	BIO_clear_retry_flags(b);
	if (!n) {
		BIO_set_retry_read(b);
		return -1;
	}
	if (n > (uint32_t)len)
		n = len;
	memcpy(buf, t->in + t->in_off, n);
	t->in_off += n;
	if (t->in_off == t->in_len)
		t->in_off = t->in_len = 0;
	return n;
}

static int conn_bio_write(BIO *b, const char *buf, int len)
{
	struct tls *t = BIO_get_data(b);
	uint32_t n = t->out ? TLS_BUF_SIZE - t->out_len : 0;

	BIO_clear_retry_flags(b);
	if (!n) {
		BIO_set_retry_write(b);
		return -1;
	}
	if (n > (uint32_t)len)
		n = len;
	memcpy(t->out + t->out_len, buf, n);
	t->out_len += n;
	return n;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls *t = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* the ring sends when OpenSSL stops */
	case BIO_CTRL_PENDING:
		return t->in_len - t->in_off;
	case BIO_CTRL_WPENDING:
		return t->out_len - t->out_off;
	default:
		return 0;
	}
}

static int conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

int handshake_init(void)
{
	conn_bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "danced conn");
	if (!conn_bio_method || !BIO_meth_set_read(conn_bio_method, conn_bio_read) ||
	    !BIO_meth_set_write(conn_bio_method, conn_bio_write) ||
	    !BIO_meth_set_ctrl(conn_bio_method, conn_bio_ctrl) ||
	    !BIO_meth_set_create(conn_bio_method, conn_bio_create))
		return -ENOMEM;
	return 0;
}

/* ---- TLS state: one SSL_CTX per service ----------------------------------------- */

/* "*.example.com" matches exactly one more label; everything is case-insensitive. */
static bool name_matches(const char *pattern, const char *name)
{
	const char *dot;

	if (pattern[0] != '*')
		return !strcasecmp(pattern, name);
	dot = strchr(name, '.');
	return dot && dot != name && !strcasecmp(pattern + 1, dot);
}

/* An exact name beats a wildcard (danced.conf(5)); names are unique across services. */
static struct svc *service_for_sni(struct state *st, const char *sni)
{
	int wild;
	size_t i, j;

	for (wild = 0; wild < 2; wild++) {
		for (i = 0; i < st->n_svcs; i++) {
			const struct svc_config *cfg = st->svcs[i].cfg;

			if (cfg->role != ROLE_SERVER)
				continue;
			for (j = 0; j < cfg->n_server_names; j++)
				if ((cfg->server_names[j][0] == '*') == wild &&
				    name_matches(cfg->server_names[j], sni))
					return &st->svcs[i];
		}
	}
	return st->default_server;
}

/* The host_name from a raw server_name extension (RFC 6066 section 3), or "". */
static void sni_of_hello(SSL *ssl, char *out, size_t max)
{
	const unsigned char *p;
	size_t len, n;

	out[0] = '\0';
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
		return;
	if ((size_t)(p[0] << 8 | p[1]) != len - 2 || p[2] != TLSEXT_NAMETYPE_host_name)
		return;
	n = p[3] << 8 | p[4];
	if (n == 0 || n + 5 > len || n >= max || memchr(p + 5, '\0', n))
		return;
	memcpy(out, p + 5, n);
	out[n] = '\0';
}

/*
 * OpenSSL's own default, for an SNI switch to a service that sets no groups: 3.5 names
 * it DEFAULT (X25519MLKEM768 first); 3.0 has no such word, so its built-in list.
 */
#if OPENSSL_VERSION_NUMBER >= 0x30500000L
#define DEFAULT_GROUPS "DEFAULT"
#else
#define DEFAULT_GROUPS "x25519:secp256r1:x448:secp521r1:secp384r1:ffdhe2048:ffdhe3072"
#endif

static bool same_string(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/*
 * Move an SSL from @from's context to @to's. SSL_set_SSL_CTX() switches certificate and
 * trust store only; versions and suites are copied when they differ, since parsing the
 * suite strings again is work most SNI switches (services with the defaults) need not do.
 */
static int apply_service(SSL *ssl, const struct svc *from, const struct svc *to)
{
	const struct svc_config *a = from->cfg, *b = to->cfg;

	if (!SSL_set_SSL_CTX(ssl, to->ctx))
		return -EIO;
	SSL_set_verify(ssl, SSL_CTX_get_verify_mode(to->ctx), SSL_CTX_get_verify_callback(to->ctx));
	if ((a->tls_min != b->tls_min && !SSL_set_min_proto_version(ssl, b->tls_min)) ||
	    (a->tls_max != b->tls_max && !SSL_set_max_proto_version(ssl, b->tls_max)) ||
	    (!same_string(a->ciphersuites, b->ciphersuites) &&
	     !SSL_set_ciphersuites(ssl, b->ciphersuites ?: KTLS_TLS13_CIPHERSUITES)) ||
	    (!same_string(a->ciphers, b->ciphers) &&
	     !SSL_set_cipher_list(ssl, b->ciphers ?: KTLS_TLS12_CIPHERS)) ||
	    (!same_string(a->groups, b->groups) &&
	     !SSL_set1_groups_list(ssl, b->groups ?: DEFAULT_GROUPS)))
		return -EIO;
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	/* The extensions are parsed after this callback: the new service's types count. */
	if ((a->n_client_cert_types != b->n_client_cert_types ||
	     memcmp(a->client_cert_types, b->client_cert_types, b->n_client_cert_types)) &&
	    !SSL_set1_client_cert_type(ssl, b->n_client_cert_types ? b->client_cert_types : NULL,
				       b->n_client_cert_types))
		return -EIO;
	if ((a->n_server_cert_types != b->n_server_cert_types ||
	     memcmp(a->server_cert_types, b->server_cert_types, b->n_server_cert_types)) &&
	    !SSL_set1_server_cert_type(ssl, b->n_server_cert_types ? b->server_cert_types : NULL,
				       b->n_server_cert_types))
		return -EIO;
#endif
	return 0;
}

/*
 * The first of @types (a service's RFC 7250 list, in its order) that the ClientHello's
 * extension @ext offers: its index; -ENOENT when it offers none of them; -ENODATA when
 * the client sent no well-formed extension (then OpenSSL's default, X.509, applies).
 */
static int offered_type(SSL *ssl, unsigned int ext, const uint8_t *types, size_t n)
{
	const unsigned char *p;
	size_t len, i;

	if (!n || !SSL_client_hello_get0_ext(ssl, ext, &p, &len) || !len || p[0] != len - 1)
		return -ENODATA;
	for (i = 0; i < n; i++)
		if (memchr(p + 1, types[i], len - 1))
			return i;
	return -ENOENT;
}

/*
 * RFC 7250 types, where the service names them: the service's order decides (OpenSSL
 * follows the client's), so the SSL is left with the one type to pick. A client whose
 * client_certificate_type list has nothing the service takes would get OpenSSL's bare
 * "bad extension": say what the operator can act on instead.
 */
static void cert_types_pick(SSL *ssl, struct tls *t)
{
	const struct svc_config *cfg = t->svc->cfg;
	int c = offered_type(ssl, 19 /* client_certificate_type */, cfg->client_cert_types,
			     cfg->n_client_cert_types);
	int s = offered_type(ssl, 20 /* server_certificate_type */, cfg->server_cert_types,
			     cfg->n_server_cert_types);

	if (c == -ENOENT) {
		fail_set(t->fail, -EACCES,
			 "cert-type: the client offers no client certificate type this service "
			 "takes (client_certificate_types = %s%s)",
			 cfg->client_cert_types[0] == DANCE_CERT_RPK ? "rpk" : "x509",
			 cfg->n_client_cert_types < 2		     ? "" :
			 cfg->client_cert_types[1] == DANCE_CERT_RPK ? ", rpk" :
								       ", x509");
		return;
	}
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	if (c >= 0)
		SSL_set1_client_cert_type(ssl, &cfg->client_cert_types[c], 1);
	if (s >= 0)
		SSL_set1_server_cert_type(ssl, &cfg->server_cert_types[s], 1);
#else
	(void)s;
#endif
}

/*
 * Pick the service by SNI before OpenSSL chooses a version or a certificate: the
 * servername callback would run too late for per-service version bounds.
 */
static int hello_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls *t = SSL_get_app_data(ssl);
	struct svc *s;
	char sni[DANCE_HOST_MAX];

	(void)arg;
	if (t->svc_fixed) {
		cert_types_pick(ssl, t);
		return SSL_CLIENT_HELLO_SUCCESS;
	}
	sni_of_hello(ssl, sni, sizeof(sni));
	s = service_for_sni(t->st, sni);
	if (!s) {
		fail_set(t->fail, -ENOENT,
			 "no service answers this SNI name and none is the default");
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (s != t->svc) {
		if (apply_service(ssl, t->svc, s)) {
			fail_set(t->fail, -EIO, "cannot switch to service %s for SNI",
				 s->cfg->name);
			*alert = SSL_AD_INTERNAL_ERROR;
			return SSL_CLIENT_HELLO_ERROR;
		}
		t->svc = s;
	}
	cert_types_pick(ssl, t);
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* Server preference: the first of our protocols that the client offers. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	struct tls *t = SSL_get_app_data(ssl);
	unsigned char *sel;

	(void)arg;
	if (!t->svc->alpn_len)
		return SSL_TLSEXT_ERR_NOACK;
	if (SSL_select_next_proto(&sel, outlen, t->svc->alpn_wire, t->svc->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED) {
		fail_set(t->fail, -EPROTO, "no ALPN protocol in common with the peer");
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1"; the config parser has bounded the lengths. */
static size_t alpn_wire(const char *list, uint8_t *out, size_t max)
{
	size_t n = 0;

	while (*list) {
		size_t len = strcspn(list, ",");

		if (len && len <= 255 && n + 1 + len <= max) {
			out[n++] = len;
			memcpy(out + n, list, len);
			n += len;
		}
		list += len;
		if (*list == ',')
			list++;
	}
	return n;
}

/* Refuse at load a suite that would only fail at offload: no silent downgrade later. */
static int check_offloadable(SSL_CTX *ctx, char *err, size_t errlen, const char *svc)
{
	STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(ctx);
	int i;

	for (i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
		const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);

		if (!ktls_cipher_supported(c)) {
			snprintf(
				err, errlen,
				"[service %s]: cipher %s cannot be offloaded to kTLS (use AES-GCM, "
				"AES-128-CCM or ChaCha20-Poly1305 suites)",
				svc, SSL_CIPHER_get_name(c));
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * RFC 7250 certificate types, only where the operator named them: unset, OpenSSL neither
 * sends nor answers the extensions, which is plain X.509. Raw public keys need 3.2.
 */
static int cert_types_set(SSL_CTX *ctx, const struct svc_config *cfg, char *err, size_t errlen)
{
	bool rpk = memchr(cfg->client_cert_types, DANCE_CERT_RPK, cfg->n_client_cert_types) ||
		   memchr(cfg->server_cert_types, DANCE_CERT_RPK, cfg->n_server_cert_types);

#if OPENSSL_VERSION_NUMBER >= 0x30200000L
	(void)rpk;
	if ((cfg->n_client_cert_types &&
	     !SSL_CTX_set1_client_cert_type(ctx, cfg->client_cert_types,
					    cfg->n_client_cert_types)) ||
	    (cfg->n_server_cert_types &&
	     !SSL_CTX_set1_server_cert_type(ctx, cfg->server_cert_types,
					    cfg->n_server_cert_types))) {
		snprintf(err, errlen, "[service %s]: OpenSSL refuses the certificate types",
			 cfg->name);
		ERR_clear_error();
		return -EINVAL;
	}
#else
	(void)ctx;
	if (rpk) {
		snprintf(err, errlen,
			 "[service %s]: raw public keys (rpk) need OpenSSL 3.2 or later; this "
			 "danced was built with %s",
			 cfg->name, OPENSSL_VERSION_TEXT);
		return -EOPNOTSUPP;
	}
#endif
	return 0;
}

static int svc_init(struct svc *s, struct state *st, const struct svc_config *cfg, char *err,
		    size_t errlen)
{
	bool server = cfg->role == ROLE_SERVER;
	const char *step;
	SSL_CTX *ctx;
	int ret = -EINVAL;

	s->cfg = cfg;
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	step = "cannot create an OpenSSL context";
	if (!ctx)
		goto fail;
	step = "tls_min/tls_max";
	if (!SSL_CTX_set_min_proto_version(ctx, cfg->tls_min) ||
	    !SSL_CTX_set_max_proto_version(ctx, cfg->tls_max))
		goto fail;
	step = "ciphersuites";
	if (!SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites ?: KTLS_TLS13_CIPHERSUITES))
		goto fail;
	step = "ciphers";
	if (!SSL_CTX_set_cipher_list(ctx, cfg->ciphers ?: KTLS_TLS12_CIPHERS))
		goto fail;
	ret = cert_types_set(ctx, cfg, err, errlen);
	if (ret)
		goto out_free;
	ret = -EINVAL;
	/* kTLS never sees the key exchange: any group OpenSSL has will do. */
	step = "groups (a name OpenSSL does not know, or none it can use)";
	if (cfg->groups && !SSL_CTX_set1_groups_list(ctx, cfg->groups))
		goto fail;
	if (check_offloadable(ctx, err, errlen, cfg->name))
		goto out_free;
	if (cfg->certificate) {
		step = "certificate (cannot read it, or it is not PEM)";
		if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certificate) != 1)
			goto fail;
		step = "key (cannot read it, it is not PEM, or it does not match the certificate)";
		if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(ctx) != 1)
			goto fail;
	}
	ret = verify_setup_ctx(ctx, cfg, err, errlen) ?:
		      verify_ext_add(ctx, st->cfg, server, err, errlen);
	if (ret)
		goto out_free;
	ret = -EINVAL;
	/*
	 * No resumption at all: every connection is authenticated afresh (a ticket would skip
	 * the DANE re-check), and nothing arrives after offload that the server must parse.
	 */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/*
	 * OpenSSL's record buffers (about 17 KB each way) go back while empty: a handshake
	 * waiting for its peer then holds none. Our BIO feeds whole flights, so they are
	 * empty between flights. The server's own chain is sent as configured, never built
	 * per handshake.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
	s->alpn_len = alpn_wire(cfg->alpn, s->alpn_wire, sizeof(s->alpn_wire));
	if (server) {
		SSL_CTX_set_client_hello_cb(ctx, hello_cb, st);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
	}
	step = "kTLS preparation";
	if (ktls_ctx_prepare(ctx))
		goto fail;
	s->ctx = ctx;
	return 0;
fail:
	snprintf(err, errlen, "[service %s]: %s: %s", cfg->name, step,
		 ERR_reason_error_string(ERR_peek_last_error()) ?: "OpenSSL failed");
	ERR_clear_error();
out_free:
	SSL_CTX_free(ctx);
	return ret;
}

/**
 * state_new - build the TLS state for a loaded configuration
 * @cfg: owned by the state from now on, also on failure
 * @err: on failure, which service and what went wrong
 *
 * Return: 0, -ENOMEM, or -EINVAL when a certificate, key, CA file or suite is unusable.
 */
int state_new(struct config *cfg, struct state **out, char *err, size_t errlen)
{
	struct state *st = calloc(1, sizeof(*st));
	size_t i;
	int ret = -ENOMEM;

	if (!st) {
		config_free(cfg);
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	atomic_init(&st->refs, 1);
	st->cfg = cfg;
	/* verify_dane_match() drives OpenSSL's DANE verifier from scratch SSLs of this context. */
	st->dane_ctx = SSL_CTX_new(TLS_method());
	if (!st->dane_ctx || SSL_CTX_dane_enable(st->dane_ctx) <= 0) {
		snprintf(err, errlen, "cannot set up OpenSSL's DANE verifier");
		ret = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < cfg->n_svcs; i++) {
		ret = svc_init(&st->svcs[i], st, &cfg->svcs[i], err, errlen);
		if (ret)
			goto fail;
		st->n_svcs++;
		if (cfg->svcs[i].role == ROLE_SERVER && cfg->svcs[i].is_default)
			st->default_server = &st->svcs[i];
	}
	*out = st;
	return 0;
fail:
	state_put(st);
	return ret;
}

void state_put(struct state *st)
{
	size_t i;

	if (!st || atomic_fetch_sub(&st->refs, 1) != 1)
		return;
	for (i = 0; i < st->n_svcs; i++)
		SSL_CTX_free(st->svcs[i].ctx);
	SSL_CTX_free(st->dane_ctx);
	config_free(st->cfg);
	free(st);
}

/* A reference to the current state; the lock only guards the pointer's swap. */
struct state *state_get(struct agent *a)
{
	struct state *st;

	pthread_mutex_lock(&a->state_lock);
	st = a->state;
	atomic_fetch_add(&st->refs, 1);
	pthread_mutex_unlock(&a->state_lock);
	return st;
}

void state_swap(struct agent *a, struct state *st)
{
	struct state *old;

	pthread_mutex_lock(&a->state_lock);
	old = a->state;
	a->state = st;
	pthread_mutex_unlock(&a->state_lock);
	state_put(old);
}

struct svc *state_service(struct state *st, const char *name)
{
	size_t i;

	for (i = 0; i < st->n_svcs; i++)
		if (!strcmp(st->svcs[i].cfg->name, name))
			return &st->svcs[i];
	return NULL;
}

/**
 * state_pick - the service a request starts with
 *
 * A request may name its service; otherwise the server role starts from the default
 * service (or any server service) and the ClientHello's SNI then picks the one that
 * answers (hello_cb()), and the client role takes the first client service.
 *
 * Return: the service, or NULL with @f saying why (-ENOENT, -EINVAL).
 */
struct svc *state_pick(struct state *st, const struct dance_request *req, struct fail *f)
{
	bool client = req->flags & DANCE_REQ_CLIENT;
	struct svc *s = NULL;
	size_t i;

	if (req->service[0]) {
		s = state_service(st, req->service);
		if (!s) {
			fail_set(f, -ENOENT, "no service named '%s' in %s", req->service,
				 st->cfg->path);
			return NULL;
		}
		if ((s->cfg->role == ROLE_CLIENT) != client) {
			fail_set(f, -EINVAL,
				 "service '%s' is a %s service; the request is for the %s role",
				 req->service, client ? "server" : "client",
				 client ? "client" : "server");
			return NULL;
		}
		return s;
	}
	s = client ? NULL : st->default_server;
	for (i = 0; i < st->n_svcs && !s; i++)
		if ((st->svcs[i].cfg->role == ROLE_CLIENT) == client)
			s = &st->svcs[i];
	if (!s)
		fail_set(f, -ENOENT, "%s",
			 client ? "no client service is configured" :
				  "no server service is configured");
	return s;
}

/* ---- one handshake --------------------------------------------------------------- */

/* Follow record boundaries in everything received, so the drain knows where one ends. */
static void rec_feed(struct rec_track *rt, const uint8_t *p, size_t n)
{
	while (n) {
		if (rt->body_left) {
			size_t k = n < rt->body_left ? n : rt->body_left;

			rt->body_left -= k;
			p += k;
			n -= k;
			continue;
		}
		rt->hdr[rt->hdr_len++] = *p++;
		n--;
		if (rt->hdr_len == 5) {
			rt->body_left = rt->hdr[3] << 8 | rt->hdr[4];
			rt->hdr_len = 0;
		}
	}
}

/* Bytes still missing to complete the record in progress (0 at a boundary). */
static size_t rec_missing(const struct rec_track *rt)
{
	if (rt->hdr_len)
		return 5 - rt->hdr_len; /* then the body, whose length we learn next */
	return rt->body_left;
}

/* @n bytes arrived at t->in + t->in_len. */
void tls_received(struct tls *t, size_t n)
{
	rec_feed(&t->rt, t->in + t->in_len, n);
	t->in_len += n;
}

/**
 * tls_client_tlsa_name - where the server's TLSA RRset lives: _PORT._tcp.HOST (RFC 6698
 * section 3), lower case, without a trailing dot
 */
const char *tls_client_tlsa_name(const struct tls *t, const struct sockaddr_storage *peer,
				 char *out, size_t max)
{
	int port = peer->ss_family == AF_INET6 ?
			   ntohs(((const struct sockaddr_in6 *)peer)->sin6_port) :
			   ntohs(((const struct sockaddr_in *)peer)->sin_port);
	size_t i, n;

	snprintf(out, max, "_%d._tcp.%s", port, t->peer_name);
	n = strlen(out);
	if (n && out[n - 1] == '.')
		out[--n] = '\0';
	for (i = 0; i < n; i++)
		out[i] = tolower((unsigned char)out[i]);
	return out;
}

/**
 * tls_begin - create the SSL for a socket danced holds, and put the tls ULP on it
 *
 * The ULP goes on now, while the socket is surely ESTABLISHED (see ktls_attach_ulp()).
 *
 * Return: 0, or a negative errno with @f saying why: -ENOMEM, -EALREADY when the socket
 * already carries an upper-layer protocol, or the ULP's own errno.
 */
/*
 * A kernel PSK request's key as a session (RFC 8446 section 4.2.11): its hash follows its
 * length, SHA-384 for 48 bytes (as NVMe's retained PSKs), SHA-256 otherwise.
 */
static SSL_SESSION *psk_session(SSL *ssl, const struct tls *t)
{
	static const unsigned char s256[2] = { 0x13, 0x01 }, s384[2] = { 0x13, 0x02 };
	const SSL_CIPHER *c = SSL_CIPHER_find(ssl, t->psk_len == 48 ? s384 : s256);
	SSL_SESSION *s = c ? SSL_SESSION_new() : NULL;

	if (s &&
	    (!SSL_SESSION_set1_master_key(s, t->psk, t->psk_len) || !SSL_SESSION_set_cipher(s, c) ||
	     !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION))) {
		SSL_SESSION_free(s);
		s = NULL;
	}
	return s;
}

/* Client: offer the request's PSK (again after a HelloRetryRequest, if its hash fits). */
static int psk_use(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
		   SSL_SESSION **sess)
{
	struct tls *t = SSL_get_app_data(ssl);
	SSL_SESSION *s = psk_session(ssl, t);

	if (!s)
		return 0;
	if (md && EVP_MD_get_type(md) != EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(
						 SSL_SESSION_get0_cipher(s)))) {
		SSL_SESSION_free(s);
		*sess = NULL;
		return 1;
	}
	*sess = s;
	*id = (const unsigned char *)t->psk_identity;
	*idlen = strlen(t->psk_identity);
	return 1;
}

/* Server: the request's PSK, for the client that names its identity; nobody else's. */
static int psk_find(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess)
{
	struct tls *t = SSL_get_app_data(ssl);

	*sess = NULL;
	if (idlen != strlen(t->psk_identity) || memcmp(id, t->psk_identity, idlen))
		return 1;
	*sess = psk_session(ssl, t);
	return *sess ? 1 : 0;
}

/*
 * A kernel request's own terms: TLS 1.3, as the kernel's consumers and tlshd expect, and
 * the certificate and key the request named, or none for an anonymous client, or a
 * pre-shared key and no certificate at all.
 */
static int tls_begin_kernel(struct tls *t, struct fail *f)
{
	if (!SSL_set_min_proto_version(t->ssl, TLS1_3_VERSION))
		return fail_set(f, -ENOMEM, "out of memory for the TLS session");
	if (t->psk) {
		/*
		 * The key authenticates both ends; certificates are not asked for. Only
		 * suites of the key's hash can use it: a server that picked another would
		 * ignore the key and fall back to its certificate.
		 */
		SSL_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
		if (!SSL_set_ciphersuites(t->ssl, t->psk_len == 48 ?
							  "TLS_AES_256_GCM_SHA384" :
							  "TLS_AES_128_GCM_SHA256:"
							  "TLS_CHACHA20_POLY1305_SHA256"))
			return fail_set(f, -ENOMEM, "out of memory for the TLS session");
		if (t->client)
			SSL_set_psk_use_session_callback(t->ssl, psk_use);
		else
			SSL_set_psk_find_session_callback(t->ssl, psk_find);
		return 0;
	}
	if (t->no_own_cert) {
		SSL_certs_clear(t->ssl);
		return 0;
	}
	if (!t->own_cert)
		return 0;
	if (SSL_use_certificate(t->ssl, t->own_cert) != 1 ||
	    SSL_use_PrivateKey(t->ssl, t->own_key) != 1 || SSL_check_private_key(t->ssl) != 1) {
		ERR_clear_error();
		return fail_set(f, -EKEYREJECTED,
				"the certificate and private key the kernel's request named do not"
				" belong together, or OpenSSL cannot use them");
	}
	return 0;
}

int tls_begin(struct tls *t, int fd, struct fail *f)
{
	const struct svc_config *cfg = t->svc->cfg;
	const char *why;
	BIO *bio;
	int ret;

	t->ssl = SSL_new(t->svc->ctx);
	bio = BIO_new(conn_bio_method);
	if (!t->ssl || !bio) {
		BIO_free(bio);
		return fail_set(f, -ENOMEM, "out of memory for the TLS session");
	}
	BIO_set_data(bio, t);
	SSL_set_bio(t->ssl, bio, bio);
	SSL_set_app_data(t->ssl, t);
	if (ktls_conn_attach(&t->kc, t->ssl))
		return fail_set(f, -ENOMEM, "out of memory for the TLS session");
	if (t->kernel) {
		ret = tls_begin_kernel(t, f);
		if (ret)
			return ret;
	}
	/*
	 * Post-handshake authentication needs the transcript: a server keeps it for
	 * clients that offer it; a client with a certificate offers it, and keeps it.
	 */
	if (exported_enabled()) {
		if (t->client && SSL_CTX_get0_certificate(t->svc->ctx))
			SSL_set_post_handshake_auth(t->ssl, 1);
		ktls_transcript_want(&t->kc);
	}
	ret = ktls_attach_ulp(&t->kc, fd, &why);
	if (ret == -EEXIST)
		return fail_set(f, -EALREADY,
				"the socket already carries an upper-layer "
				"protocol (kTLS installed before?)");
	if (ret)
		return fail_set(f, ret, "%s", why);
	if (!t->client) {
		SSL_set_accept_state(t->ssl);
		return 0;
	}
	{
		const char *alpn = t->peer_alpn && t->peer_alpn[0] ? t->peer_alpn : cfg->alpn;
		uint8_t wire[DANCE_ALPN_MAX + 1];
		size_t n = alpn_wire(alpn, wire, sizeof(wire));

		SSL_set_connect_state(t->ssl);
		/* A kernel request may name no peer (verify = none then): no SNI. */
		if ((t->peer_name[0] && !SSL_set_tlsext_host_name(t->ssl, t->peer_name)) ||
		    (cfg->verify == VERIFY_REQUIRED && !SSL_set1_host(t->ssl, t->peer_name)) ||
		    (n && SSL_set_alpn_protos(t->ssl, wire, n)))
			return fail_set(f, -ENOMEM, "out of memory for the TLS session");
	}
	return 0;
}

/**
 * tls_client_dane - client role, before the handshake: what the server's TLSA records
 * say decides how OpenSSL verifies it (RFC 6698/7671)
 *
 * verify = dane needs secure usable records; dane-or-pkix falls back to PKIX when the
 * zone is insecure or has none usable. A DNS failure fails either way.
 *
 * Return: 0, -EACCES (or the answer's status) with @f saying why, or -ENOMEM.
 */
int tls_client_dane(struct tls *t, const struct tlsa_set *set, struct fail *f)
{
	const struct svc_config *cfg = t->svc->cfg;
	bool fallback = cfg->verify == VERIFY_DANE_OR_PKIX;
	size_t off = 0;
	const uint8_t *rd;
	uint16_t len;
	int usable = 0;

	if (set->outcome == TLSA_FAILURE || (set->outcome != TLSA_SECURE && !fallback))
		return fail_set(f, set->status ?: -EACCES, "%s", set->why);
	if (set->outcome == TLSA_SECURE) {
		if (SSL_dane_enable(t->ssl, t->peer_name) <= 0)
			return fail_set(f, -ENOMEM, "out of memory for DANE");
		SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
		while (!tlsa_next(set, &off, &rd, &len))
			if (len >= 3 &&
			    SSL_dane_tlsa_add(t->ssl, rd[0], rd[1], rd[2], rd + 3, len - 3) > 0)
				usable++;
		ERR_clear_error();
		if (!usable && !fallback)
			return fail_set(f, -EACCES,
					"tlsa-unusable: none of the server's TLSA "
					"records is usable");
	}
	if (!usable && !SSL_set1_host(t->ssl, t->peer_name))
		return fail_set(f, -ENOMEM, "out of memory for the TLS session");
	SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
	return 0;
}

/* Why OpenSSL gave up, unless a callback already said it better. */
static enum verdict tls_failed(struct tls *t)
{
	int status = -EPROTO;
	const char *why = verify_failure(t->ssl, t->svc->cfg, &status);

	fail_set(t->fail, status, "%s", why);
	ERR_clear_error();
	return V_FAIL;
}

/**
 * tls_handshake - advance the handshake with what the buffers hold
 *
 * Return: V_DONE when the handshake is complete; V_READ (t->want bytes at most) or
 * V_WRITE (t->out holds the flight; the read comes after it is sent); V_FAIL with
 * t->fail set, and maybe an alert from OpenSSL in t->out to send first.
 */
enum verdict tls_handshake(struct tls *t)
{
	int ret = SSL_do_handshake(t->ssl), err;

	if (ret == 1)
		return V_DONE;
	err = SSL_get_error(t->ssl, ret);
	if (err == SSL_ERROR_WANT_READ && t->out_len == t->out_off) {
		size_t rec = rec_missing(&t->rt) ?: 5;

		t->want = TLS_BUF_SIZE - t->in_len;
		/* Never a byte past the record in progress (a header, at a boundary). */
		if (t->kernel && rec < t->want)
			t->want = rec;
		return V_READ;
	}
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return V_WRITE;
	return tls_failed(t);
}

/* Plaintext that came behind the handshake, kept for the result (rarely any at all). */
static int pending_add(struct tls *t, const uint8_t *p, size_t n)
{
	uint32_t cap = t->pending_cap;
	uint8_t *b;

	if (t->pending_len + n > DANCE_PENDING_MAX)
		return fail_set(t->fail, -EMSGSIZE, "more data behind the handshake than fits");
	if (t->pending_len + n > cap) {
		cap = cap ? 2 * cap : 4096;
		while (cap < t->pending_len + n)
			cap *= 2;
		if (cap > DANCE_PENDING_MAX)
			cap = DANCE_PENDING_MAX;
		b = malloc(cap);
		if (!b)
			return fail_set(t->fail, -ENOMEM,
					"out of memory for data behind the "
					"handshake");
		if (t->pending) {
			memcpy(b, t->pending, t->pending_len);
			OPENSSL_cleanse(t->pending, t->pending_len);
			free(t->pending);
		}
		t->pending = b;
		t->pending_cap = cap;
	}
	memcpy(t->pending + t->pending_len, p, n);
	t->pending_len += n;
	return 0;
}

/**
 * tls_drain - the handshake is done: decrypt what came behind it, to a record boundary
 * @scratch: TLS_RECORD_PLAIN_MAX bytes the worker lends for one record
 *
 * The kernel then continues from the next record, so nothing is lost or read twice.
 *
 * Return: V_DONE at a record boundary with everything sent; V_READ for exactly the rest
 * of a record that arrived in part; V_WRITE for what OpenSSL wrote meanwhile (a KeyUpdate
 * answer, TLS 1.2 Finished); V_FAIL with t->fail set.
 */
enum verdict tls_drain(struct tls *t, uint8_t *scratch)
{
	size_t missing;
	int n, err;

	for (;;) {
		if (t->in_len > t->in_off || SSL_pending(t->ssl) > 0) {
			n = SSL_read(t->ssl, scratch, TLS_RECORD_PLAIN_MAX);
			if (n > 0) {
				err = pending_add(t, scratch, n);
				OPENSSL_cleanse(scratch, n);
				if (err)
					return V_FAIL;
				continue;
			}
			err = SSL_get_error(t->ssl, n);
			if (err == SSL_ERROR_ZERO_RETURN) {
				/* close_notify: nothing after it counts. */
				t->peer_closed = true;
				t->in_off = t->in_len = 0;
				break;
			}
			if (err == SSL_ERROR_WANT_WRITE)
				return V_WRITE;
			if (err != SSL_ERROR_WANT_READ) {
				ERR_clear_error();
				fail_set(t->fail, -EPROTO,
					 "a record received right after the "
					 "handshake is invalid");
				return V_FAIL;
			}
		}
		missing = rec_missing(&t->rt);
		if (!missing)
			break;
		/* Half a record: fetch exactly the rest, never a byte of the next one. */
		t->want = missing < TLS_BUF_SIZE - t->in_len ? missing : TLS_BUF_SIZE - t->in_len;
		return V_READ;
	}
	/* Whatever OpenSSL wrote meanwhile goes out before the kernel takes over. */
	if (t->out_len > t->out_off)
		return V_WRITE;
	return V_DONE;
}

/* Fill in what the result says about the finished session. */
void tls_describe(struct tls *t, struct dance_result *r)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(t->ssl);
	const unsigned char *alpn;
	unsigned int alpn_len;
	const char *sni;

	r->tls_version = SSL_version(t->ssl);
	if (cipher) {
		r->cipher = SSL_CIPHER_get_protocol_id(cipher);
		snprintf(r->cipher_name, sizeof(r->cipher_name), "%s",
			 SSL_CIPHER_standard_name(cipher) ?: SSL_CIPHER_get_name(cipher));
	}
	/* Also the names of groups with no NID, such as the hybrid X25519MLKEM768. */
	snprintf(r->group, sizeof(r->group), "%s",
		 SSL_group_to_name(t->ssl, SSL_get_negotiated_group(t->ssl)) ?: "");
	SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
	if (alpn_len && alpn_len < sizeof(r->alpn)) { /* none: alpn is NULL */
		memcpy(r->alpn, alpn, alpn_len);
		r->alpn[alpn_len] = '\0';
	}
	sni = t->client ? t->peer_name : SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
	snprintf(r->sni, sizeof(r->sni), "%s", sni ?: "");
	verify_identity(t, r);
}

/* The session is over for danced: its SSL and secrets go; pending plaintext stays. */
void tls_end(struct tls *t)
{
	SSL_free(t->ssl);
	t->ssl = NULL;
	ktls_conn_wipe(&t->kc);
}
