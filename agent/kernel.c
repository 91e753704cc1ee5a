// SPDX-License-Identifier: GPL-2.0
/*
 * kernel.c - danced as the kernel's handshake agent (net/handshake, tlshd's role): an
 * in-kernel consumer (NFS, NVMe/TCP, tests/kmod's dance_hs.ko) asks for TLS on a socket
 * of its own, danced runs the handshake as it runs a handed-off socket's, and answers
 * with exactly one DONE.
 *
 * The protocol (Documentation/networking/tls-handshake.rst): the kernel multicasts READY
 * to the "tlshd" group of the "handshake" generic netlink family. Any agent may ACCEPT;
 * the first takes the oldest pending request and the others get EAGAIN. The reply
 * carries the request and a new descriptor for the consumer's socket in danced's own
 * table. danced handshakes, installs kTLS, and sends DONE with the status and the peer's
 * identity as a key serial, before closing its descriptor: the socket stays the
 * consumer's, and danced never shuts it down.
 *
 * Every worker subscribes and accepts for itself. READY names no request and ACCEPT is
 * first come, first served, so a busy worker simply gets fewer requests. libnl-genl does
 * the generic netlink work (family and group resolution, messages and attributes), as it
 * does for tlshd; the notifications themselves are only drained, since READY says no
 * more than "there is work".
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <keyutils.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <poll.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "agent.h"

/*
 * The uAPI of include/uapi/linux/handshake.h, carried here: Debian 12's linux-libc-dev
 * has no such header, and Debian 13's stops before KEYRING (Linux 6.17). The values are
 * ABI and never change.
 */
#define HS_FAMILY_NAME "handshake"
#define HS_FAMILY_VERSION 1
#define HS_MCGRP_TLSHD "tlshd"
enum { HS_HANDLER_CLASS_TLSHD = 1 };
enum { HS_MSG_CLIENTHELLO = 1, HS_MSG_SERVERHELLO = 2 };
enum { HS_AUTH_UNAUTH = 1, HS_AUTH_PSK = 2, HS_AUTH_X509 = 3 };
enum { HS_CMD_READY = 1, HS_CMD_ACCEPT = 2, HS_CMD_DONE = 3 };
enum { HS_A_X509_CERT = 1, HS_A_X509_PRIVKEY = 2 };
enum {
	HS_A_ACCEPT_SOCKFD = 1,
	HS_A_ACCEPT_HANDLER_CLASS = 2,
	HS_A_ACCEPT_MESSAGE_TYPE = 3,
	HS_A_ACCEPT_TIMEOUT = 4,
	HS_A_ACCEPT_AUTH_MODE = 5,
	HS_A_ACCEPT_PEER_IDENTITY = 6,
	HS_A_ACCEPT_CERTIFICATE = 7,
	HS_A_ACCEPT_PEERNAME = 8,
	HS_A_ACCEPT_KEYRING = 9,
};
enum { HS_A_DONE_STATUS = 1, HS_A_DONE_SOCKFD = 2, HS_A_DONE_REMOTE_AUTH = 3 };
#define HS_STATUS_MAX 4095 /* the kernel's policy: NLA_POLICY_MAX(NLA_U32, MAX_ERRNO) */

/*
 * How long the key that names a verified peer lives. A consumer reads it when its done
 * callback runs, inside danced's DONE; the key is kept a while longer for consumers (and
 * operators) that look later. One key per peer name: adding it again refreshes it.
 */
#define PEER_KEY_TTL 600

/* A worker's READY socket's buffer: thousands of notifications (each takes ~1 KiB). */
#define KMC_RCVBUF (4 << 20)

/* The family's number and the group's, resolved once at start. */
static struct {
	bool on;
	int family;
	int group;
} kern;

/* One ACCEPT reply, parsed. */
struct kreq {
	int fd; /* danced's descriptor for the consumer's socket, or -1 */
	uint32_t type, auth, timeout_ms, keyring;
	int32_t cert, privkey, peerid; /* peerid: the first PSK identity's key */
	unsigned int n_certs, n_peerids;
	const char *bad; /* why the reply cannot be served, or NULL */
	char peername[DANCE_HOST_MAX];
};

