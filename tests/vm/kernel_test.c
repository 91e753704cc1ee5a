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

#include "../harness.h"
#include "../lib/daemon.h"
#include "../kmod/dance_hs.h"

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

DANCED_HARNESS_MAIN
