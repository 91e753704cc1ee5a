// SPDX-License-Identifier: GPL-2.0
/*
 * ea.c - RFC 9261 exported authenticators for test peers, written from RFC 9261 and
 * RFC 8446 alone (message formats, exporter labels, signed content, Finished), never from
 * agent/, so that a shared misreading cannot make both sides agree on a wrong answer.
 *
 * Parsing is strict on purpose: this code judges danced's output, so whatever RFC 8446
 * forbids (trailing bytes, a repeated extension, an empty certificate list, an extension the
 * request did not ask for) is -EBADMSG here.
 */
#include <errno.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "ea.h"

/* Handshake types (RFC 8446 section 4, RFC 9261) and extension types (RFC 8446 4.2). */
enum {
	HS_CERTIFICATE = 11,
	HS_CERTIFICATE_REQUEST = 13,
	HS_CERTIFICATE_VERIFY = 15,
	HS_CLIENT_CERTIFICATE_REQUEST = 17,
	HS_FINISHED = 20,
};

enum {
	EXT_SERVER_NAME = 0,
	EXT_SIGNATURE_ALGORITHMS = 13,
};

#define HS_HDR 4 /* msg_type and a 24-bit length */
#define MAX_HASH 64

/* What our requests offer (RFC 8446 4.2.3 values). */
static const uint16_t offered[] = { 0x0403, 0x0503, 0x0804, 0x0805, 0x0807 };

/* The TLS 1.3 signature schemes we can make and check, in our order of preference. */
struct scheme {
	uint16_t code;
	int type; /* EVP_PKEY_* of the key */
	int curve; /* for ECDSA, the curve the scheme binds; else NID_undef */
	const EVP_MD *(*md)(void); /* NULL for EdDSA, which hashes by itself */
};

static const struct scheme schemes[] = {
	{ 0x0403, EVP_PKEY_EC, NID_X9_62_prime256v1, EVP_sha256 },
	{ 0x0503, EVP_PKEY_EC, NID_secp384r1, EVP_sha384 },
	{ 0x0603, EVP_PKEY_EC, NID_secp521r1, EVP_sha512 },
	{ 0x0804, EVP_PKEY_RSA, NID_undef, EVP_sha256 },
	{ 0x0805, EVP_PKEY_RSA, NID_undef, EVP_sha384 },
	{ 0x0806, EVP_PKEY_RSA, NID_undef, EVP_sha512 },
	{ 0x0807, EVP_PKEY_ED25519, NID_undef, NULL },
	{ 0x0808, EVP_PKEY_ED448, NID_undef, NULL },
	{ 0x0809, EVP_PKEY_RSA_PSS, NID_undef, EVP_sha256 },
	{ 0x080a, EVP_PKEY_RSA_PSS, NID_undef, EVP_sha384 },
	{ 0x080b, EVP_PKEY_RSA_PSS, NID_undef, EVP_sha512 },
};

/* A writer that remembers its first error, so that building code need not check each put. */
struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static uint8_t *reserve(struct wbuf *w, size_t n)
{
	uint8_t *at;

	if (w->err)
		return NULL;
	if (n > w->cap - w->len) {
		w->err = -ENOSPC;
		return NULL;
	}
	at = w->p + w->len;
	w->len += n;
	return at;
}

static void put(struct wbuf *w, const void *src, size_t n)
{
	uint8_t *at = reserve(w, n);

	if (at && n)
		memcpy(at, src, n);
}

static void put_be(uint8_t *at, size_t v, int bytes)
{
	int i;

	for (i = 0; i < bytes; i++)
		at[i] = v >> (8 * (bytes - 1 - i));
}

static void put_u(struct wbuf *w, size_t v, int bytes)
{
	uint8_t *at = reserve(w, bytes);

	if (at)
		put_be(at, v, bytes);
}

/* Start a length-prefixed field; end_len() writes its length once its contents are in. */
static size_t begin_len(struct wbuf *w, int bytes)
{
	size_t at = w->len;

	put_u(w, 0, bytes);
	return at;
}

