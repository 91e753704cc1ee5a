// SPDX-License-Identifier: GPL-2.0
/*
 * exported.c - exported authenticators (RFC 9261) on sockets danced offloaded: the four
 * exporter values kept per connection, and the three operations a server asks for over
 * its channel (make a request, answer the peer's, validate the peer's answer).
 *
 * At the end of each handshake ktls.c's caller hands the SSL here once, before it goes:
 * the client's and the server's "authenticator handshake context" and "authenticator
 * finished key" are derived from the exporter and kept by socket cookie, and nothing
 * else of the session (no traffic or master secret). The store is a ring of the most
 * recent connections (exported_authenticators of them), so its memory is fixed at start
 * and a handshake never allocates here; an entry goes when the BPF close hook reports
 * its socket closed, when the server says so, or when the ring comes round to it.
 *
 * An operation gets the message the server sent and the socket's cookie, and returns a
 * verdict: V_DONE (the message made, or who was proved), V_LOOKUP (a name to prove by
 * DANE: conn.c asks DNS and verify.c matches, as in a handshake) or V_FAIL.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "agent.h"

/* Handshake message types (RFC 8446 section 4; 17 is RFC 9261's). */
#define HS_CERTIFICATE 11
#define HS_CERTIFICATE_REQUEST 13
#define HS_CERTIFICATE_VERIFY 15
#define HS_CLIENT_CERTIFICATE_REQUEST 17
#define HS_FINISHED 20
#define EXT_SERVER_NAME 0
#define EXT_SIGNATURE_ALGORITHMS 13

#define EA_HASH_MAX 48 /* SHA-384, the largest hash of a kTLS suite */
#define EA_CONTEXT_LEN 32 /* danced's certificate_request_context: random */
#define EA_REQS 4 /* requests danced made that may still be answered, per connection */
#define EA_USED 8 /* contexts answered or validated, remembered per connection */
#define EA_USED_LEN 16 /* a context is remembered by this much of its SHA-256 */
#define EA_SIGALGS 8 /* the ClientHello's signature schemes kept, in its order */
/* 64 spaces, the longest context string and its zero byte, the hash. */
#define CV_TBS_MAX (64 + sizeof("TLS 1.3, client CertificateVerify") + EA_HASH_MAX)

/* One connection's exporter values and bookkeeping: 608 bytes. */
struct ea_conn {
	uint64_t cookie; /* 0: a free slot */
	uint16_t version, cipher;
	uint16_t sigalgs[EA_SIGALGS]; /* server: the client's signature_algorithms, for a
					 spontaneous authenticator (RFC 9261 5.2.2) */
	uint8_t n_sigalgs;
	uint8_t hash_len; /* 32 or 48; 0: TLS 1.2 without extended master secret */
	bool server; /* danced was the TLS server */
	uint8_t n_reqs; /* reqs[0..n_reqs), oldest first */
	uint8_t used_next; /* the slot of used[] that the next context takes */
	bool req_pha[EA_REQS]; /* reqs[i] went out as a post-handshake CertificateRequest */
	char service[DANCE_NAME_MAX];
	uint8_t hc[2][EA_HASH_MAX]; /* handshake context: [0] the client's, [1] the server's */
	uint8_t fk[2][EA_HASH_MAX]; /* finished MAC key, likewise */
	uint8_t reqs[EA_REQS][SHA256_DIGEST_LENGTH]; /* SHA-256 of each request danced made */
	uint8_t used[EA_USED][EA_USED_LEN];
	/*
	 * TLS 1.3 post-handshake authentication, when the client offered it: the
	 * transcript hash state through the client's Finished, and the finished key of
	 * client_application_traffic_secret_0. No traffic secret.
	 */
	EVP_MD_CTX *pha;
	uint8_t pha_fk[EA_HASH_MAX];
};

/* What danced-conf(5) promises per connection under exported_authenticators. */
_Static_assert(sizeof(struct ea_conn) == 608, "update danced.conf.5 and the README");

/*
 * The store: connections in the order their handshakes ended, in a ring of @cap, and an
 * index by cookie (open addressing, linear probing, slot + 1; 0 is empty).
 */
static struct {
	pthread_mutex_t lock;
	struct ea_conn *ring;
	uint32_t cap, next, live;
	uint32_t pha; /* entries with a transcript for post-handshake authentication */
	uint32_t *index;
	uint32_t mask;
	uint64_t evicted; /* entries the ring came round to while their socket was open */
} ea = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* RFC 9261 section 5.1: [handshake context, finished key][client's, server's]. */
const char *const exported_labels[2][2] = {
	{ "EXPORTER-client authenticator handshake context",
	  "EXPORTER-server authenticator handshake context" },
	{ "EXPORTER-client authenticator finished key",
	  "EXPORTER-server authenticator finished key" },
};

int exported_init(const struct config *cfg, char *err, size_t errlen)
{
	uint32_t n = 1;

	if (!cfg->exported_authenticators)
		return 0;
	while (n < 2 * cfg->exported_authenticators)
		n <<= 1;
	/* calloc: untouched pages cost nothing until the ring reaches them. */
	ea.ring = calloc(cfg->exported_authenticators, sizeof(*ea.ring));
	ea.index = calloc(n, sizeof(*ea.index));
	if (!ea.ring || !ea.index) {
		exported_fini();
		snprintf(err, errlen, "out of memory for %u exported-authenticator entries",
			 cfg->exported_authenticators);
		return -ENOMEM;
	}
	ea.cap = cfg->exported_authenticators;
	ea.mask = n - 1;
	return 0;
}

void exported_fini(void)
{
	uint32_t i;

	for (i = 0; ea.ring && i < ea.cap; i++)
		EVP_MD_CTX_free(ea.ring[i].pha);
	if (ea.ring)
		OPENSSL_cleanse(ea.ring, (size_t)ea.cap * sizeof(*ea.ring));
	free(ea.ring);
	free(ea.index);
	ea.ring = NULL;
	ea.index = NULL;
	ea.cap = ea.next = ea.live = ea.pha = 0;
}

static uint32_t ea_hash(uint64_t cookie)
{
	return (uint32_t)((cookie * 0x9e3779b97f4a7c15ull) >> 32) & ea.mask;
}

/* Under the lock: the index position of @cookie, or -1. */
static long ea_pos(uint64_t cookie)
{
	uint32_t i = ea_hash(cookie);

	for (; ea.index[i]; i = (i + 1) & ea.mask)
		if (ea.ring[ea.index[i] - 1].cookie == cookie)
			return i;
	return -1;
}

