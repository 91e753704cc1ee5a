// SPDX-License-Identifier: GPL-2.0
/*
 * kernel_test.c - the kernel's TLS handshake upcall (net/handshake), driven through
 * dance_hs.ko, the consumer module the top-level Kbuild builds (tests/kmod): a test asks
 * for a handshake on one of its own TCP sockets exactly as NFS would, and reads back what
 * the kernel's done callback said. These cases need no agent, so they pin down the
 * module and the kernel's side of the contract that danced, as the agent, relies on:
 * with nobody listening the kernel refuses at once (ESRCH); a request nobody accepts is
 * announced to the "tlshd" group and stays pending until the consumer cancels it, on its
 * deadline or when it goes away, which frees its place among the pending requests; a
 * socket takes one request in its life (net/handshake keeps it hashed until the socket
 * is destroyed); and bad requests are refused before the kernel sees them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/genetlink.h>
#include <linux/handshake.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

#include <keyutils.h>
#include <linux/tls.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../harness.h"
#include "../kmod/dance_hs.h"
#include "../lib/daemon.h"
#include "../lib/dnsfix.h"
#include "../lib/pair.h"
#include "../lib/pki.h"
#include "../../agent/lib/dance.h"

/* Load dance_hs.ko for the running kernel, from beside the binaries: 0, or -errno. */
static int module_load(void)
{
	const char *dir = getenv("DANCED_BIN") ?: "/danced/bin";
	struct utsname u;
	char path[512];
	int fd, ret = 0;

	if (uname(&u))
		return -errno;
	snprintf(path, sizeof(path), "%s/../kmod/%s/dance_hs.ko", dir, u.release);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		/* The sanitizer build's binaries live elsewhere; the module does not. */
		snprintf(path, sizeof(path), "/danced/kmod/%s/dance_hs.ko", u.release);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, "", 0) && errno != EEXIST)
		ret = -errno;
	close(fd);
	return ret;
}

/* The ioctl: 0 with r->status set, or the negative errno it failed with. */
static int upcall(int dev, struct dance_hs_request *r)
{
	return ioctl(dev, DANCE_HS_IOC_HANDSHAKE, r) ? -errno : 0;
}

/* ---- a raw generic netlink listener: what an agent sees before it accepts ------------ */

struct nlbuf {
	struct nlmsghdr n;
	struct genlmsghdr g;
	char data[4096];
};

/* Each attribute @a in the @len bytes at @start, stopping at the first malformed one. */
#define for_each_nla(a, start, len, left)                                                  \
	for ((a) = (struct nlattr *)(start), (left) = (len);                               \
	     (left) >= NLA_HDRLEN && (a)->nla_len >= NLA_HDRLEN && (a)->nla_len <= (left); \
	     (left) -= NLA_ALIGN((a)->nla_len),                                            \
	    (a) = (struct nlattr *)((char *)(a) + NLA_ALIGN((a)->nla_len)))
#define nla_data(a) ((void *)((char *)(a) + NLA_HDRLEN))
#define nla_payload(a) ((a)->nla_len - NLA_HDRLEN)

/* The family's id and the id of its group @group, from the controller: 0, or -errno. */
static int genl_resolve(int fd, const char *family, const char *group, int *fam_id, int *grp_id)
{
	struct nlbuf req = { 0 }, resp;
	struct nlattr *a = (struct nlattr *)req.data, *g, *x;
	int len, left, gleft, xleft;

	req.n.nlmsg_type = GENL_ID_CTRL;
	req.n.nlmsg_flags = NLM_F_REQUEST;
	req.g.cmd = CTRL_CMD_GETFAMILY;
	req.g.version = 1;
	a->nla_type = CTRL_ATTR_FAMILY_NAME;
	a->nla_len = NLA_HDRLEN + strlen(family) + 1;
	strcpy(nla_data(a), family);
	req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(a->nla_len);
	if (send(fd, &req, req.n.nlmsg_len, 0) < 0)
		return -errno;
	len = recv(fd, &resp, sizeof(resp), 0);
	if (len < 0)
		return -errno;
	if (resp.n.nlmsg_type == NLMSG_ERROR)
		return ((struct nlmsgerr *)NLMSG_DATA(&resp.n))->error ?: -EPROTO;
	*fam_id = *grp_id = -1;
	for_each_nla(a, resp.data, len - (int)NLMSG_LENGTH(GENL_HDRLEN), left)
	{
		if (a->nla_type == CTRL_ATTR_FAMILY_ID)
			*fam_id = *(uint16_t *)nla_data(a);
		if ((a->nla_type & NLA_TYPE_MASK) != CTRL_ATTR_MCAST_GROUPS)
			continue;
		/* A list of groups, each a nest of its name and id. */
		for_each_nla(g, nla_data(a), nla_payload(a), gleft)
		{
			const char *name = NULL;
			int id = -1;

			for_each_nla(x, nla_data(g), nla_payload(g), xleft)
			{
				if (x->nla_type == CTRL_ATTR_MCAST_GRP_NAME)
					name = nla_data(x);
				if (x->nla_type == CTRL_ATTR_MCAST_GRP_ID)
					id = *(uint32_t *)nla_data(x);
			}
			if (name && !strcmp(name, group))
				*grp_id = id;
		}
	}
	return *fam_id > 0 && *grp_id > 0 ? 0 : -ENOENT;
}

/* A socket in the handshake family's "tlshd" group, as an agent's would be: fd or -errno. */
static int listener_open(int *fam_id)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC), grp, ret;
	struct timeval tv = { .tv_sec = 5 };

	if (fd < 0)
		return -errno;
	ret = genl_resolve(fd, HANDSHAKE_FAMILY_NAME, HANDSHAKE_MCGRP_TLSHD, fam_id, &grp);
	if (!ret && setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp, sizeof(grp)))
		ret = -errno;
	if (!ret && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		ret = -errno;
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* The next READY on @fd, for the handler class TLSHD: 0, or -errno (-EAGAIN: none in 5 s). */
static int ready_wait(int fd, int fam_id)
{
	struct nlbuf m;
	int len = recv(fd, &m, sizeof(m), 0);

	if (len < 0)
		return -errno;
	if (len < (int)NLMSG_LENGTH(GENL_HDRLEN) || m.n.nlmsg_type != fam_id)
		return -EPROTO;
	return m.g.cmd == HANDSHAKE_CMD_READY ? 0 : -EPROTO;
}

/* ---- the fixture: the module, its device, and one connected TCP pair ----------------- */

FIXTURE(upcall)
{
	int dev, lfd, port, cfd, sfd;
};

FIXTURE_SETUP(upcall)
{
	self->dev = self->lfd = self->cfd = self->sfd = -1;
	ASSERT_EQ(0, module_load());
	self->dev = open("/dev/dance_hs", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->dev) TH_LOG("/dev/dance_hs: %s", strerror(errno));
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	self->cfd = tcp_connect(self->port);
	ASSERT_LE(0, self->cfd);
	self->sfd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, self->sfd);
}