static void end_len(struct wbuf *w, size_t at, int bytes)
{
	size_t v;

	if (w->err)
		return;
	v = w->len - at - bytes;
	if (v >> (8 * bytes)) {
		w->err = -EMSGSIZE;
		return;
	}
	put_be(w->p + at, v, bytes);
}

/* A reader that goes bad on the first overrun and then yields nothing. */
struct rbuf {
	const uint8_t *p;
	size_t len;
	bool bad;
};

static uint32_t get_u(struct rbuf *r, int bytes)
{
	uint32_t v = 0;
	int i;

	if (r->bad || r->len < (size_t)bytes) {
		r->bad = true;
		return 0;
	}
	for (i = 0; i < bytes; i++)
		v = v << 8 | r->p[i];
	r->p += bytes;
	r->len -= bytes;
	return v;
}

/* A vector with a @bytes-long length prefix; a bad parent gives a bad child. */
static struct rbuf get_vec(struct rbuf *r, int bytes)
{
	struct rbuf v = { NULL, 0, true };
	size_t n = get_u(r, bytes);

	if (r->bad || n > r->len) {
		r->bad = true;
		return v;
	}
	v = (struct rbuf){ r->p, n, false };
	r->p += n;
	r->len -= n;
	return v;
}

static bool used_up(const struct rbuf *r)
{
	return !r->bad && !r->len;
}

/* Look for @type in a well-formed extensions block; @data gets its contents. */
static bool find_ext(struct rbuf exts, uint16_t type, struct rbuf *data)
{
	while (exts.len && !exts.bad) {
		uint16_t t = get_u(&exts, 2);
		struct rbuf d = get_vec(&exts, 2);

		if (!exts.bad && t == type) {
			if (data)
				*data = d;
			return true;
		}
	}
	return false;
}

/* An extensions block must hold whole extensions, each type at most once (RFC 8446 4.2). */
static int check_exts(struct rbuf exts)
{
	while (exts.len && !exts.bad) {
		uint16_t t = get_u(&exts, 2);

		get_vec(&exts, 2);
		if (!exts.bad && find_ext(exts, t, NULL))
			return -EBADMSG;
	}
	return exts.bad ? -EBADMSG : 0;
}

/* A parsed authenticator request; the pointers are into the caller's bytes. */
struct req_info {
	int type;
	const uint8_t *ctx;
	size_t ctx_len;
	struct rbuf exts;
	struct rbuf sigalgs; /* the SignatureScheme list, 2 bytes each */
	bool dane;
};

static int parse_request(const uint8_t *req, size_t len, struct req_info *ri)
{
	struct rbuf r = { req, len, false }, body, ctx, sa;

	memset(ri, 0, sizeof(*ri));
	if (!req)
		return -EBADMSG;
	ri->type = get_u(&r, 1);
	body = get_vec(&r, 3);
	if (!used_up(&r))
		return -EBADMSG;
	if (ri->type != HS_CERTIFICATE_REQUEST && ri->type != HS_CLIENT_CERTIFICATE_REQUEST)
		return -EBADMSG;
	ctx = get_vec(&body, 1);
	ri->exts = get_vec(&body, 2);
	/* extensions<2..2^16-1>: at least one, and nothing may follow them */
	if (!used_up(&body) || ri->exts.len < 2 || check_exts(ri->exts))
		return -EBADMSG;
	ri->ctx = ctx.p;
	ri->ctx_len = ctx.len;

	/* RFC 8446 4.3.2: signature_algorithms MUST be in a CertificateRequest. */
	if (!find_ext(ri->exts, EXT_SIGNATURE_ALGORITHMS, &sa))
		return -EBADMSG;
	ri->sigalgs = get_vec(&sa, 2);
	if (!used_up(&sa) || ri->sigalgs.len < 2 || ri->sigalgs.len % 2)
		return -EBADMSG;
	ri->dane = find_ext(ri->exts, TEA_CLIENTID, NULL);
	return 0;
}

int tea_request_context(const uint8_t *req, size_t len, const uint8_t **ctx)
{
	struct req_info ri;
	int err = parse_request(req, len, &ri);

	if (err)
		return err;
	*ctx = ri.ctx;
	return ri.ctx_len;
}