/* Under the lock: drop index position @i, shifting later entries of its run back. */
static void ea_unindex(uint32_t i)
{
	uint32_t j = i, home;

	ea.index[i] = 0;
	for (;;) {
		j = (j + 1) & ea.mask;
		if (!ea.index[j])
			return;
		home = ea_hash(ea.ring[ea.index[j] - 1].cookie);
		/* Move j back to i unless its home lies cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			ea.index[i] = ea.index[j];
			ea.index[j] = 0;
			i = j;
		}
	}
}

static void ea_drop(struct ea_conn *e)
{
	ea.pha -= !!e->pha;
	EVP_MD_CTX_free(e->pha);
	OPENSSL_cleanse(e, sizeof(*e));
	ea.live--;
}

/* Under the lock: the entry of @cookie, or NULL. */
static struct ea_conn *ea_find(uint64_t cookie)
{
	long i = cookie ? ea_pos(cookie) : -1;

	return i < 0 ? NULL : &ea.ring[ea.index[i] - 1];
}

/**
 * exported_keep - keep the exporter values of a finished handshake on socket @cookie
 *
 * Four exporter values and a copy: in TLS 1.3 eight HMACs from the exporter secret that
 * @kc caught in the key log (NULL: OpenSSL's exporter, four times dearer); on TLS 1.2
 * without extended master secret only the fact is kept, so that the operations can say
 * why they refuse.
 */
void exported_keep(SSL *ssl, struct ktls_conn *kc, uint64_t cookie, const char *service,
		   bool server)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	const EVP_MD *md = c ? SSL_CIPHER_get_handshake_digest(c) : NULL;
	struct ea_conn e = { .cookie = cookie, .server = server };
	int i, j, len = md ? EVP_MD_get_size(md) : 0;
	struct ea_conn *slot;
	long pos;

	if (!ea.cap || !cookie || len <= 0 || len > EA_HASH_MAX)
		return;
	e.version = SSL_version(ssl);
	e.cipher = SSL_CIPHER_get_protocol_id(c);
	if (server) {
		int k, n = SSL_get_sigalgs(ssl, -1, NULL, NULL, NULL, NULL, NULL);
		unsigned char rsig, rhash;

		for (k = 0; k < n && e.n_sigalgs < EA_SIGALGS; k++)
			if (SSL_get_sigalgs(ssl, k, NULL, NULL, NULL, &rsig, &rhash))
				e.sigalgs[e.n_sigalgs++] = rhash << 8 | rsig;
	}
	snprintf(e.service, sizeof(e.service), "%s", service);
	if (e.version >= TLS1_3_VERSION || SSL_get_extms_support(ssl) == 1) {
		e.hash_len = len;
		for (i = 0; i < 2; i++)
			for (j = 0; j < 2; j++)
				/*
				 * TLS 1.3 from the key log's exporter secret, with HMAC
				 * contexts kept: a quarter of what OpenSSL's exporter costs.
				 * Otherwise use_context 1, length 0: RFC 9261's "empty (zero
				 * length)" context.
				 */
				if ((!kc || e.version != TLS1_3_VERSION ||
				     ktls_exporter(kc, EVP_MD_get0_name(md), exported_labels[i][j],
						   i ? e.fk[j] : e.hc[j], len)) &&
				    SSL_export_keying_material(
					    ssl, i ? e.fk[j] : e.hc[j], len, exported_labels[i][j],
					    strlen(exported_labels[i][j]), NULL, 0, 1) != 1) {
					ERR_clear_error();
					OPENSSL_cleanse(&e, sizeof(e));
					return;
				}
	}
	/* The transcript, for post-handshake authentication: TLS 1.3 only. */
	if (kc && e.version == TLS1_3_VERSION && e.hash_len) {
		e.pha = ktls_transcript_take(kc);
		if (e.pha && ktls_client_finished_key(kc, ssl, e.pha_fk, e.hash_len)) {
			EVP_MD_CTX_free(e.pha);
			e.pha = NULL;
		}
	}
	pthread_mutex_lock(&ea.lock);
	pos = ea_pos(cookie);
	if (pos >= 0) {
		/* A cookie is never reused; a second handshake on one socket replaces the first. */
		slot = &ea.ring[ea.index[pos] - 1];
		ea_unindex(pos);
		ea_drop(slot);
	}
	slot = &ea.ring[ea.next];
	if (slot->cookie) {
		ea_unindex(ea_pos(slot->cookie));
		ea_drop(slot);
		ea.evicted++;
	}
	*slot = e;
	for (pos = ea_hash(cookie); ea.index[pos]; pos = (pos + 1) & ea.mask)
		;
	ea.index[pos] = ea.next + 1;
	ea.next = (ea.next + 1) % ea.cap;
	ea.live++;
	ea.pha += !!e.pha;
	pthread_mutex_unlock(&ea.lock);
	OPENSSL_cleanse(&e, sizeof(e));
}

/* The socket closed (the BPF close hook said so), or the server is done with it. */
bool exported_forget(uint64_t cookie)
{
	struct ea_conn *e;
	bool found = false;

	if (!ea.cap)
		return false;
	pthread_mutex_lock(&ea.lock);
	e = ea_find(cookie);
	if (e) {
		ea_unindex(ea_pos(cookie));
		ea_drop(e);
		found = true;
	}
	pthread_mutex_unlock(&ea.lock);
	return found;
}

/* Whether handshakes should keep what exported authenticators and PHA need. */
bool exported_enabled(void)
{
	return ea.cap > 0;
}

void exported_stats(struct exported_stats *st)
{
	pthread_mutex_lock(&ea.lock);
	st->live = ea.live;
	st->cap = ea.cap;
	st->pha = ea.pha;
	st->evicted = ea.evicted;
	pthread_mutex_unlock(&ea.lock);
}

/* ---- wire encoding ------------------------------------------------------------------- */

struct wr {
	uint8_t *p;
	size_t len, cap;
	bool full;
};

static void put(struct wr *w, const void *b, size_t n)
{
	if (w->full || n > w->cap - w->len) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->len, b, n);
	w->len += n;
}

static void put_int(struct wr *w, uint32_t v, int bytes)
{
	uint8_t b[4];
	int i;

	for (i = 0; i < bytes; i++)
		b[i] = v >> (8 * (bytes - 1 - i));
	put(w, b, bytes);
}

/* Open a vector with a @bytes-long length, closed by vec_end() with its offset. */
static size_t vec_begin(struct wr *w, int bytes)
{
	size_t at = w->len;

	put_int(w, 0, bytes);
	return at;
}

static void vec_end(struct wr *w, size_t at, int bytes)
{
	size_t n = w->len - at - bytes;
	int i;

	if (w->full)
		return;
	for (i = 0; i < bytes; i++)
		w->p[at + i] = n >> (8 * (bytes - 1 - i));
}

struct rd {
	const uint8_t *p;
	size_t len;
};

static bool get_int(struct rd *r, int bytes, uint32_t *v)
{
	int i;

	if (r->len < (size_t)bytes)
		return false;
	for (*v = 0, i = 0; i < bytes; i++)
		*v = *v << 8 | r->p[i];
	r->p += bytes;
	r->len -= bytes;
	return true;
}

/* A vector with a @bytes-long length, into @sub. */
static bool get_vec(struct rd *r, int bytes, struct rd *sub)
{
	uint32_t n;

	if (!get_int(r, bytes, &n) || n > r->len)
		return false;
	sub->p = r->p;
	sub->len = n;
	r->p += n;
	r->len -= n;
	return true;
}

