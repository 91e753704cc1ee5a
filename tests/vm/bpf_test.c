// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_test.c - the kernel's enforcement of danced's policy, in the VM (the build
 * machines' kernel refuses BPF LSM programs): the programs loaded from their skeleton,
 * a TCP connection on a protected port, identities written into socket storage the way
 * danced writes them, rules in the LPM trie, and every data path a server might use.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <liburing.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "danced.h"
#include "danced.skel.h"

/* What danced will write: the name reversed, then '.', for the trie (see danced.h). */
static void rname_of(const char *name, char *out, size_t max)
{
	size_t n = strlen(name), i;

	memset(out, 0, max);
	for (i = 0; i < n && i + 1 < max; i++)
		out[i] = name[n - 1 - i];
	out[i] = '.';
}

struct seen {
	struct danced_event last;
	int n;
};

static int collect(void *ctx, void *data, size_t len)
{
	struct seen *s = ctx;

	if (len >= sizeof(s->last))
		memcpy(&s->last, data, sizeof(s->last));
	s->n++;
	return 0;
}

FIXTURE(bpf)
{
	struct danced_bpf *skel;
	struct ring_buffer *rb;
	struct seen seen;
	int lfd, port;
	int cli, srv; /* srv has the protected local port */
};

FIXTURE_SETUP(bpf)
{
	self->skel = danced_bpf__open_and_load();
	ASSERT_NE(NULL, self->skel) TH_LOG("loading the BPF programs failed: %s", strerror(errno));
	ASSERT_EQ(0, danced_bpf__attach(self->skel)) TH_LOG("attach: %s", strerror(errno));
	self->rb =
		ring_buffer__new(bpf_map__fd(self->skel->maps.events), collect, &self->seen, NULL);
	ASSERT_NE(NULL, self->rb);
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	self->cli = tcp_connect(self->port);
	ASSERT_LE(0, self->cli);
	self->srv = accept(self->lfd, NULL, NULL);
	ASSERT_LE(0, self->srv);
}

FIXTURE_TEARDOWN(bpf)
{
	close(self->cli);
	close(self->srv);
	close(self->lfd);
	ring_buffer__free(self->rb);
	danced_bpf__destroy(self->skel);
}

static int protect(FIXTURE_DATA(bpf) * self, __u8 mode, __u8 dflt)
{
	struct danced_service s = { .mode = mode, .dflt = dflt };
	__u16 port = self->port;

	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.services), &port, &s, BPF_ANY);
}

static int identify(FIXTURE_DATA(bpf) * self, int fd, const char *name, __u32 auth)
{
	struct danced_ident id = { .auth = auth, .tls_version = 0x0304, .port = self->port };

	id.name_len = strlen(name);
	rname_of(name, id.rname, sizeof(id.rname));
	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.sk_ident), &fd, &id, BPF_ANY);
}

/* @name exact, or with a leading "*." everything under the rest. */
static int rule(FIXTURE_DATA(bpf) * self, const char *name, __u8 verdict)
{
	struct danced_rule_key k = { .port = htons(self->port) };
	struct danced_rule r = { .verdict = verdict };
	bool suffix = !strncmp(name, "*.", 2);
	size_t n;

	rname_of(suffix ? name + 2 : name, k.rname, sizeof(k.rname));
	n = strlen(k.rname); /* with the '.': a suffix ends at a label boundary */
	k.prefixlen = 8 * (sizeof(k.port) + n);
	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.rules), &k, &r, BPF_ANY);
}

/* One byte each way between the peers; 0, or the negated errno of the failing side. */
static int exchange(FIXTURE_DATA(bpf) * self)
{
	char b = 'x';

	if (send(self->srv, &b, 1, 0) != 1)
		return -errno;
	if (recv(self->cli, &b, 1, 0) != 1)
		return -EIO;
	if (send(self->cli, &b, 1, 0) != 1)
		return -EIO;
	if (recv(self->srv, &b, 1, 0) != 1)
		return -errno;
	return 0;
}

/* Read the events so far; the count and the last one are in self->seen. */
static void drain_events(FIXTURE_DATA(bpf) * self)
{
	memset(&self->seen, 0, sizeof(self->seen));
	ring_buffer__consume(self->rb);
}

TEST_F(bpf, unprotected_port_is_untouched)
{
	EXPECT_EQ(0, exchange(self));
}

TEST_F(bpf, no_identity_on_a_protected_port_is_refused_both_ways)
{
	char b = 'x';

	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_ALLOW));
	EXPECT_EQ(-1, send(self->srv, &b, 1, 0));
	EXPECT_EQ(EACCES, errno);
	drain_events(self);
	EXPECT_EQ(DANCED_WHY_NO_IDENTITY, self->seen.last.why);
	EXPECT_EQ(DANCED_EV_SEND, self->seen.last.op);
	EXPECT_EQ(self->port, self->seen.last.port);
	EXPECT_EQ((__u32)getpid(), self->seen.last.pid);
	/* The client's bytes arrive but the server cannot read them. */
	ASSERT_EQ(1, send(self->cli, &b, 1, 0));
	EXPECT_EQ(-1, recv(self->srv, &b, 1, 0));
	EXPECT_EQ(EACCES, errno);
	drain_events(self);
	EXPECT_EQ(-1, read(self->srv, &b, 1));
	EXPECT_EQ(EACCES, errno);
	EXPECT_EQ(-1, write(self->srv, &b, 1));
	EXPECT_EQ(EACCES, errno);
	/* One refusal, one event, whichever hook refused. */
	drain_events(self);
	EXPECT_EQ(2, self->seen.n);
	/* The client's own socket has an ephemeral local port: not a protected service. */
	EXPECT_EQ(1, send(self->cli, &b, 1, 0));
}