/* libnl's errors are its own numbers; callers here speak errno. */
static int nl_errno(int err)
{
	switch (-err) {
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_INVAL:
		return -EINVAL;
	case NLE_BAD_SOCK:
		return -EBADF;
	case NLE_OBJ_NOTFOUND:
		return -ENOENT;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	default:
		return -EIO;
	}
}

static struct nl_sock *genl_open(void)
{
	struct nl_sock *s = nl_socket_alloc();

	if (!s)
		return NULL;
	if (genl_connect(s)) {
		nl_socket_free(s);
		return NULL;
	}
	return s;
}

static void genl_close(struct nl_sock *s)
{
	if (s) {
		nl_close(s);
		nl_socket_free(s);
	}
}

/**
 * kernel_probe - does this kernel have net/handshake?
 *
 * Return: the handshake family's number, -ENOENT when the kernel has none
 * (CONFIG_NET_HANDSHAKE is off, or the kernel is older than 6.5), or another negative
 * errno when generic netlink cannot be asked.
 */
int kernel_probe(void)
{
	struct nl_sock *s = genl_open();
	int family;

	if (!s)
		return -EIO;
	family = genl_ctrl_resolve(s, HS_FAMILY_NAME);
	genl_close(s);
	return family >= 0 ? family : family == -NLE_OBJ_NOTFOUND ? -ENOENT : nl_errno(family);
}

/**
 * kernel_tlshd - the pid of a running tlshd, or 0
 *
 * tlshd (ktls-utils) subscribes to the same group, and the kernel gives each request to
 * whichever agent accepts first: with both running, requests split between them at
 * random, and tlshd knows nothing of danced's DANE policy.
 */
int kernel_tlshd(void)
{
	char path[300], comm[32];
	struct dirent *d;
	DIR *dir = opendir("/proc");
	int pid = 0;
	FILE *f;

	if (!dir)
		return 0;
	while (!pid && (d = readdir(dir))) {
		if (d->d_name[0] < '1' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", d->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "tlshd\n"))
			pid = atoi(d->d_name);
		fclose(f);
	}
	closedir(dir);
	return pid;
}

static bool kernel_wanted(const struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n_svcs; i++)
		if (cfg->svcs[i].kernel)
			return true;
	return false;
}

/**
 * kernel_init - find net/handshake when a service has kernel = yes
 *
 * Refuses to start without it, and while tlshd runs unless kernel_share_with_tlshd says
 * the operator wants both: silently serving half of the kernel's requests is the worst
 * of the three outcomes.
 *
 * Return: 0, or a negative errno with @err saying why.
 */
int kernel_init(const struct config *cfg, char *err, size_t errlen)
{
	struct nl_sock *s;
	int family, pid;

	if (!kernel_wanted(cfg))
		return 0;
	family = kernel_probe();
	if (family == -ENOENT) {
		snprintf(err, errlen,
			 "kernel = yes, but this kernel has no net/handshake (the \"handshake\""
			 " generic netlink family: Linux 6.5 or later, CONFIG_NET_HANDSHAKE)");
		return family;
	}
	if (family < 0) {
		snprintf(err, errlen, "kernel = yes, but generic netlink cannot be asked: %s",
			 strerror(-family));
		return family;
	}
	pid = kernel_tlshd();
	if (pid && !cfg->kernel_share_with_tlshd) {
		snprintf(err, errlen,
			 "kernel = yes, but tlshd (pid %d) also serves the kernel's handshake"
			 " requests: the kernel gives each to whichever agent accepts first, so"
			 " they would split them at random, and tlshd knows nothing of danced's"
			 " DANE policy. Stop tlshd (systemctl disable --now tlshd), or set"
			 " kernel_share_with_tlshd = yes if both may serve",
			 pid);
		return -EEXIST;
	}
	if (pid)
		log_warn("tlshd (pid %d) also serves the kernel's handshake requests"
			 " (kernel_share_with_tlshd = yes): each goes to whichever accepts first",
			 pid);
	s = genl_open();
	if (!s) {
		snprintf(err, errlen, "cannot open a generic netlink socket");
		return -EIO;
	}
	kern.group = genl_ctrl_resolve_grp(s, HS_FAMILY_NAME, HS_MCGRP_TLSHD);
	genl_close(s);
	if (kern.group < 0) {
		snprintf(err, errlen, "the kernel's handshake family has no \"%s\" group: %s",
			 HS_MCGRP_TLSHD, nl_geterror(kern.group));
		return -ENOENT;
	}
	kern.family = family;
	kern.on = true;
	return 0;
}