FIXTURE_TEARDOWN(upcall)
{
	close(self->sfd);
	close(self->cfd);
	close(self->lfd);
	close(self->dev);
}

/* A request on @fd: anonymous client for "localhost" unless the test changes it. */
static struct dance_hs_request req(int fd, unsigned int role, unsigned int auth)
{
	struct dance_hs_request r = { .fd = fd, .role = role, .auth = auth };

	strcpy(r.peername, "localhost");
	return r;
}

#define C DANCE_HS_CLIENT
#define S DANCE_HS_SERVER
#define ANON DANCE_HS_ANON

/* Nobody subscribed to the group: the kernel refuses at once, with no callback. */
TEST_F(upcall, with_no_agent_the_kernel_says_esrch)
{
	struct dance_hs_request r = req(self->cfd, C, ANON);

	EXPECT_EQ(-ESRCH, upcall(self->dev, &r));
	r = req(self->sfd, DANCE_HS_SERVER, DANCE_HS_X509);
	EXPECT_EQ(-ESRCH, upcall(self->dev, &r));
}

/* What the module or the kernel refuses before any agent is asked. */
TEST_F(upcall, bad_requests_are_refused_before_any_agent)
{
	struct dance_hs_request r;
	int p[2], udp;

	r = req(-1, C, ANON);
	EXPECT_EQ(-EBADF, upcall(self->dev, &r));
	ASSERT_EQ(0, pipe(p));
	r = req(p[0], C, ANON);
	EXPECT_EQ(-ENOTSOCK, upcall(self->dev, &r));
	close(p[0]);
	close(p[1]);
	udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_LE(0, udp);
	r = req(udp, C, ANON);
	EXPECT_EQ(-EPROTONOSUPPORT, upcall(self->dev, &r));
	close(udp);
	/* No anonymous TLS server in net/handshake. */
	r = req(self->sfd, DANCE_HS_SERVER, ANON);
	EXPECT_EQ(-EINVAL, upcall(self->dev, &r));
	r = req(self->cfd, C, ANON);
	r.num_peerids = DANCE_HS_PEERIDS_MAX + 1;
	EXPECT_EQ(-EINVAL, upcall(self->dev, &r));
	/* The kernel's own check: a PSK client must offer one to five identities. */
	r = req(self->cfd, C, DANCE_HS_PSK);
	EXPECT_EQ(-EINVAL, upcall(self->dev, &r));
	EXPECT_EQ(-1, ioctl(self->dev, _IO('D', 0x52)));
	EXPECT_EQ(ENOTTY, errno);
}

/* A fresh connected TCP socket, its peer's end closed: the socket's fd, or -errno. */
static int fresh_socket(int lfd, int port)
{
	int fd = tcp_connect(port), peer;

	if (fd < 0)
		return fd;
	peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (peer < 0) {
		close(fd);
		return -errno;
	}
	close(peer);
	return fd;
}

/*
 * An agent is subscribed but never accepts: the kernel announces the request (READY) and
 * keeps it pending; the consumer's deadline cancels it. The kernel allows only a few
 * requests pending per network namespace (one per 400 MiB of RAM, 3 to 50): more
 * cancelled requests than that, each on a socket of its own, show that cancelling frees
 * the place. The socket itself never takes a second request.
 */
TEST_F(upcall, a_consumer_deadline_cancels_a_request_nobody_accepts)
{
	struct dance_hs_request r = req(self->cfd, C, ANON);
	int nl, fam, i, fd;
	long t0;

	r.wait_ms = 300;
	r.timeout_ms = 5000;
	nl = listener_open(&fam);
	ASSERT_LE(0, nl) TH_LOG("the handshake family: %s", strerror(-nl));
	t0 = ms_now();
	EXPECT_EQ(0, upcall(self->dev, &r));
	EXPECT_EQ(-ETIME, r.status);
	EXPECT_EQ(0, r.peerid);
	EXPECT_LE(290, ms_now() - t0);
	EXPECT_EQ(0, ready_wait(nl, fam));
	/* One request per socket, cancelled or not. */
	r = req(self->cfd, C, ANON);
	EXPECT_EQ(-EBUSY, upcall(self->dev, &r));
	for (i = 0; i < 8; i++) {
		fd = fresh_socket(self->lfd, self->port);
		ASSERT_LE(0, fd);
		r = req(fd, C, ANON);
		r.wait_ms = 50;
		EXPECT_EQ(0, upcall(self->dev, &r)) TH_LOG("request %d", i);
		EXPECT_EQ(-ETIME, r.status);
		EXPECT_EQ(0, ready_wait(nl, fam));
		close(fd);
	}
	close(nl);
}

struct waiter {
	int dev, ret;
	struct dance_hs_request r;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = upcall(w->dev, &w->r);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
}

/* The consumer goes away mid-request (a signal ends its wait): cancelled, nothing left. */
TEST_F(upcall, a_consumer_that_goes_away_cancels_its_request)
{
	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART */
	struct waiter w = { .dev = self->dev, .r = req(self->cfd, C, ANON) };
	struct dance_hs_request r;
	pthread_t t;
	int nl, fam, fd;

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	nl = listener_open(&fam);
	ASSERT_LE(0, nl) TH_LOG("the handshake family: %s", strerror(-nl));
	ASSERT_EQ(0, pthread_create(&t, NULL, waiter_main, &w));
	EXPECT_EQ(0, ready_wait(nl, fam));
	usleep(100000);
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
	EXPECT_EQ(-EINTR, w.ret);
	/* Cancelled, not completed: no callback came, and a new socket's request runs. */
	fd = fresh_socket(self->lfd, self->port);
	ASSERT_LE(0, fd);
	r = req(fd, C, ANON);
	r.wait_ms = 100;
	EXPECT_EQ(0, upcall(self->dev, &r));
	EXPECT_EQ(-ETIME, r.status);
	close(fd);
	close(nl);
}

/* ---- danced as the agent ----------------------------------------------------------- */

#define DEVICES "_device.fixture.example"
#define SENSOR "sensor1." DEVICES

FIXTURE(agent)
{
	struct env e;
	struct dnsfix f;
	int dev;
	char id_cert[160], id_key[160], other_cert[160], other_key[160];
};

/* The kernel's handshake tracepoints count every DONE the kernel took, and refused. */
static int trace_done(bool on)
{
	static const char *const ev[] = { "handshake_cmd_done", "handshake_cmd_done_err" };
	char path[160];
	size_t i;
	int fd;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/sys/kernel/tracing/events/handshake/%s/enable",
			 ev[i]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, on ? "1" : "0", 1) != 1) {
			if (fd >= 0)
				close(fd);
			return -errno;
		}
		close(fd);
	}
	/* Opening the buffer for writing with O_TRUNC empties it. */
	fd = open("/sys/kernel/tracing/trace", O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* How many trace lines name @event ("handshake_cmd_done:" or "..._err:"). */
static int trace_count(const char *event)
{
	FILE *f = fopen("/sys/kernel/tracing/trace", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, event))
			n++;
	fclose(f);
	return n;
}

