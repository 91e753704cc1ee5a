// SPDX-License-Identifier: GPL-2.0
/*
 * pki.c - test certificates: an ECDSA P-256 CA and leaves it signs, with SAN dNSNames
 * and the key usages real verifiers check, written to PEM files.
 */
#include <errno.h>
#include <stdio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki.h"

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return 0;
}

static X509 *cert_new(EVP_PKEY *key, const char *cn, long serial)
{
	X509 *cert = X509_new();

	if (!cert)
		return NULL;
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
	X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
				   (const unsigned char *)cn, -1, -1, 0);
	return cert;
}

int pki_ca_new(struct pki_ca *ca, const char *cn)
{
	static long serial = 1000;

	ca->key = EVP_EC_gen("P-256");
	ca->cert = ca->key ? cert_new(ca->key, cn, serial++) : NULL;
	if (!ca->cert)
		return -ENOMEM;
	X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert));
	if (add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE") ||
	    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash") ||
	    !X509_sign(ca->cert, ca->key, EVP_sha256()))
		return -EIO;
	return 0;
}

void pki_ca_free(struct pki_ca *ca)
{
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
}

/* The CA certificate, and with @key_path its key (to issue more leaves later). */
int pki_ca_write(const struct pki_ca *ca, const char *cert_path, const char *key_path)
{
	FILE *f = fopen(cert_path, "w");
	int ok;

	if (!f)
		return -errno;
	ok = PEM_write_X509(f, ca->cert);
	if (fclose(f) || !ok)
		return -EIO;
	if (!key_path)
		return 0;
	f = fopen(key_path, "w");
	if (!f)
		return -errno;
	ok = PEM_write_PrivateKey(f, ca->key, NULL, NULL, 0, NULL, NULL);
	return fclose(f) || !ok ? -EIO : 0;
}

/*
 * A leaf for a server (@server) or a client; the chain file holds the leaf, then the CA.
 * Without @ca the leaf signs itself (what DANE-EE identities usually are).
 */
int pki_leaf(const struct pki_ca *ca, const char *cn, const char *const *dns_names, int server,
	     const char *cert_path, const char *key_path)
{
	static long serial = 5000;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = key ? cert_new(key, cn, serial++) : NULL, *issuer;
	char san[1024];
	size_t n = 0;
	FILE *f;
	int ret = -EIO;

	if (!cert)
		goto out;
	X509_set_issuer_name(cert, X509_get_subject_name(ca ? ca->cert : cert));
	for (; dns_names && *dns_names; dns_names++)
		n += snprintf(san + n, sizeof(san) - n, "%sDNS:%s", n ? "," : "", *dns_names);
	issuer = ca ? ca->cert : cert;
	if ((n && add_ext(cert, issuer, NID_subject_alt_name, san)) ||
	    add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(cert, issuer, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(cert, issuer, NID_ext_key_usage, server ? "serverAuth" : "clientAuth") ||
	    (ca && add_ext(cert, issuer, NID_authority_key_identifier, "keyid")) ||
	    !X509_sign(cert, ca ? ca->key : key, EVP_sha256()))
		goto out;
	f = fopen(cert_path, "w");
	if (!f)
		goto out;
	if (!PEM_write_X509(f, cert) || (ca && !PEM_write_X509(f, ca->cert))) {
		fclose(f);
		goto out;
	}
	if (fclose(f))
		goto out;
	f = fopen(key_path, "w");
	if (!f)
		goto out;
	if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) {
		fclose(f);
		goto out;
	}
	ret = fclose(f) ? -EIO : 0;
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

/* A PEM certificate or private key from @path, or NULL; the caller frees it. */
X509 *pki_read_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return x;
}

EVP_PKEY *pki_read_key(const char *path)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;

	if (f)
		fclose(f);
	return k;
}
