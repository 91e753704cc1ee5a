/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pki.h - throwaway certificate authorities and leaf certificates for tests, generated
 * when the tests run and written as PEM files the way an operator would have them.
 */
#ifndef DANCED_TESTS_PKI_H
#define DANCED_TESTS_PKI_H

#include <openssl/evp.h>
#include <openssl/x509.h>

struct pki_ca {
	EVP_PKEY *key;
	X509 *cert;
};

int pki_ca_new(struct pki_ca *ca, const char *cn);
void pki_ca_free(struct pki_ca *ca);
int pki_ca_write(const struct pki_ca *ca, const char *cert_path, const char *key_path);
int pki_leaf(const struct pki_ca *ca, const char *cn, const char *const *dns_names, int server,
	     const char *cert_path, const char *key_path);

X509 *pki_read_cert(const char *path);
EVP_PKEY *pki_read_key(const char *path);

#endif