/* One handshake message: its type and body, and the whole encoding in @whole. */
static bool get_msg(struct rd *r, uint8_t *type, struct rd *body, struct rd *whole)
{
	uint32_t t;

	whole->p = r->p;
	if (!get_int(r, 1, &t) || !get_vec(r, 3, body))
		return false;
	*type = t;
	whole->len = r->p - whole->p;
	return true;
}

/* ---- signature schemes (RFC 8446 section 4.2.3), those TLS 1.3 allows --------------- */

struct scheme {
	uint16_t id;
	const char *key; /* EVP_PKEY_is_a() name */
	int curve; /* NID for ECDSA */
	const char *md; /* NULL: the algorithm hashes itself (EdDSA) */
	bool pss;
};

static const struct scheme schemes[] = {
	{ 0x0403, "EC", NID_X9_62_prime256v1, "SHA256", false },
	{ 0x0503, "EC", NID_secp384r1, "SHA384", false },
	{ 0x0603, "EC", NID_secp521r1, "SHA512", false },
	{ 0x0807, "ED25519", 0, NULL, false },
	{ 0x0808, "ED448", 0, NULL, false },
	{ 0x0804, "RSA", 0, "SHA256", true },
	{ 0x0805, "RSA", 0, "SHA384", true },
	{ 0x0806, "RSA", 0, "SHA512", true },
	{ 0x0809, "RSA-PSS", 0, "SHA256", true },
	{ 0x080a, "RSA-PSS", 0, "SHA384", true },
	{ 0x080b, "RSA-PSS", 0, "SHA512", true },
};

#define N_SCHEMES (sizeof(schemes) / sizeof(schemes[0]))

static int key_curve(const EVP_PKEY *key)
{
	char name[64];
	int nid;

	if (!EVP_PKEY_get_group_name(key, name, sizeof(name), NULL))
		return NID_undef;
	nid = OBJ_sn2nid(name);
	return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}

static bool scheme_fits(const struct scheme *s, const EVP_PKEY *key)
{
	if (!EVP_PKEY_is_a(key, s->key))
		return false;
	return !s->curve || key_curve(key) == s->curve;
}

static const struct scheme *scheme_by_id(uint32_t id)
{
	size_t i;

	for (i = 0; i < N_SCHEMES; i++)
		if (schemes[i].id == id)
			return &schemes[i];
	return NULL;
}

static const EVP_MD *ea_md(const struct ea_conn *e)
{
	return e->hash_len == 48 ? EVP_sha384() : EVP_sha256();
}

/*
 * Start Hash(HandshakeContext || ...). An exported authenticator's context is the
 * exporter value of @side (RFC 9261 section 5.1); post-handshake authentication's is
 * the transcript through the client's Finished (RFC 8446 section 4.4), kept as a hash
 * state, which only the client's side has.
 */
static bool hs_context(EVP_MD_CTX *m, const struct ea_conn *e, EVP_MD_CTX *th, int side)
{
	if (th)
		return EVP_MD_CTX_copy_ex(m, th);
	return EVP_DigestInit_ex(m, ea_md(e), NULL) &&
	       EVP_DigestUpdate(m, e->hc[side], e->hash_len);
}

/*
 * The signed content of CertificateVerify (RFC 9261 section 5.2.2, RFC 8446 section
 * 4.4.3): 64 spaces, the context string, a zero byte, then Hash(HandshakeContext ||
 * request || Certificate).
 */
static size_t cv_content(uint8_t *out, const struct ea_conn *e, EVP_MD_CTX *th, int side,
			 struct rd req, struct rd cert)
{
	const char *ctx = th ? "TLS 1.3, client CertificateVerify" : "Exported Authenticator";
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	size_t n = 64 + strlen(ctx) + 1;
	unsigned int hl = 0;

	memset(out, 0x20, 64);
	memcpy(out + 64, ctx, n - 64); /* with its terminating zero byte */
	if (!m || !hs_context(m, e, th, side) || !EVP_DigestUpdate(m, req.p, req.len) ||
	    !EVP_DigestUpdate(m, cert.p, cert.len) || !EVP_DigestFinal_ex(m, out + n, &hl))
		hl = 0;
	EVP_MD_CTX_free(m);
	return hl ? n + hl : 0;
}

/*
 * Finished: HMAC(finished key, Hash(HandshakeContext || request || Certificate || CV)).
 * Post-handshake authentication's key is from client_application_traffic_secret_0.
 */
static bool finished_mac(uint8_t *out, const struct ea_conn *e, EVP_MD_CTX *th, int side,
			 struct rd req, struct rd cert, struct rd cv)
{
	const uint8_t *fk = th ? e->pha_fk : e->fk[side];
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned int hl = 0, ml = 0;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	bool ok;

	ok = m && hs_context(m, e, th, side) && EVP_DigestUpdate(m, req.p, req.len) &&
	     EVP_DigestUpdate(m, cert.p, cert.len) && EVP_DigestUpdate(m, cv.p, cv.len) &&
	     EVP_DigestFinal_ex(m, h, &hl);
	EVP_MD_CTX_free(m);
	ok = ok && HMAC(ea_md(e), fk, e->hash_len, h, hl, out, &ml) && ml == e->hash_len;
	OPENSSL_cleanse(h, sizeof(h));
	return ok;
}

/* ---- the store's bookkeeping for one operation --------------------------------------- */

static void context_digest(const uint8_t *ctx, size_t len, uint8_t out[EA_USED_LEN])
{
	uint8_t h[SHA256_DIGEST_LENGTH];

	SHA256(ctx, len, h);
	memcpy(out, h, EA_USED_LEN);
}

static bool context_used(const struct ea_conn *e, const uint8_t d[EA_USED_LEN])
{
	int i;

	for (i = 0; i < EA_USED; i++)
		if (!memcmp(e->used[i], d, EA_USED_LEN))
			return true;
	return false;
}

static void context_use(struct ea_conn *e, const uint8_t d[EA_USED_LEN])
{
	memcpy(e->used[e->used_next], d, EA_USED_LEN);
	e->used_next = (e->used_next + 1) % EA_USED;
}

/*
 * A copy of @cookie's entry, for an operation to work on outside the lock; with @th, a
 * copy of its transcript too (NULL if it has none), which the caller frees.
 */
static int ea_get(uint64_t cookie, struct ea_conn *out, EVP_MD_CTX **th, bool *has_th,
		  struct fail *f)
{
	struct ea_conn *e;
	bool copied = true;

	if (!ea.cap)
		return fail_set(f, -ENOENT,
				"ea-off: danced keeps no exported-authenticator state "
				"(exported_authenticators = 0)");
	pthread_mutex_lock(&ea.lock);
	e = ea_find(cookie);
	if (e) {
		*out = *e;
		out->pha = NULL; /* the store's: it may go with the socket meanwhile */
		*has_th = e->pha != NULL;
		if (th && e->pha) {
			*th = EVP_MD_CTX_new();
			copied = *th && EVP_MD_CTX_copy_ex(*th, e->pha);
		}
	}
	pthread_mutex_unlock(&ea.lock);
	if (!copied)
		return fail_set(f, -ENOMEM, "pha: out of memory for a copy of the transcript");
	if (!e)
		return fail_set(f, -ENOENT,
				"ea-unknown: danced has no exported-authenticator state for this "
				"socket (not offloaded by this danced, closed, forgotten, or older "
				"than the last %u handshakes)",
				ea.cap);
	if (!out->hash_len) {
		OPENSSL_cleanse(out, sizeof(*out));
		return fail_set(f, -EPROTO,
				"ea-no-ems: the connection is TLS 1.2 without extended master "
				"secret; RFC 9261 forbids exported authenticators there");
	}
	return 0;
}

