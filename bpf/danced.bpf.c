// SPDX-License-Identifier: GPL-2.0
/*
 * danced.bpf.c - the kernel's half of danced's policy: on a protected local port, data
 * I/O of a socket whose verified name the policy does not allow fails with EACCES.
 *
 * danced writes each returned socket's identity into socket storage (by fd) and into
 * "identities" (by cookie, for bpftool). The LSM hooks on sendmsg and recvmsg check it
 * against "services" and "rules"; write(2), send*(2), recv*(2), sendfile(2), splice(2)
 * into a socket and io_uring all come through them. Reading a socket by splice(2) does
 * not (tcp_splice_read() has no hook), so file_permission covers reads by file: it runs
 * before read(2) and splice(2) reach the socket, and a refusal there is the only one
 * that call sees. danced's own handshake I/O is
 * exempt by its tgid, which it writes into agent_tgid at start. Everything is pinned,
 * so enforcement outlives danced: it fails closed while danced is down.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "danced.h"

#define EACCES 13
#define MAY_READ 4

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct danced_ident);
} sk_ident SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DANCED_BPF_IDENTITIES_MAX);
	__type(key, __u64);
	__type(value, struct danced_ident);
} identities SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DANCED_BPF_SERVICES_MAX);
	__type(key, __u16);
	__type(value, struct danced_service);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, DANCED_BPF_RULES_MAX);
	__type(key, struct danced_rule_key);
	__type(value, struct danced_rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} watch SEC(".maps");

/* One event, built once and copied into both buffers. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct danced_event);
} scratch_ev SEC(".maps");

/* The lookup key is built here, not on the stack: it is bigger than the stack allows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct danced_rule_key);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DANCED_BPF_REVOKE_MAX);
	__type(key, char[256]);
	__type(value, __u8);
} revoke SEC(".maps");

extern int bpf_sock_destroy(struct sock_common *sk) __ksym __weak;

/* danced's tgid; its own handshake I/O on protected ports must pass. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct danced_agent);
} agent SEC(".maps");

static bool is_agent(void)
{
	struct danced_agent *a;
	__u32 zero = 0;

	a = bpf_map_lookup_elem(&agent, &zero);
	return a && a->tgid && a->tgid == bpf_get_current_pid_tgid() >> 32;
}

static void report(struct sock *sk, const struct danced_ident *id, __u16 port, __u8 op, __u8 why,
		   __u8 audit)
{
	struct danced_event *ev;
	__u32 zero = 0;

	ev = bpf_map_lookup_elem(&scratch_ev, &zero);
	if (!ev)
		return;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts = bpf_ktime_get_ns();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->port = port;
	ev->op = op;
	ev->why = why;
	ev->audit = audit;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	if (id) {
		ev->cookie = id->cookie;
		__builtin_memcpy(ev->rname, id->rname, sizeof(ev->rname));
	}
	/* A full buffer loses the record, never the verdict. */
	bpf_ringbuf_output(&events, ev, sizeof(*ev), 0);
	bpf_ringbuf_output(&watch, ev, sizeof(*ev), 0);
}

/* The verdict for a verified identity on a service: the longest rule, else the default. */
static __u8 verdict(const struct danced_ident *id, const struct danced_service *svc, __u16 port)
{
	struct danced_rule_key *k;
	struct danced_rule *r;
	__u32 zero = 0;

	if (id->auth == DANCED_AUTH_NONE || !id->name_len)
		return DANCED_VERDICT_DENY;
	k = bpf_map_lookup_elem(&scratch, &zero);
	if (!k)
		return DANCED_VERDICT_DENY;
	k->prefixlen = 8 * sizeof(k->port) + 8 * sizeof(k->rname);
	k->port = port;
	__builtin_memcpy(k->rname, id->rname, sizeof(k->rname));
	r = bpf_map_lookup_elem(&rules, k);
	return r ? r->verdict : svc->dflt;
}

static int check(struct socket *sock, __u8 op)
{
	struct sock *sk = sock->sk;
	const struct danced_service *svc;
	struct danced_ident *id;
	__u16 port;
	__u8 why;

	if (!sk || (sk->__sk_common.skc_family != 2 /* AF_INET */ &&
		    sk->__sk_common.skc_family != 10 /* AF_INET6 */))
		return 0;
	port = sk->__sk_common.skc_num;
	svc = bpf_map_lookup_elem(&services, &port);
	if (!svc || !svc->mode)
		return 0;
	/* A service scoped to a cgroup: its subtree only, wherever the process sits in it. */
	if (svc->cgroup_id &&
	    bpf_get_current_ancestor_cgroup_id(svc->cgroup_level) != svc->cgroup_id)
		return 0;
	if (is_agent())
		return 0;
	id = bpf_sk_storage_get(&sk_ident, sk, 0, 0);
	if (!id)
		why = DANCED_WHY_NO_IDENTITY;
	else if (verdict(id, svc, port) == DANCED_VERDICT_ALLOW)
		return 0;
	else
		why = DANCED_WHY_DENIED;
	report(sk, id, port, op, why, svc->mode == DANCED_MODE_AUDIT);
	return svc->mode == DANCED_MODE_AUDIT ? 0 : -EACCES;
}

SEC("lsm/socket_sendmsg")
int BPF_PROG(danced_sendmsg, struct socket *sock, struct msghdr *msg, int size)
{
	return check(sock, DANCED_EV_SEND);
}

SEC("lsm/socket_recvmsg")
int BPF_PROG(danced_recvmsg, struct socket *sock, struct msghdr *msg, int size, int flags)
{
	return check(sock, DANCED_EV_RECV);
}

SEC("lsm/file_permission")
int BPF_PROG(danced_file_permission, struct file *file, int mask)
{
	struct socket *sock;

	if (!(mask & MAY_READ))
		return 0; /* writes reach socket_sendmsg, splice and sendfile included */
	sock = bpf_sock_from_file(file);
	return sock ? check(sock, DANCED_EV_RECV) : 0;
}

/*
 * A socket's identity goes with it: socket storage is freed with the socket, and its
 * entry in "identities" when TCP closes it, so bpftool lists live sockets only.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(danced_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	struct danced_ident *id;

	if (newstate != 7 /* TCP_CLOSE */)
		return 0;
	id = bpf_sk_storage_get(&sk_ident, (struct sock *)sk, 0, 0);
	if (id)
		bpf_map_delete_elem(&identities, &id->cookie);
	return 0;
}

/*
 * The sweep, run by reading its pinned iterator: every TCP socket with an identity that
 * is revoked by name, or that an enforcing service's rules now deny, is destroyed (its
 * owner's next call fails with ECONNABORTED, and the peer gets a reset). One line per
 * socket, "cookie name", so that the reader can count and report.
 */
SEC("iter/tcp")
int danced_sweep(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	const struct danced_service *svc;
	struct danced_ident *id;
	struct tcp_sock *tp;
	__u16 port;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	id = bpf_sk_storage_get(&sk_ident, (struct sock *)tp, 0, 0);
	if (!id)
		return 0;
	if (!bpf_map_lookup_elem(&revoke, id->rname)) {
		port = skc->skc_num;
		svc = bpf_map_lookup_elem(&services, &port);
		if (!svc || svc->mode != DANCED_MODE_ENFORCE ||
		    verdict(id, svc, port) == DANCED_VERDICT_ALLOW)
			return 0;
	}
	if (bpf_sock_destroy(skc))
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%llu %s\n", id->cookie, id->rname);
	return 0;
}
