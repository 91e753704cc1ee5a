// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_test.c - the kernel's enforcement of danced's policy, in the VM (the build
 * machines' kernel refuses BPF LSM programs): the programs loaded from their skeleton,
 * a TCP connection on a protected port, identities written into socket storage the way
 * danced writes them, rules in the LPM trie, and every data path a server might use.
 */
#include <errno.h>
#include <sys/mount.h>
#include <grp.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <net/if.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "../lib/pair.h"
#include "../lib/pki.h"
#include "../../agent/lib/dance.h"
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
	__u32 netns; /* this process's network namespace */
};

/* A network namespace's inode number: what keys a service (bpf/danced.h). */
static __u32 netns_of(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : st.st_ino;
}

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
	self->netns = netns_of("/proc/self/ns/net");
	ASSERT_NE(0U, self->netns);
}

FIXTURE_TEARDOWN(bpf)
{
	if (self->cli >= 0)
		close(self->cli);
	if (self->srv >= 0)
		close(self->srv);
	close(self->lfd);
	ring_buffer__free(self->rb);
	danced_bpf__destroy(self->skel);
}

static int protect_port(FIXTURE_DATA(bpf) * self, __u32 netns, __u16 port, __u8 mode, __u8 dflt)
{
	struct danced_service_key k = { .netns = netns, .port = port };
	struct danced_service s = { .mode = mode, .dflt = dflt };

	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.services), &k, &s, BPF_ANY);
}

static int protect(FIXTURE_DATA(bpf) * self, __u8 mode, __u8 dflt)
{
	return protect_port(self, self->netns, self->port, mode, dflt);
}

static int identify(FIXTURE_DATA(bpf) * self, int fd, const char *name, __u32 auth)
{
	struct danced_ident id = { .auth = auth, .tls_version = 0x0304, .port = self->port };

	id.name_len = strlen(name);
	rname_of(name, id.rname, sizeof(id.rname));
	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.sk_ident), &fd, &id, BPF_ANY);
}

/*
 * A rule's key the way bpftool users write it: @name exact, or with a leading "*."
 * everything under the rest, on @port in @netns.
 */
static void rule_key_of(struct danced_rule_key *k, __u32 netns, __u16 port, const char *name)
{
	bool suffix = !strncmp(name, "*.", 2);

	memset(k, 0, sizeof(*k));
	k->netns = netns;
	k->port = port;
	rname_of(suffix ? name + 2 : name, k->rname, sizeof(k->rname));
	/* With the '.', a suffix ends at a label boundary; an exact name adds its zero. */
	k->prefixlen = 8 * (sizeof(k->netns) + sizeof(k->port) + strlen(k->rname) + !suffix);
}

static int rule_proof(FIXTURE_DATA(bpf) * self, const char *name, __u8 verdict, __u8 proof)
{
	struct danced_rule r = { .verdict = verdict, .proof = proof };
	struct danced_rule_key k;

	rule_key_of(&k, self->netns, self->port, name);
	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.rules), &k, &r, BPF_ANY);
}