TEST_F(bpf, exact_and_suffix_rules_and_the_default)
{
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, identify(self, self->srv, "s1._device.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(-EACCES, exchange(self)); /* the default denies */
	ASSERT_EQ(0, rule(self, "*._device.example.com", DANCED_VERDICT_ALLOW));
	EXPECT_EQ(0, exchange(self));
	/* A more specific rule wins over the suffix. */
	ASSERT_EQ(0, rule(self, "s1._device.example.com", DANCED_VERDICT_DENY));
	EXPECT_EQ(-EACCES, exchange(self));
	drain_events(self);
	EXPECT_EQ(DANCED_WHY_DENIED, self->seen.last.why);
	EXPECT_STREQ("moc.elpmaxe.ecived_.1s.", self->seen.last.rname);
	/* A suffix ends at a label: x_device.example.com is not under _device.example.com. */
	ASSERT_EQ(0, identify(self, self->srv, "x_device.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(-EACCES, exchange(self));
	ASSERT_EQ(0, identify(self, self->srv, "s2._device.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(0, exchange(self));
	/* An identity that was not verified is never allowed, whatever the rules say. */
	ASSERT_EQ(0, identify(self, self->srv, "s2._device.example.com", DANCED_AUTH_NONE));
	EXPECT_EQ(-EACCES, exchange(self));
}

TEST_F(bpf, rules_are_per_port)
{
	struct danced_rule_key k = { .port = htons(self->port + 1) };
	struct danced_rule r = { .verdict = DANCED_VERDICT_ALLOW };

	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, identify(self, self->srv, "a.example.com", DANCED_AUTH_DANE));
	rname_of("a.example.com", k.rname, sizeof(k.rname));
	k.prefixlen = 8 * (sizeof(k.port) + strlen(k.rname));
	ASSERT_EQ(0, bpf_map_update_elem(bpf_map__fd(self->skel->maps.rules), &k, &r, BPF_ANY));
	EXPECT_EQ(-EACCES, exchange(self));
	ASSERT_EQ(0, rule(self, "a.example.com", DANCED_VERDICT_ALLOW));
	EXPECT_EQ(0, exchange(self));
}

TEST_F(bpf, audit_mode_passes_and_records)
{
	ASSERT_EQ(0, protect(self, DANCED_MODE_AUDIT, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, identify(self, self->srv, "b.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(0, exchange(self));
	drain_events(self);
	EXPECT_EQ(1, self->seen.last.audit);
	EXPECT_EQ(DANCED_WHY_DENIED, self->seen.last.why);
	EXPECT_STREQ("moc.elpmaxe.b.", self->seen.last.rname);
}

TEST_F(bpf, the_agent_is_exempt)
{
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	EXPECT_EQ(-EACCES, exchange(self));
	self->skel->bss->agent_tgid = getpid();
	EXPECT_EQ(0, exchange(self));
	self->skel->bss->agent_tgid = 0;
	EXPECT_EQ(-EACCES, exchange(self));
}

/* sendfile(2), splice(2) and io_uring reach the socket through the same hooks. */
TEST_F(bpf, every_data_path_is_covered)
{
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	char path[] = "/tmp/bpf_test.XXXXXX", b = 'x';
	int file = mkstemp(path), p[2];
	off_t off = 0;

	ASSERT_LE(0, file);
	unlink(path);
	ASSERT_EQ(1, write(file, "y", 1));
	ASSERT_EQ(0, pipe(p));
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	EXPECT_EQ(-1, sendfile(self->srv, file, &off, 1));
	EXPECT_EQ(EACCES, errno);
	ASSERT_EQ(1, write(p[1], "z", 1));
	EXPECT_EQ(-1, splice(p[0], NULL, self->srv, NULL, 1, 0));
	EXPECT_EQ(EACCES, errno);
	ASSERT_EQ(1, send(self->cli, &b, 1, 0));
	EXPECT_EQ(-1, splice(self->srv, NULL, p[1], NULL, 1, SPLICE_F_NONBLOCK));
	EXPECT_EQ(EACCES, errno);
	ASSERT_EQ(0, io_uring_queue_init(4, &ring, 0));
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_send(sqe, self->srv, &b, 1, 0);
	io_uring_submit(&ring);
	ASSERT_EQ(0, io_uring_wait_cqe(&ring, &cqe));
	EXPECT_EQ(-EACCES, cqe->res);
	io_uring_cqe_seen(&ring, cqe);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv(sqe, self->srv, &b, 1, 0);
	io_uring_submit(&ring);
	ASSERT_EQ(0, io_uring_wait_cqe(&ring, &cqe));
	EXPECT_EQ(-EACCES, cqe->res);
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	close(p[0]);
	close(p[1]);
	close(file);
}

DANCED_HARNESS_MAIN