/*
 * The authenticator hash: the cipher suite's hash in TLS 1.3, the PRF hash in TLS 1.2. RFC 9261
 * forbids TLS 1.2 without extended master secret (the key synchronisation attack) and anything
 * older.
 */
static int auth_md(SSL *ssl, const EVP_MD **md)
{
	const SSL_CIPHER *c;
	int v = SSL_version(ssl);

	if (!SSL_is_init_finished(ssl))
		return -ENOTCONN;
	if (v != TLS1_3_VERSION) {
		if (v != TLS1_2_VERSION && v != DTLS1_2_VERSION)
			return -EPROTO;
		if (SSL_get_extms_support(ssl) != 1)
			return -EPROTO;
	}
	c = SSL_get_current_cipher(ssl);
	*md = c ? SSL_CIPHER_get_handshake_digest(c) : NULL;
	if (!*md)
		return -EPROTO;
	/*
	 * OpenSSL names MD5-SHA1 as the handshake digest of suites older than TLS 1.2, yet under
	 * 1.2 their PRF, and so the exporter, is SHA-256 (RFC 5246 section 5).
	 */
	if (v != TLS1_3_VERSION && EVP_MD_get_type(*md) == NID_md5_sha1)
		*md = EVP_sha256();
	if (EVP_MD_get_size(*md) <= 0 || EVP_MD_get_size(*md) > MAX_HASH)
		return -EPROTO;
	return EVP_MD_get_size(*md);
}

static int values(SSL *ssl, bool client_sent, uint8_t *hc, uint8_t *fk, const EVP_MD **md)
{
	static const char *const hc_label[] = {
		"EXPORTER-server authenticator handshake context",
		"EXPORTER-client authenticator handshake context",
	};
	static const char *const fk_label[] = {
		"EXPORTER-server authenticator finished key",
		"EXPORTER-client authenticator finished key",
	};
	/*
	 * RFC 9261 asks for an empty (zero-length) context, which in TLS 1.2 (RFC 5705) is not
	 * the same as no context: use_context is 1. A real, if empty, pointer keeps OpenSSL
	 * from a memcpy() from NULL.
	 */
	static const uint8_t none[1];
	int n = auth_md(ssl, md);

	if (n < 0)
		return n;
	if (SSL_export_keying_material(ssl, hc, n, hc_label[client_sent],
				       strlen(hc_label[client_sent]), none, 0, 1) != 1 ||
	    SSL_export_keying_material(ssl, fk, n, fk_label[client_sent],
				       strlen(fk_label[client_sent]), none, 0, 1) != 1)
		return -EIO;
	return n;
}

int tea_values(SSL *ssl, bool client_sent, uint8_t hc[64], uint8_t fk[64])
{
	const EVP_MD *md;

	return values(ssl, client_sent, hc, fk, &md);
}

struct part {
	const void *p;
	size_t len;
};

static int digest(const EVP_MD *md, const struct part *parts, int n, uint8_t *out)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int i, err = -EIO;

	if (!m)
		return -ENOMEM;
	if (EVP_DigestInit_ex(m, md, NULL) != 1)
		goto out;
	for (i = 0; i < n; i++)
		if (parts[i].len && EVP_DigestUpdate(m, parts[i].p, parts[i].len) != 1)
			goto out;
	if (EVP_DigestFinal_ex(m, out, NULL) == 1)
		err = 0;
out:
	EVP_MD_CTX_free(m);
	return err;
}

/* Finished: HMAC(finished key, Hash(HandshakeContext || request || messages...)). */
static int finished_mac(const EVP_MD *md, const uint8_t *fk, const struct part *parts, int n,
			uint8_t *out)
{
	uint8_t th[MAX_HASH];
	int hlen = EVP_MD_get_size(md), err;
	unsigned int outlen = 0;

	err = digest(md, parts, n, th);
	if (err)
		return err;
	if (!HMAC(md, fk, hlen, th, hlen, out, &outlen) || (int)outlen != hlen)
		return -EIO;
	return 0;
}