/* A rule as zeros would leave it: for DANE proofs. */
static int rule(FIXTURE_DATA(bpf) * self, const char *name, __u8 verdict)
{
	return rule_proof(self, name, verdict, DANCED_PROOF_DANE);
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

/* Read the events so far; the count and the last one are in @seen. */
static void drain(struct ring_buffer *rb, struct seen *seen)
{
	memset(seen, 0, sizeof(*seen));
	ring_buffer__consume(rb);
}

static void drain_events(FIXTURE_DATA(bpf) * self)
{
	drain(self->rb, &self->seen);
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
	/* An exact rule is for that name only, not for names under it. */
	ASSERT_EQ(0, identify(self, self->srv, "x.s1._device.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(0, exchange(self));
	/* A suffix ends at a label: x_device.example.com is not under _device.example.com. */
	ASSERT_EQ(0, identify(self, self->srv, "x_device.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(-EACCES, exchange(self));
	ASSERT_EQ(0, identify(self, self->srv, "s2._device.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(0, exchange(self));
	/* An identity that was not verified is never allowed, whatever the rules say. */
	ASSERT_EQ(0, identify(self, self->srv, "s2._device.example.com", DANCED_AUTH_NONE));
	EXPECT_EQ(-EACCES, exchange(self));
}

TEST_F(bpf, rules_belong_to_their_service)
{
	struct danced_rule r = { .verdict = DANCED_VERDICT_ALLOW };
	struct danced_rule_key k;

	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, identify(self, self->srv, "a.example.com", DANCED_AUTH_DANE));
	/* The same name on the next port, and on this port in another namespace. */
	rule_key_of(&k, self->netns, self->port + 1, "a.example.com");
	ASSERT_EQ(0, bpf_map_update_elem(bpf_map__fd(self->skel->maps.rules), &k, &r, BPF_ANY));
	rule_key_of(&k, self->netns + 1, self->port, "a.example.com");
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

/* This process, in a network namespace of its own with loopback up. */
static int enter_new_netns(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd, ret = 0;

	if (unshare(CLONE_NEWNET))
		return -errno;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		ret = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!ret && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* A TCP listener on 127.0.0.1:@port in the calling process's network namespace. */
static int tcp_listen_on(int port, int *fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	*fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return -errno;
	setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(*fd, (struct sockaddr *)&a, sizeof(a)) || listen(*fd, 4)) {
		close(*fd);
		return -errno;
	}
	return 0;
}

/* In the calling process's network namespace: a TCP pair on @port, one byte each way. */
static int exchange_on(int port)
{
	int l, c, s, ret;
	char b = 'x';

	ret = tcp_listen_on(port, &l);
	if (ret)
		return ret;
	c = tcp_connect(port);
	s = c < 0 ? -1 : accept(l, NULL, NULL);
	if (c < 0 || s < 0)
		ret = -EIO;
	else if (send(s, &b, 1, 0) != 1 || recv(c, &b, 1, 0) != 1 || send(c, &b, 1, 0) != 1 ||
		 recv(s, &b, 1, 0) != 1)
		ret = errno == EACCES ? -EACCES : -EIO;
	if (c >= 0)
		close(c);
	if (s >= 0)
		close(s);
	close(l);
	return ret;
}

/* A forked child runs @fn; its exit status (an errno), or -1 when it did not exit. */
static int in_child(int (*fn)(int), int arg)
{
	int status;
	pid_t pid = fork();

	if (!pid)
		_exit(-fn(arg));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* ---- danced's exemption: a socket it holds, touched by danced itself ---------------- */

/* Make this process the live danced, as danced registers itself: 0 or -errno. */
static int be_danced(FIXTURE_DATA(bpf) * self, __u64 token)
{
	struct danced_agent a = { .token = token, .pid = getpid() };
	struct danced_agent_task t = { .token = token };
	int pidfd = syscall(SYS_pidfd_open, getpid(), 0), ret;
	__u32 zero = 0;

	if (pidfd < 0)
		return -errno;
	ret = bpf_map_update_elem(bpf_map__fd(self->skel->maps.agent_task), &pidfd, &t, BPF_ANY) ?:
		      bpf_map_update_elem(bpf_map__fd(self->skel->maps.agent), &zero, &a, BPF_ANY);
	close(pidfd);
	return ret;
}

static int hold(FIXTURE_DATA(bpf) * self, int fd, __u64 token)
{
	struct danced_ident id = { .hold = token };

	return bpf_map_update_elem(bpf_map__fd(self->skel->maps.sk_ident), &fd, &id, BPF_ANY);
}

static __u64 live_token(FIXTURE_DATA(bpf) * self)
{
	struct danced_agent a = { 0 };
	__u32 zero = 0;

	bpf_map_lookup_elem(bpf_map__fd(self->skel->maps.agent), &zero, &a);
	return a.token;
}

static void *send_one(void *arg)
{
	int fd = *(int *)arg;

	return (void *)(long)(send(fd, "x", 1, MSG_NOSIGNAL) == 1 ? 0 : errno);
}

static void *sleeper(void *arg)
{
	pause();
	return arg;
}

static int send_from_child(int fd)
{
	return send(fd, "x", 1, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

TEST_F(bpf, a_held_socket_passes_for_danced_and_nobody_else)
{
	const __u64 token = 0x5eed5eed5eed5eedULL;
	struct danced_ident got;
	pthread_t t;
	void *res;
	char b;

	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, be_danced(self, token));
	/* danced, but the socket is not held: judged like anybody's. */
	EXPECT_EQ(-EACCES, exchange(self));
	drain_events(self);
	ASSERT_EQ(0, hold(self, self->srv, token));
	EXPECT_EQ(0, exchange(self));
	/* The hold noted the service for danced, which cannot read a namespace's inode. */
	ASSERT_EQ(0, bpf_map_lookup_elem(bpf_map__fd(self->skel->maps.sk_ident), &self->srv, &got));
	EXPECT_EQ(self->netns, got.netns);
	EXPECT_EQ(self->port, got.port);
	/* Every thread of danced is danced (workers, io_uring's too) ... */
	ASSERT_EQ(0, pthread_create(&t, NULL, send_one, &self->srv));
	pthread_join(t, &res);
	EXPECT_EQ(0L, (long)res);
	ASSERT_EQ(1, recv(self->cli, &b, 1, 0));
	/* ... and no other process, not even one danced forked. */
	EXPECT_EQ(EACCES, in_child(send_from_child, self->srv));
	drain_events(self);
	EXPECT_EQ(1, self->seen.n);
	EXPECT_EQ(DANCED_WHY_NO_IDENTITY, self->seen.last.why);
	/* A hold of another danced run is nobody's. */
	ASSERT_EQ(0, hold(self, self->srv, token + 1));
	EXPECT_EQ(-EACCES, exchange(self));
	/* danced stopped (token 0): its holds are nobody's either. */
	ASSERT_EQ(0, hold(self, self->srv, token));
	ASSERT_EQ(0, be_danced(self, 0));
	EXPECT_EQ(-EACCES, exchange(self));
}

/* A danced that dies without a word (SIGKILL) takes its token with it. */
TEST_F(bpf, danceds_death_ends_its_token)
{
	int go[2], status;
	pid_t pid;
	char b;

	ASSERT_EQ(0, pipe(go));
	ASSERT_EQ(0, be_danced(self, 7));
	/* Any other process ending changes nothing. */
	pid = fork();
	if (!pid)
		_exit(0);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(7ULL, live_token(self));
	/* A process that registered as danced, with a second thread, killed. */
	pid = fork();
	if (!pid) {
		pthread_t t;

		if (be_danced(self, 8))
			_exit(1);
		pthread_create(&t, NULL, sleeper, NULL);
		if (write(go[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	ASSERT_LT(0, pid);
	ASSERT_EQ(1, read(go[0], &b, 1));
	EXPECT_EQ(8ULL, live_token(self));
	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0ULL, live_token(self));
	close(go[0]);
	close(go[1]);
}

/* A service scoped to a cgroup holds processes in it, or below it, and no others. */
TEST_F(bpf, a_cgroup_scoped_service_holds_only_its_processes)
{
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = DANCED_VERDICT_DENY };
	char outer[96], inner[128], procs[160];
	struct danced_service_key key = { .netns = self->netns, .port = self->port };
	struct stat st;
	int status;
	pid_t pid;

	snprintf(outer, sizeof(outer), "/sys/fs/cgroup/danced-bpf-test-%d", getpid());
	snprintf(inner, sizeof(inner), "%s/inner", outer);
	ASSERT_EQ(0, mkdir(outer, 0755));
	ASSERT_EQ(0, mkdir(inner, 0755));
	ASSERT_EQ(0, stat(outer, &st));
	svc.cgroup_id = st.st_ino; /* a cgroup's id is its directory's inode number */
	svc.cgroup_level = 1;
	ASSERT_EQ(0,
		  bpf_map_update_elem(bpf_map__fd(self->skel->maps.services), &key, &svc, BPF_ANY));
	EXPECT_EQ(0, exchange(self)); /* this process is outside */
	pid = fork();
	if (!pid) {
		FILE *f;

		snprintf(procs, sizeof(procs), "%s/cgroup.procs", inner);
		f = fopen(procs, "w");
		if (!f || fprintf(f, "0\n") < 0 || fclose(f))
			_exit(2);
		_exit(send(self->srv, "x", 1, 0) == -1 && errno == EACCES ? 0 : 1);
	}
	ASSERT_LT(0, pid);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) TH_LOG("status %d", status);
	EXPECT_EQ(0, exchange(self)); /* still outside */
	rmdir(inner);
	rmdir(outer);
}

/* An identity in "identities" lives as long as its TCP connection. */
TEST_F(bpf, closing_a_socket_removes_its_identity)
{
	int idfd = bpf_map__fd(self->skel->maps.identities);
	struct danced_ident id = { .auth = DANCED_AUTH_DANE, .port = self->port };
	socklen_t len = sizeof(id.cookie);
	struct danced_ident got;

	ASSERT_EQ(0, getsockopt(self->srv, SOL_SOCKET, SO_COOKIE, &id.cookie, &len));
	id.name_len = 1;
	rname_of("c", id.rname, sizeof(id.rname));
	ASSERT_EQ(0, bpf_map_update_elem(bpf_map__fd(self->skel->maps.sk_ident), &self->srv, &id,
					 BPF_ANY));
	ASSERT_EQ(0, bpf_map_update_elem(idfd, &id.cookie, &id, BPF_ANY));
	EXPECT_EQ(0, bpf_map_lookup_elem(idfd, &id.cookie, &got));
	close(self->srv);
	close(self->cli);
	self->srv = self->cli = -1;
	usleep(100000);
	EXPECT_EQ(-ENOENT, bpf_map_lookup_elem(idfd, &id.cookie, &got)); /* libbpf 1.x */
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

/* ---- what the policy judges: TCP sockets, a port within one network namespace ------ */

static int udp_socket(struct sockaddr_in *a)
{
	struct timeval tv = { .tv_sec = 3 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (a && bind(fd, (struct sockaddr *)a, sizeof(*a))) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* QUIC on 443 next to HTTPS on 443: UDP has its own ports, and is not the TCP service. */
TEST_F(bpf, udp_on_the_protected_port_number_is_not_judged)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(self->port) }, b;
	socklen_t len = sizeof(b);
	char x = 'x';
	int u1, u2;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	u1 = udp_socket(&a); /* local port: the protected number */
	ASSERT_LE(0, u1) TH_LOG("bind udp %d: %s", self->port, strerror(-u1));
	u2 = udp_socket(NULL);
	ASSERT_LE(0, u2);
	ASSERT_EQ(0, connect(u2, (struct sockaddr *)&a, sizeof(a)));
	ASSERT_EQ(0, getsockname(u2, (struct sockaddr *)&b, &len));
	EXPECT_EQ(1, send(u2, &x, 1, 0));
	EXPECT_EQ(1, recv(u1, &x, 1, 0)) TH_LOG("recv on udp %d: %s", self->port, strerror(errno));
	EXPECT_EQ(1, sendto(u1, &x, 1, 0, (struct sockaddr *)&b, sizeof(b)))
	TH_LOG("send from udp %d: %s", self->port, strerror(errno));
	EXPECT_EQ(1, recv(u2, &x, 1, 0));
	drain_events(self);
	EXPECT_EQ(0, self->seen.n);
	/* The TCP service on that number still is protected. */
	EXPECT_EQ(-EACCES, exchange(self));
	close(u1);
	close(u2);
}

/* A raw socket's "port" is its protocol number: never a TCP service's port. */
TEST_F(bpf, raw_sockets_are_not_judged)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 3 };
	char buf[64];
	int r;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT_EQ(0,
		  protect_port(self, self->netns, 253, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	r = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, 253); /* 253: for experiments, RFC 3692 */
	ASSERT_LE(0, r) TH_LOG("raw socket: %s", strerror(errno));
	setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	EXPECT_EQ(1, sendto(r, "x", 1, 0, (struct sockaddr *)&a, sizeof(a)))
	TH_LOG("sendto: %s", strerror(errno));
	/* It sees its own packet come back over loopback: IP header and the byte. */
	EXPECT_LT(1, recv(r, buf, sizeof(buf), 0)) TH_LOG("recv: %s", strerror(errno));
	drain_events(self);
	EXPECT_EQ(0, self->seen.n);
	close(r);
}

static int same_port_elsewhere(int port)
{
	int ret = enter_new_netns();

	return ret ?: exchange_on(port);
}

/* Another container's service on the same port number is not this one. */
TEST_F(bpf, the_same_port_in_another_netns_is_not_the_service)
{
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	EXPECT_EQ(0, in_child(same_port_elsewhere, self->port)) TH_LOG("0, or the child's errno");
	EXPECT_EQ(-EACCES, exchange(self)); /* here, it is protected */
}

static int protect_elsewhere(int port)
{
	int ret = enter_new_netns(), fd;
	struct danced_service_key k = { .port = port };
	struct danced_service s = { .mode = DANCED_MODE_ENFORCE };

	if (ret)
		return ret;
	k.netns = netns_of("/proc/self/ns/net");
	fd = bpf_obj_get("/sys/fs/bpf/danced-bpf-test-services");
	if (!k.netns || fd < 0 || bpf_map_update_elem(fd, &k, &s, BPF_ANY))
		return -EIO;
	return exchange_on(port);
}

/* ... and protected there when keyed by that namespace, not here. */
TEST_F(bpf, a_service_is_protected_in_the_netns_it_is_keyed_by)
{
	ASSERT_EQ(0, bpf_obj_pin(bpf_map__fd(self->skel->maps.services),
				 "/sys/fs/bpf/danced-bpf-test-services"));
	EXPECT_EQ(EACCES, in_child(protect_elsewhere, self->port)) TH_LOG("the child's errno");
	unlink("/sys/fs/bpf/danced-bpf-test-services");
	EXPECT_EQ(0, exchange(self));
}

/* ---- which proofs a rule admits -------------------------------------------------------- */

TEST_F(bpf, an_allow_rule_admits_only_the_proofs_it_names)
{
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, identify(self, self->srv, "s1.example.com", DANCED_AUTH_X509));
	/* A rule as zeros leave it, but allowing: DANE only. */
	ASSERT_EQ(0, rule(self, "s1.example.com", DANCED_VERDICT_ALLOW));
	EXPECT_EQ(-EACCES, exchange(self));
	drain_events(self);
	EXPECT_EQ(DANCED_WHY_PROOF, self->seen.last.why);
	EXPECT_EQ((__u8)DANCED_AUTH_X509, self->seen.last.auth);
	ASSERT_EQ(0, identify(self, self->srv, "s1.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(0, exchange(self));
	/* x509: the other way round. */
	ASSERT_EQ(0, rule_proof(self, "s1.example.com", DANCED_VERDICT_ALLOW, DANCED_PROOF_X509));
	EXPECT_EQ(-EACCES, exchange(self));
	ASSERT_EQ(0, identify(self, self->srv, "s1.example.com", DANCED_AUTH_X509));
	EXPECT_EQ(0, exchange(self));
	/* any: both. */
	ASSERT_EQ(0, rule_proof(self, "s1.example.com", DANCED_VERDICT_ALLOW, DANCED_PROOF_ANY));
	EXPECT_EQ(0, exchange(self));
	ASSERT_EQ(0, identify(self, self->srv, "s1.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(0, exchange(self));
	/* A proof the rule does not know admits nobody. */
	ASSERT_EQ(0, rule_proof(self, "s1.example.com", DANCED_VERDICT_ALLOW, 7));
	EXPECT_EQ(-EACCES, exchange(self));
	/* A proof that does not fit never falls back to a default that would allow. */
	ASSERT_EQ(0, protect(self, DANCED_MODE_ENFORCE, DANCED_VERDICT_ALLOW));
	ASSERT_EQ(0, rule_proof(self, "s1.example.com", DANCED_VERDICT_ALLOW, DANCED_PROOF_X509));
	EXPECT_EQ(-EACCES, exchange(self));
	ASSERT_EQ(0, identify(self, self->srv, "s2.example.com", DANCED_AUTH_X509));
	EXPECT_EQ(0, exchange(self)); /* no rule: the default, for any proof */
	/* A deny refuses its name however it was proven, whatever its proof byte says. */
	ASSERT_EQ(0, rule_proof(self, "*.example.com", DANCED_VERDICT_DENY, DANCED_PROOF_DANE));
	EXPECT_EQ(-EACCES, exchange(self));
	ASSERT_EQ(0, identify(self, self->srv, "s2.example.com", DANCED_AUTH_DANE));
	EXPECT_EQ(-EACCES, exchange(self));
	drain_events(self);
	EXPECT_EQ(DANCED_WHY_DENIED, self->seen.last.why);
}

/* ---- danced feeding the policy, and a server that never checks --------------------- */

struct tls_client {
	int port;
	const char *cert, *key, *ca;
	char got[16]; /* what the server sent, if anything came through */
	bool handshake_ok;
	long done_ms; /* when its read ended */
	pthread_t thread;
};

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *tls_client_main(void *arg)
{
	struct tls_client *c = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	struct timeval tv = { .tv_sec = 3 };
	SSL *ssl = NULL;
	int fd, n;

	SSL_CTX_load_verify_locations(ctx, c->ca, NULL);
	SSL_CTX_use_certificate_chain_file(ctx, c->cert);
	SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM);
	fd = tcp_connect(c->port);
	if (fd < 0)
		goto out;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, "localhost");
	if (SSL_connect(ssl) != 1)
		goto out;
	c->handshake_ok = true;
	SSL_write(ssl, "hello", 5);
	n = SSL_read(ssl, c->got, sizeof(c->got) - 1);
	c->done_ms = now_ms();
	if (n > 0)
		c->got[n] = '\0';
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	return NULL;
}

FIXTURE(careless)
{
	struct env e;
	int lfd, port;
	struct dance *d;
	struct dance_result *r;
	int services, rules; /* the pinned maps, opened the way bpftool opens them */
	struct ring_buffer *rb;
	struct seen seen;
	__u32 netns;
};

static int pinned_map(FIXTURE_DATA(careless) * self, const char *name)
{
	char path[160];

	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/%.60s", self->e.bpf_pin, name);
	return bpf_obj_get(path);
}

FIXTURE_SETUP(careless)
{
	signal(SIGPIPE, SIG_IGN);
	ASSERT_EQ(0, env_init(&self->e));
	snprintf(self->e.bpf_pin, sizeof(self->e.bpf_pin), "danced-test-%d", getpid());
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	ASSERT_EQ(0, env_conf(&self->e,
			      "workers = 1\nlog_level = debug\n"
			      "[service www]\ncertificate = %s\nkey = %s\nca = %s\n"
			      "client_auth = required\n",
			      self->e.srv_cert, self->e.srv_key, self->e.cli_ca));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_TRUE(log_contains(&self->e, "BPF policy: loaded and pinned"));
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	self->r = calloc(1, sizeof(*self->r));
	self->services = pinned_map(self, "services");
	self->rules = pinned_map(self, "rules");
	self->netns = netns_of("/proc/self/ns/net");
	ASSERT_LE(0, self->services);
	ASSERT_LE(0, self->rules);
	/* danced reads "events"; a second reader would take records from it. */
	self->rb = ring_buffer__new(pinned_map(self, "watch"), collect, &self->seen, NULL);
	ASSERT_NE(NULL, self->rb);
}

FIXTURE_TEARDOWN(careless)
{
	ring_buffer__free(self->rb);
	close(self->services);
	close(self->rules);
	if (self->d)
		dance_close(self->d);
	free(self->r);
	close(self->lfd);
	env_fini(&self->e);
}

static int careless_protect(FIXTURE_DATA(careless) * self, __u8 dflt)
{
	struct danced_service_key k = { .netns = self->netns, .port = self->port };
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = dflt };

	return bpf_map_update_elem(self->services, &k, &svc, BPF_ANY);
}

/*
 * A rule on the fixture's service: @name exactly, or (with a leading "*.") all under it.
 * The fixture's client proves its name with a certificate from the clients' CA: x509.
 */
static int careless_rule(FIXTURE_DATA(careless) * self, const char *name, __u8 verdict, __u8 proof)
{
	struct danced_rule r = { .verdict = verdict, .proof = proof };
	struct danced_rule_key k;

	rule_key_of(&k, self->netns, self->port, name);
	return bpf_map_update_elem(self->rules, &k, &r, BPF_ANY);
}

/*
 * One client against a server that never looks at the result: it reads what the client
 * says and answers "ok". Returns what the server's recv and send gave.
 */
static void careless_round(struct __test_metadata *_metadata, FIXTURE_DATA(careless) * self,
			   struct tls_client *c, ssize_t *got_in, ssize_t *sent)
{
	struct dance_params p = { 0 };
	char buf[16];
	int fd;

	c->port = self->port;
	c->ca = self->e.ca;
	c->cert = c->cert ?: self->e.cli_cert;
	c->key = c->key ?: self->e.cli_key;
	pthread_create(&c->thread, NULL, tls_client_main, c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dance_handshake(self->d, fd, &p, self->r)) TH_LOG("%s", self->r->reason);
	/* Careless: no look at self->r->auth or the name. */
	*got_in = self->r->pending_len ?: dance_recv(fd, buf, sizeof(buf), 0);
	*sent = send(fd, "ok", 2, MSG_NOSIGNAL);
	if (*sent < 0)
		*sent = -errno;
	pthread_join(c->thread, NULL);
	close(fd);
}

TEST_F(careless, the_kernel_checks_what_the_server_does_not)
{
	struct tls_client c = { 0 };
	ssize_t in, out;
	char rname[64];

	/* Unprotected: anything goes. */
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_EQ(2, out);
	EXPECT_STREQ("ok", c.got);
	/* Protected, allowed by a suffix rule: the same. */
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	ASSERT_EQ(0,
		  careless_rule(self, "*.example.test", DANCED_VERDICT_ALLOW, DANCED_PROOF_X509));
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_TRUE(c.handshake_ok); /* danced's own I/O is never blocked */
	EXPECT_EQ(2, out);
	EXPECT_STREQ("ok", c.got);
	/* Denied for this very name: nothing gets through, either way. */
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_DENY, 0));
	drain(self->rb, &self->seen);
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_TRUE(c.handshake_ok);
	EXPECT_EQ(-EACCES, out);
	EXPECT_STREQ("", c.got);
	EXPECT_EQ(0U, self->r->pending_len); /* hello, if it came early, is withheld */
	drain(self->rb, &self->seen);
	EXPECT_LE(1, self->seen.n);
	EXPECT_EQ(DANCED_WHY_DENIED, self->seen.last.why);
	rname_of("client.example.test", rname, sizeof(rname));
	EXPECT_STREQ(rname, self->seen.last.rname);
	/* danced reads the other ring and logs the refusal for the operator. */
	usleep(500000);
	EXPECT_TRUE(log_contains(&self->e, "policy: refused send by pid"));
	EXPECT_TRUE(log_contains(&self->e, "on port"));
	EXPECT_TRUE(log_contains(&self->e, ": client.example.test"));
}

/* A client whose first bytes travel with its Finished: danced reads them for the server. */
struct early_client {
	int port;
	const char *ca, *cert, *key;
	int ret;
	pthread_t thread;
};

static void *early_client_main(void *arg)
{
	struct early_client *c = arg;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	char b;
	int fd;

	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_load_verify_locations(ctx, c->ca, NULL);
	SSL_CTX_use_certificate_chain_file(ctx, c->cert);
	SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM);
	c->ret = fd = tcp_connect(c->port);
	if (fd < 0)
		goto out;
	ssl = pair_mem_ssl(ctx);
	SSL_set_connect_state(ssl);
	SSL_set_tlsext_host_name(ssl, "localhost");
	c->ret = peer_handshake(ssl, fd, true) ?: peer_write(ssl, fd, "hello", 5, true);
	peer_read(ssl, fd, &b, 1); /* until the server closes */
	close(fd);
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return NULL;
}

/* The pending plaintext of one such client, as the server gets it: its length. */
static int early_round(struct __test_metadata *_metadata, FIXTURE_DATA(careless) * self)
{
	struct early_client c = { .port = self->port,
				  .ca = self->e.ca,
				  .cert = self->e.cli_cert,
				  .key = self->e.cli_key };
	struct dance_params p = { 0 };
	int fd, ret;

	pthread_create(&c.thread, NULL, early_client_main, &c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ret = fd < 0 || dance_handshake(self->d, fd, &p, self->r) ? -1 : (int)self->r->pending_len;
	if (ret == 5)
		EXPECT_EQ(0, memcmp(self->r->pending, "hello", 5));
	if (fd >= 0)
		close(fd);
	pthread_join(c.thread, NULL);
	EXPECT_EQ(0, c.ret);
	return ret;
}

/* Bytes danced read behind the handshake reach the server only where the kernel would. */
TEST_F(careless, pending_plaintext_goes_only_where_the_policy_admits_it)
{
	EXPECT_EQ(5, early_round(_metadata, self)); /* unprotected */
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_ALLOW,
				   DANCED_PROOF_X509));
	EXPECT_EQ(5, early_round(_metadata, self));
	/* The same name, but the rule wants DANE: withheld. */
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_ALLOW, 0));
	EXPECT_EQ(0, early_round(_metadata, self));
	/* Denied: withheld. */
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_DENY, 0));
	EXPECT_EQ(0, early_round(_metadata, self));
}

/* Pinned, the policy holds while danced is down, and a new danced picks it up as it is. */
TEST_F(careless, enforcement_outlives_danced_and_a_restart_reuses_it)
{
	struct tls_client c = { 0 };
	ssize_t in, out;
	int cli, srv;

	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_ALLOW,
				   DANCED_PROOF_X509));
	dance_close(self->d);
	self->d = NULL;
	ASSERT_EQ(0, danced_stop(&self->e, SIGTERM));
	/* danced is gone: a socket nobody identified moves no data. */
	cli = tcp_connect(self->port);
	ASSERT_LE(0, cli);
	srv = accept(self->lfd, NULL, NULL);
	ASSERT_LE(0, srv);
	EXPECT_EQ(-1, send(srv, "x", 1, MSG_NOSIGNAL));
	EXPECT_EQ(EACCES, errno);
	close(cli);
	close(srv);
	/* Back: the same programs, maps and rule. */
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	EXPECT_TRUE(log_contains(&self->e, "BPF policy: reusing"));
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_EQ(2, out);
	EXPECT_STREQ("ok", c.got);
}

