// SPDX-License-Identifier: GPL-2.0
/*
 * kpatch.bpf.c - kernel-patches/'s kfunc from a BPF LSM program, for kpatch_test: what
 * kernel TLS a socket of the test carries when it sends, and the policy the kfunc is
 * for, which refuses sends on a protected port unless both directions carry kernel
 * TLS 1.3. The kfunc is a strong extern: against a tls.ko without it (stock), the
 * program does not load at all.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "kpatch.h"

extern int bpf_sk_ktls_info(struct sock *sk, struct bpf_tls_info *info, __u32 info__sz) __ksym;

#define TLS_1_3 0x0304
#define CONF_SW 2 /* TLS_CONF_SW; TLS_CONF_HW and _HW_RECORD are 3 and 4 */
#define EPERM 1

const volatile __u32 test_pid; /* only the test's own sends */
__u16 protected_port; /* a local port: no plaintext sends there */
int last_ret;
struct bpf_tls_info last;
__u32 sends;

SEC("lsm/socket_sendmsg")
int BPF_PROG(kpatch_send, struct socket *sock, struct msghdr *msg, int size)
{
	struct bpf_tls_info info;
	struct sock *sk;
	int ret;

	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != test_pid)
		return 0;
	sk = sock->sk;
	if (!sk)
		return 0;
	ret = bpf_sk_ktls_info(sk, &info, sizeof(info));
	last_ret = ret;
	last = info;
	sends++;
	if (protected_port && sk->__sk_common.skc_num == protected_port &&
	    (ret || info.version != TLS_1_3 || info.tx_conf < CONF_SW || info.rx_conf < CONF_SW))
		return -EPERM;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
