// SPDX-License-Identifier: GPL-2.0
/*
 * handshake.c - the TLS handshake of one conn, driven by ring I/O; and the TLS state
 * (one SSL_CTX per service) that reload replaces.
 *
 * Receives a conn whose socket danced now holds; OpenSSL reads and writes the conn's
 * own buffers through a BIO that never touches the socket, and the ring moves the
 * bytes. When the handshake is done, records that arrived behind it are decrypted into
 * the result's pending bytes, up to a record boundary, so that kTLS starts exactly
 * where OpenSSL stopped; then ktls.c takes over and conn_finish() answers.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "agent.h"

/* ---- the BIO between OpenSSL and a conn's buffers ------------------------------- */

static BIO_METHOD *conn_bio_method;

static int conn_bio_read(BIO *b, char *buf, int len)
{
	struct conn *c = BIO_get_data(b);
	uint32_t n = c->in_len - c->in_off;

	BIO_clear_retry_flags(b);
	if (!n) {
		BIO_set_retry_read(b);
		return -1;
	}
	if (n > (uint32_t)len)
		n = len;
	memcpy(buf, c->in + c->in_off, n);
	c->in_off += n;
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	return n;
}

static int conn_bio_write(BIO *b, const char *buf, int len)
{
	struct conn *c = BIO_get_data(b);
	uint32_t n = sizeof(c->out) - c->out_len;

	BIO_clear_retry_flags(b);
	if (!n) {
		BIO_set_retry_write(b);
		return -1;
	}
	if (n > (uint32_t)len)
		n = len;
	memcpy(c->out + c->out_len, buf, n);
	c->out_len += n;
	return n;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct conn *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* the ring sends when OpenSSL stops */
	case BIO_CTRL_PENDING:
		return c->in_len - c->in_off;
	case BIO_CTRL_WPENDING:
		return c->out_len - c->out_off;
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

static int apply_service(SSL *ssl, const struct svc *s)
{
	const struct svc_config *cfg = s->cfg;

	if (!SSL_set_SSL_CTX(ssl, s->ctx))
		return -EIO;
	/* SSL_set_SSL_CTX() switches certificate and trust store, not these. */
	SSL_set_verify(ssl, SSL_CTX_get_verify_mode(s->ctx), SSL_CTX_get_verify_callback(s->ctx));
	if (!SSL_set_min_proto_version(ssl, cfg->tls_min) ||
	    !SSL_set_max_proto_version(ssl, cfg->tls_max) ||
	    !SSL_set_ciphersuites(ssl, cfg->ciphersuites ?: KTLS_TLS13_CIPHERSUITES) ||
	    !SSL_set_cipher_list(ssl, cfg->ciphers ?: KTLS_TLS12_CIPHERS))
		return -EIO;
	return 0;
}

/*
 * Pick the service by SNI before OpenSSL chooses a version or a certificate: the
 * servername callback would run too late for per-service version bounds.
 */
static int hello_cb(SSL *ssl, int *alert, void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);
	struct svc *s;
	char sni[DANCE_HOST_MAX];

	(void)arg;
	if (c->svc_fixed)
		return SSL_CLIENT_HELLO_SUCCESS;
	sni_of_hello(ssl, sni, sizeof(sni));
	s = service_for_sni(c->st, sni);
	if (!s) {
		c->fail_status = -ENOENT;
		c->fail_reason = "no service answers this SNI name and none is the default";
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (s != c->svc) {
		if (apply_service(ssl, s)) {
			*alert = SSL_AD_INTERNAL_ERROR;
			return SSL_CLIENT_HELLO_ERROR;
		}
		c->svc = s;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* Server preference: the first of our protocols that the client offers. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	struct conn *c = SSL_get_app_data(ssl);
	unsigned char *sel;

	(void)arg;
	if (!c->svc->alpn_len)
		return SSL_TLSEXT_ERR_NOACK;
	if (SSL_select_next_proto(&sel, outlen, c->svc->alpn_wire, c->svc->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED) {
		c->fail_status = -EPROTO;
		c->fail_reason = "no ALPN protocol in common with the peer";
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
	/* verify_dane() drives OpenSSL's DANE verifier from scratch SSLs of this context. */
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

int state_swap(struct agent *a, struct state *st)
{
	struct state *old;

	pthread_mutex_lock(&a->state_lock);
	old = a->state;
	a->state = st;
	pthread_mutex_unlock(&a->state_lock);
	state_put(old);
	return 0;
}

struct svc *state_service(struct state *st, const char *name)
{
	size_t i;

	for (i = 0; i < st->n_svcs; i++)
		if (!strcmp(st->svcs[i].cfg->name, name))
			return &st->svcs[i];
	return NULL;
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

void handshake_received(struct conn *c, size_t n)
{
	rec_feed(&c->rt, c->in + c->in_len, n);
	c->in_len += n;
}

/* The server's TLSA RRset lives at _PORT._tcp.HOST (RFC 6698 section 3). */
static int client_dane_lookup(struct conn *c)
{
	char qname[DANCE_HOST_MAX + 16], name[DANCE_HOST_MAX + 16];
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	size_t i, n;
	int port, ret;

	if (getpeername(c->fd, (struct sockaddr *)&ss, &len))
		return -errno;
	port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
					  ntohs(((struct sockaddr_in *)&ss)->sin_port);
	snprintf(qname, sizeof(qname), "_%d._tcp.%s", port, c->peer_name);
	n = strlen(qname);
	if (n && qname[n - 1] == '.')
		qname[--n] = '\0';
	for (i = 0; i <= n; i++)
		name[i] = tolower((unsigned char)qname[i]);
	c->phase = PHASE_LOOKUP;
	ret = conn_wait_dns(c, name);
	if (ret == -EINPROGRESS)
		return 0;
	if (!ret)
		handshake_dns_done(c, false);
	else
		conn_finish(c, ret, c->why);
	return 0;
}

/**
 * handshake_start - create the SSL for a conn and take the first step
 *
 * Return: 0 (the conn is now driven by ring completions, and will finish on its own),
 * or -ENOMEM when OpenSSL cannot allocate; the caller then finishes the conn.
 */
int handshake_start(struct conn *c)
{
	const struct svc_config *cfg = c->svc->cfg;
	const char *why;
	BIO *bio;
	int ret;

	c->ssl = SSL_new(c->svc->ctx);
	bio = BIO_new(conn_bio_method);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		return -ENOMEM;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	if (ktls_conn_attach(&c->kc, c->ssl))
		return -ENOMEM;
	/* Now, while the socket is surely ESTABLISHED (see ktls_attach_ulp()). */
	ret = ktls_attach_ulp(&c->kc, c->fd, &why);
	if (ret) {
		c->touched = true; /* the socket now carries the ULP: never hand it back */
		conn_finish(c, ret, why);
		return 0;
	}
	if (cfg->role == ROLE_CLIENT) {
		const char *alpn = c->alpn[0] ? c->alpn : cfg->alpn;
		uint8_t wire[DANCE_ALPN_MAX + 1];
		size_t n = alpn_wire(alpn, wire, sizeof(wire));

		SSL_set_connect_state(c->ssl);
		if (!SSL_set_tlsext_host_name(c->ssl, c->peer_name) ||
		    (cfg->verify == VERIFY_REQUIRED && !SSL_set1_host(c->ssl, c->peer_name)) ||
		    (n && SSL_set_alpn_protos(c->ssl, wire, n)))
			return -ENOMEM;
		if (cfg->verify == VERIFY_DANE || cfg->verify == VERIFY_DANE_OR_PKIX)
			return client_dane_lookup(c);
	} else {
		SSL_set_accept_state(c->ssl);
	}
	handshake_step(c);
	return 0;
}

static void handshake_failed(struct conn *c)
{
	int status = c->fail_status ?: -EPROTO;
	const char *why = c->fail_reason ?: verify_failure(c->ssl, c->svc->cfg, &status);

	ERR_clear_error();
	/* The text may live in a per-thread buffer that the next failure reuses. */
	if (why != c->why)
		snprintf(c->why, sizeof(c->why), "%s", why);
	/* OpenSSL wrote its alert into our buffer: let the peer see why, then answer. */
	c->fail_status = status;
	c->fail_reason = c->why;
	if (c->out_len > c->out_off) {
		c->phase = PHASE_ALERT;
		conn_submit_send(c);
		return;
	}
	conn_finish(c, status, why);
}

/*
 * Refuse a client after the handshake (DANE decides after it, with kTLS installed): the
 * draft's one generic alert, handshake_failure, through the kernel's send key, then the
 * specific reason to the server. OpenSSL 3.0 cannot send an alert of our choosing once
 * its handshake is done, and a server cannot pause verification for a DNS lookup.
 */
static void handshake_reject(struct conn *c, int status, const char *why)
{
	int ret = ktls_send_alert(c->fd, SSL3_AL_FATAL, SSL_AD_HANDSHAKE_FAILURE);

	if (ret)
		log_debug("id=%llu could not send handshake_failure to the client: %s",
			  (unsigned long long)c->id, strerror(-ret));
	c->touched = true;
	conn_finish(c, status, why);
}

/*
 * Everything is decrypted and sent: the kernel takes over the records, and then, for a
 * DANE service, the DNS decides. kTLS goes in first because the kernel refuses it once
 * the peer's FIN has arrived (tls_init() wants TCP_ESTABLISHED), and a lookup can take
 * long enough for a client to finish talking; meanwhile the kernel holds what arrives,
 * and the server sees nothing until the client is authenticated.
 */
static void handshake_offload(struct conn *c)
{
	const char *why = NULL;
	int ret;

	if (!c->offloaded) {
		ret = ktls_install(&c->kc, c->ssl, c->fd, &why);
		if (ret == -ENOTCONN)
			why = "the peer closed the connection right after the handshake, before "
			      "kTLS could be installed";
		if (ret) {
			conn_finish(c, ret, why);
			return;
		}
		c->offloaded = true;
	}
	if (!c->dane_done && c->svc->cfg->role == ROLE_SERVER && c->svc->cfg->dane != DANE_OFF) {
		c->phase = PHASE_DANE;
		ret = verify_dane_start(c);
		if (ret == -EINPROGRESS)
			return;
		if (ret) {
			handshake_reject(c, ret, c->why);
			return;
		}
	}
	conn_finish(c, 0, "ok");
}

/*
 * Client role, before the handshake: what the server's TLSA records say decides how
 * OpenSSL verifies it (RFC 6698/7671). verify = dane needs secure usable records;
 * dane-or-pkix falls back to PKIX when the zone is insecure or has none usable. A DNS
 * failure fails either way.
 */
static int client_dane_setup(struct conn *c)
{
	const struct svc_config *cfg = c->svc->cfg;
	bool fallback = cfg->verify == VERIFY_DANE_OR_PKIX;
	size_t off = 0;
	const uint8_t *rd;
	uint16_t len;
	int usable = 0;

	if (c->tlsa.outcome == TLSA_FAILURE || (c->tlsa.outcome != TLSA_SECURE && !fallback)) {
		snprintf(c->why, sizeof(c->why), "%s", c->tlsa.why);
		return c->tlsa.status ?: -EACCES;
	}
	if (c->tlsa.outcome == TLSA_SECURE) {
		if (SSL_dane_enable(c->ssl, c->peer_name) <= 0)
			return -ENOMEM;
		SSL_dane_set_flags(c->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
		while (!tlsa_next(&c->tlsa, &off, &rd, &len))
			if (len >= 3 &&
			    SSL_dane_tlsa_add(c->ssl, rd[0], rd[1], rd[2], rd + 3, len - 3) > 0)
				usable++;
		ERR_clear_error();
		if (!usable && !fallback) {
			snprintf(c->why, sizeof(c->why),
				 "tlsa-unusable: none of the server's TLSA records is usable");
			return -EACCES;
		}
	}
	if (!usable && !SSL_set1_host(c->ssl, c->peer_name))
		return -ENOMEM;
	SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	return 0;
}

/* The TLSA answer (or the deadline) for a conn that waited; runs on its worker. */
void handshake_dns_done(struct conn *c, bool timed_out)
{
	int ret;

	if (timed_out)
		snprintf(c->why, sizeof(c->why),
			 "dns-timeout: no answer to the TLSA lookup within the handshake deadline");
	if (c->phase == PHASE_DANE) {
		ret = timed_out ? -ETIMEDOUT : verify_dane_verdict(c);
		if (ret)
			handshake_reject(c, ret, c->why);
		else
			handshake_offload(c);
		return;
	}
	/* PHASE_LOOKUP: the client role's look at the server, before any TLS byte. */
	ret = timed_out ? -ETIMEDOUT : client_dane_setup(c);
	if (ret) {
		conn_finish(c, ret, c->why);
		return;
	}
	c->phase = PHASE_HANDSHAKE;
	handshake_step(c);
}

/*
 * The handshake is done. Records that came in behind it are decrypted into the result
 * now, up to a record boundary; the kernel then continues from the next record.
 */
static void handshake_drain(struct conn *c)
{
	struct dance_result *r = c->res;
	size_t missing;
	int n, err;

	for (;;) {
		if (c->in_len > c->in_off || SSL_pending(c->ssl) > 0) {
			n = SSL_read(c->ssl, r->pending + r->pending_len,
				     sizeof(r->pending) - r->pending_len);
			if (n > 0) {
				r->pending_len += n;
				continue;
			}
			err = SSL_get_error(c->ssl, n);
			if (err == SSL_ERROR_ZERO_RETURN) {
				/* close_notify: nothing after it counts. */
				r->flags |= DANCE_RES_PEER_CLOSED;
				c->in_off = c->in_len = 0;
				break;
			}
			if (err == SSL_ERROR_WANT_WRITE) {
				conn_submit_send(c);
				return;
			}
			if (err != SSL_ERROR_WANT_READ) {
				c->fail_status = -EPROTO;
				c->fail_reason = "a record received right after the handshake is "
						 "invalid";
				handshake_failed(c);
				return;
			}
			if (r->pending_len == sizeof(r->pending)) {
				conn_finish(c, -EMSGSIZE,
					    "more data behind the handshake than fits");
				return;
			}
		}
		missing = rec_missing(&c->rt);
		if (!missing)
			break;
		/* Half a record: fetch exactly the rest, never a byte of the next one. */
		if (missing > sizeof(c->in) - c->in_len)
			missing = sizeof(c->in) - c->in_len;
		conn_submit_recv(c, missing);
		return;
	}
	/* Whatever OpenSSL wrote meanwhile (a KeyUpdate answer, TLS 1.2 Finished) goes first. */
	if (c->out_len > c->out_off) {
		c->phase = PHASE_FLUSH;
		conn_submit_send(c);
		return;
	}
	handshake_offload(c);
}

/**
 * handshake_step - advance a conn after its last ring operation completed
 *
 * May finish the conn (conn_finish()); the caller must not touch @c afterwards unless
 * it holds its own reference.
 */
void handshake_step(struct conn *c)
{
	int ret, err;

	switch (c->phase) {
	case PHASE_HANDSHAKE:
		ret = SSL_do_handshake(c->ssl);
		if (ret == 1) {
			c->phase = PHASE_DRAIN;
			c->res = conn_result_buf(c);
			if (!c->res) {
				conn_finish(c, -ENOMEM, "out of memory for the result");
				return;
			}
			handshake_drain(c);
			return;
		}
		err = SSL_get_error(c->ssl, ret);
		if (err == SSL_ERROR_WANT_READ && c->out_len == c->out_off) {
			conn_submit_recv(c, sizeof(c->in) - c->in_len);
			return;
		}
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
			conn_submit_send(c); /* the flight first; the read comes after */
			return;
		}
		handshake_failed(c);
		return;
	case PHASE_DRAIN:
		handshake_drain(c);
		return;
	case PHASE_FLUSH:
		if (c->out_len > c->out_off) {
			conn_submit_send(c);
			return;
		}
		handshake_offload(c);
		return;
	case PHASE_ALERT:
		conn_finish(c, c->fail_status, c->fail_reason);
		return;
	case PHASE_LOOKUP:
	case PHASE_DANE:
	case PHASE_RESULT:
		return; /* DNS drives these (handshake_dns_done()) */
	}
}

/* Fill in what the result says about the TLS session. */
void handshake_describe(struct conn *c, struct dance_result *r)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
	const unsigned char *alpn;
	unsigned int alpn_len;
	const char *sni;

	r->tls_version = SSL_version(c->ssl);
	if (cipher) {
		r->cipher = SSL_CIPHER_get_protocol_id(cipher);
		snprintf(r->cipher_name, sizeof(r->cipher_name), "%s",
			 SSL_CIPHER_standard_name(cipher) ?: SSL_CIPHER_get_name(cipher));
	}
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
	if (alpn_len < sizeof(r->alpn)) {
		if (alpn_len) /* no ALPN: alpn is NULL, which memcpy may not be given */
			memcpy(r->alpn, alpn, alpn_len);
		r->alpn[alpn_len] = '\0';
	}
	sni = c->svc->cfg->role == ROLE_CLIENT ?
		      c->peer_name :
		      SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
	snprintf(r->sni, sizeof(r->sni), "%s", sni ?: "");
	verify_identity(c, r);
}