/* The bytes CertificateVerify signs (RFC 9261, after RFC 8446 4.4.3). */
#define SIG_LABEL "Exported Authenticator"
#define TBS_MAX (64 + sizeof(SIG_LABEL) + MAX_HASH)

static int to_be_signed(const EVP_MD *md, const struct part *parts, int n, uint8_t *tbs)
{
	int err;

	memset(tbs, 0x20, 64);
	memcpy(tbs + 64, SIG_LABEL, sizeof(SIG_LABEL)); /* with its 0x00 separator */
	err = digest(md, parts, n, tbs + 64 + sizeof(SIG_LABEL));
	if (err)
		return err;
	return (int)(64 + sizeof(SIG_LABEL)) + EVP_MD_get_size(md);
}

static int key_curve(EVP_PKEY *key)
{
	char name[80];
	size_t n = 0;
	int nid;

	if (EVP_PKEY_get_group_name(key, name, sizeof(name), &n) != 1)
		return NID_undef;
	nid = OBJ_txt2nid(name);
	return nid != NID_undef ? nid : EC_curve_nist2nid(name);
}

static const struct scheme *scheme_by_code(uint16_t code)
{
	size_t i;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (schemes[i].code == code)
			return &schemes[i];
	return NULL;
}

static bool scheme_fits(const struct scheme *s, EVP_PKEY *key)
{
	if (EVP_PKEY_get_base_id(key) != s->type)
		return false;
	return s->curve == NID_undef || key_curve(key) == s->curve;
}

/* The first scheme the request offers that suits @key; with no request, our own order. */
static const struct scheme *pick_scheme(const struct req_info *ri, bool spontaneous, EVP_PKEY *key)
{
	struct rbuf list = ri->sigalgs;
	const struct scheme *s;
	size_t i;

	if (spontaneous) {
		for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
			if (scheme_fits(&schemes[i], key))
				return &schemes[i];
		return NULL;
	}
	while (list.len >= 2) {
		s = scheme_by_code(get_u(&list, 2));
		if (s && scheme_fits(s, key))
			return s;
	}
	return NULL;
}

static bool offers(const struct req_info *ri, uint16_t code)
{
	struct rbuf list = ri->sigalgs;

	while (list.len >= 2)
		if (get_u(&list, 2) == code)
			return true;
	return false;
}

/* RFC 8446 4.2.3: RSASSA-PSS with MGF1 on the same hash and a salt as long as the hash. */
static int pss_params(EVP_PKEY_CTX *pctx, const struct scheme *s)
{
	if (s->type != EVP_PKEY_RSA && s->type != EVP_PKEY_RSA_PSS)
		return 0;
	if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, s->md()) != 1)
		return -EIO;
	return 0;
}

/* Sign @tbs into a CertificateVerify body written to @w. */
static int put_signature(struct wbuf *w, const struct scheme *s, EVP_PKEY *key, const uint8_t *tbs,
			 size_t tbs_len)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t *sig = NULL;
	size_t sig_len;
	int err = -EIO;

	if (!m)
		return -ENOMEM;
	/* EVP_PKEY_get_size() bounds the signature for every key type in the table. */
	sig_len = EVP_PKEY_get_size(key);
	sig = OPENSSL_malloc(sig_len ? sig_len : 1);
	if (!sig) {
		err = -ENOMEM;
		goto out;
	}
	if (EVP_DigestSignInit(m, &pctx, s->md ? s->md() : NULL, NULL, key) != 1)
		goto out;
	err = pss_params(pctx, s);
	if (err)
		goto out;
	err = -EIO;
	if (EVP_DigestSign(m, sig, &sig_len, tbs, tbs_len) != 1)
		goto out;
	put_u(w, s->code, 2);
	put_u(w, sig_len, 2);
	put(w, sig, sig_len);
	err = 0;
out:
	OPENSSL_free(sig);
	EVP_MD_CTX_free(m);
	return err;
}