/* ---- the operations ------------------------------------------------------------------ */

struct ea_op {
	const struct dance_ea *m;
	uint64_t cookie;
	struct state *st;
	struct svc *svc; /* the connection's service in the current state */
	struct ea_conn e; /* a copy of the connection's entry; wiped at the end */
	bool pha; /* post-handshake authentication, not an exported authenticator */
	bool has_th; /* the entry keeps a transcript (the client offered PHA) */
	EVP_MD_CTX *th; /* PHA_VALIDATE: a copy of that transcript, freed at the end */
	struct wr out;
	struct dance_result *res;
	struct dane_check *d;
	struct fail *f;
};

static void put_ext_header(struct wr *w, uint16_t type, size_t *at)
{
	put_int(w, type, 2);
	*at = vec_begin(w, 2);
}

/* DANCE_EA_REQUEST: a (Client)CertificateRequest with a fresh random context. */
static int op_request(struct ea_op *o)
{
	const struct svc_config *cfg = o->svc->cfg;
	const struct dance_ea *m = o->m;
	uint8_t ctx[EA_CONTEXT_LEN], digest[SHA256_DIGEST_LENGTH];
	struct wr *w = &o->out;
	bool dane = o->e.server && cfg->dane != DANE_OFF;
	size_t body, exts, at, list, i;
	struct ea_conn *e;

	if (m->flags & DANCE_EA_DANE)
		dane = true;
	if (m->flags & DANCE_EA_NO_DANE)
		dane = false;
	if (m->server_name[0] && o->e.server)
		return fail_set(o->f, -EINVAL,
				"ea-request: server_name goes only in a ClientCertificateRequest; "
				"danced was the TLS server on this connection");
	if (o->pha && !o->e.server)
		return fail_set(o->f, -EINVAL,
				"pha-client: danced was the TLS client on this connection; only "
				"a TLS server asks for post-handshake authentication");
	if (o->pha && o->e.version != TLS1_3_VERSION)
		return fail_set(o->f, -EPROTO,
				"pha-version: post-handshake authentication is TLS 1.3's; this "
				"connection is TLS 1.2 (an exported authenticator works there)");
	if (o->pha && !o->has_th)
		return fail_set(o->f, -EPROTO,
				"pha-not-offered: the client did not offer post_handshake_auth in "
				"its ClientHello, so it may not be asked (RFC 8446 section 4.6.2)");
	if (RAND_bytes(ctx, sizeof(ctx)) != 1)
		return fail_set(o->f, -EIO, "ea-request: no randomness for the context");
	put_int(w, o->e.server ? HS_CERTIFICATE_REQUEST : HS_CLIENT_CERTIFICATE_REQUEST, 1);
	body = vec_begin(w, 3);
	at = vec_begin(w, 1);
	put(w, ctx, sizeof(ctx));
	vec_end(w, at, 1);
	exts = vec_begin(w, 2);
	put_ext_header(w, EXT_SIGNATURE_ALGORITHMS, &at);
	list = vec_begin(w, 2);
	for (i = 0; i < N_SCHEMES; i++)
		put_int(w, schemes[i].id, 2);
	vec_end(w, list, 2);
	vec_end(w, at, 2);
	if (dane) {
		/* An empty ClientName: "name yourself" (draft-ietf-dance-client-auth). */
		put_ext_header(w, o->st->cfg->dane_clientid_codepoint, &at);
		put_int(w, 0, 1);
		vec_end(w, at, 2);
	}
	if (m->server_name[0]) {
		size_t n = strlen(m->server_name);

		put_ext_header(w, EXT_SERVER_NAME, &at);
		list = vec_begin(w, 2);
		put_int(w, 0 /* host_name */, 1);
		put_int(w, n, 2);
		put(w, m->server_name, n);
		vec_end(w, list, 2);
		vec_end(w, at, 2);
	}
	vec_end(w, exts, 2);
	vec_end(w, body, 3);
	if (w->full)
		return fail_set(o->f, -EMSGSIZE, "ea-request: the request does not fit");
	SHA256(w->p, w->len, digest);
	pthread_mutex_lock(&ea.lock);
	e = ea_find(o->cookie);
	if (e) {
		/* The oldest unanswered request makes room: a peer may simply not answer. */
		if (e->n_reqs == EA_REQS) {
			memmove(e->reqs[0], e->reqs[1], (EA_REQS - 1) * sizeof(e->reqs[0]));
			memmove(e->req_pha, e->req_pha + 1, EA_REQS - 1);
			e->n_reqs--;
		}
		e->req_pha[e->n_reqs] = o->pha;
		memcpy(e->reqs[e->n_reqs++], digest, sizeof(digest));
	}
	pthread_mutex_unlock(&ea.lock);
	if (!e)
		return fail_set(o->f, -ENOENT,
				"ea-unknown: the socket closed while danced made the request");
	snprintf(o->res->reason, sizeof(o->res->reason), "%s%s, dane_clientid %s",
		 o->pha ? "post-handshake " : "",
		 o->e.server ? "CertificateRequest" : "ClientCertificateRequest",
		 dane ? "asked for" : "not asked for");
	return 0;
}

/* What a peer's request asks for. */
struct peer_req {
	struct rd whole, ctx;
	struct rd sigalgs; /* the list, 2 bytes per scheme */
	bool dane;
	char server_name[DANCE_HOST_MAX]; /* a ClientCertificateRequest's, or "" */
};