FIXTURE_SETUP(agent)
{
	char zone[1024], bogus[512], tlsa[2][256], dir[160];

	signal(SIGPIPE, SIG_IGN);
	self->dev = -1;
	ASSERT_EQ(0, module_load());
	self->dev = open("/dev/dance_hs", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->dev) TH_LOG("/dev/dance_hs: %s", strerror(errno));
	ASSERT_EQ(0, env_init(&self->e));
	ASSERT_EQ(0, dnsfix_dane_ee(self->e.dir, "sensor1", SENSOR, self->id_cert, self->id_key,
				    tlsa[0]));
	ASSERT_EQ(0, dnsfix_dane_ee(self->e.dir, "other", SENSOR, self->other_cert, self->other_key,
				    tlsa[1]));
	/* sensor1's key; a record for another key; and sensor1's key in a bogus zone. */
	snprintf(zone, sizeof(zone), "sensor1._device IN TLSA %s\nmismatch._device IN TLSA %s\n",
		 tlsa[0], tlsa[1]);
	snprintf(bogus, sizeof(bogus), "sensor1._device IN TLSA %s\n", tlsa[0]);
	{
		struct dnsfix_zones z = { .parent = zone, .bogus = bogus };

		snprintf(dir, sizeof(dir), "%.100s/dns", self->e.dir);
		ASSERT_EQ(0, mkdir(dir, 0700));
		ASSERT_EQ(0, dnsfix_start(&self->f, dir, 53, &z));
	}
	ASSERT_EQ(0, trace_done(true)) TH_LOG("tracefs: %s", strerror(errno));
}

FIXTURE_TEARDOWN(agent)
{
	if (self->e.pid > 0)
		danced_stop(&self->e, SIGTERM);
	trace_done(false);
	close(self->dev);
	dnsfix_fini(&self->f);
	env_fini(&self->e);
}

/*
 * danced with a kernel = yes server service (its lines @server) and client service
 * (@client), either NULL for none, and @more sections: 0, or -errno.
 */
static int agent_up(FIXTURE_DATA(agent) * self, const char *server, const char *client,
		    const char *more)
{
	char srv[1024] = "", cli[1024] = "";
	int ret;

	if (server)
		snprintf(srv, sizeof(srv),
			 "[service kserver]\nkernel = yes\ncertificate = %s\nkey = %s\n%s\n",
			 self->e.srv_cert, self->e.srv_key, server);
	if (client)
		snprintf(cli, sizeof(cli),
			 "[service kclient]\nrole = client\nkernel = yes\nca = %s\n%s\n",
			 self->e.ca, client);
	ret = env_conf(&self->e,
		       "workers = 2\ndns_trust_anchor_file = none\ndns_trust_anchor = %s\n"
		       "dns_stub = " DNSFIX_ZONE " %s\n%s%s%s",
		       self->f.trust_anchor, self->f.stubs[0].addr, srv, cli, more ?: "");
	return ret ?: danced_start(&self->e);
}

/*
 * A request, retried while the kernel has its few pending places taken (-EAGAIN):
 * 0 with r->status, or the errno the submission failed with.
 */
static int upcall_retry(int dev, struct dance_hs_request *r)
{
	long t0 = ms_now();
	int ret;

	while ((ret = upcall(dev, r)) == -EAGAIN && ms_now() - t0 < 60000)
		usleep(5000);
	return ret;
}

static void *retry_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = upcall_retry(w->dev, &w->r);
	return NULL;
}

/* Both ends of a pair through the kernel at once: @cr on one thread, @sr on another. */
static void both(int dev, struct waiter *cw, struct waiter *sw)
{
	pthread_t t;

	cw->dev = sw->dev = dev;
	cw->ret = sw->ret = -EINPROGRESS;
	if (pthread_create(&t, NULL, retry_main, sw)) {
		sw->ret = -errno;
		retry_main(cw);
		return;
	}
	retry_main(cw);
	pthread_join(t, NULL);
}

static struct dance_hs_request kreq(int fd, unsigned int role, unsigned int auth)
{
	struct dance_hs_request r = { .fd = fd, .role = role, .auth = auth };

	if (role == C)
		strcpy(r.peername, "localhost");
	r.timeout_ms = 20000;
	r.wait_ms = 60000;
	return r;
}

/* Is kTLS in both directions on @fd, TLS 1.3? */
static bool ktls_both(int fd)
{
	struct tls_crypto_info ci;
	socklen_t len = sizeof(ci);

	if (getsockopt(fd, SOL_TLS, TLS_TX, &ci, &len) || ci.version != TLS_1_3_VERSION)
		return false;
	len = sizeof(ci);
	return !getsockopt(fd, SOL_TLS, TLS_RX, &ci, &len) && ci.version == TLS_1_3_VERSION;
}

/*
 * @n bytes of application data from a kTLS socket, skipping any other record (a TLS 1.3
 * server's session tickets come as handshake records): 0, or -errno.
 */
static int ktls_read(int fd, char *buf, size_t n)
{
	struct timeval tv = { .tv_sec = 10 };
	size_t got = 0;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < n) {
		char cbuf[CMSG_SPACE(sizeof(unsigned char))];
		struct iovec iov = { buf + got, n - got };
		struct msghdr m = { .msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *cm;
		ssize_t k = recvmsg(fd, &m, 0);

		if (k < 0)
			return -errno;
		if (!k)
			return -ECONNRESET;
		cm = CMSG_FIRSTHDR(&m);
		if (cm && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE &&
		    *CMSG_DATA(cm) != 23)
			continue; /* not application data */
		got += k;
	}
	return 0;
}

/* Plaintext both ways over a kTLS pair: 0, or -errno. */
static int swap_bytes(int a, int b)
{
	char buf[64];
	int ret;

	if (write(a, "from the client side", 20) != 20)
		return -errno;
	ret = ktls_read(b, buf, 20);
	if (ret)
		return ret;
	if (memcmp(buf, "from the client side", 20))
		return -EBADMSG;
	if (write(b, "and from the server!", 20) != 20)
		return -errno;
	ret = ktls_read(a, buf, 20);
	if (ret)
		return ret;
	return memcmp(buf, "and from the server!", 20) ? -EBADMSG : 0;
}

/* The description of the key the agent named the peer by ("" if none, or unreadable). */
static const char *peer_key(int32_t serial, char *out, size_t max)
{
	char *d = NULL;

	out[0] = '\0';
	if (serial > 0 && keyctl_describe_alloc(serial, &d) >= 0)
		snprintf(out, max, "%s", d);
	free(d);
	return out;
}

/*
 * Both roles through the kernel, X.509 both ways: each end names its verified peer by a
 * key, kTLS carries bytes both ways, and the kernel took exactly one DONE per request.
 */