static int verify_signature(const struct scheme *s, EVP_PKEY *key, const uint8_t *tbs,
			    size_t tbs_len, const uint8_t *sig, size_t sig_len)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int err = -EKEYREJECTED;

	if (!m)
		return -ENOMEM;
	if (EVP_DigestVerifyInit(m, &pctx, s->md ? s->md() : NULL, NULL, key) != 1)
		goto out;
	if (pss_params(pctx, s))
		goto out;
	if (EVP_DigestVerify(m, sig, sig_len, tbs, tbs_len) == 1)
		err = 0;
out:
	EVP_MD_CTX_free(m);
	return err;
}

/* One CertificateEntry: the DER and, for the leaf, the dane_clientid it was asked for. */
static void put_entry(struct wbuf *w, X509 *cert, const char *dane_name)
{
	int der_len = i2d_X509(cert, NULL);
	size_t at, ext, data;
	uint8_t *p;

	if (der_len <= 0) {
		if (!w->err)
			w->err = -EINVAL;
		return;
	}
	at = begin_len(w, 3);
	p = reserve(w, der_len);
	if (p && i2d_X509(cert, &p) != der_len && !w->err)
		w->err = -EIO;
	end_len(w, at, 3);
	ext = begin_len(w, 2);
	if (dane_name) {
		put_u(w, TEA_CLIENTID, 2);
		data = begin_len(w, 2);
		put_u(w, strlen(dane_name), 1);
		put(w, dane_name, strlen(dane_name));
		end_len(w, data, 2);
	}
	end_len(w, ext, 2);
}

/* A TLS 1.3 Certificate message (RFC 8446 4.4.2); @cert NULL gives the empty list. */
static void put_certificate(struct wbuf *w, const uint8_t *ctx, size_t ctx_len, X509 *cert,
			    struct stack_st_X509 *chain, const char *dane_name)
{
	size_t msg, list;
	int i;

	put_u(w, HS_CERTIFICATE, 1);
	msg = begin_len(w, 3);
	put_u(w, ctx_len, 1);
	put(w, ctx, ctx_len);
	list = begin_len(w, 3);
	if (cert) {
		put_entry(w, cert, dane_name);
		for (i = 0; i < sk_X509_num(chain); i++)
			put_entry(w, sk_X509_value(chain, i), NULL);
	}
	end_len(w, list, 3);
	end_len(w, msg, 3);
}

/* The Certificate that an empty authenticator hashes but does not send (RFC 9261). */
static int empty_certificate(const struct req_info *ri, uint8_t *buf, size_t cap)
{
	struct wbuf w = { buf, 0, cap, 0 };

	put_certificate(&w, ri->ctx, ri->ctx_len, NULL, NULL, NULL);
	return w.err ? w.err : (int)w.len;
}

int tea_request(SSL *ssl, const uint8_t *ctx, size_t ctx_len, bool dane, const char *server_name,
		uint8_t *out, size_t cap)
{
	bool server = SSL_is_server(ssl);
	struct wbuf w = { out, 0, cap, 0 };
	size_t msg, exts, ext, list, sn_len = 0;
	size_t i;

	if (!out || ctx_len > 255 || (ctx_len && !ctx))
		return -EINVAL;
	/* server_name in a request is RFC 9261's addition for ClientCertificateRequest only. */
	if (server_name) {
		sn_len = strlen(server_name);
		if (server || !sn_len || sn_len > 255)
			return -EINVAL;
	}

	put_u(&w, server ? HS_CERTIFICATE_REQUEST : HS_CLIENT_CERTIFICATE_REQUEST, 1);
	msg = begin_len(&w, 3);
	put_u(&w, ctx_len, 1);
	put(&w, ctx, ctx_len);
	exts = begin_len(&w, 2);

	put_u(&w, EXT_SIGNATURE_ALGORITHMS, 2);
	ext = begin_len(&w, 2);
	list = begin_len(&w, 2);
	for (i = 0; i < sizeof(offered) / sizeof(offered[0]); i++)
		put_u(&w, offered[i], 2);
	end_len(&w, list, 2);
	end_len(&w, ext, 2);

	if (dane) {
		/* a zero-length ClientName: "tell me your name", not a name */
		put_u(&w, TEA_CLIENTID, 2);
		put_u(&w, 1, 2);
		put_u(&w, 0, 1);
	}
	if (server_name) {
		/* RFC 6066 3: ServerNameList with one host_name (0) entry */
		put_u(&w, EXT_SERVER_NAME, 2);
		ext = begin_len(&w, 2);
		list = begin_len(&w, 2);
		put_u(&w, 0, 1);
		put_u(&w, sn_len, 2);
		put(&w, server_name, sn_len);
		end_len(&w, list, 2);
		end_len(&w, ext, 2);
	}
	end_len(&w, exts, 2);
	end_len(&w, msg, 3);
	return w.err ? w.err : (int)w.len;
}

