// SPDX-License-Identifier: GPL-2.0
/*
 * danced.bpf.c - the kernel's half of danced's policy: on a protected TCP service (a
 * local port in one network namespace), data I/O of a socket whose verified name the
 * policy does not allow fails with EACCES.
 *
 * danced writes each returned socket's identity into socket storage (by fd) and into
 * "identities" (by cookie, for bpftool). The LSM hooks on sendmsg and recvmsg check it
 * against "services" and "rules"; write(2), send*(2), recv*(2), sendfile(2), splice(2)
 * into a socket and io_uring all come through them. Reading a socket by splice(2) does
 * not (tcp_splice_read() has no hook), so file_permission covers reads by file: it runs
 * before read(2) and splice(2) reach the socket, and a refusal there is the only one
 * that call sees.
 *
 * danced's own handshake I/O is exempt per socket: while danced holds a socket, its
 * storage carries danced's token, and only danced's process (marked in "agent_task")
 * passes, only while that token is the live one in "agent". Everything is pinned, so
 * enforcement outlives danced: it fails closed while danced is down.
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
	__type(key, struct danced_service_key);
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

/*
 * "closed": the cookie of each socket danced marked, as its last file reference goes, for
 * danced to drop what it keeps per connection (exported-authenticator values). A full
 * buffer drops records; danced's own store is bounded either way.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} closed SEC(".maps");

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

/* The live danced: its token (0 while it is down). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct danced_agent);
} agent SEC(".maps");

/* danced's process, marked through a pidfd: a PID can be reused, a task cannot. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct danced_agent_task);
} agent_task SEC(".maps");

extern int bpf_sock_destroy(struct sock_common *sk) __ksym __weak;

/* The live token, or 0. */
static __u64 live_token(void)
{
	struct danced_agent *a;
	__u32 zero = 0;

	a = bpf_map_lookup_elem(&agent, &zero);
	return a ? a->token : 0;
}

/* Is @task one of the live danced's threads (io_uring's workers included)? */
static bool is_danced(struct task_struct *task, __u64 token)
{
	struct danced_agent_task *t;

	t = bpf_task_storage_get(&agent_task, task->group_leader, 0, 0);
	return t && token && t->token == token;
}

static struct danced_service_key service_key(const struct sock_common *skc)
{
	struct danced_service_key k = {
		.netns = skc->skc_net.net->ns.inum,
		.port = skc->skc_num,
	};

	return k;
}

/*
 * A socket danced holds, touched by danced itself: its handshake. The service it is
 * for, and whether it is protected, go into the hold on the way: danced cannot read a
 * namespace's inode number without privileges, and judges plaintext it read behind the
 * handshake by them (with no map lookup at all when the service is not enforcing).
 */
static bool danced_handshake(struct sock *sk, struct danced_ident *id)
{
	const struct danced_service *svc;
	struct danced_service_key key;
	__u64 token = live_token();

	if (!token || id->hold != token || !is_danced(bpf_get_current_task_btf(), token))
		return false;
	key = service_key(&sk->__sk_common);
	svc = bpf_map_lookup_elem(&services, &key);
	id->netns = key.netns;
	id->port = key.port;
	id->mode = svc ? svc->mode : 0;
	return true;
}

/* A TCP service's socket (MPTCP too: its subflows are TCP); not UDP, not raw. */
static bool is_tcp(const struct sock *sk)
{
	return (sk->__sk_common.skc_family == 2 /* AF_INET */ ||
		sk->__sk_common.skc_family == 10 /* AF_INET6 */) &&
	       sk->sk_type == SOCK_STREAM &&
	       (sk->sk_protocol == IPPROTO_TCP || sk->sk_protocol == IPPROTO_MPTCP);
}

static void report(const struct danced_ident *id, const struct danced_service_key *sk, __u8 op,
		   __u8 why, __u8 audit)
{
	struct danced_event *ev;
	__u32 zero = 0;

	ev = bpf_map_lookup_elem(&scratch_ev, &zero);
	if (!ev)
		return;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ts = bpf_ktime_get_ns();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->netns = sk->netns;
	ev->port = sk->port;
	ev->op = op;
	ev->why = why;
	ev->audit = audit;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	if (id && !id->hold) {
		ev->cookie = id->cookie;
		ev->auth = id->auth;
		__builtin_memcpy(ev->rname, id->rname, sizeof(ev->rname));
	}
	/* A full buffer loses the record, never the verdict. */
	bpf_ringbuf_output(&events, ev, sizeof(*ev), 0);
	bpf_ringbuf_output(&watch, ev, sizeof(*ev), 0);
}

/*
 * Why a verified identity may not use a service (DANCED_WHY_*), or 0 when it may: the
 * longest rule, else the service's default. A rule that allows the name but not the
 * way it was proven refuses it; it never falls back to the default.
 */