/* Read the pinned sweep iterator, as `cat` would: the number of sockets it destroyed. */
static int sweep(FIXTURE_DATA(careless) * self)
{
	char path[160], buf[4096];
	int fd, n, lines = 0;
	ssize_t got;

	snprintf(path, sizeof(path), "/sys/fs/bpf/%.60s/danced_sweep", self->e.bpf_pin);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	while ((got = read(fd, buf, sizeof(buf))) > 0)
		for (n = 0; n < got; n++)
			lines += buf[n] == '\n';
	close(fd);
	return got < 0 ? -errno : lines;
}

/* A live connection, handed to a server that then just waits. */
static int live(struct __test_metadata *_metadata, FIXTURE_DATA(careless) * self,
		struct tls_client *c)
{
	struct dance_params p = { 0 };
	int fd;

	c->port = self->port;
	c->ca = self->e.ca;
	c->cert = c->cert ?: self->e.cli_cert;
	c->key = c->key ?: self->e.cli_key;
	pthread_create(&c->thread, NULL, tls_client_main, c);
	fd = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0 || dance_handshake(self->d, fd, &p, self->r))
		return -1;
	return fd;
}

/* Revocation: a rule turned to deny, or a name revoked, cuts live connections. */
TEST_F(careless, sweep_destroys_live_sockets_the_policy_now_refuses)
{
	int revoke = pinned_map(self, "revoke");
	struct danced_rule r = { .verdict = DANCED_VERDICT_ALLOW, .proof = DANCED_PROOF_X509 };
	struct tls_client c = { 0 };
	struct danced_rule_key k;
	char rname[256];
	__u8 one = 1;
	long t0;
	int fd;

	ASSERT_LE(0, revoke);
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	rule_key_of(&k, self->netns, self->port, "client.example.test");
	ASSERT_EQ(0, bpf_map_update_elem(self->rules, &k, &r, BPF_ANY));
	EXPECT_EQ(0, sweep(self)); /* nothing to do */

	fd = live(_metadata, self, &c);
	ASSERT_LE(0, fd);
	/* Still allowed, but for DANE proofs only: this client's certificate no longer is. */
	r.proof = DANCED_PROOF_DANE;
	ASSERT_EQ(0, bpf_map_update_elem(self->rules, &k, &r, BPF_ANY));
	t0 = now_ms();
	EXPECT_EQ(1, sweep(self));
	pthread_join(c.thread, NULL);
	EXPECT_GT(1000, c.done_ms - t0); /* the client learns within a second */
	EXPECT_STREQ("", c.got);
	EXPECT_EQ(-1, send(fd, "x", 1, MSG_NOSIGNAL));
	close(fd);

	/* Allowed again, but revoked by name: cut, while the rules stay as they are. */
	r.proof = DANCED_PROOF_ANY;
	ASSERT_EQ(0, bpf_map_update_elem(self->rules, &k, &r, BPF_ANY));
	c = (struct tls_client){ 0 };
	fd = live(_metadata, self, &c);
	ASSERT_LE(0, fd);
	memset(rname, 0, sizeof(rname));
	rname_of("client.example.test", rname, sizeof(rname));
	ASSERT_EQ(0, bpf_map_update_elem(revoke, rname, &one, BPF_ANY));
	EXPECT_EQ(1, sweep(self));
	pthread_join(c.thread, NULL);
	EXPECT_STREQ("", c.got);
	close(fd);
	ASSERT_EQ(0, bpf_map_delete_elem(revoke, rname));
	close(revoke);
}