static int parse_request(struct ea_op *o, struct rd in, uint8_t want, struct peer_req *pr)
{
	struct rd body, exts, ext;
	uint32_t type;
	uint8_t t;

	memset(pr, 0, sizeof(*pr));
	if (!get_msg(&in, &t, &body, &pr->whole) || in.len)
		return fail_set(o->f, -EBADMSG,
				"ea-malformed: the request is not one handshake "
				"message");
	if (t != want)
		return fail_set(o->f, -EBADMSG,
				"ea-malformed: a %s was expected (message type %u), not type %u",
				want == HS_CERTIFICATE_REQUEST ? "CertificateRequest" :
								 "ClientCertificateRequest",
				want, t);
	if (!get_vec(&body, 1, &pr->ctx) || !get_vec(&body, 2, &exts) || body.len)
		return fail_set(o->f, -EBADMSG, "ea-malformed: the request's fields do not parse");
	while (exts.len) {
		if (!get_int(&exts, 2, &type) || !get_vec(&exts, 2, &ext))
			return fail_set(o->f, -EBADMSG,
					"ea-malformed: the request's extensions do not parse");
		if (type == EXT_SIGNATURE_ALGORITHMS) {
			if (!get_vec(&ext, 2, &pr->sigalgs) || ext.len || pr->sigalgs.len % 2)
				return fail_set(
					o->f, -EBADMSG,
					"ea-malformed: signature_algorithms does not parse");
		} else if (type == o->st->cfg->dane_clientid_codepoint) {
			pr->dane = true;
		} else if (type == EXT_SERVER_NAME && want == HS_CLIENT_CERTIFICATE_REQUEST) {
			struct rd list, name;
			uint32_t kind;

			if (!get_vec(&ext, 2, &list) || ext.len || !get_int(&list, 1, &kind) ||
			    kind || !get_vec(&list, 2, &name) || list.len || !name.len ||
			    name.len >= sizeof(pr->server_name) || memchr(name.p, 0, name.len))
				return fail_set(o->f, -EBADMSG,
						"ea-malformed: server_name does not parse");
			memcpy(pr->server_name, name.p, name.len);
			pr->server_name[name.len] = '\0';
		}
	}
	return 0;
}

/* The service's certificate chain as TLS 1.3 CertificateEntry list, leaf first. */
static void put_certificate(struct ea_op *o, const struct peer_req *pr, X509 *leaf, bool empty)
{
	const struct svc_config *cfg = o->svc->cfg;
	STACK_OF(X509) *chain = NULL;
	struct wr *w = &o->out;
	size_t body, at, list, ext, x;
	uint8_t *der;
	int i, n;

	put_int(w, HS_CERTIFICATE, 1);
	body = vec_begin(w, 3);
	at = vec_begin(w, 1);
	put(w, pr->ctx.p, pr->ctx.len);
	vec_end(w, at, 1);
	list = vec_begin(w, 3);
	if (!empty) {
		SSL_CTX_get0_chain_certs(o->svc->ctx, &chain);
		for (i = -1; i < (chain ? sk_X509_num(chain) : 0); i++) {
			X509 *c = i < 0 ? leaf : sk_X509_value(chain, i);

			der = NULL;
			n = i2d_X509(c, &der);
			if (n <= 0) {
				w->full = true;
				break;
			}
			x = vec_begin(w, 3);
			put(w, der, n);
			vec_end(w, x, 3);
			OPENSSL_free(der);
			ext = vec_begin(w, 2);
			/* Only extensions the request had (RFC 9261 section 5.2.1). */
			if (i < 0 && pr->dane && cfg->identity[0]) {
				size_t len = strlen(cfg->identity);

				put_ext_header(w, o->st->cfg->dane_clientid_codepoint, &at);
				put_int(w, len, 1);
				put(w, cfg->identity, len);
				vec_end(w, at, 2);
			}
			vec_end(w, ext, 2);
		}
	}
	vec_end(w, list, 3);
	vec_end(w, body, 3);
}

/* DANCE_EA_AUTHENTICATE: Certificate, CertificateVerify, Finished (or Finished alone). */
static int op_authenticate(struct ea_op *o)
{
	const struct dance_ea *m = o->m;
	uint8_t used[EA_USED_LEN], tbs[CV_TBS_MAX], fin[EA_HASH_MAX];
	uint8_t nonce[EA_CONTEXT_LEN];
	X509 *leaf = SSL_CTX_get0_certificate(o->svc->ctx);
	EVP_PKEY *key = SSL_CTX_get0_privatekey(o->svc->ctx);
	bool refuse = m->flags & DANCE_EA_REFUSE;
	int side = o->e.server ? 1 : 0, ret = 0;
	const struct scheme *s = NULL;
	struct rd req = { m->data, m->request_len }, cert, cv = { NULL, 0 };
	struct peer_req pr;
	EVP_MD_CTX *mc = NULL;
	EVP_PKEY_CTX *pc;
	size_t i, j, tbs_len, sig_len, at, cv_start;
	struct ea_conn *e;

	if (o->pha) {
		/* Post-handshake authentication: the client's answer (RFC 8446 4.6.2). */
		if (o->e.server)
			return fail_set(o->f, -EINVAL,
					"pha-server: danced was the TLS server on this "
					"connection; only a client answers a CertificateRequest");
		if (!o->th)
			return fail_set(o->f, -EPROTO,
					"pha-not-offered: danced did not offer post_handshake_auth "
					"on this connection (the service has no certificate)");
		/* Without a certificate the answer is an empty one, never silence. */
		if (!leaf || !key)
			refuse = true;
	}
	if (!m->request_len) {
		/* A spontaneous authenticator: the server's alone, with a context of its own. */
		if (!o->e.server)
			return fail_set(o->f, -EINVAL,
					"ea-spontaneous: a TLS client never authenticates without "
					"a request (RFC 9261 section 4)");
		if (refuse)
			return fail_set(o->f, -EINVAL,
					"ea-spontaneous: an empty authenticator answers a request");
		if (RAND_bytes(nonce, sizeof(nonce)) != 1)
			return fail_set(o->f, -EIO, "ea-authenticate: no randomness");
		memset(&pr, 0, sizeof(pr));
		pr.ctx.p = nonce;
		pr.ctx.len = sizeof(nonce);
	} else if ((ret = parse_request(o, req,
					o->e.server ? HS_CLIENT_CERTIFICATE_REQUEST :
						      HS_CERTIFICATE_REQUEST,
					&pr))) {
		return ret;
	}
	context_digest(pr.ctx.p, pr.ctx.len, used);
	if (context_used(&o->e, used))
		return fail_set(o->f, -EALREADY,
				"ea-context-used: danced already answered a request with this "
				"certificate_request_context on this connection");
	if (!refuse) {
		if (!leaf || !key)
			return fail_set(o->f, -ENOKEY,
					"ea-no-certificate: service %s has no certificate and key "
					"to authenticate with",
					o->svc->cfg->name);
		/* The peer's preference order among schemes that fit the key. */
		for (i = 0; req.len && !s && i + 2 <= pr.sigalgs.len; i += 2) {
			const struct scheme *c =
				scheme_by_id((uint32_t)pr.sigalgs.p[i] << 8 | pr.sigalgs.p[i + 1]);

			if (c && scheme_fits(c, key))
				s = c;
		}
		/* Unasked: the ClientHello's order (RFC 9261 section 5.2.2), else ours. */
		for (j = 0; !req.len && !s && j < o->e.n_sigalgs; j++) {
			const struct scheme *c = scheme_by_id(o->e.sigalgs[j]);

			if (c && scheme_fits(c, key))
				s = c;
		}
		for (j = 0; !req.len && !s && !o->e.n_sigalgs && j < N_SCHEMES; j++)
			if (scheme_fits(&schemes[j], key))
				s = &schemes[j];
		if (!s)
			return fail_set(o->f, -EOPNOTSUPP,
					"ea-scheme: none of the request's signature algorithms "
					"suits service %s's key",
					o->svc->cfg->name);
	}
	/* Once per context (RFC 9261 section 5.2.1), decided under the lock: two workers
	 * answering the same request at once must not both sign. */
	pthread_mutex_lock(&ea.lock);
	e = ea_find(o->cookie);
	ret = !e ? -ENOENT : context_used(e, used) ? -EALREADY : 0;
	if (!ret)
		context_use(e, used);
	pthread_mutex_unlock(&ea.lock);
	if (ret == -ENOENT)
		return fail_set(o->f, ret, "ea-unknown: the socket closed meanwhile");
	if (ret)
		return fail_set(o->f, ret,
				"ea-context-used: danced already answered a request with this "
				"certificate_request_context on this connection");
	cert.p = o->out.p + o->out.len;
	put_certificate(o, &pr, leaf, refuse);
	cert.len = o->out.p + o->out.len - cert.p;
	if (o->out.full)
		return fail_set(o->f, -EMSGSIZE,
				"ea-authenticate: the certificate chain does "
				"not fit an authenticator");
	if (refuse) {
		/* An exported authenticator's empty Certificate is hashed, never sent; a
		 * TLS client's is sent (RFC 8446 section 4.4.2). */
		if (!o->pha)
			o->out.len = 0;
	} else {
		tbs_len = cv_content(tbs, &o->e, o->th, side, req, cert);
		cv_start = o->out.len;
		put_int(&o->out, HS_CERTIFICATE_VERIFY, 1);
		at = vec_begin(&o->out, 3);
		put_int(&o->out, s->id, 2);
		sig_len = EVP_PKEY_get_size(key);
		put_int(&o->out, 0, 2);
		mc = EVP_MD_CTX_new();
		ret = -EIO;
		if (!tbs_len || o->out.full || o->out.cap - o->out.len < sig_len || !mc ||
		    EVP_DigestSignInit_ex(mc, &pc, s->md, NULL, NULL, key, NULL) != 1 ||
		    (s->pss &&
		     (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
		      EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1)) ||
		    EVP_DigestSign(mc, o->out.p + o->out.len, &sig_len, tbs, tbs_len) != 1) {
			EVP_MD_CTX_free(mc);
			ERR_clear_error();
			return fail_set(o->f, -EIO, "ea-authenticate: signing failed");
		}
		EVP_MD_CTX_free(mc);
		o->out.p[o->out.len - 2] = sig_len >> 8;
		o->out.p[o->out.len - 1] = sig_len;
		o->out.len += sig_len;
		vec_end(&o->out, at, 3);
		cv.p = o->out.p + cv_start;
		cv.len = o->out.len - cv_start;
	}
	if (!finished_mac(fin, &o->e, o->th, side, req, cert, cv))
		return fail_set(o->f, -EIO, "ea-authenticate: the Finished MAC failed");
	put_int(&o->out, HS_FINISHED, 1);
	put_int(&o->out, o->e.hash_len, 3);
	put(&o->out, fin, o->e.hash_len);
	OPENSSL_cleanse(fin, sizeof(fin));
	if (o->out.full)
		return fail_set(o->f, -EMSGSIZE, "ea-authenticate: the authenticator does not fit");
	if (refuse)
		snprintf(o->res->reason, sizeof(o->res->reason), "%s",
			 o->pha ? "an empty Certificate (declined)" :
				  "empty authenticator (a refusal)");
	else if (o->pha)
		snprintf(o->res->reason, sizeof(o->res->reason),
			 "Certificate, CertificateVerify and Finished, signature scheme 0x%04x",
			 s->id);
	else
		snprintf(o->res->reason, sizeof(o->res->reason),
			 "%sauthenticator, signature scheme 0x%04x", req.len ? "" : "spontaneous ",
			 s->id);
	return 0;
}