static __u8 refusal(const struct danced_ident *id, const struct danced_service *svc,
		    const struct danced_service_key *sk)
{
	struct danced_rule_key *k;
	struct danced_rule *r;
	__u32 zero = 0;

	if (id->hold || id->auth == DANCED_AUTH_NONE)
		return DANCED_WHY_NO_IDENTITY;
	if (!id->name_len)
		return DANCED_WHY_DENIED; /* verified, but no name a rule could allow */
	k = bpf_map_lookup_elem(&scratch, &zero);
	if (!k)
		return DANCED_WHY_DENIED;
	k->prefixlen = 8 * (sizeof(k->netns) + sizeof(k->port) + sizeof(k->rname));
	k->netns = sk->netns;
	k->port = sk->port;
	/* A name longer than a rule key can only match suffix rules: its '.' is cut off. */
	__builtin_memcpy(k->rname, id->rname, sizeof(k->rname));
	r = bpf_map_lookup_elem(&rules, k);
	if (!r)
		return svc->dflt == DANCED_VERDICT_ALLOW ? 0 : DANCED_WHY_DENIED;
	if (r->verdict != DANCED_VERDICT_ALLOW)
		return DANCED_WHY_DENIED;
	return danced_proof_admits(r->proof, id->auth) ? 0 : DANCED_WHY_PROOF;
}

/*
 * A refused socket whose server asked danced for a proof of its peer, within the
 * service's proof window: the exchange that may prove an allowed name travels over the
 * connection, so it passes, for that long and no longer.
 */
static bool proving(const struct danced_ident *id, const struct danced_service *svc)
{
	return id && !id->hold && id->proof_asked && svc->proof_window &&
	       bpf_ktime_get_ns() - id->proof_asked < (__u64)svc->proof_window * 1000000000ULL;
}

static int check(struct socket *sock, __u8 op)
{
	struct sock *sk = sock->sk;
	const struct danced_service *svc;
	struct danced_service_key key;
	struct danced_ident *id;
	__u8 why;

	if (!sk || !is_tcp(sk))
		return 0;
	id = bpf_sk_storage_get(&sk_ident, sk, 0, 0);
	if (id && id->hold && danced_handshake(sk, id))
		return 0;
	key = service_key(&sk->__sk_common);
	svc = bpf_map_lookup_elem(&services, &key);
	if (!svc || !svc->mode)
		return 0;
	/* A service scoped to a cgroup: its subtree only, wherever the process sits in it. */
	if (svc->cgroup_id &&
	    bpf_get_current_ancestor_cgroup_id(svc->cgroup_level) != svc->cgroup_id)
		return 0;
	why = id ? refusal(id, svc, &key) : DANCED_WHY_NO_IDENTITY;
	if (!why || proving(id, svc))
		return 0;
	report(id, &key, op, why, svc->mode == DANCED_MODE_AUDIT);
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
 * danced died (SIGKILL, a crash): its token goes when its main thread exits, which is
 * before its PID can be given to anyone, so sockets it held stay shut for everybody.
 * A clean stop zeroes it too.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(danced_exit, struct task_struct *p)
{
	struct danced_agent *a;
	__u32 zero = 0;

	a = bpf_map_lookup_elem(&agent, &zero);
	if (p->pid != p->tgid || !a || !a->token || !is_danced(p, a->token))
		return 0;
	a->token = 0;
	return 0;
}

/*
 * A socket's identity goes with it: socket storage is freed with the socket, and its
 * entry in "identities" when TCP closes the connection, so bpftool lists live
 * connections only.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(danced_sock_state, const struct sock *sk, int oldstate, int newstate)
{
	struct danced_ident *id;

	if (newstate != 7 /* TCP_CLOSE */)
		return 0;
	id = bpf_sk_storage_get(&sk_ident, (struct sock *)sk, 0, 0);
	if (id && !id->hold)
		bpf_map_delete_elem(&identities, &id->cookie);
	return 0;
}

/*
 * The last reference to a socket's file went (kTLS's close ends in TCP's). A connection
 * can reach TCP_CLOSE before danced names it (a client that resets during the DNS
 * wait), and a socket danced gives up is held again over its identity, so neither the
 * state change nor the storage is enough: this is the one moment that always comes, and
 * never before danced has let go of its own reference. Its "identities" line goes, and
 * danced hears of it (what it keeps for exported authenticators). Only sockets danced
 * marked: a busy host's other connections cost one storage lookup.
 */
SEC("fentry/tcp_close")
int BPF_PROG(danced_tcp_close, struct sock *sk, long timeout)
{
	__u64 cookie;

	if (!bpf_sk_storage_get(&sk_ident, sk, 0, 0))
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	bpf_map_delete_elem(&identities, &cookie);
	bpf_ringbuf_output(&closed, &cookie, sizeof(cookie), 0);
	return 0;
}

/*
 * The sweep, run by reading its pinned iterator: every TCP socket with an identity that
 * is revoked by name, or that an enforcing service's rules now deny, is destroyed (its
 * owner's next call fails with ECONNABORTED, and the peer gets a reset). One line per
 * socket, "cookie name", so that the reader can count and report. The iterator walks
 * the network namespace it is read in: read it in each namespace to sweep them all.
 */
SEC("iter/tcp")
int danced_sweep(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	const struct danced_service *svc;
	struct danced_service_key key;
	struct danced_ident *id;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	id = bpf_sk_storage_get(&sk_ident, (struct sock *)tp, 0, 0);
	if (!id || id->hold)
		return 0;
	if (!bpf_map_lookup_elem(&revoke, id->rname)) {
		key = service_key(skc);
		svc = bpf_map_lookup_elem(&services, &key);
		if (!svc || svc->mode != DANCED_MODE_ENFORCE || !refusal(id, svc, &key) ||
		    proving(id, svc))
			return 0;
	}
	if (bpf_sock_destroy(skc))
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%llu %s\n", id->cookie, id->rname);
	return 0;
}