/* A reload asks for kernel requests that danced, started without, does not take. */
bool kernel_reload_check(const struct config *cfg)
{
	return kernel_wanted(cfg) && !kern.on;
}

/**
 * kernel_worker_init - @w's two sockets: one that hears READY, one for ACCEPT and DONE
 *
 * The command socket is blocking: the kernel answers both commands inside the sendmsg,
 * so the reply is already queued when recvmsg asks for it.
 *
 * Return: 0, or a negative errno.
 */
int kernel_worker_init(struct worker *w)
{
	int ret, rcvbuf = KMC_RCVBUF;

	if (!kern.on)
		return 0;
	w->kmc = genl_open();
	w->kcmd = genl_open();
	if (!w->kmc || !w->kcmd) {
		ret = -ENOMEM;
		goto fail;
	}
	nl_socket_disable_seq_check(w->kmc);
	/*
	 * The kernel refuses a request with ESRCH, as if no agent ran, when READY reached
	 * nobody: every subscriber's buffer full. libnl's 32 KiB holds about 40 while a
	 * worker is busy; READYs are drained only between completions.
	 */
	ret = setsockopt(nl_socket_get_fd(w->kmc), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf,
			 sizeof(rcvbuf)) ?
		      nl_socket_set_buffer_size(w->kmc, KMC_RCVBUF, 0) :
		      0;
	if (!ret)
		ret = nl_socket_add_membership(w->kmc, kern.group);
	if (!ret)
		ret = nl_socket_set_nonblocking(w->kmc);
	if (ret) {
		log_err("worker %u: cannot join the kernel's handshake group: %s", w->index,
			nl_geterror(ret));
		ret = nl_errno(ret);
		goto fail;
	}
	/* ACCEPT's answer is its reply, or an error; DONE asks for its acknowledgement. */
	nl_socket_disable_auto_ack(w->kcmd);
	return 0;
fail:
	kernel_worker_fini(w);
	return ret;
}

void kernel_worker_fini(struct worker *w)
{
	genl_close(w->kmc);
	genl_close(w->kcmd);
	w->kmc = w->kcmd = NULL;
}

/* Wait for the next READY on the ring. */
void kernel_arm(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (!w->kmc || w->kernel_armed)
		return;
	sqe = loop_sqe(w);
	io_uring_prep_poll_add(sqe, nl_socket_get_fd(w->kmc), POLLIN);
	io_uring_sqe_set_data64(sqe, op_data(w, OP_KERNEL));
	w->kernel_armed = true;
}

/* A 32-bit attribute's value; 0 (none, in every field here) for one of another size. */
static uint32_t attr_u32(const struct nlattr *a)
{
	return nla_len(a) == 4 ? nla_get_u32((struct nlattr *)a) : 0;
}

static void accept_attr(struct kreq *r, struct nlattr *a)
{
	struct nlattr *x;
	int rem;

	switch (nla_type(a)) {
	case HS_A_ACCEPT_SOCKFD:
		if (nla_len(a) == 4)
			r->fd = (int32_t)attr_u32(a);
		break;
	case HS_A_ACCEPT_MESSAGE_TYPE:
		r->type = attr_u32(a);
		break;
	case HS_A_ACCEPT_TIMEOUT:
		r->timeout_ms = attr_u32(a);
		break;
	case HS_A_ACCEPT_AUTH_MODE:
		r->auth = attr_u32(a);
		break;
	case HS_A_ACCEPT_KEYRING:
		r->keyring = attr_u32(a);
		break;
	case HS_A_ACCEPT_PEER_IDENTITY:
		if (!r->n_peerids++)
			r->peerid = (int32_t)attr_u32(a);
		break;
	case HS_A_ACCEPT_CERTIFICATE:
		if (++r->n_certs > 1) {
			r->bad = "the request names more than one certificate";
			break;
		}
		nla_for_each_nested(x, a, rem)
		{
			if (nla_type(x) == HS_A_X509_CERT)
				r->cert = (int32_t)attr_u32(x);
			else if (nla_type(x) == HS_A_X509_PRIVKEY)
				r->privkey = (int32_t)attr_u32(x);
		}
		break;
	case HS_A_ACCEPT_PEERNAME:
		if (nla_len(a) < 1 || ((char *)nla_data(a))[nla_len(a) - 1] != '\0' ||
		    (size_t)nla_len(a) > sizeof(r->peername))
			r->bad = "the request's peer name is not a host name danced can use";
		else
			memcpy(r->peername, nla_data(a), nla_len(a));
		break;
	}
}