int tea_authenticate(SSL *ssl, const uint8_t *req, size_t req_len, X509 *cert,
		     struct stack_st_X509 *chain, EVP_PKEY *key, const char *dane_name,
		     uint8_t *out, size_t cap)
{
	bool server = SSL_is_server(ssl);
	uint8_t hc[MAX_HASH], fk[MAX_HASH], own_ctx[32], tbs[TBS_MAX];
	uint8_t empty[HS_HDR + 1 + 255 + 3];
	struct wbuf w = { out, 0, cap, 0 };
	const struct scheme *s = NULL;
	struct req_info ri;
	const EVP_MD *md;
	size_t cert_len, cv, fin;
	int hlen, n, err;

	if (!out)
		return -EINVAL;
	if (req) {
		err = parse_request(req, req_len, &ri);
		if (err)
			return err;
		/* the peer asked: a server answers a ClientCertificateRequest, a client a CR */
		if (ri.type != (server ? HS_CLIENT_CERTIFICATE_REQUEST : HS_CERTIFICATE_REQUEST))
			return -EBADMSG;
	} else {
		/* Only a server may speak unasked, and a refusal needs something to refuse. */
		memset(&ri, 0, sizeof(ri));
		req_len = 0;
		if (!server || !cert)
			return -EINVAL;
		if (RAND_bytes(own_ctx, sizeof(own_ctx)) != 1)
			return -EIO;
		ri.ctx = own_ctx;
		ri.ctx_len = sizeof(own_ctx);
	}
	if (cert) {
		if (!key)
			return -EINVAL;
		s = pick_scheme(&ri, !req, key);
		if (!s)
			return -EOPNOTSUPP;
		/* Certificate extensions answer the request's (RFC 9261): no ask, no name. */
		if (!ri.dane)
			dane_name = NULL;
		if (dane_name && strlen(dane_name) > 255)
			return -EINVAL;
	}

	hlen = values(ssl, !server, hc, fk, &md);
	if (hlen < 0)
		return hlen;

	if (!cert) {
		n = empty_certificate(&ri, empty, sizeof(empty));
		if (n < 0)
			return n;
		put_u(&w, HS_FINISHED, 1);
		put_u(&w, hlen, 3);
		fin = w.len;
		reserve(&w, hlen);
		if (w.err)
			return w.err;
		err = finished_mac(md, fk,
				   (struct part[]){ { hc, hlen }, { req, req_len }, { empty, n } },
				   3, out + fin);
		return err ? err : (int)w.len;
	}

	put_certificate(&w, ri.ctx, ri.ctx_len, cert, chain, dane_name);
	if (w.err)
		return w.err;
	cert_len = w.len;

	n = to_be_signed(md, (struct part[]){ { hc, hlen }, { req, req_len }, { out, cert_len } },
			 3, tbs);
	if (n < 0)
		return n;
	put_u(&w, HS_CERTIFICATE_VERIFY, 1);
	cv = begin_len(&w, 3);
	err = put_signature(&w, s, key, tbs, n);
	if (err)
		return err;
	end_len(&w, cv, 3);

	/* Finished covers everything so far: Certificate and CertificateVerify are out[0..len). */
	n = w.len;
	put_u(&w, HS_FINISHED, 1);
	put_u(&w, hlen, 3);
	fin = w.len;
	reserve(&w, hlen);
	if (w.err)
		return w.err;
	err = finished_mac(md, fk, (struct part[]){ { hc, hlen }, { req, req_len }, { out, n } }, 3,
			   out + fin);
	return err ? err : (int)w.len;
}