/* dancectl with the pins of this test's danced; its output in @out. */
static int ctl(FIXTURE_DATA(careless) * self, char *out, size_t max, const char *a1, const char *a2,
	       const char *a3, const char *a4, const char *a5)
{
	char pin[96];
	char *argv[] = { (char *)bin("dancectl"),
			 "-p",
			 pin,
			 (char *)a1,
			 (char *)a2,
			 (char *)a3,
			 (char *)a4,
			 (char *)a5,
			 NULL };

	snprintf(pin, sizeof(pin), "/sys/fs/bpf/%.60s", self->e.bpf_pin);
	return run(argv, NULL, 0, out, max, 30);
}

TEST_F(careless, dancectl_drives_the_policy)
{
	struct tls_client c = { 0 };
	char port[8], out[4096], evlog[160];
	ssize_t in, sent;
	pid_t ev;
	int fd;

	snprintf(port, sizeof(port), "%d", self->port);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "policy", "service", port, "enforce", "deny"));
	EXPECT_NE(NULL, strstr(out, "0 live connections cut")) TH_LOG("%s", out);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "policy", "allow", port, "*.example.test",
			 "--proof=x509"));
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "policy", "list", NULL, NULL, NULL));
	EXPECT_NE(NULL, strstr(out, "enforce")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "allow   x509  *.example.test")) TH_LOG("%s", out);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "--json", "policy", "list", NULL, NULL));
	EXPECT_NE(NULL, strstr(out, "\"name\":\"*.example.test\",\"verdict\":\"allow\","
				    "\"proof\":\"x509\""))
	TH_LOG("%s", out);
	/* A deny refuses every proof; a proof is one of three. */
	EXPECT_EQ(2, ctl(self, out, sizeof(out), "policy", "deny", port, "x.example.test",
			 "--proof=dane"));
	EXPECT_NE(NULL, strstr(out, "--proof is for allow rules")) TH_LOG("%s", out);
	EXPECT_EQ(2, ctl(self, out, sizeof(out), "policy", "allow", port, "x.example.test",
			 "--proof=pgp"));
	/* Scoped to a cgroup: the service shows its id; not a cgroup: refused. */
	EXPECT_EQ(2, ctl(self, out, sizeof(out), "policy", "service", port, "enforce", "cgroup"));
	{
		char *argv[] = { (char *)bin("dancectl"),
				 "-p",
				 "/sys/fs/bpf/x",
				 "policy",
				 "service",
				 port,
				 "enforce",
				 "deny",
				 "cgroup",
				 "/tmp",
				 NULL };

		EXPECT_EQ(1, run(argv, NULL, 0, out, sizeof(out), 30));
		EXPECT_NE(NULL, strstr(out, "is not a cgroup v2 directory")) TH_LOG("%s", out);
	}
	careless_round(_metadata, self, &c, &in, &sent);
	EXPECT_EQ(2, sent);

	/* A live connection shows up, then a revoke cuts it. */
	c = (struct tls_client){ 0 };
	fd = live(_metadata, self, &c);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "identities", NULL, NULL, NULL, NULL));
	EXPECT_NE(NULL, strstr(out, "x509     1.3")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "client.example.test")) TH_LOG("%s", out);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "--json", "identities", NULL, NULL, NULL));
	EXPECT_NE(NULL, strstr(out, "\"name\":\"client.example.test\"")) TH_LOG("%s", out);
	EXPECT_EQ(0,
		  ctl(self, out, sizeof(out), "revoke", "client.example.test", NULL, NULL, NULL));
	EXPECT_NE(NULL, strstr(out, "client.example.test: 1 live connection cut"))
	TH_LOG("%s", out);
	pthread_join(c.thread, NULL);
	EXPECT_STREQ("", c.got);
	close(fd);

	/* An exact deny beats the suffix allow; events tell who was refused. */
	snprintf(evlog, sizeof(evlog), "%.100s/events.log", self->e.dir);
	{
		char pin[96];
		char *argv[] = { (char *)bin("dancectl"), "-p", pin, "events", NULL };

		snprintf(pin, sizeof(pin), "/sys/fs/bpf/%.60s", self->e.bpf_pin);
		ev = spawn(argv, evlog);
	}
	EXPECT_EQ(0,
		  ctl(self, out, sizeof(out), "policy", "deny", port, "client.example.test", NULL));
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &sent);
	EXPECT_EQ(-EACCES, sent);
	usleep(700000);
	kill(ev, SIGTERM);
	waitpid(ev, NULL, 0);
	{
		FILE *f = fopen(evlog, "r");
		size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;

		out[n] = '\0';
		if (f)
			fclose(f);
	}
	EXPECT_NE(NULL, strstr(out, "refused pid=")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "name=client.example.test reason=denied auth=x509"))
	TH_LOG("%s", out);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "policy", "remove", port, "client.example.test",
			 NULL));
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &sent);
	EXPECT_EQ(2, sent);

	/* Bad input is refused with a reason; missing pins say what to check. */
	EXPECT_EQ(2, ctl(self, out, sizeof(out), "policy", "allow", port, "bad name!", NULL));
	EXPECT_NE(NULL, strstr(out, "is not a DNS name")) TH_LOG("%s", out);
	EXPECT_EQ(2, ctl(self, out, sizeof(out), "policy", "service", "70000", "enforce", NULL));
	{
		char *argv[] = { (char *)bin("dancectl"), "-p", "/sys/fs/bpf/nothing-here",
				 "identities", NULL };

		EXPECT_EQ(1, run(argv, NULL, 0, out, sizeof(out), 30));
		EXPECT_NE(NULL, strstr(out, "is danced's policy loaded?")) TH_LOG("%s", out);
	}
}