static int accept_parse(struct nl_msg *msg, void *arg)
{
	struct genlmsghdr *gh = nlmsg_data(nlmsg_hdr(msg));
	struct kreq *r = arg;
	struct nlattr *a;
	int rem;

	if (gh->cmd != HS_CMD_ACCEPT)
		return NL_SKIP;
	nla_for_each_attr(a, genlmsg_attrdata(gh, 0), genlmsg_attrlen(gh, 0), rem)
		accept_attr(r, a);
	return NL_OK;
}

/* One ACCEPT: the oldest pending request, or -EAGAIN when another agent was first. */
static int kernel_accept(struct worker *w, struct kreq *r)
{
	struct nl_msg *msg = nlmsg_alloc();
	int ret;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (!msg)
		return -ENOMEM;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, kern.family, 0, 0, HS_CMD_ACCEPT,
			 HS_FAMILY_VERSION) ||
	    nla_put_u32(msg, HS_A_ACCEPT_HANDLER_CLASS, HS_HANDLER_CLASS_TLSHD)) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	ret = nl_send_auto(w->kcmd, msg);
	nlmsg_free(msg);
	if (ret < 0)
		return nl_errno(ret);
	nl_socket_modify_cb(w->kcmd, NL_CB_VALID, NL_CB_CUSTOM, accept_parse, r);
	ret = nl_recvmsgs_default(w->kcmd);
	/* @r lives on the caller's stack: no later message may reach it. */
	nl_socket_modify_cb(w->kcmd, NL_CB_VALID, NL_CB_DEFAULT, NULL, NULL);
	if (ret < 0)
		return nl_errno(ret);
	return r->fd >= 0 ? 0 : -EPROTO;
}

/*
 * DONE for @fd, acknowledged: the consumer's callback has run when this returns 0.
 * @status is 0 or a negative errno; the kernel wants it positive.
 */
static int kernel_send_done(struct worker *w, int fd, int status, int32_t peer)
{
	struct nl_msg *msg = nlmsg_alloc();
	uint32_t st = status < 0 ? (uint32_t)-status : 0;
	int ret;

	if (!msg)
		return -ENOMEM;
	if (st > HS_STATUS_MAX)
		st = EIO;
	if (!genlmsg_put(msg, NL_AUTO_PORT, NL_AUTO_SEQ, kern.family, 0, NLM_F_ACK, HS_CMD_DONE,
			 HS_FAMILY_VERSION) ||
	    nla_put_u32(msg, HS_A_DONE_STATUS, st) || nla_put_s32(msg, HS_A_DONE_SOCKFD, fd) ||
	    (peer && nla_put_u32(msg, HS_A_DONE_REMOTE_AUTH, (uint32_t)peer))) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	ret = nl_send_auto(w->kcmd, msg);
	nlmsg_free(msg);
	if (ret >= 0)
		ret = nl_wait_for_ack(w->kcmd);
	return ret < 0 ? nl_errno(ret) : 0;
}

/* What a key holds (DER, or a PSK's secret): its length; wiped and freed by the caller. */
static int key_payload(int32_t serial, const char *what, uint8_t **out, struct fail *f)
{
	void *buf = NULL;
	long n = keyctl_read_alloc(serial, &buf);

	if (n < 0)
		return fail_set(f, -ENOKEY, "the kernel's request names key %d for its %s: %s",
				serial, what, strerror(errno));
	*out = buf;
	return (int)n;
}