int tea_split(const uint8_t *auth, size_t len, struct tea_parts *p)
{
	size_t off[3], size[3], at = 0;
	uint8_t type[3];
	int n = 0;

	memset(p, 0, sizeof(*p));
	if (!auth)
		return -EBADMSG;
	while (at < len) {
		size_t body;

		if (n == 3 || len - at < HS_HDR)
			return -EBADMSG;
		body = (size_t)auth[at + 1] << 16 | auth[at + 2] << 8 | auth[at + 3];
		if (body > len - at - HS_HDR)
			return -EBADMSG;
		type[n] = auth[at];
		off[n] = at;
		size[n] = HS_HDR + body;
		at += size[n++];
	}
	/* Either Certificate, CertificateVerify, Finished, or a lone Finished (a refusal). */
	if (n == 1 && type[0] == HS_FINISHED) {
		p->fin_off = off[0];
		p->fin_len = size[0];
		return 0;
	}
	if (n != 3 || type[0] != HS_CERTIFICATE || type[1] != HS_CERTIFICATE_VERIFY ||
	    type[2] != HS_FINISHED)
		return -EBADMSG;
	p->cert_off = off[0];
	p->cert_len = size[0];
	p->cv_off = off[1];
	p->cv_len = size[1];
	p->fin_off = off[2];
	p->fin_len = size[2];
	return 0;
}

/* The leaf's dane_clientid: a ClientName, one length byte and a name with no NUL in it. */
static int read_dane_name(struct rbuf data, char *name, size_t cap)
{
	struct rbuf v = get_vec(&data, 1);

	if (!used_up(&data) || v.len >= cap || memchr(v.p, 0, v.len))
		return -EBADMSG;
	memcpy(name, v.p, v.len);
	name[v.len] = 0;
	return 0;
}

/*
 * Parse a Certificate message: its context, the leaf (returned) and its dane_clientid. Every
 * entry must hold one whole DER certificate, and with a request every extension must answer
 * one of the request's.
 */
static int parse_certificate(const uint8_t *msg, size_t len, const struct req_info *ri,
			     bool have_req, struct rbuf *ctx, X509 **leaf, char *dane_name)
{
	struct rbuf r = { msg, len, false }, body, list;

	*leaf = NULL;
	get_u(&r, 1); /* tea_split() saw the type */
	body = get_vec(&r, 3);
	*ctx = get_vec(&body, 1);
	list = get_vec(&body, 3);
	/* an empty list is never sent: a refusal is a lone Finished */
	if (!used_up(&r) || !used_up(&body) || !list.len)
		return -EBADMSG;
	while (list.len) {
		struct rbuf der = get_vec(&list, 3), exts = get_vec(&list, 2), e, data;
		const uint8_t *p = der.p;
		bool is_leaf;
		X509 *x;

		if (list.bad || !der.len || check_exts(exts))
			goto fail;
		x = d2i_X509(NULL, &p, der.len);
		if (!x)
			goto fail;
		if (p != der.p + der.len) {
			X509_free(x);
			goto fail;
		}
		is_leaf = !*leaf;
		if (is_leaf) {
			*leaf = x;
			/* d2i_X509() leaves the key undecoded; the signature check needs it */
			if (!X509_get0_pubkey(x))
				goto fail;
		} else {
			X509_free(x); /* intermediates: checked to be DER, then dropped */
		}

		for (e = exts; e.len;) {
			uint16_t t = get_u(&e, 2);

			data = get_vec(&e, 2);
			if (have_req && !find_ext(ri->exts, t, NULL))
				goto fail;
			if (t == TEA_CLIENTID && is_leaf && read_dane_name(data, dane_name, 256))
				goto fail;
		}
	}
	return 0;
fail:
	X509_free(*leaf);
	*leaf = NULL;
	dane_name[0] = 0;
	return -EBADMSG;
}