/* The README's bpftool walkthrough, command for command, against this danced. */
TEST_F(careless, readme_bpftool_walkthrough_works_as_written)
{
	static char script[8192], out[16384], readme[1 << 17];
	struct tls_client c = { 0 };
	char path[160], cmd[512], *begin, *end;
	ssize_t in, sent;
	FILE *f = fopen("/danced/README.md", "r");
	size_t n;
	int fd;

	ASSERT_NE(NULL, f);
	n = fread(readme, 1, sizeof(readme) - 1, f);
	fclose(f);
	readme[n] = '\0';
	begin = strstr(readme, "# walkthrough: begin");
	end = begin ? strstr(begin, "# walkthrough: end") : NULL;
	ASSERT_TRUE(begin && end);
	n = end - begin;
	ASSERT_GT(sizeof(script), n);
	memcpy(script, begin, n);
	snprintf(path, sizeof(path), "%.100s/walkthrough.sh", self->e.dir);
	f = fopen(path, "w");
	ASSERT_NE(NULL, f);
	fwrite(script, 1, n, f);
	fclose(f);

	/* A live connection from client.example.test, which step 4 must cut. */
	fd = live(_metadata, self, &c);
	ASSERT_LE(0, fd);
	snprintf(cmd, sizeof(cmd),
		 "pin=/sys/fs/bpf/%.60s port=%d domain=example.test name=client.example.test "
		 "proof=01; "
		 ". %s",
		 self->e.bpf_pin, self->port, path);
	{
		char *argv[] = { "/bin/sh", "-ec", cmd, NULL };

		EXPECT_EQ(0, run(argv, NULL, 0, out, sizeof(out), 60)) TH_LOG("%s", out);
	}
	pthread_join(c.thread, NULL);
	EXPECT_STREQ("", c.got); /* cut by the sweep in step 4 */
	close(fd);
	/* The sweep printed the cut socket: its cookie, then its reversed name. */
	EXPECT_NE(NULL, strstr(out, " tset.elpmaxe.tneilc.\n"))
	TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "\"mode\": 2")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "\"rname\": \"tset.elpmaxe.\"")) TH_LOG("%s", out);
	EXPECT_NE(NULL, strstr(out, "\"proof\": 1")) TH_LOG("%s", out);
	/* What is left: the domain allowed, the exception gone, nothing revoked. */
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &sent);
	EXPECT_EQ(2, sent);
	EXPECT_STREQ("ok", c.got);
}