/* The leaf's dane_clientid, if it has one: 1 with the name in @name, 0, or an error. */
static int entry_clientid(struct ea_op *o, struct rd exts, struct rd *name)
{
	struct rd ext;
	uint32_t type;

	while (exts.len) {
		if (!get_int(&exts, 2, &type) || !get_vec(&exts, 2, &ext))
			return fail_set(o->f, -EBADMSG,
					"ea-malformed: the certificate's extensions do not parse");
		if (type != o->st->cfg->dane_clientid_codepoint)
			continue;
		if (!get_vec(&ext, 1, name) || ext.len)
			return fail_set(o->f, -EBADMSG,
					"ea-malformed: dane_clientid does not parse");
		return 1;
	}
	return 0;
}

/* The certificate's key against CertificateVerify. */
static int check_verify(struct ea_op *o, X509 *leaf, struct rd cvb, struct rd req, struct rd cert)
{
	uint8_t tbs[CV_TBS_MAX];
	EVP_PKEY *key = X509_get0_pubkey(leaf);
	const struct scheme *s;
	struct rd sig;
	uint32_t id;
	EVP_MD_CTX *mc;
	EVP_PKEY_CTX *pc;
	size_t tbs_len;
	int side = o->e.server ? 0 : 1, ok;

	if (!get_int(&cvb, 2, &id) || !get_vec(&cvb, 2, &sig) || cvb.len)
		return fail_set(o->f, -EBADMSG, "ea-malformed: CertificateVerify does not parse");
	s = scheme_by_id(id);
	if (!s)
		return fail_set(o->f, -EACCES,
				"ea-scheme: signature scheme 0x%04x was not offered in the request",
				id);
	if (!key || !scheme_fits(s, key))
		return fail_set(o->f, -EACCES,
				"ea-signature: scheme 0x%04x does not fit the certificate's key",
				id);
	tbs_len = cv_content(tbs, &o->e, o->th, side, req, cert);
	mc = EVP_MD_CTX_new();
	ok = tbs_len && mc && EVP_DigestVerifyInit_ex(mc, &pc, s->md, NULL, NULL, key, NULL) == 1 &&
	     (!s->pss || (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
			  EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1)) &&
	     EVP_DigestVerify(mc, sig.p, sig.len, tbs, tbs_len) == 1;
	EVP_MD_CTX_free(mc);
	ERR_clear_error();
	if (!ok)
		return fail_set(o->f, -EACCES,
				"ea-signature: CertificateVerify does not verify with the "
				"certificate's key");
	return 0;
}

