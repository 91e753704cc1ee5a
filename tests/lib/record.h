/* SPDX-License-Identifier: GPL-2.0 */
/*
 * record.h - a TLS record layer driven by a kTLS crypto_info, written from RFC 5246,
 * RFC 5288, RFC 7905 and RFC 8446 alone. Host unit tests use it as an independent oracle:
 * if the bytes we would give the kernel seal and open records that OpenSSL's own record
 * layer accepts and produced, they are right. The VM tests then check the real kernel.
 */
#ifndef DANCED_TESTS_RECORD_H
#define DANCED_TESTS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "../../agent/ktls.h"

uint64_t record_seq(const union ktls_crypto_info *ci);
int record_seal(const union ktls_crypto_info *ci, uint64_t seq, uint8_t type, const uint8_t *pt,
		size_t len, uint8_t *out, size_t *out_len);
int record_open(const union ktls_crypto_info *ci, uint64_t seq, const uint8_t *rec, size_t len,
		uint8_t *type, uint8_t *pt, size_t *pt_len);
size_t record_next(const uint8_t *wire, size_t len);

#endif