TEST_F(agent, x509_both_roles_through_the_kernel)
{
	struct waiter cw = { 0 }, sw = { 0 };
	char lines[4096], k[256];
	int c, s;

	snprintf(lines, sizeof(lines), "client_auth = required\nca = %s\n", self->e.cli_ca);
	{
		char cl[4096];

		snprintf(cl, sizeof(cl), "certificate = %s\nkey = %s\n", self->e.cli_cert,
			 self->e.cli_key);
		ASSERT_EQ(0, agent_up(self, lines, cl, NULL));
	}
	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_X509);
	sw.r = kreq(s, S, DANCE_HS_X509);
	both(self->dev, &cw, &sw);
	ASSERT_EQ(0, cw.ret);
	ASSERT_EQ(0, sw.ret);
	EXPECT_EQ(0, cw.r.status) TH_LOG("log: %s", self->e.log);
	EXPECT_EQ(0, sw.r.status);
	EXPECT_NE(NULL, strstr(peer_key(sw.r.peerid, k, sizeof(k)), "danced:x509:"));
	EXPECT_NE(NULL, strstr(k, "client.example.test")) TH_LOG("server's peer key: %s", k);
	EXPECT_NE(NULL, strstr(peer_key(cw.r.peerid, k, sizeof(k)), "danced:x509:"));
	EXPECT_NE(NULL, strstr(k, "localhost")) TH_LOG("client's peer key: %s", k);
	EXPECT_TRUE(ktls_both(c));
	EXPECT_TRUE(ktls_both(s));
	EXPECT_EQ(0, swap_bytes(c, s));
	EXPECT_EQ(2, trace_count("handshake_cmd_done:"));
	EXPECT_EQ(0, trace_count("handshake_cmd_done_err:"));
	EXPECT_TRUE(log_contains(&self->e, "kernel handshake ok"));
	close(c);
	close(s);

	/* A client without a certificate is refused by the server, and told so. */
	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_ANON);
	sw.r = kreq(s, S, DANCE_HS_X509);
	both(self->dev, &cw, &sw);
	ASSERT_EQ(0, sw.ret);
	EXPECT_EQ(-EACCES, sw.r.status);
	EXPECT_EQ(0, sw.r.peerid);
	EXPECT_FALSE(ktls_both(s));
	close(c);
	close(s);
}

/* A real TLS server nobody here wrote: openssl s_server, the agent as an anonymous client. */
TEST_F(agent, anonymous_client_against_openssl_s_server)
{
	char port[16], k[256], buf[16];
	char *argv[] = { "/usr/bin/openssl", "s_server", "-accept",	  port,	     "-cert",
			 self->e.srv_cert,   "-key",	 self->e.srv_key, "-tls1_3", "-rev",
			 "-quiet",	     NULL };
	struct dance_hs_request r;
	int p = free_port(), fd;
	pid_t srv;

	ASSERT_EQ(0, agent_up(self, NULL, "verify = required\n", NULL));
	snprintf(port, sizeof(port), "%d", p);
	srv = spawn(argv, NULL);
	ASSERT_LT(0, srv);
	ASSERT_EQ(0, wait_connectable(NULL, p, 20000));

	fd = tcp_connect(p);
	ASSERT_LE(0, fd);
	r = kreq(fd, C, DANCE_HS_ANON);
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	EXPECT_EQ(0, r.status) TH_LOG("log: %s", self->e.log);
	EXPECT_NE(NULL, strstr(peer_key(r.peerid, k, sizeof(k)), "danced:x509:"));
	EXPECT_TRUE(ktls_both(fd));
	/* s_server -rev answers each line reversed: through the kernel's TLS both ways. */
	ASSERT_EQ(7, write(fd, "kernel\n", 7));
	EXPECT_EQ(0, ktls_read(fd, buf, 7));
	EXPECT_EQ(0, memcmp(buf, "lenrek\n", 7)) TH_LOG("got %.7s", buf);
	close(fd);

	/* The wrong name: the agent refuses the server's certificate. */
	fd = tcp_connect(p);
	ASSERT_LE(0, fd);
	r = kreq(fd, C, DANCE_HS_ANON);
	strcpy(r.peername, "wrong.example");
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	EXPECT_EQ(-EACCES, r.status);
	EXPECT_EQ(0, r.peerid);
	EXPECT_FALSE(ktls_both(fd));
	close(fd);
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	EXPECT_EQ(2, trace_count("handshake_cmd_done:"));
}

/*
 * DANE client authentication on a kernel socket: the client (danced, through the kernel
 * too) names itself in dane_clientid, the server checks its TLSA record and reports the
 * verified name in the key it sends back. Each refusal comes from a client that danced
 * runs by handoff, with another name, against the same kernel server.
 */
TEST_F(agent, dane_client_authentication_through_the_kernel)
{
	static const struct {
		const char *identity, *why;
	} bad[] = {
		{ "mismatch." DEVICES, "tlsa-mismatch" },
		{ "nobody." DEVICES, "tlsa-none" },
		{ "sensor1._device.bogus.fixture.example", "tlsa-bogus" },
		{ "sensor1.elsewhere.example", "name-not-allowed" },
	};
	struct waiter cw = { 0 }, sw = { 0 };
	char cl[512], more[4096], k[256];
	struct dance *d;
	size_t i, n = 0;
	int c, s;

	snprintf(cl, sizeof(cl), "certificate = %s\nkey = %s\nidentity = " SENSOR "\n",
		 self->id_cert, self->id_key);
	for (i = 0; i < 4; i++)
		n += snprintf(more + n, sizeof(more) - n,
			      "[service bad%zu]\nrole = client\nca = %s\ncertificate = %s\n"
			      "key = %s\nidentity = %s\n",
			      i, self->e.ca, self->id_cert, self->id_key, bad[i].identity);
	ASSERT_EQ(0,
		  agent_up(self, "tls_min = 1.3\ndane = required\ndane_names = fixture.example\n",
			   cl, more));

	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_X509);
	sw.r = kreq(s, S, DANCE_HS_X509);
	both(self->dev, &cw, &sw);
	ASSERT_EQ(0, sw.ret);
	EXPECT_EQ(0, cw.r.status) TH_LOG("log: %s", self->e.log);
	EXPECT_EQ(0, sw.r.status);
	EXPECT_STREQ("danced:dane:" SENSOR,
		     strrchr(peer_key(sw.r.peerid, k, sizeof(k)), ';') ? strrchr(k, ';') + 1 : k);
	EXPECT_EQ(0, swap_bytes(c, s));
	close(c);
	close(s);

	ASSERT_EQ(0, dance_open(self->e.sock, &d));
	for (i = 0; i < 4; i++) {
		struct dance_params p = { .service = NULL, .peer_name = "localhost", .client = 1 };
		struct dance_result res;
		char svc[16];

		snprintf(svc, sizeof(svc), "bad%zu", i);
		p.service = svc;
		ASSERT_EQ(0, pair_tcp(&c, &s));
		sw.r = kreq(s, S, DANCE_HS_X509);
		sw.dev = self->dev;
		{
			pthread_t t;

			ASSERT_EQ(0, pthread_create(&t, NULL, retry_main, &sw));
			dance_handshake(d, c, &p, &res);
			pthread_join(t, NULL);
		}
		EXPECT_EQ(0, sw.ret);
		EXPECT_EQ(-EACCES, sw.r.status) TH_LOG("%s", bad[i].identity);
		EXPECT_EQ(0, sw.r.peerid);
		EXPECT_TRUE(log_contains(&self->e, bad[i].why))
		TH_LOG("no %s in the log", bad[i].why);
		close(s);
		if (!res.status)
			close(c);
	}
	dance_close(d);
	/* Two for the pair, one for each refusal's server end. */
	EXPECT_EQ(6, trace_count("handshake_cmd_done:"));
	EXPECT_EQ(0, trace_count("handshake_cmd_done_err:"));
}

