// SPDX-License-Identifier: GPL-2.0
/*
 * record.c - an independent TLS record layer keyed by a kTLS crypto_info (test oracle).
 *
 * Field sizes come from the kernel's uapi macros, not from agent/ktls.c, so a layout
 * mistake there cannot hide here.
 */
#include <errno.h>
#include <string.h>
#include <openssl/evp.h>

#include "record.h"

struct layout {
	const EVP_CIPHER *(*cipher)(void);
	size_t iv, key, salt;
	bool ccm;
};

static int layout_of(const union ktls_crypto_info *ci, struct layout *l)
{
	switch (ci->info.cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		*l = (struct layout){ EVP_aes_128_gcm, TLS_CIPHER_AES_GCM_128_IV_SIZE,
				      TLS_CIPHER_AES_GCM_128_KEY_SIZE,
				      TLS_CIPHER_AES_GCM_128_SALT_SIZE, false };
		return 0;
	case TLS_CIPHER_AES_GCM_256:
		*l = (struct layout){ EVP_aes_256_gcm, TLS_CIPHER_AES_GCM_256_IV_SIZE,
				      TLS_CIPHER_AES_GCM_256_KEY_SIZE,
				      TLS_CIPHER_AES_GCM_256_SALT_SIZE, false };
		return 0;
	case TLS_CIPHER_AES_CCM_128:
		*l = (struct layout){ EVP_aes_128_ccm, TLS_CIPHER_AES_CCM_128_IV_SIZE,
				      TLS_CIPHER_AES_CCM_128_KEY_SIZE,
				      TLS_CIPHER_AES_CCM_128_SALT_SIZE, true };
		return 0;
	case TLS_CIPHER_CHACHA20_POLY1305:
		*l = (struct layout){ EVP_chacha20_poly1305, TLS_CIPHER_CHACHA20_POLY1305_IV_SIZE,
				      TLS_CIPHER_CHACHA20_POLY1305_KEY_SIZE,
				      TLS_CIPHER_CHACHA20_POLY1305_SALT_SIZE, false };
		return 0;
	}
	return -EINVAL;
}

static const uint8_t *field(const union ktls_crypto_info *ci, size_t off)
{
	return (const uint8_t *)ci + sizeof(struct tls_crypto_info) + off;
}

uint64_t record_seq(const union ktls_crypto_info *ci)
{
	struct layout l;
	const uint8_t *p;
	uint64_t v = 0;
	int i;

	if (layout_of(ci, &l))
		return ~0ULL;
	p = field(ci, l.iv + l.key + l.salt);
	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = v;
}

/*
 * The per-record nonce. TLS 1.2 GCM/CCM (RFC 5288): salt || explicit nonce, where the
 * kernel sends its iv field counted up per record; starting from our iv == rec_seq that
 * is the sequence number. Everything else (RFC 7905, RFC 8446 5.3): the 12-byte IV
 * XOR the padded sequence number.
 */
static void nonce_of(const union ktls_crypto_info *ci, const struct layout *l, uint64_t seq,
		     uint8_t nonce[12], uint8_t explicit_nonce[8])
{
	uint8_t s[8];
	int i;

	be64(s, seq);
	if (ci->info.version == TLS_1_2_VERSION && l->salt) {
		memcpy(nonce, field(ci, l->iv + l->key), 4);
		memcpy(nonce + 4, s, 8);
		memcpy(explicit_nonce, s, 8);
		return;
	}
	if (l->salt) {
		memcpy(nonce, field(ci, l->iv + l->key), 4);
		memcpy(nonce + 4, field(ci, 0), 8);
	} else {
		memcpy(nonce, field(ci, 0), 12);
	}
	for (i = 0; i < 8; i++)
		nonce[4 + i] ^= s[i];
}

static int aead(const struct layout *l, const union ktls_crypto_info *ci, bool enc,
		const uint8_t nonce[12], const uint8_t *aad, size_t aad_len, const uint8_t *in,
		size_t len, uint8_t *out, uint8_t tag[16])
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n, ret = -EBADMSG;

	if (!c)
		return -ENOMEM;
	if (!EVP_CipherInit_ex(c, l->cipher(), NULL, NULL, NULL, enc) ||
	    !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) ||
	    (l->ccm && !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, enc ? NULL : tag)) ||
	    !EVP_CipherInit_ex(c, NULL, NULL, field(ci, l->iv), nonce, enc))
		goto out;
	/* CCM must know the message length before the associated data. */
	if (l->ccm && !EVP_CipherUpdate(c, NULL, &n, NULL, len))
		goto out;
	if (!EVP_CipherUpdate(c, NULL, &n, aad, aad_len))
		goto out;
	if (!l->ccm && !enc && !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag))
		goto out;
	if (!EVP_CipherUpdate(c, out, &n, in, len))
		goto out;
	if (!l->ccm && !EVP_CipherFinal_ex(c, out + n, &n))
		goto out;
	if (enc && !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag))
		goto out;
	ret = 0;