/* The name, by X.509: the chain against the service's CAs. */
static int check_x509(struct ea_op *o, X509 *leaf, STACK_OF(X509) * chain, const char *host)
{
	const struct svc_config *cfg = o->svc->cfg;
	X509_STORE_CTX *x;
	int ret = 0;

	if (cfg->role == ROLE_SERVER && cfg->verify == VERIFY_NONE)
		return fail_set(o->f, -EACCES,
				"ea-unverifiable: the authenticator carries no dane_clientid and "
				"service %s verifies no client certificates (client_auth = none)",
				cfg->name);
	if (cfg->role == ROLE_SERVER && cfg->dane == DANE_REQUIRED)
		return fail_set(o->f, -EACCES,
				"dane-missing: the authenticator carries no dane_clientid "
				"(dane = required)");
	if (!cfg->ca)
		return fail_set(o->f, -EACCES,
				"ea-unverifiable: service %s has no ca file to verify "
				"certificates with",
				cfg->name);
	x = X509_STORE_CTX_new();
	if (!x || !X509_STORE_CTX_init(x, SSL_CTX_get_cert_store(o->svc->ctx), leaf, chain)) {
		X509_STORE_CTX_free(x);
		return fail_set(o->f, -ENOMEM, "out of memory for X.509 verification");
	}
	X509_STORE_CTX_set_purpose(x,
				   o->e.server ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER);
	/* The strength a handshake on this service demands, and the name danced asked for. */
	X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(x),
					 SSL_CTX_get_security_level(o->svc->ctx));
	if (host && host[0])
		X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(x), host, 0);
	if (X509_verify_cert(x) != 1)
		ret = fail_set(o->f, -EACCES, "%s certificate rejected: %s",
			       o->e.server ? "client" : "server",
			       X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
	X509_STORE_CTX_free(x);
	ERR_clear_error();
	if (!ret)
		o->res->auth = o->pha ? DANCE_AUTH_PHA_X509 : DANCE_AUTH_EA_X509;
	return ret;
}

/* DANCE_EA_VALIDATE: the peer's authenticator, answering a request danced made. */
static enum verdict op_validate(struct ea_op *o)
{
	const struct dance_ea *m = o->m;
	struct rd req = { m->data, m->request_len }, in = { m->data + m->request_len, m->auth_len };
	struct rd body, whole, cert = { NULL, 0 }, cv = { NULL, 0 }, cvb = { NULL, 0 }, fin;
	struct rd ctx, list, der, exts, name = { NULL, 0 };
	uint8_t digest[SHA256_DIGEST_LENGTH], used[EA_USED_LEN], mac[EA_HASH_MAX];
	uint8_t empty[4 + 1 + 255 + 3];
	int side = o->e.server ? 0 : 1, i, has_name = 0, ret;
	STACK_OF(X509) *chain = NULL;
	struct peer_req pr;
	X509 *leaf = NULL, *x;
	const uint8_t *p;
	struct ea_conn *e;
	bool found = false, refused, spont = !m->request_len;
	uint8_t t;

	/* The request: one danced made on this connection, not yet answered. */
	memset(&pr, 0, sizeof(pr));
	if (spont && o->e.server) {
		fail_set(o->f, -EINVAL,
			 "ea-spontaneous: a TLS client never authenticates without a request; "
			 "pass the request danced made");
		return V_FAIL;
	}
	if (!spont &&
	    parse_request(o, req,
			  o->e.server ? HS_CERTIFICATE_REQUEST : HS_CLIENT_CERTIFICATE_REQUEST,
			  &pr))
		return V_FAIL;
	SHA256(req.p, req.len, digest);
	context_digest(pr.ctx.p, pr.ctx.len, used);
	for (i = 0, found = spont; i < o->e.n_reqs && !found; i++)
		found = !CRYPTO_memcmp(o->e.reqs[i], digest, sizeof(digest));
	if (found && !spont && o->e.req_pha[i - 1] != o->pha) {
		fail_set(o->f, -EINVAL,
			 o->pha ? "pha-kind: danced made this request for an exported "
				  "authenticator; validate the answer with dance_ea_validate()" :
				  "pha-kind: danced sent this request for post-handshake "
				  "authentication; validate the answer with dance_pha_validate()");
		return V_FAIL;
	}
	if (!found) {
		if (context_used(&o->e, used))
			fail_set(o->f, -EALREADY,
				 "ea-context-used: an authenticator for this request was already "
				 "validated; each request is usable once");
		else
			fail_set(o->f, -ESRCH,
				 "ea-context-unknown: danced made no such request on this "
				 "connection (or it was pushed out by %d newer ones)",
				 EA_REQS);
		return V_FAIL;
	}

	/* The authenticator: Certificate, CertificateVerify, Finished; or Finished alone. */
	if (!get_msg(&in, &t, &body, &whole))
		goto malformed;
	if (t == HS_CERTIFICATE) {
		cert = whole;
		if (!get_vec(&body, 1, &ctx) || !get_vec(&body, 3, &list) || body.len)
			goto malformed;
		if (spont) {
			/* A spontaneous server authenticator brings its own context. */
			pr.ctx = ctx;
			context_digest(ctx.p, ctx.len, used);
			if (context_used(&o->e, used)) {
				fail_set(o->f, -EALREADY,
					 "ea-context-used: an authenticator with this context was "
					 "already validated on this connection");
				return V_FAIL;
			}
		}
		if (ctx.len != pr.ctx.len || CRYPTO_memcmp(ctx.p, pr.ctx.p, ctx.len)) {
			fail_set(o->f, -ESRCH,
				 "ea-context-mismatch: the authenticator's "
				 "certificate_request_context is not the request's");
			return V_FAIL;
		}
		if (!list.len && !o->pha) {
			fail_set(o->f, -EBADMSG,
				 "ea-malformed: an empty certificate list is sent as Finished "
				 "alone");
			return V_FAIL;
		}
		/* A TLS client that declines sends an empty Certificate, then Finished. */
		if (list.len && (!get_msg(&in, &t, &cvb, &cv) || t != HS_CERTIFICATE_VERIFY))
			goto malformed;
		if (!get_msg(&in, &t, &body, &fin) || t != HS_FINISHED || in.len)
			goto malformed;
	} else if (t == HS_FINISHED && !in.len && !spont && !o->pha) {
		/* The empty authenticator: its Certificate is the request's context and no
		 * certificate, hashed but not sent. */
		struct wr w = { .p = empty, .cap = sizeof(empty) };

		fin = whole;
		put_int(&w, HS_CERTIFICATE, 1);
		put_int(&w, 1 + pr.ctx.len + 3, 3);
		put_int(&w, pr.ctx.len, 1);
		put(&w, pr.ctx.p, pr.ctx.len);
		put_int(&w, 0, 3);
		cert.p = empty;
		cert.len = w.len;
	} else {
		goto malformed;
	}
	if (body.len != o->e.hash_len)
		goto malformed;

	/* Finished first: a MAC is cheap, a signature is not, and it binds everything. */
	if (!finished_mac(mac, &o->e, o->th, side, req, cert, cv)) {
		fail_set(o->f, -EIO, "ea-validate: the Finished MAC failed");
		return V_FAIL;
	}
	ret = CRYPTO_memcmp(mac, body.p, o->e.hash_len);
	OPENSSL_cleanse(mac, sizeof(mac));
	if (ret) {
		fail_set(o->f, -EACCES,
			 "ea-finished: the Finished MAC does not match (altered, or made for "
			 "another connection)");
		return V_FAIL;
	}
	if (!cv.len) {
		/* Authentic, and a refusal: the request is answered. */
		refused = true;
		fail_set(o->f, -EACCES,
			 o->pha ? "pha-empty: the client declined to authenticate (an empty "
				  "Certificate)" :
				  "ea-empty: the peer declined to authenticate (an empty "
				  "authenticator)");
		goto consume;
	}