/* The request's timeout, or else the service's, ends a handshake whose peer is silent. */
TEST_F(agent, timeouts_follow_the_request)
{
	struct dance_hs_request r;
	int c, s;
	long t0, ms;

	ASSERT_EQ(0, agent_up(self, "handshake_timeout = 2s\n", NULL, NULL));
	ASSERT_EQ(0, pair_tcp(&c, &s));
	r = kreq(s, S, DANCE_HS_X509);
	r.timeout_ms = 300;
	t0 = ms_now();
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	ms = ms_now() - t0;
	EXPECT_EQ(-ETIMEDOUT, r.status);
	EXPECT_LE(290, ms);
	EXPECT_GT(1900, ms);
	EXPECT_TRUE(log_contains(&self->e, "handshake timed out after 300 ms"));
	close(c);
	close(s);

	/* No timeout in the request (NFS sends none): the service's handshake_timeout. */
	ASSERT_EQ(0, pair_tcp(&c, &s));
	r = kreq(s, S, DANCE_HS_X509);
	r.timeout_ms = 0;
	t0 = ms_now();
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	ms = ms_now() - t0;
	EXPECT_EQ(-ETIMEDOUT, r.status);
	EXPECT_LE(1990, ms);
	EXPECT_TRUE(log_contains(&self->e, "handshake timed out after 2000 ms"));
	close(c);
	close(s);
	EXPECT_EQ(2, trace_count("handshake_cmd_done:"));
}

/*
 * The consumer gives up first (its own deadline, or a signal): danced's DONE for it later
 * changes nothing, and danced goes on serving.
 */
TEST_F(agent, a_consumer_that_gives_up_leaves_danced_serving)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct waiter cw = { 0 }, sw = { 0 };
	struct dance_hs_request r;
	pthread_t t;
	int c, s, c2, s2;

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, agent_up(self, "handshake_timeout = 1500ms\n", "verify = required\n", NULL));
	ASSERT_EQ(0, pair_tcp(&c, &s));
	r = kreq(s, S, DANCE_HS_X509);
	r.wait_ms = 300;
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	EXPECT_EQ(-ETIME, r.status);

	ASSERT_EQ(0, pair_tcp(&c2, &s2));
	sw.dev = self->dev;
	sw.r = kreq(s2, S, DANCE_HS_X509);
	ASSERT_EQ(0, pthread_create(&t, NULL, retry_main, &sw));
	usleep(300000);
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
	EXPECT_EQ(-EINTR, sw.ret);
	close(s);
	close(s2);
	/* danced's own deadline passes for both, and its DONEs find nothing to complete. */
	usleep(2000000);
	close(c);
	close(c2);
	EXPECT_TRUE(log_contains(&self->e, "handshake timed out after 1500 ms"));
	EXPECT_FALSE(log_contains(&self->e, "DONE not taken"));

	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_ANON);
	sw.r = kreq(s, S, DANCE_HS_X509);
	both(self->dev, &cw, &sw);
	EXPECT_EQ(0, cw.r.status) TH_LOG("log: %s", self->e.log);
	EXPECT_EQ(0, sw.r.status);
	EXPECT_EQ(0, swap_bytes(c, s));
	close(c);
	close(s);
	EXPECT_EQ(4, trace_count("handshake_cmd_done:"));
}

#define PAIRS 50

/* 100 kernel requests at once (50 pairs): every one ends well, with exactly one DONE. */
TEST_F(agent, hundred_concurrent_kernel_requests)
{
	static struct waiter w[2 * PAIRS];
	pthread_t t[2 * PAIRS];
	int fd[2 * PAIRS], i, ok = 0;

	ASSERT_EQ(0, agent_up(self, "", "verify = required\n", NULL));
	for (i = 0; i < PAIRS; i++)
		ASSERT_EQ(0, pair_tcp(&fd[2 * i], &fd[2 * i + 1]));
	for (i = 0; i < 2 * PAIRS; i++) {
		w[i].dev = self->dev;
		w[i].r = kreq(fd[i], i % 2 ? S : C, i % 2 ? DANCE_HS_X509 : DANCE_HS_ANON);
		w[i].ret = -EINPROGRESS;
		ASSERT_EQ(0, pthread_create(&t[i], NULL, retry_main, &w[i]));
	}
	for (i = 0; i < 2 * PAIRS; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 2 * PAIRS; i++) {
		EXPECT_EQ(0, w[i].ret) TH_LOG("request %d", i);
		EXPECT_EQ(0, w[i].r.status) TH_LOG("request %d", i);
		ok += !w[i].ret && !w[i].r.status;
	}
	for (i = 0; i < PAIRS; i++)
		EXPECT_EQ(0, swap_bytes(fd[2 * i], fd[2 * i + 1])) TH_LOG("pair %d", i);
	for (i = 0; i < 2 * PAIRS; i++)
		close(fd[i]);
	EXPECT_EQ(2 * PAIRS, ok);
	EXPECT_EQ(2 * PAIRS, trace_count("handshake_cmd_done:"));
	EXPECT_EQ(0, trace_count("handshake_cmd_done_err:"));
}

/* A DER file's bytes as a `user` key in @keyring: its serial, or -errno. */
static int32_t der_key(const char *pem, bool priv, const char *desc, int32_t keyring)
{
	unsigned char *der = NULL;
	FILE *f = fopen(pem, "re");
	int n = -1;
	int32_t k;

	if (!f)
		return -errno;
	if (priv) {
		EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);

		if (pk)
			n = i2d_PrivateKey(pk, &der);
		EVP_PKEY_free(pk);
	} else {
		X509 *x = PEM_read_X509(f, NULL, NULL, NULL);

		if (x)
			n = i2d_X509(x, &der);
		X509_free(x);
	}
	fclose(f);
	if (n <= 0)
		return -EINVAL;
	k = add_key("user", desc, der, n, keyring);
	OPENSSL_free(der);
	return k < 0 ? -errno : k;
}