out:
	EVP_CIPHER_CTX_free(c);
	return ret;
}

/* Seal one record of @type with sequence number @seq. */
int record_seal(const union ktls_crypto_info *ci, uint64_t seq, uint8_t type, const uint8_t *pt,
		size_t len, uint8_t *out, size_t *out_len)
{
	uint8_t nonce[12], explicit_nonce[8], aad[13], inner[16385];
	bool tls13 = ci->info.version == TLS_1_3_VERSION;
	size_t body, hdr_extra;
	struct layout l;
	int ret;

	if (layout_of(ci, &l) || len > 16384)
		return -EINVAL;
	nonce_of(ci, &l, seq, nonce, explicit_nonce);
	hdr_extra = !tls13 && l.salt ? 8 : 0;
	if (tls13) {
		/* TLSInnerPlaintext: content || type; the outer type is always data. */
		memcpy(inner, pt, len);
		inner[len++] = type;
		pt = inner;
		type = 23;
	}
	body = hdr_extra + len + 16;
	out[0] = type;
	out[1] = 3;
	out[2] = 3;
	out[3] = body >> 8;
	out[4] = body;
	memcpy(out + 5, explicit_nonce, hdr_extra);
	if (tls13) {
		memcpy(aad, out, 5);
	} else {
		be64(aad, seq);
		aad[8] = type;
		aad[9] = 3;
		aad[10] = 3;
		aad[11] = len >> 8;
		aad[12] = len;
	}
	ret = aead(&l, ci, true, nonce, aad, tls13 ? 5 : 13, pt, len, out + 5 + hdr_extra,
		   out + 5 + hdr_extra + len);
	*out_len = 5 + body;
	return ret;
}

/* Open one whole record; -EBADMSG when it does not authenticate. */
int record_open(const union ktls_crypto_info *ci, uint64_t seq, const uint8_t *rec, size_t len,
		uint8_t *type, uint8_t *pt, size_t *pt_len)
{
	uint8_t nonce[12], explicit_nonce[8], aad[13], tag[16];
	bool tls13 = ci->info.version == TLS_1_3_VERSION;
	size_t hdr_extra, ct_len;
	struct layout l;
	int ret;

	if (layout_of(ci, &l) || len < 5 || len != 5 + (size_t)(rec[3] << 8 | rec[4]))
		return -EINVAL;
	nonce_of(ci, &l, seq, nonce, explicit_nonce);
	hdr_extra = !tls13 && l.salt ? 8 : 0;
	if (len < 5 + hdr_extra + 16)
		return -EINVAL;
	if (hdr_extra)
		memcpy(nonce + 4, rec + 5, 8); /* the nonce the sender actually used */
	ct_len = len - 5 - hdr_extra - 16;
	memcpy(tag, rec + len - 16, 16);
	if (tls13) {
		memcpy(aad, rec, 5);
	} else {
		be64(aad, seq);
		aad[8] = rec[0];
		aad[9] = 3;
		aad[10] = 3;
		aad[11] = ct_len >> 8;
		aad[12] = ct_len;
	}
	ret = aead(&l, ci, false, nonce, aad, tls13 ? 5 : 13, rec + 5 + hdr_extra, ct_len, pt, tag);
	if (ret)
		return ret;
	*type = rec[0];
	if (tls13) {
		/* Strip padding, then the inner content type is the last non-zero byte. */
		while (ct_len && !pt[ct_len - 1])
			ct_len--;
		if (!ct_len)
			return -EBADMSG;
		*type = pt[--ct_len];
	}
	*pt_len = ct_len;
	return 0;
}

/* Length of the first whole record in @wire, or 0 when there is none. */
size_t record_next(const uint8_t *wire, size_t len)
{
	size_t n;

	if (len < 5)
		return 0;
	n = 5 + (size_t)(wire[3] << 8 | wire[4]);
	return n <= len ? n : 0;
}