	/* The chain, then the key against CertificateVerify. */
	for (i = 0; list.len; i++) {
		if (!get_vec(&list, 3, &der) || !get_vec(&list, 2, &exts) || !der.len)
			goto malformed_chain;
		p = der.p;
		x = d2i_X509(NULL, &p, der.len);
		if (!x || p != der.p + der.len) {
			X509_free(x);
			fail_set(o->f, -EBADMSG,
				 "ea-malformed: certificate %d of the authenticator is not DER "
				 "X.509",
				 i);
			goto fail;
		}
		if (!i) {
			leaf = x;
			has_name = entry_clientid(o, exts, &name);
			if (has_name < 0)
				goto fail;
			continue;
		}
		if ((!chain && !(chain = sk_X509_new_null())) || !sk_X509_push(chain, x)) {
			X509_free(x);
			fail_set(o->f, -ENOMEM, "out of memory for the authenticator's chain");
			goto fail;
		}
	}
	if (check_verify(o, leaf, cvb, req, cert))
		goto fail;
	refused = false;
consume:
	/* Genuine from here: the request is spent, whatever the name's fate. */
	pthread_mutex_lock(&ea.lock);
	e = ea_find(o->cookie);
	found = false;
	if (e && spont && !context_used(e, used)) {
		context_use(e, used);
		found = true;
	}
	for (i = 0; e && !spont && i < e->n_reqs; i++) {
		if (CRYPTO_memcmp(e->reqs[i], digest, sizeof(digest)) || e->req_pha[i] != o->pha)
			continue;
		memmove(e->reqs[i], e->reqs[i + 1], (e->n_reqs - i - 1) * sizeof(e->reqs[0]));
		memmove(e->req_pha + i, e->req_pha + i + 1, e->n_reqs - i - 1);
		e->n_reqs--;
		context_use(e, used);
		found = true;
		break;
	}
	pthread_mutex_unlock(&ea.lock);
	if (!found) {
		/* Another validation of the same request won the race. */
		fail_set(o->f, -EALREADY,
			 "ea-context-used: an authenticator for this request was already "
			 "validated; each request is usable once");
		goto fail;
	}
	if (refused)
		goto fail;
	/* RFC 8446 section 4.4.2: a Certificate carries only extensions the request sent. */
	if (has_name && !spont && !pr.dane) {
		fail_set(o->f, -EBADMSG,
			 "%s-unasked: the certificate carries dane_clientid, which the request "
			 "did not ask for",
			 o->pha ? "pha" : "ea");
		goto fail;
	}
	verify_describe(leaf, o->res);
	o->res->peer_cert_type = DANCE_CERT_X509;

	/* Who it is: by DANE when it names itself and the service does DANE, else X.509. */
	if (has_name && o->e.server && o->svc->cfg->dane != DANE_OFF) {
		ret = dane_name_check(o->svc->cfg, (const char *)name.p, name.len, o->d->name,
				      sizeof(o->d->name));
		if (ret == -EPERM)
			fail_set(o->f, -EACCES, "name-not-allowed: %.100s is outside dane_names",
				 o->d->name);
		else if (ret)
			fail_set(o->f, -EACCES,
				 "dane-badname: dane_clientid is not a usable DNS name (A-labels: "
				 "letters, digits, hyphen, underscore; no zero byte)");
		if (ret)
			goto fail;
		o->d->leaf = leaf;
		o->d->chain = chain;
		return V_LOOKUP;
	}
	if (check_x509(o, leaf, chain, pr.server_name))
		goto fail;
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return V_DONE;

malformed_chain:
	fail_set(o->f, -EBADMSG, "ea-malformed: the certificate list does not parse");
	goto fail;
malformed:
	fail_set(o->f, -EBADMSG,
		 o->pha ? "pha-malformed: the answer is not Certificate, CertificateVerify and "
			  "Finished, nor an empty Certificate and Finished" :
			  "ea-malformed: the authenticator is not Certificate, CertificateVerify "
			  "and Finished, nor Finished alone");
fail:
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	return V_FAIL;
}

/**
 * exported_op - carry out one DANCE_MSG_EA for the socket with @cookie
 * @out: where REQUEST and AUTHENTICATE put the message made (DANCE_EA_DATA_MAX bytes)
 * @out_len: its length
 * @svc: set to the connection's service
 * @d: VALIDATE by DANE: the name and chain to match, for conn.c's lookup
 *
 * Return: V_DONE (res says what was done or who was proved), V_LOOKUP (@d is set: the
 * TLSA answer for d->name decides, through verify_dane_match()), or V_FAIL with @f.
 */
enum verdict exported_op(const struct dance_ea *m, uint64_t cookie, struct state *st,
			 struct svc **svc, uint8_t *out, uint32_t *out_len, struct dane_check *d,
			 struct dance_result *res, struct fail *f)
{
	struct ea_op o = { .m = m, .cookie = cookie, .st = st, .res = res, .d = d, .f = f };
	enum verdict v = V_FAIL;

	o.out.p = out;
	o.out.cap = DANCE_EA_DATA_MAX;
	*out_len = 0;
	if (m->op == DANCE_EA_FORGET) {
		if (!exported_forget(cookie)) {
			fail_set(f, -ENOENT,
				 "ea-unknown: danced has no exported-authenticator state for this "
				 "socket");
			return V_FAIL;
		}
		snprintf(res->reason, sizeof(res->reason), "forgotten");
		return V_DONE;
	}
	o.pha = m->op >= DANCE_EA_PHA_REQUEST;
	if (ea_get(cookie, &o.e,
		   m->op == DANCE_EA_PHA_VALIDATE || m->op == DANCE_EA_PHA_ANSWER ? &o.th : NULL,
		   &o.has_th, f))
		return V_FAIL;
	res->tls_version = o.e.version;
	res->cipher = o.e.cipher;
	res->cookie = cookie;
	o.svc = state_service(st, o.e.service);
	if (!o.svc) {
		fail_set(f, -ENOENT,
			 "ea-service: service %s, which made this connection, is no longer "
			 "configured",
			 o.e.service);
		goto out;
	}
	*svc = o.svc;
	switch (m->op) {
	case DANCE_EA_REQUEST:
	case DANCE_EA_PHA_REQUEST:
		v = op_request(&o) ? V_FAIL : V_DONE;
		break;
	case DANCE_EA_AUTHENTICATE:
	case DANCE_EA_PHA_ANSWER:
		v = op_authenticate(&o) ? V_FAIL : V_DONE;
		break;
	case DANCE_EA_PHA_VALIDATE:
		if (!o.th) {
			fail_set(f, -EPROTO,
				 "pha-not-offered: danced kept no transcript for this connection "
				 "(the client did not offer post_handshake_auth)");
			break;
		}
		/* fall through */
	case DANCE_EA_VALIDATE:
		v = op_validate(&o);
		break;
	default:
		fail_set(f, -EINVAL, "ea: unknown operation %u", m->op);
	}
	if (v != V_FAIL)
		*out_len = o.out.len;
	else
		OPENSSL_cleanse(out, o.out.len);
out:
	EVP_MD_CTX_free(o.th);
	OPENSSL_cleanse(&o.e, sizeof(o.e));
	return v;
}