/* ---- names from X.509 and names from DANE -------------------------------------------- */

/* A client certificate from the clients' CA with these SAN dNSNames, as @file.pem/.key. */
static int client_cert(FIXTURE_DATA(careless) * self, const char *file, const char *const *names,
		       char *cert, char *key, size_t max)
{
	struct pki_ca ca = { 0 };
	char path[160];
	FILE *f;
	int ret;

	snprintf(path, sizeof(path), "%.100s/client-ca.key", self->e.dir);
	f = fopen(path, "r");
	ca.key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	f = fopen(self->e.cli_ca, "r");
	ca.cert = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	snprintf(cert, max, "%.100s/%s.pem", self->e.dir, file);
	snprintf(key, max, "%.100s/%s.key", self->e.dir, file);
	ret = ca.key && ca.cert ? pki_leaf(&ca, names[0], names, 0, cert, key) : -EIO;
	pki_ca_free(&ca);
	return ret;
}

/* A rule written for a DANE-proven name: a CA-issued certificate with that name is not it. */
TEST_F(careless, a_rule_for_a_dane_name_does_not_admit_a_ca_certificate)
{
	struct tls_client c = { 0 };
	ssize_t in, out;

	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	/* Zeros for the proof, as bpftool users write them: DANE. */
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_ALLOW, 0));
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_TRUE(c.handshake_ok);
	EXPECT_EQ(-EACCES, out);
	EXPECT_STREQ("", c.got);
	drain(self->rb, &self->seen);
	EXPECT_EQ(DANCED_WHY_PROOF, self->seen.last.why);
	EXPECT_EQ((__u8)DANCED_AUTH_X509, self->seen.last.auth);
	usleep(500000);
	EXPECT_TRUE(log_contains(&self->e, "(proven by x509, which its rule does not accept)"));
	/* x509, or any: the certificate's name is admitted. */
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_ALLOW,
				   DANCED_PROOF_X509));
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_EQ(2, out);
	EXPECT_STREQ("ok", c.got);
	ASSERT_EQ(0, careless_rule(self, "client.example.test", DANCED_VERDICT_ALLOW,
				   DANCED_PROOF_ANY));
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_EQ(2, out);
	/* A service's default allow admits any verified name, however proven. */
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_ALLOW));
	ASSERT_EQ(0, careless_rule(self, "other.example.test", DANCED_VERDICT_ALLOW, 0));
	c = (struct tls_client){ 0 };
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_EQ(2, out);
}

/* The name an operator sees for the socket @sk in "identities". */
static void identity_name(FIXTURE_DATA(careless) * self, int sk, char *out, size_t max)
{
	int fd = pinned_map(self, "identities");
	socklen_t len = sizeof(__u64);
	struct danced_ident id;
	__u64 cookie;

	out[0] = '\0';
	if (fd >= 0 && !getsockopt(sk, SOL_SOCKET, SO_COOKIE, &cookie, &len) &&
	    !bpf_map_lookup_elem(fd, &cookie, &id))
		danced_fname(id.rname, sizeof(id.rname), out, max);
	if (fd >= 0)
		close(fd);
}

/* "*.example.test" in a certificate names no one client: it is never the identity. */
TEST_F(careless, a_wildcard_san_is_never_the_identity)
{
	static const char *const wild[] = { "*.example.test", NULL };
	static const char *const two[] = { "*.example.test", "client2.example.test", NULL };
	char cert[160], key[160], name[256];
	struct tls_client c = { 0 };
	ssize_t in, out;
	int fd;

	ASSERT_EQ(0, client_cert(self, "wild", wild, cert, key, sizeof(cert)));
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	/* Not under a suffix rule ... */
	ASSERT_EQ(0, careless_rule(self, "*.example.test", DANCED_VERDICT_ALLOW, DANCED_PROOF_ANY));
	c.cert = cert;
	c.key = key;
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_TRUE(c.handshake_ok);
	EXPECT_EQ(-EACCES, out);
	/* ... nor by an exact rule that spells the wildcard, as bpftool lets one write. */
	{
		struct danced_rule r = { .verdict = DANCED_VERDICT_ALLOW,
					 .proof = DANCED_PROOF_ANY };
		struct danced_rule_key k;

		rule_key_of(&k, self->netns, self->port, "x.example.test");
		k.rname[strlen(k.rname) - 2] = '*'; /* "tset.elpmaxe.*." and its zero */
		ASSERT_EQ(0, bpf_map_update_elem(self->rules, &k, &r, BPF_ANY));
	}
	c = (struct tls_client){ .cert = cert, .key = key };
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_TRUE(c.handshake_ok);
	EXPECT_EQ(-EACCES, out);
	/* With a wildcard first and a name after it, the name is the identity. */
	ASSERT_EQ(0, client_cert(self, "two", two, cert, key, sizeof(cert)));
	c = (struct tls_client){ .cert = cert, .key = key };
	fd = live(_metadata, self, &c);
	ASSERT_LE(0, fd);
	identity_name(self, fd, name, sizeof(name));
	EXPECT_STREQ("client2.example.test", name);
	EXPECT_EQ(2, send(fd, "ok", 2, MSG_NOSIGNAL));
	pthread_join(c.thread, NULL);
	EXPECT_STREQ("ok", c.got);
	close(fd);
}

/* The front door: danced accepts and handshakes on the protected port itself. */
TEST_F(careless, front_door_handshakes_pass_a_protected_port)
{
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = DANCED_VERDICT_DENY };
	struct danced_rule r = { .verdict = DANCED_VERDICT_ALLOW, .proof = DANCED_PROOF_X509 };
	struct danced_service_key sk = { .netns = self->netns, .port = free_port() };
	struct tls_client c = { 0 };
	struct danced_rule_key k;
	char backend[160], buf[16];
	struct dance *b;
	ssize_t n;
	int fd;

	dance_close(self->d);
	self->d = NULL;
	ASSERT_EQ(0, danced_stop(&self->e, SIGTERM));
	snprintf(backend, sizeof(backend), "%.100s/www.sock", self->e.dir);
	ASSERT_EQ(0,
		  env_conf(&self->e,
			   "workers = 1\nlog_level = debug\n"
			   "[service www]\ncertificate = %s\nkey = %s\nca = %s\n"
			   "client_auth = required\nlisten = 127.0.0.1:%d\nbackend_socket = %s\n",
			   self->e.srv_cert, self->e.srv_key, self->e.cli_ca, sk.port, backend));
	ASSERT_EQ(0, bpf_map_update_elem(self->services, &sk, &svc, BPF_ANY));
	rule_key_of(&k, sk.netns, sk.port, "*.example.test");
	ASSERT_EQ(0, bpf_map_update_elem(self->rules, &k, &r, BPF_ANY));
	ASSERT_EQ(0, danced_start(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, dance_listen(backend, 4, &b));
	c.port = sk.port;
	c.ca = self->e.ca;
	c.cert = self->e.cli_cert;
	c.key = self->e.cli_key;
	pthread_create(&c.thread, NULL, tls_client_main, &c);
	fd = dance_accept(b, self->r);
	ASSERT_LE(0, fd) TH_LOG("%d %s", fd, self->r->reason);
	EXPECT_EQ((uint32_t)DANCE_AUTH_X509, self->r->auth);
	n = self->r->pending_len ?: dance_recv(fd, buf, sizeof(buf), 0);
	EXPECT_EQ(5, n); /* hello */
	EXPECT_EQ(2, send(fd, "ok", 2, MSG_NOSIGNAL));
	pthread_join(c.thread, NULL);
	EXPECT_STREQ("ok", c.got);
	close(fd);
	dance_close(b);
}