/* x509 with key serials: the certificate and private key the consumer chose. */
static int kernel_own_cert(struct tls *t, int32_t cert, int32_t privkey, struct fail *f)
{
	const unsigned char *p;
	uint8_t *der = NULL;
	bool whole;
	int n;

	n = key_payload(cert, "certificate", &der, f);
	if (n < 0)
		return n;
	p = der;
	t->own_cert = d2i_X509(NULL, &p, n);
	whole = p == der + n;
	free(der);
	if (!t->own_cert || !whole) {
		ERR_clear_error();
		return fail_set(f, -EKEYREJECTED,
				"key %d does not hold one DER certificate (a `user` key with the"
				" certificate's DER as its payload)",
				cert);
	}
	der = NULL;
	n = key_payload(privkey, "private key", &der, f);
	if (n < 0)
		return n;
	p = der;
	t->own_key = d2i_AutoPrivateKey(NULL, &p, n);
	OPENSSL_cleanse(der, n);
	free(der);
	if (!t->own_key) {
		ERR_clear_error();
		return fail_set(f, -EKEYREJECTED,
				"key %d does not hold a DER private key (PKCS#8 or traditional)",
				privkey);
	}
	return 0;
}

/*
 * PSK: the key @serial, a `user` (or NVMe `psk`) key whose description is the identity
 * and whose payload is the secret, as tlshd reads them. With several identities the
 * kernel offers, the first is used.
 */
static int kernel_psk(struct tls *t, int32_t serial, struct fail *f)
{
	char *desc = NULL, *id;
	uint8_t *key = NULL;
	int n, i;

	if (keyctl_describe_alloc(serial, &desc) < 0)
		return fail_set(f, -ENOKEY, "the kernel's request names key %d for its PSK: %s",
				serial, strerror(errno));
	/* "type;uid;gid;perm;description" */
	for (id = desc, i = 0; i < 4 && id; i++) {
		id = strchr(id, ';');
		if (id)
			id++;
	}
	if (!id || !*id) {
		free(desc);
		return fail_set(f, -EKEYREJECTED, "key %d has no description to be a PSK identity",
				serial);
	}
	t->psk_identity = strdup(id);
	free(desc);
	if (!t->psk_identity)
		return fail_set(f, -ENOMEM, "out of memory for a PSK identity");
	n = key_payload(serial, "PSK", &key, f);
	if (n < 0)
		return n;
	if (n < 16 || n > 64) {
		OPENSSL_cleanse(key, n);
		free(key);
		return fail_set(f, -EKEYREJECTED,
				"key %d holds %d bytes: a TLS 1.3 PSK here is 16 to 64 (32 for"
				" SHA-256, 48 for SHA-384)",
				serial, n);
	}
	t->psk = key;
	t->psk_len = n;
	return 0;
}

/*
 * The verified peer as a key the consumer can read through the serial DONE carries:
 * a `user` key in danced's process keyring, described "danced:dane:NAME" or
 * "danced:x509:SUBJECT", whose payload is the name. Its serial says "authenticated" to
 * consumers that ask only that (nfsd); those that authorize by name read it. None for
 * a peer nobody verified.
 *
 * Return: the serial, 0 for no verified peer, or a negative errno.
 */
static int32_t kernel_peer_key(const struct dance_result *r)
{
	char desc[16 + DANCE_SUBJECT_MAX];
	const char *name;
	key_serial_t k;

	if (r->auth == DANCE_AUTH_DANE)
		name = r->verified_name;
	else if (r->auth == DANCE_AUTH_X509)
		name = r->peer_subject;
	else
		return 0;
	snprintf(desc, sizeof(desc), "danced:%s:%s", r->auth == DANCE_AUTH_DANE ? "dane" : "x509",
		 name);
	k = add_key("user", desc, name, strlen(name), KEY_SPEC_PROCESS_KEYRING);
	if (k < 0)
		return -errno;
	keyctl_set_timeout(k, PEER_KEY_TTL);
	return k;
}

/**
 * kernel_peer - name the conn's verified peer for DONE, before the conn is logged
 *
 * A verified peer whose key cannot be made fails the request: a consumer that
 * authorizes by the key would otherwise see an anonymous success.
 *
 * Return: the key's serial, or 0 for none (the result then says why, if it failed).
 */
