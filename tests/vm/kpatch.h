/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kpatch.h - what kernel-patches/'s kfunc bpf_sk_ktls_info() fills in, for the BPF
 * program (kpatch.bpf.c) and its test (kpatch_test.c). tls.ko's BTF carries the same
 * layout; the kfunc refuses any other size.
 */
#ifndef DANCED_KPATCH_H
#define DANCED_KPATCH_H

struct bpf_tls_info {
	__u16 version; /* TLS_1_2_VERSION, TLS_1_3_VERSION; 0 before the first key */
	__u16 cipher_type; /* TLS_CIPHER_* */
	__u16 tx_conf; /* TLS_CONF_BASE (none), _SW, _HW, _HW_RECORD */
	__u16 rx_conf;
};

#endif