/*
 * x509 with the consumer's own keys: a keyring the request names (the kernel links it
 * into the agent's keyrings) holds the client's certificate and key as DER `user` keys.
 * Keys the agent cannot reach, or that hold something else, fail the request.
 */
TEST_F(agent, certificates_from_the_consumers_keyring)
{
	struct waiter cw = { 0 }, sw = { 0 };
	char lines[4096], k[256];
	int32_t ring, cert, key;
	int c, s;

	snprintf(lines, sizeof(lines), "client_auth = required\nca = %s\n", self->e.cli_ca);
	ASSERT_EQ(0, agent_up(self, lines, "verify = required\n", NULL));
	ring = add_key("keyring", "dance-test", NULL, 0, KEY_SPEC_PROCESS_KEYRING);
	ASSERT_LT(0, ring);
	ASSERT_EQ(0, keyctl_setperm(ring, KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ |
						  KEY_USR_SEARCH | KEY_USR_LINK));
	cert = der_key(self->e.cli_cert, false, "client cert", ring);
	key = der_key(self->e.cli_key, true, "client key", ring);
	ASSERT_LT(0, cert);
	ASSERT_LT(0, key);

	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_X509);
	cw.r.keyring = ring;
	cw.r.cert = cert;
	cw.r.privkey = key;
	sw.r = kreq(s, S, DANCE_HS_X509);
	both(self->dev, &cw, &sw);
	EXPECT_EQ(0, cw.r.status) TH_LOG("log: %s", self->e.log);
	EXPECT_EQ(0, sw.r.status);
	EXPECT_NE(NULL, strstr(peer_key(sw.r.peerid, k, sizeof(k)), "client.example.test"));
	EXPECT_EQ(0, swap_bytes(c, s));
	close(c);
	close(s);

	/* The certificate's key where the private key should be. */
	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_X509);
	cw.r.keyring = ring;
	cw.r.cert = cert;
	cw.r.privkey = cert;
	ASSERT_EQ(0, upcall_retry(self->dev, &cw.r));
	EXPECT_EQ(-EKEYREJECTED, cw.r.status);
	EXPECT_TRUE(log_contains(&self->e, "does not hold a DER private key"));
	close(c);
	close(s);

	/* Keys in no keyring the request names: the agent may not read them. */
	cert = der_key(self->e.cli_cert, false, "unreachable cert", KEY_SPEC_PROCESS_KEYRING);
	key = der_key(self->e.cli_key, true, "unreachable key", KEY_SPEC_PROCESS_KEYRING);
	ASSERT_LT(0, cert);
	ASSERT_LT(0, key);
	ASSERT_EQ(0, pair_tcp(&c, &s));
	cw.r = kreq(c, C, DANCE_HS_X509);
	cw.r.cert = cert;
	cw.r.privkey = key;
	ASSERT_EQ(0, upcall_retry(self->dev, &cw.r));
	EXPECT_EQ(-ENOKEY, cw.r.status);
	close(c);
	close(s);
	EXPECT_EQ(4, trace_count("handshake_cmd_done:"));
}

/* What danced does not serve is refused at once, saying what and why. */
TEST_F(agent, unserved_requests_are_refused_clearly)
{
	struct dance_hs_request r;
	int c, s;

	ASSERT_EQ(0, agent_up(self, "", NULL, NULL));
	ASSERT_EQ(0, pair_tcp(&c, &s));
	r = kreq(c, C, DANCE_HS_ANON);
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	EXPECT_EQ(-EOPNOTSUPP, r.status);
	EXPECT_TRUE(log_contains(&self->e, "no service has kernel = yes with role = client"));
	close(c);
	close(s);

	/* A PSK server request that names no key (nvmet's way: the agent searches). */
	ASSERT_EQ(0, pair_tcp(&c, &s));
	r = kreq(s, S, DANCE_HS_PSK);
	ASSERT_EQ(0, upcall_retry(self->dev, &r));
	EXPECT_EQ(-EOPNOTSUPP, r.status);
	EXPECT_TRUE(log_contains(&self->e, "PSK handshake without naming the key"));
	close(c);
	close(s);
	EXPECT_EQ(2, trace_count("handshake_cmd_done:"));
}

/* One thread of instant_refusals: @n refused requests on fresh pairs; how many went well. */
struct refuser {
	FIXTURE_DATA(agent) * self;
	int n, ok;
};

static void *refuser_main(void *arg)
{
	struct refuser *f = arg;
	struct dance_hs_request r;
	int c, s, i;
	char b;

	for (i = 0; i < f->n; i++) {
		if (pair_tcp(&c, &s))
			continue;
		r = kreq(c, C, DANCE_HS_ANON);
		/* The socket must still work as a plain TCP socket afterwards, both ways. */
		if (!upcall_retry(f->self->dev, &r) && r.status == -EOPNOTSUPP &&
		    write(c, "x", 1) == 1 && read(s, &b, 1) == 1 && write(s, "y", 1) == 1 &&
		    read(c, &b, 1) == 1)
			f->ok++;
		close(c);
		close(s);
	}
	return NULL;
}

/*
 * Refusals come back at once, and Debian's 6.12.117 takes its socket reference only
 * after publishing the request: a DONE inside that window frees the consumer's socket
 * (the rig fails the test on the kernel's refcount warning). danced holds such a DONE
 * back a moment. Eight consumers refusing at once keep danced's workers accepting
 * while other requests are being published.
 */
TEST_F(agent, instant_refusals_do_not_free_the_consumers_socket)
{
	struct refuser f[8];
	pthread_t t[8];
	int i, ok = 0;

	ASSERT_EQ(0, agent_up(self, "", NULL, NULL));
	for (i = 0; i < 8; i++) {
		f[i] = (struct refuser){ .self = self, .n = 25 };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, refuser_main, &f[i]));
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		ok += f[i].ok;
	}
	EXPECT_EQ(200, ok);
	EXPECT_EQ(200, trace_count("handshake_cmd_done:"));
}

/* A PSK as a `user` key in a keyring of its own: its serial, or -errno. */
static int32_t psk_key(const char *identity, const void *key, size_t len, int32_t *ring)
{
	static int n;
	char name[32];
	int32_t k;

	/* A keyring of the same name would displace this one, and its keys would go. */
	snprintf(name, sizeof(name), "dance-test-psk-%d", n++);
	*ring = add_key("keyring", name, NULL, 0, KEY_SPEC_PROCESS_KEYRING);
	if (*ring < 0)
		return -errno;
	k = add_key("user", identity, key, len, *ring);
	if (k < 0)
		return -errno;
	/* danced runs as this test's user, but does not possess the test's keyrings. */
	if (keyctl_setperm(k, KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ))
		return -errno;
	return k;
}