int32_t kernel_peer(struct conn *c)
{
	struct dance_result *r = c->res;
	int32_t peer;

	if (!r || r->status)
		return 0;
	/* A PSK request's peer proved the key the request named: that key names it. */
	if (c->kernel_psk)
		return c->kernel_psk;
	peer = kernel_peer_key(r);
	if (peer >= 0)
		return peer;
	r->status = fail_set(&c->fail, -ENOKEY,
			     "cannot put the verified peer into a key for the kernel: %s",
			     strerror(-peer));
	snprintf(r->reason, sizeof(r->reason), "%s", c->fail.why);
	return 0;
}

/*
 * kernel_done - the conn's one DONE, @peer from kernel_peer(); conn_finish() calls it
 * once, after the conn's log line (a consumer may look as soon as DONE is in) and before
 * danced's descriptor is closed.
 */
void kernel_done(struct conn *c, int32_t peer)
{
	int status = c->res ? c->res->status : c->fail.status;
	int ret = kernel_send_done(c->w, c->fd, status, peer);

	if (ret)
		log_err("kernel request id=%llu: DONE not taken (%s): its consumer waits for its"
			" own timeout",
			(unsigned long long)c->id, strerror(-ret));
	else
		log_debug("kernel request id=%llu: DONE status=%d peer=%d",
			  (unsigned long long)c->id, status, peer);
}

/*
 * How long a DONE for a request refused at once waits. Debian's 6.12.117 publishes a
 * request before it takes the socket reference that completion drops
 * (handshake_req_submit(): sock_hold() after the READY notification), so a DONE that
 * lands inside that window frees the consumer's socket under it: a use-after-free, seen
 * here as "refcount_t: addition on 0" when danced refused a request within
 * microseconds (kernel-patches/handshake-sock-ref fixes the kernel). A handshake
 * cannot finish that fast, since it waits for its peer; a refusal before any byte
 * can, so its DONE waits this long. A refusal is an error either way.
 */
#define KERNEL_REFUSAL_DELAY_NS (100 * 1000000ULL)

void kernel_done_later(struct conn *c, int32_t peer)
{
	struct io_uring_sqe *sqe = loop_sqe(c->w);

	c->kernel_peer = peer;
	c->kernel_held = true;
	c->ts.tv_sec = 0;
	c->ts.tv_nsec = KERNEL_REFUSAL_DELAY_NS;
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, op_data(c, OP_KERNEL_DONE));
	c->ops++;
}

/* The held-back DONE, once: when its timer comes, or when the conn goes first. */
void kernel_done_now(struct conn *c)
{
	if (!c->kernel_held)
		return;
	c->kernel_held = false;
	kernel_done(c, c->kernel_peer);
}

/* The timer of kernel_done_later() came. */
void kernel_held_done(struct conn *c)
{
	c->ops--;
	kernel_done_now(c);
	conn_put(c);
}

/* Which service answers requests of this type in the current state. */
static struct svc *kernel_service(struct state *st, enum svc_role role)
{
	size_t i;

	for (i = 0; i < st->n_svcs; i++)
		if (st->svcs[i].cfg->kernel && st->svcs[i].cfg->role == role)
			return &st->svcs[i];
	return NULL;
}