int tea_validate(SSL *ssl, const uint8_t *req, size_t req_len, const uint8_t *auth, size_t auth_len,
		 struct tea_found *found)
{
	bool server = SSL_is_server(ssl);
	uint8_t hc[MAX_HASH], fk[MAX_HASH], mac[MAX_HASH], tbs[TBS_MAX];
	uint8_t empty[HS_HDR + 1 + 255 + 3];
	const struct scheme *s;
	struct tea_parts p;
	struct req_info ri;
	struct rbuf ctx, cv, sig;
	const EVP_MD *md;
	uint16_t code;
	X509 *leaf = NULL;
	int hlen, n, err;

	memset(found, 0, sizeof(*found));
	if (req) {
		err = parse_request(req, req_len, &ri);
		if (err)
			return err;
		/* we made the request: a server's is a CertificateRequest */
		if (ri.type != (server ? HS_CERTIFICATE_REQUEST : HS_CLIENT_CERTIFICATE_REQUEST))
			return -EBADMSG;
	} else {
		/* Clients MUST NOT authenticate unasked, so only a client takes this. */
		memset(&ri, 0, sizeof(ri));
		req_len = 0;
		if (server)
			return -EINVAL;
	}

	/* the peer made @auth: the client's values if we are the server */
	hlen = values(ssl, server, hc, fk, &md);
	if (hlen < 0)
		return hlen;
	err = tea_split(auth, auth_len, &p);
	if (err)
		return err;
	if (p.fin_len != (size_t)HS_HDR + hlen)
		return -EBADMSG;

	if (!p.cert_len) {
		/* A refusal answers a request; spontaneous has none and has no context either. */
		if (!req)
			return -EBADMSG;
		n = empty_certificate(&ri, empty, sizeof(empty));
		if (n < 0)
			return n;
		err = finished_mac(md, fk,
				   (struct part[]){ { hc, hlen }, { req, req_len }, { empty, n } },
				   3, mac);
		if (err)
			return err;
		if (CRYPTO_memcmp(mac, auth + p.fin_off + HS_HDR, hlen))
			return -EBADE;
		found->empty = true;
		return -ENODATA;
	}

	err = parse_certificate(auth + p.cert_off, p.cert_len, &ri, req != NULL, &ctx, &leaf,
				found->dane_name);
	if (err)
		return err;
	cv = (struct rbuf){ auth + p.cv_off + HS_HDR, p.cv_len - HS_HDR, false };
	code = get_u(&cv, 2);
	sig = get_vec(&cv, 2);
	err = -EBADMSG;
	if (!used_up(&cv))
		goto fail;

	err = -ESRCH;
	if (req && (ctx.len != ri.ctx_len || CRYPTO_memcmp(ctx.p, ri.ctx, ctx.len)))
		goto fail;

	/* A scheme we did not offer, or one that does not match the key, cannot verify. */
	err = -EKEYREJECTED;
	s = scheme_by_code(code);
	if (!s || (req && !offers(&ri, code)) || !scheme_fits(s, X509_get0_pubkey(leaf)))
		goto fail;
	n = to_be_signed(md,
			 (struct part[]){ { hc, hlen },
					  { req, req_len },
					  { auth + p.cert_off, p.cert_len } },
			 3, tbs);
	if (n < 0) {
		err = n;
		goto fail;
	}
	err = verify_signature(s, X509_get0_pubkey(leaf), tbs, n, sig.p, sig.len);
	if (err)
		goto fail;

	err = finished_mac(md, fk,
			   (struct part[]){ { hc, hlen },
					    { req, req_len },
					    { auth + p.cert_off, p.cert_len },
					    { auth + p.cv_off, p.cv_len } },
			   4, mac);
	if (err)
		goto fail;
	err = -EBADE;
	if (CRYPTO_memcmp(mac, auth + p.fin_off + HS_HDR, hlen))
		goto fail;
	found->leaf = leaf;
	return 0;
fail:
	X509_free(leaf);
	found->dane_name[0] = 0;
	return err;
}