/* ---- a service in a container: its network namespace -------------------------------- */

/*
 * In a network namespace of its own, as a container would: a server on the fixture's
 * port number hands a TLS connection to danced (the handoff socket is a path, so it
 * reaches across), tells the parent, and waits for it to protect and sweep there.
 * 0, or which step failed.
 */
static int serve_elsewhere(FIXTURE_DATA(careless) * self, int up, int down)
{
	struct tls_client c = { .port = self->port,
				.ca = self->e.ca,
				.cert = self->e.cli_cert,
				.key = self->e.cli_key };
	struct dance_params p = { 0 };
	struct dance_result *r = calloc(1, sizeof(*r));
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	struct dance *d;
	int l, fd;
	char b;

	if (!r || enter_new_netns() || tcp_listen_on(self->port, &l))
		return 1;
	pthread_create(&c.thread, NULL, tls_client_main, &c);
	fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0 || dance_open(self->e.sock, &d) || dance_handshake(d, fd, &p, r))
		return 2;
	if (r->auth != DANCE_AUTH_X509 || write(up, "r", 1) != 1 || read(down, &b, 1) != 1)
		return 3;
	/* Protected here now, and the sweep cut the connection. */
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) || ti.tcpi_state != TCP_CLOSE)
		return 4;
	pthread_join(c.thread, NULL);
	return 0;
}