/* An accepted request becomes a conn, which ends with exactly one DONE. */
static void kernel_start(struct worker *w, struct kreq *r)
{
	enum svc_role role = r->type == HS_MSG_SERVERHELLO ? ROLE_SERVER : ROLE_CLIENT;
	struct state *st = state_get(&agent);
	unsigned int timeout;
	struct conn *c;
	struct svc *s;
	int ret;

	c = conn_new(w, r->fd, st);
	if (!c) {
		ret = kernel_send_done(w, r->fd, -ENOMEM, 0);
		log_err("out of memory for a kernel request%s", ret ? "; DONE not taken" : "");
		close(r->fd);
		state_put(st);
		return;
	}
	c->kernel = true;
	c->id = atomic_fetch_add(&agent.next_id, 1);
	if (r->bad) {
		fail_set(&c->fail, -EINVAL, "%s", r->bad);
		goto refuse;
	}
	if (r->type != HS_MSG_CLIENTHELLO && r->type != HS_MSG_SERVERHELLO) {
		fail_set(&c->fail, -EINVAL, "the kernel's request has message type %u", r->type);
		goto refuse;
	}
	if (socket_check(c->fd, &c->peer, &c->fail))
		goto refuse;
	s = kernel_service(st, role);
	if (!s) {
		fail_set(&c->fail, -EOPNOTSUPP,
			 "no service has kernel = yes with role = %s, so danced cannot be the TLS"
			 " %s the kernel asked for",
			 role == ROLE_SERVER ? "server" : "client",
			 role == ROLE_SERVER ? "server" : "client");
		goto refuse;
	}
	c->tls.svc = s; /* names the service in the result and the log */
	if (r->auth == HS_AUTH_PSK && !r->peerid) {
		fail_set(&c->fail, -EOPNOTSUPP,
			 "the kernel asked for a PSK handshake without naming the key; danced does"
			 " not search keyrings for one");
		goto refuse;
	}
	if (r->auth != HS_AUTH_X509 && r->auth != HS_AUTH_PSK &&
	    !(r->auth == HS_AUTH_UNAUTH && role == ROLE_CLIENT)) {
		fail_set(&c->fail, -EINVAL, "the kernel's request has auth mode %u for the %s role",
			 r->auth, role == ROLE_SERVER ? "server" : "client");
		goto refuse;
	}
	if (role == ROLE_CLIENT && !r->peername[0] && s->cfg->verify != VERIFY_NONE) {
		fail_set(&c->fail, -EINVAL,
			 "the kernel's request names no peer, and [service %s] verifies the"
			 " server's name",
			 s->cfg->name);
		goto refuse;
	}
	/* No stop check: kernel_ready() accepts nothing once stopping, and a request
	   accepted just before runs within the stop's grace, as any in flight. */
	if (admit(&c->ticket, st, s->cfg, &c->peer, &c->fail))
		goto refuse;
	if (r->auth == HS_AUTH_PSK) {
		if (kernel_psk(&c->tls, r->peerid, &c->fail) < 0)
			goto refuse;
		c->kernel_psk = r->peerid;
	} else if (r->auth == HS_AUTH_UNAUTH) {
		c->tls.no_own_cert = true;
	} else if (r->cert || r->privkey) {
		if (!r->cert || !r->privkey) {
			fail_set(&c->fail, -EINVAL,
				 "the kernel's request names a %s key but no %s key",
				 r->cert ? "certificate" : "private",
				 r->cert ? "private" : "certificate");
			goto refuse;
		}
		if (kernel_own_cert(&c->tls, r->cert, r->privkey, &c->fail) < 0)
			goto refuse;
	}
	snprintf(c->peer_name, sizeof(c->peer_name), "%s", r->peername);
	timeout = s->cfg->handshake_timeout_ms;
	if (r->timeout_ms && r->timeout_ms < timeout)
		timeout = r->timeout_ms;
	conn_start(c, s, true, timeout);
	conn_put(c);
	return;
refuse:
	conn_refuse(c, c->fail.status, c->fail.why);
	conn_put(c);
}

/**
 * kernel_ready - READY came (or the poll failed): take every request still pending
 *
 * Drains the notifications first, then accepts until the kernel has none left for
 * danced. A notification lost to a full socket buffer (ENOBUFS) costs nothing: the
 * accepting does not count them.
 */
void kernel_ready(struct worker *w, int res)
{
	uint8_t buf[512];
	struct kreq r;
	int fd = nl_socket_get_fd(w->kmc), ret;

	w->kernel_armed = false;
	if (res < 0 && res != -ECANCELED)
		log_warn("worker %u: waiting for the kernel's requests: %s", w->index,
			 strerror(-res));
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0 || errno == ENOBUFS)
		;
	while (!atomic_load(&agent.stopping)) {
		ret = kernel_accept(w, &r);
		if (ret == -EAGAIN)
			break;
		if (ret) {
			log_err("worker %u: accepting a kernel request: %s", w->index,
				strerror(-ret));
			break;
		}
		kernel_start(w, &r);
	}
	if (!atomic_load(&agent.stopping))
		kernel_arm(w);
}