/* One PSK handshake through the kernel: the client's key @ck, the server's @sk. */
static void psk_pair(FIXTURE_DATA(agent) * self, int32_t ck, int32_t sk, struct waiter *cw,
		     struct waiter *sw, int *c, int *s)
{
	*c = *s = -1;
	if (pair_tcp(c, s))
		return;
	cw->r = kreq(*c, C, DANCE_HS_PSK);
	cw->r.num_peerids = 1;
	cw->r.peerids[0] = ck;
	sw->r = kreq(*s, S, DANCE_HS_PSK);
	sw->r.num_peerids = 1;
	sw->r.peerids[0] = sk;
	both(self->dev, cw, sw);
}

/*
 * PSK mode (NVMe/TCP's), TLS 1.3 external PSKs: both ends through the kernel prove the
 * key; each DONE names the key as the peer; kTLS carries bytes. A 48-byte key means
 * SHA-384. The wrong secret, or an identity the server does not have, fails both ends.
 */
TEST_F(agent, psk_both_roles_through_the_kernel)
{
	static const char k32[32] = "0123456789abcdef0123456789abcdef";
	static const char k48[48] = "0123456789abcdef0123456789abcdef0123456789abcdef";
	static const char other[32] = "fedcba9876543210fedcba9876543210";
	struct waiter cw = { 0 }, sw = { 0 };
	int32_t r1, r2, r3, r4, a, b, d, e;
	int c, s;

	ASSERT_EQ(0, agent_up(self, "", "verify = required\n", NULL));
	a = psk_key("NVMe0R01 nqn.client nqn.subsys", k32, sizeof(k32), &r1);
	ASSERT_LT(0, a);
	psk_pair(self, a, a, &cw, &sw, &c, &s);
	ASSERT_EQ(0, cw.ret);
	ASSERT_EQ(0, sw.ret);
	EXPECT_EQ(0, cw.r.status) TH_LOG("log: %s", self->e.log);
	EXPECT_EQ(0, sw.r.status);
	EXPECT_EQ(a, cw.r.peerid);
	EXPECT_EQ(a, sw.r.peerid);
	EXPECT_TRUE(ktls_both(c));
	EXPECT_EQ(0, swap_bytes(c, s));
	EXPECT_TRUE(log_contains(&self->e, "TLS_AES_128_GCM_SHA256 group=X25519MLKEM768 "
					   "sni=\"localhost\" alpn=- auth=psk"))
	TH_LOG("%s", self->e.log);
	close(c);
	close(s);

	b = psk_key("NVMe0R02 nqn.client nqn.subsys", k48, sizeof(k48), &r2);
	ASSERT_LT(0, b);
	psk_pair(self, b, b, &cw, &sw, &c, &s);
	EXPECT_EQ(0, cw.r.status);
	EXPECT_EQ(0, sw.r.status);
	EXPECT_TRUE(log_contains(&self->e, "TLS_AES_256_GCM_SHA384"));
	EXPECT_EQ(0, swap_bytes(c, s));
	close(c);
	close(s);

	/* The same identity, another secret: the binder does not verify. */
	d = psk_key("NVMe0R01 nqn.client nqn.subsys", other, sizeof(other), &r3);
	ASSERT_LT(0, d);
	psk_pair(self, a, d, &cw, &sw, &c, &s);
	EXPECT_NE(0, cw.r.status);
	EXPECT_NE(0, sw.r.status);
	EXPECT_EQ(0, cw.r.peerid);
	EXPECT_EQ(0, sw.r.peerid);
	close(c);
	close(s);

	/* An identity the server was not given: it falls back to its certificate, and
	   neither end accepts a handshake that proved no key. */
	e = psk_key("NVMe0R01 nqn.someone-else nqn.subsys", k32, sizeof(k32), &r4);
	ASSERT_LT(0, e);
	psk_pair(self, e, a, &cw, &sw, &c, &s);
	EXPECT_EQ(-EACCES, cw.r.status);
	EXPECT_EQ(-EACCES, sw.r.status);
	EXPECT_TRUE(log_contains(&self->e, "psk-unused"));
	close(c);
	close(s);
	EXPECT_EQ(8, trace_count("handshake_cmd_done:"));
	EXPECT_EQ(0, trace_count("handshake_cmd_done_err:"));
}

/* ---- a real in-kernel consumer: NFS over TLS, server and client in the guest ------- */

/*
 * An NFSv4 server exporting a tmpfs (overlayfs cannot be exported) with @xprtsec, its
 * grace period cut to 10 s so that a fresh mount can open files soon. rpcbind and
 * mountd run because nfs-utils wants them even for NFSv4 only. Returns run()'s status.
 */
static int nfs_up(const char *xprtsec, char *out, size_t max)
{
	char script[1024];
	char *argv[] = { "/bin/sh", "-c", script, NULL };

	snprintf(script, sizeof(script),
		 "set -e; modprobe nfsd; modprobe nfsv4; mkdir -p /proc/fs/nfsd /srv/export"
		 " /mnt/nfs /run/rpcbind /var/lib/nfs/rpc_pipefs;"
		 " mountpoint -q /proc/fs/nfsd || mount -t nfsd nfsd /proc/fs/nfsd;"
		 " mountpoint -q /srv/export || mount -t tmpfs tmpfs /srv/export;"
		 " echo 'hello over tls' > /srv/export/file;"
		 " echo '/srv/export *(rw,no_root_squash,fsid=0,insecure,no_subtree_check,"
		 "xprtsec=%s)' > /etc/exports;"
		 " pidof rpcbind > /dev/null || rpcbind -w; exportfs -ra;"
		 " pidof rpc.mountd > /dev/null || rpc.mountd -N 2 -N 3;"
		 " echo 10 > /proc/fs/nfsd/nfsv4gracetime; echo 10 > /proc/fs/nfsd/nfsv4leasetime;"
		 " rpc.nfsd -N 3 -V 4 2",
		 xprtsec);
	return run(argv, NULL, 0, out, max, 60);
}

static void nfs_down(void)
{
	char *argv[] = { "/bin/sh", "-c",
			 "umount -f /mnt/nfs 2>/dev/null; rpc.nfsd 0; exportfs -ua;"
			 " killall rpc.mountd rpcbind 2>/dev/null; umount /srv/export;"
			 " umount /proc/fs/nfsd; true",
			 NULL };
	char out[1024];

	run(argv, NULL, 0, out, sizeof(out), 60);
}

/* mount -t nfs4 -o xprtsec=@xprtsec localhost:/ /mnt/nfs: run()'s status. */
static int nfs_mount(const char *xprtsec, char *out, size_t max)
{
	char opts[128];
	char *argv[] = { "/usr/bin/timeout", "90",	 "/bin/mount", "-t", "nfs4", "-o", opts,
			 "localhost:/",	     "/mnt/nfs", NULL };

	snprintf(opts, sizeof(opts), "xprtsec=%s,vers=4.2,soft,retrans=1,timeo=100", xprtsec);
	return run(argv, NULL, 0, out, max, 120);
}