TEST_F(careless, dancectl_protects_a_service_in_another_netns)
{
	char port[8], arg[32], out[8192], want[96];
	struct tls_client c = { 0 };
	int up[2], down[2], status;
	ssize_t in, sent;
	__u32 ino;
	pid_t pid;
	char b;

	snprintf(port, sizeof(port), "%d", self->port);
	ASSERT_EQ(0, pipe(up));
	ASSERT_EQ(0, pipe(down));
	pid = fork();
	if (!pid)
		_exit(serve_elsewhere(self, up[1], down[0]));
	ASSERT_LT(0, pid);
	ASSERT_EQ(1, read(up[0], &b, 1)) TH_LOG("the server in its own namespace failed");
	snprintf(arg, sizeof(arg), "/proc/%d/ns/net", pid);
	ino = netns_of(arg);
	ASSERT_NE(0U, ino);
	ASSERT_NE(self->netns, ino);
	/* danced's identity says where the socket lives. */
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "--json", "identities", NULL, NULL, NULL));
	snprintf(want, sizeof(want), "\"netns\":%u,\"port\":%d,\"auth\":\"x509\"", ino, self->port);
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	/* Protect that namespace's service, by the PID of a process in it: cut at once. */
	snprintf(arg, sizeof(arg), "--netns=%d", pid);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), arg, "policy", "service", port, "enforce"));
	EXPECT_NE(NULL, strstr(out, "1 live connection cut")) TH_LOG("%s", out);
	EXPECT_EQ(0, ctl(self, out, sizeof(out), "--json", "policy", "list", NULL, NULL));
	snprintf(want, sizeof(want), "{\"netns\":%u,\"port\":%d,\"mode\":\"enforce\"", ino,
		 self->port);
	EXPECT_NE(NULL, strstr(out, want)) TH_LOG("%s", out);
	ASSERT_EQ(1, write(down[1], "g", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
	TH_LOG("status %d: 1 setup, 2 handshake, 3 talk, 4 not cut", status);
	/* Here, the same port number is another service, unprotected. */
	careless_round(_metadata, self, &c, &in, &sent);
	EXPECT_EQ(2, sent);
	/* A namespace is a PID or a namespace file, nothing else. */
	EXPECT_EQ(2, ctl(self, out, sizeof(out), "--netns=/tmp", "policy", "list", NULL, NULL));
	EXPECT_NE(NULL, strstr(out, "is not a network namespace")) TH_LOG("%s", out);
}

/* Two danceds on one set of pins would refuse each other's handshakes. */
TEST_F(careless, a_second_danced_on_the_same_pins_is_refused)
{
	char *argv[] = { (char *)bin("danced"), "-c", self->e.conf, NULL };
	struct tls_client c = { 0 };
	char out[4096];
	ssize_t in, sent;

	EXPECT_EQ(1, run(argv, NULL, 0, out, sizeof(out), 60));
	EXPECT_NE(NULL, strstr(out, "another danced (pid")) TH_LOG("%s", out);
	/* The first one is untouched: its handshakes still pass a protected port. */
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	ASSERT_EQ(0,
		  careless_rule(self, "*.example.test", DANCED_VERDICT_ALLOW, DANCED_PROOF_X509));
	careless_round(_metadata, self, &c, &in, &sent);
	EXPECT_EQ(2, sent);
}

/* ---- danced's own handshakes, and nothing else, pass a protected port ----------------- */

static int danced_exec(void *arg)
{
	struct env *e = arg;
	int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	execl(bin("danced"), "danced", "-c", e->conf, (char *)NULL);
	_exit(127);
}

/* danced as PID 1 of a new PID namespace (as in a container); still our child. */
static int danced_start_in_pidns(struct env *e)
{
	static char stack[64 * 1024] __attribute__((aligned(16)));

	e->pid = clone(danced_exec, stack + sizeof(stack), CLONE_NEWPID | SIGCHLD, e);
	if (e->pid < 0)
		return -errno;
	return wait_connectable(e->sock, 0, 20000);
}

TEST_F(careless, danced_in_a_pid_namespace_serves_a_protected_port)
{
	struct tls_client c = { 0 };
	ssize_t in, out;

	dance_close(self->d);
	self->d = NULL;
	ASSERT_EQ(0, danced_stop(&self->e, SIGTERM));
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	ASSERT_EQ(0,
		  careless_rule(self, "*.example.test", DANCED_VERDICT_ALLOW, DANCED_PROOF_X509));
	ASSERT_EQ(0, danced_start_in_pidns(&self->e)) TH_LOG("log: %s", self->e.log);
	ASSERT_EQ(0, dance_open(self->e.sock, &self->d));
	careless_round(_metadata, self, &c, &in, &out);
	EXPECT_TRUE(c.handshake_ok);
	EXPECT_EQ(2, out);
	EXPECT_STREQ("ok", c.got);
}

struct after {
	int untouched; /* a socket danced never saw */
	int held; /* one danced had mid-handshake, or -1 */
};

/* What a process (with danced's old PID) can do on the protected port: 0, or bits. */
static int try_io(void *arg)
{
	const struct after *a = arg;
	char b;
	int bad = 0;

	if (send(a->untouched, "x", 1, MSG_NOSIGNAL) != -1 || errno != EACCES)
		bad |= 1;
	if (a->held >= 0 && (send(a->held, "x", 1, MSG_NOSIGNAL) != -1 || errno != EACCES))
		bad |= 2;
	if (a->held >= 0 && (recv(a->held, &b, 1, MSG_DONTWAIT) != -1 || errno != EACCES))
		bad |= 4;
	return bad;
}

/* Run @fn in a child that has PID @want (by ns_last_pid); its status, or -1. */
static int as_pid(pid_t want, int (*fn)(void *), void *arg)
{
	int i, status;

	for (i = 0; i < 50; i++) {
		FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
		pid_t pid;

		if (!f)
			return -1;
		fprintf(f, "%d", want - 1);
		if (fclose(f))
			return -1;
		pid = fork();
		if (!pid)
			_exit(getpid() == want ? fn(arg) : 100);
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			return -1;
		if (pid == want)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	}
	return -1;
}

/*
 * danced stops (@sig): whoever gets its PID next is nobody special. With @mid, a socket
 * danced was handshaking when it stopped stays shut for everyone, the server included.
 */
static void stopped_danced_exempts_nobody(struct __test_metadata *_metadata,
					  FIXTURE_DATA(careless) * self, int sig, bool mid)
{
	struct dance_params p = { .timeout_ms = 60000 };
	int sk_ident = pinned_map(self, "sk_ident"), agent = pinned_map(self, "agent");
	struct after a = { .held = -1 };
	struct danced_agent live = { 0 };
	struct danced_ident id = { 0 };
	int cli, cli2 = -1, i;
	__u32 zero = 0;
	pid_t old;

	ASSERT_LE(0, sk_ident);
	ASSERT_LE(0, agent);
	ASSERT_EQ(0, careless_protect(self, DANCED_VERDICT_DENY));
	ASSERT_EQ(0,
		  careless_rule(self, "*.example.test", DANCED_VERDICT_ALLOW, DANCED_PROOF_X509));
	cli = tcp_connect(self->port);
	ASSERT_LE(0, cli);
	a.untouched = accept(self->lfd, NULL, NULL);
	ASSERT_LE(0, a.untouched);
	if (mid) {
		/* The client says nothing: danced holds the socket, waiting for a ClientHello. */
		cli2 = tcp_connect(self->port);
		ASSERT_LE(0, cli2);
		a.held = accept(self->lfd, NULL, NULL);
		ASSERT_LE(0, a.held);
		ASSERT_EQ(0, dance_submit(self->d, a.held, &p, 1));
		for (i = 0; i < 100 && !id.hold; i++) {
			usleep(50000);
			bpf_map_lookup_elem(sk_ident, &a.held, &id);
		}
		ASSERT_NE(0ULL, id.hold) TH_LOG("danced did not hold the socket");
	}
	ASSERT_EQ(0, bpf_map_lookup_elem(agent, &zero, &live));
	EXPECT_NE(0ULL, live.token);
	EXPECT_EQ((__u32)self->e.pid, live.pid);
	old = self->e.pid;
	ASSERT_EQ(sig == SIGKILL ? 128 + SIGKILL : 0, danced_stop(&self->e, sig));
	/* danced is down: no token, so nothing it held or will be given is exempt. */
	ASSERT_EQ(0, bpf_map_lookup_elem(agent, &zero, &live));
	EXPECT_EQ(0ULL, live.token);
	EXPECT_EQ(0, try_io(&a)) TH_LOG("1: send, 2: send mid-handshake, 3: recv mid-handshake");
	EXPECT_EQ(0, as_pid(old, try_io, &a))
	TH_LOG("with danced's old pid %d: -1 no such pid; bits 1: send, 2: send mid-handshake, "
	       "4: recv mid-handshake passed",
	       old);
	close(cli);
	close(a.untouched);
	if (mid) {
		close(cli2);
		close(a.held);
	}
	close(sk_ident);
	close(agent);
}

TEST_F(careless, after_sigterm_danceds_old_pid_is_nobody)
{
	stopped_danced_exempts_nobody(_metadata, self, SIGTERM, false);
}

TEST_F(careless, after_sigkill_danceds_old_pid_and_its_held_socket_pass_nothing)
{
	stopped_danced_exempts_nobody(_metadata, self, SIGKILL, true);
}

/* ---- when the policy cannot load, danced says why and does not start -------------- */

enum how { NO_BPFFS, UNPRIVILEGED };

/* danced in a child that first takes away bpffs or root; its exit status. */
static int danced_without(struct env *e, enum how how)
{
	pid_t pid = fork();
	int status, fd;

	if (!pid) {
		fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, STDERR_FILENO);
		if (how == NO_BPFFS &&
		    (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		     umount2("/sys/fs/bpf", MNT_DETACH)))
			_exit(99);
		if (how == UNPRIVILEGED && (setgroups(0, NULL) || setgid(65534) || setuid(65534)))
			_exit(99);
		execl(bin("danced"), "danced", "-c", e->conf, (char *)NULL);
		_exit(98);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(load_failures_say_what_is_missing)
{
	struct env e;
	char cmd[512];

	ASSERT_EQ(0, env_init(&e));
	snprintf(e.bpf_pin, sizeof(e.bpf_pin), "danced-test-lf-%d", getpid());
	ASSERT_EQ(0, env_conf(&e, "[service www]\ncertificate = %s\nkey = %s\n", e.srv_cert,
			      e.srv_key));
	EXPECT_EQ(1, danced_without(&e, NO_BPFFS));
	EXPECT_TRUE(log_contains(&e, "BPF policy: no bpffs at /sys/fs/bpf"));
	EXPECT_TRUE(log_contains(&e, "set bpf_policy = no"));
	/* Unprivileged: it can read its files, but not load BPF LSM programs. */
	snprintf(cmd, sizeof(cmd), "chmod 0755 %s && chmod 0644 %s/*", e.dir, e.dir);
	ASSERT_EQ(0, system(cmd));
	snprintf(cmd, sizeof(cmd), "mkdir -p /sys/fs/bpf/%s && chmod 0777 /sys/fs/bpf/%s",
		 e.bpf_pin, e.bpf_pin);
	ASSERT_EQ(0, system(cmd));
	EXPECT_EQ(1, danced_without(&e, UNPRIVILEGED));
	EXPECT_TRUE(log_contains(&e, "BPF policy: cannot load the programs: missing privileges"))
	{
		FILE *f = fopen(e.log, "r");
		char line[512];

		while (f && fgets(line, sizeof(line), f))
			TH_LOG("danced: %s", line);
		if (f)
			fclose(f);
	}
	env_fini(&e);
}

/* Pins of an older danced (another map layout): refused, saying what to do. */
TEST(pins_of_another_layout_are_refused_with_what_to_do)
{
	char *argv[] = { (char *)bin("danced"), "-c", NULL, NULL };
	char path[160], out[4096];
	struct env e;
	int fd;

	ASSERT_EQ(0, env_init(&e));
	snprintf(e.bpf_pin, sizeof(e.bpf_pin), "danced-test-old-%d", getpid());
	ASSERT_EQ(0, env_conf(&e, "[service www]\ncertificate = %s\nkey = %s\n", e.srv_cert,
			      e.srv_key));
	argv[2] = e.conf;
	snprintf(path, sizeof(path), "/sys/fs/bpf/%s", e.bpf_pin);
	ASSERT_EQ(0, mkdir(path, 0700));
	/* The services map as it was: keyed by the port alone. */
	fd = bpf_map_create(BPF_MAP_TYPE_HASH, "services", sizeof(__u16),
			    sizeof(struct danced_service), DANCED_BPF_SERVICES_MAX, NULL);
	ASSERT_LE(0, fd);
	snprintf(path, sizeof(path), "/sys/fs/bpf/%s/services", e.bpf_pin);
	ASSERT_EQ(0, bpf_obj_pin(fd, path));
	close(fd);
	EXPECT_EQ(1, run(argv, NULL, 0, out, sizeof(out), 60));
	EXPECT_NE(NULL, strstr(out, "holds the pins of another danced version (services: key "
				    "layout)"))
	TH_LOG("%s", out);
	snprintf(path, sizeof(path), "(rm -r /sys/fs/bpf/%s)", e.bpf_pin);
	EXPECT_NE(NULL, strstr(out, path)) TH_LOG("%s", out);
	/* dancectl says so too, rather than read the bytes the wrong way. */
	{
		char pin[96];
		char *ctl[] = { (char *)bin("dancectl"), "-p", pin, "policy", "list", NULL };

		snprintf(pin, sizeof(pin), "/sys/fs/bpf/%s", e.bpf_pin);
		EXPECT_EQ(1, run(ctl, NULL, 0, out, sizeof(out), 30));
		EXPECT_NE(NULL, strstr(out, "has another layout than this dancectl's"))
		TH_LOG("%s", out);
	}
	env_fini(&e);
}

DANCED_HARNESS_MAIN