/* The kernel's count of its kTLS sockets now open, TX software (/proc/net/tls_stat). */
static int ktls_open(void)
{
	FILE *f = fopen("/proc/net/tls_stat", "re");
	char name[64];
	int v, n = -1;

	if (!f)
		return -errno;
	while (fscanf(f, "%63s %d", name, &v) == 2)
		if (!strcmp(name, "TlsCurrTxSw"))
			n = v;
	fclose(f);
	return n;
}

/*
 * NFS over TLS (xprtsec=tls) with danced as the agent of both ends: the NFS client's
 * handshake (client role, anonymous) and nfsd's (server role), files both ways, and the
 * connection on kTLS.
 */
TEST_F(agent, nfs_over_tls_with_danced_on_both_ends)
{
	char out[8192], buf[64] = "";
	FILE *f;

	ASSERT_EQ(0, agent_up(self, "", "verify = required\n", NULL));
	ASSERT_EQ(0, nfs_up("tls", out, sizeof(out))) TH_LOG("%s", out);
	EXPECT_EQ(0, nfs_mount("tls", out, sizeof(out))) TH_LOG("%s", out);
	f = fopen("/mnt/nfs/file", "re");
	EXPECT_NE(NULL, f);
	if (f) {
		EXPECT_NE(NULL, fgets(buf, sizeof(buf), f));
		fclose(f);
	}
	EXPECT_STREQ("hello over tls\n", buf);
	f = fopen("/mnt/nfs/new", "we");
	ASSERT_NE(NULL, f);
	fputs("written by the client\n", f);
	EXPECT_EQ(0, fclose(f));
	f = fopen("/srv/export/new", "re");
	ASSERT_NE(NULL, f);
	EXPECT_NE(NULL, fgets(buf, sizeof(buf), f));
	fclose(f);
	EXPECT_STREQ("written by the client\n", buf);
	/* Both ends of the NFS connection carry kTLS that danced installed. */
	EXPECT_LE(2, ktls_open());
	EXPECT_TRUE(log_contains(&self->e, "kernel handshake ok id=")) TH_LOG("%s", self->e.log);
	EXPECT_TRUE(log_contains(&self->e, "service=kclient peer="));
	EXPECT_TRUE(log_contains(&self->e, "service=kserver peer="));
	EXPECT_EQ(0, trace_count("handshake_cmd_done_err:"));
	nfs_down();
}

/*
 * xprtsec=mtls, the client authenticated by DANE: nfsd lets in only a peer the agent
 * names, and danced names the client by its TLSA record. A client whose record holds
 * another key is refused, and the mount fails.
 */
TEST_F(agent, nfs_mtls_client_authenticated_by_dane)
{
	char cl[2048], out[8192];
	int ret;

	snprintf(cl, sizeof(cl), "certificate = %s\nkey = %s\nidentity = " SENSOR "\n",
		 self->id_cert, self->id_key);
	ASSERT_EQ(0,
		  agent_up(self, "tls_min = 1.3\ndane = required\ndane_names = fixture.example\n",
			   cl, NULL));
	ASSERT_EQ(0, nfs_up("mtls", out, sizeof(out))) TH_LOG("%s", out);
	EXPECT_EQ(0, nfs_mount("mtls", out, sizeof(out))) TH_LOG("%s", out);
	EXPECT_TRUE(log_contains(&self->e, "auth=dane name=" SENSOR)) TH_LOG("%s", self->e.log);
	EXPECT_EQ(0, access("/mnt/nfs/file", R_OK));
	nfs_down();
	danced_stop(&self->e, SIGTERM);

	/* The same client claims a name whose TLSA record holds another key. */
	snprintf(cl, sizeof(cl), "certificate = %s\nkey = %s\nidentity = mismatch." DEVICES "\n",
		 self->id_cert, self->id_key);
	ASSERT_EQ(0,
		  agent_up(self, "tls_min = 1.3\ndane = required\ndane_names = fixture.example\n",
			   cl, NULL));
	ASSERT_EQ(0, nfs_up("mtls", out, sizeof(out))) TH_LOG("%s", out);
	ret = nfs_mount("mtls", out, sizeof(out));
	EXPECT_NE(0, ret) TH_LOG("%s", out);
	EXPECT_TRUE(log_contains(&self->e, "tlsa-mismatch")) TH_LOG("%s", self->e.log);
	nfs_down();
}

/* A copy of @from at @to, executable: 0, or -errno. */
static int copy_exec(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out, ret = 0;
	ssize_t n;

	if (in < 0)
		return -errno;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (out < 0) {
		ret = -errno;
		close(in);
		return ret;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, n) != n) {
			ret = -EIO;
			break;
		}
	if (n < 0)
		ret = -errno;
	close(in);
	if (close(out) && !ret)
		ret = -errno;
	return ret;
}

/* tlshd takes the same requests: danced will not start beside it unless told to share. */
TEST_F(agent, a_running_tlshd_stops_the_start_unless_shared)
{
	char *sleeper[] = { NULL, "60", NULL }, path[160], out[8192];
	char *argv[] = { (char *)bin("danced"), "-c", self->e.conf, NULL };
	char *check[] = { (char *)bin("danced"), "-n", "-c", self->e.conf, NULL };
	pid_t pid;
	int ret;

	/* A process whose name is tlshd, as /proc/PID/comm shows it. */
	snprintf(path, sizeof(path), "%.100s/tlshd", self->e.dir);
	ASSERT_EQ(0, copy_exec("/bin/sleep", path));
	sleeper[0] = path;
	pid = spawn(sleeper, NULL);
	ASSERT_LT(0, pid);
	usleep(200000);
	ASSERT_EQ(0, env_conf(&self->e,
			      "[service kserver]\nkernel = yes\ncertificate = %s\n"
			      "key = %s\n",
			      self->e.srv_cert, self->e.srv_key));
	ret = run(argv, NULL, 0, out, sizeof(out), 30);
	EXPECT_EQ(1, ret);
	EXPECT_NE(NULL, strstr(out, "tlshd (pid")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "kernel_share_with_tlshd")) TH_LOG("%s", out);
	ret = run(check, NULL, 0, out, sizeof(out), 30);
	EXPECT_EQ(1, ret);
	EXPECT_NE(NULL, strstr(out, "kernel handshake requests (net/handshake): yes"));
	EXPECT_NE(NULL, strstr(out, "tlshd is running"));

	ASSERT_EQ(0, env_conf(&self->e,
			      "kernel_share_with_tlshd = yes\n[service kserver]\n"
			      "kernel = yes\ncertificate = %s\nkey = %s\n",
			      self->e.srv_cert, self->e.srv_key));
	ASSERT_EQ(0, danced_start(&self->e));
	EXPECT_TRUE(log_contains(&self->e, "each goes to whichever accepts first"));
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	ret = run(check, NULL, 0, out, sizeof(out), 30);
	EXPECT_EQ(0, ret) TH_LOG("%s", out);
	EXPECT_EQ(NULL, strstr(out, "tlshd is running"));
}

DANCED_HARNESS_MAIN
