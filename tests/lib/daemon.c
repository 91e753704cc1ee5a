// SPDX-License-Identifier: GPL-2.0
/*
 * daemon.c - run the real danced, and real peers, from tests.
 *
 * Binaries come from $DANCED_BIN (default /danced/bin, where the VM rig puts the build).
 * Everything a test creates lives in one temporary directory that env_fini() removes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "daemon.h"
#include "pki.h"

const char *bin(const char *name)
{
	static char path[4][256];
	static int slot;
	const char *dir = getenv("DANCED_BIN") ?: "/danced/bin";
	char *p = path[slot++ % 4];

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	return p;
}

#define PATH(field, name) snprintf(e->field, sizeof(e->field), "%s/" name, e->dir)

/* A fresh directory with three CAs' worth of certificates: server, clients, strangers. */
int env_init(struct env *e)
{
	static const char *const srv_names[] = { "localhost", "www.example.test", NULL };
	static const char *const cli_names[] = { "client.example.test", NULL };
	static const char *const other_names[] = { "other.example.test", NULL };
	struct pki_ca ca = { 0 }, cli_ca = { 0 }, bad_ca = { 0 };
	char bad_ca_path[160], cli_ca_key[160];
	int ret;

	memset(e, 0, sizeof(*e));
	e->pid = -1;
	strcpy(e->dir, "/tmp/danced-test.XXXXXX");
	if (!mkdtemp(e->dir))
		return -errno;
	PATH(conf, "danced.conf");
	PATH(sock, "danced.sock");
	PATH(log, "danced.log");
	PATH(ca, "ca.pem");
	PATH(srv_cert, "server.pem");
	PATH(srv_key, "server.key");
	PATH(cli_ca, "client-ca.pem");
	PATH(cli_cert, "client.pem");
	PATH(cli_key, "client.key");
	PATH(bad_cert, "stranger.pem");
	PATH(bad_key, "stranger.key");
	PATH(other_cert, "other.pem");
	PATH(other_key, "other.key");
	snprintf(bad_ca_path, sizeof(bad_ca_path), "%s/stranger-ca.pem", e->dir);
	snprintf(cli_ca_key, sizeof(cli_ca_key), "%s/client-ca.key", e->dir);
	ret = pki_ca_new(&ca, "danced test server CA");
	if (!ret)
		ret = pki_ca_new(&cli_ca, "danced test client CA");
	if (!ret)
		ret = pki_ca_new(&bad_ca, "somebody else's CA");
	if (!ret)
		ret = pki_ca_write(&ca, e->ca, NULL);
	if (!ret)
		ret = pki_ca_write(&cli_ca, e->cli_ca, cli_ca_key);
	if (!ret)
		ret = pki_ca_write(&bad_ca, bad_ca_path, NULL);
	if (!ret)
		ret = pki_leaf(&ca, "localhost", srv_names, 1, e->srv_cert, e->srv_key);
	if (!ret)
		ret = pki_leaf(&ca, "other.example.test", other_names, 1, e->other_cert,
			       e->other_key);
	if (!ret)
		ret = pki_leaf(&cli_ca, "client.example.test", cli_names, 0, e->cli_cert,
			       e->cli_key);
	if (!ret)
		ret = pki_leaf(&bad_ca, "client.example.test", cli_names, 0, e->bad_cert,
			       e->bad_key);
	pki_ca_free(&ca);
	pki_ca_free(&cli_ca);
	pki_ca_free(&bad_ca);
	return ret;
}

/*
 * The sanitizer pass (tests/run-tests --san sets DANCED_SAN_DIR): a report that danced
 * wrote to its stderr, the test's danced.log, is copied where run-tests looks after the
 * test, so that it fails the test even when danced kept running or the test never
 * looked at the log.
 */
static void san_collect(const struct env *e)
{
	static const char *const marks[] = { "runtime error:", "ERROR: AddressSanitizer",
					     "ERROR: LeakSanitizer",
					     "ERROR: UndefinedBehaviorSanitizer" };
	const char *dir = getenv("DANCED_SAN_DIR");
	char line[1024], path[256];
	bool found = false;
	FILE *in, *out;
	size_t i;

	if (!dir || !(in = fopen(e->log, "r")))
		return;
	while (!found && fgets(line, sizeof(line), in))
		for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
			found |= strstr(line, marks[i]) != NULL;
	if (found) {
		snprintf(path, sizeof(path), "%s/danced.log.%d", dir, (int)getpid());
		out = fopen(path, "a");
		rewind(in);
		while (out && fgets(line, sizeof(line), in))
			fputs(line, out);
		if (out)
			fclose(out);
	}
	fclose(in);
}

void env_fini(struct env *e)
{
	char cmd[128];

	if (e->pid > 0)
		danced_stop(e, SIGKILL);
	san_collect(e);
	if (e->bpf_pin[0]) {
		/* Unpinned, the programs detach once nothing else holds them. */
		snprintf(cmd, sizeof(cmd), "rm -rf '/sys/fs/bpf/%s'", e->bpf_pin);
		if (system(cmd))
			fprintf(stderr, "could not remove /sys/fs/bpf/%s\n", e->bpf_pin);
	}
	if (getenv("DANCED_KEEP"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", e->dir);
}

/* danced.conf: the handoff socket in the test's directory, then the caller's text. */
int env_conf(struct env *e, const char *fmt, ...)
{
	FILE *f = fopen(e->conf, "w");
	va_list ap;

	if (!f)
		return -errno;
	fprintf(f, "[danced]\nsocket = %s\n", e->sock);
	if (e->bpf_pin[0])
		fprintf(f, "bpf_pin_path = /sys/fs/bpf/%s\n", e->bpf_pin);
	else
		fprintf(f, "bpf_policy = no\n");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	return fclose(f) ? -EIO : 0;
}

pid_t spawn(char *const argv[], const char *log_path)
{
	pid_t pid = fork();
	int fd;

	if (pid)
		return pid;
	fd = open(log_path ?: "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	fd = open("/dev/null", O_RDONLY);
	dup2(fd, STDIN_FILENO);
	execv(argv[0], argv);
	fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/*
 * echo_start - dance-echo in return mode on 127.0.0.1:@port, handing its connections to
 * @e's danced; the options after @log_path (NULL-terminated) are added. Returns once
 * the port accepts: the pid, or -1 (the server is then gone).
 */
pid_t echo_start(const struct env *e, int port, const char *log_path, ...)
{
	char listen[32], *argv[24];
	const char *arg;
	va_list ap;
	pid_t pid;
	int n = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	argv[n++] = (char *)bin("dance-echo");
	argv[n++] = "--handoff";
	argv[n++] = (char *)e->sock;
	argv[n++] = "--listen";
	argv[n++] = listen;
	va_start(ap, log_path);
	while ((arg = va_arg(ap, const char *)) && n < 23)
		argv[n++] = (char *)arg;
	va_end(ap);
	argv[n] = NULL;
	pid = spawn(argv, log_path);
	if (pid > 0 && wait_connectable(NULL, port, 10000)) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		pid = -1;
	}
	return pid;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Poll until a unix (SEQPACKET) path, or else a TCP port on 127.0.0.1, accepts. */
int wait_connectable(const char *unix_path, int port, int timeout_ms)
{
	struct timespec t0;
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		if (unix_path) {
			struct sockaddr_un sun = { .sun_family = AF_UNIX };

			snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", unix_path);
			fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
			if (!connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
				close(fd);
				return 0;
			}
			close(fd);
		} else {
			fd = tcp_connect(port);
			if (fd >= 0) {
				close(fd);
				return 0;
			}
		}
		usleep(20000);
	} while (ms_since(&t0) < timeout_ms);
	return -ETIMEDOUT;
}

int danced_start(struct env *e)
{
	char *argv[] = { (char *)bin("danced"), "-c", e->conf, NULL };

	char line[512];
	FILE *f;
	int ret;

	e->pid = spawn(argv, e->log);
	if (e->pid < 0)
		return -errno;
	ret = wait_connectable(e->sock, 0, 20000);
	if (ret && (f = fopen(e->log, "r"))) {
		/* Why it did not start is the first thing whoever reads the failure needs. */
		while (fgets(line, sizeof(line), f))
			fprintf(stderr, "danced: %s", line);
		fclose(f);
	}
	return ret;
}

/* Stop danced with @sig; returns its exit status, or 128 + signal. */
int danced_stop(struct env *e, int sig)
{
	int status;

	if (e->pid <= 0)
		return -ESRCH;
	kill(e->pid, sig);
	if (waitpid(e->pid, &status, 0) < 0)
		return -errno;
	e->pid = -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/**
 * danced_wait - wait for danced to exit by itself (it is not signalled)
 *
 * Return: its exit status, or 128 + signal; -ETIMEDOUT when it is still running after
 * @timeout_ms (it is left running, for env_fini() or danced_stop() to end).
 */
int danced_wait(struct env *e, int timeout_ms)
{
	struct timespec t0;
	int status;
	pid_t pid;

	if (e->pid <= 0)
		return -ESRCH;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pid = waitpid(e->pid, &status, WNOHANG);
		if (pid < 0)
			return -errno;
		if (pid == e->pid)
			break;
		if (ms_since(&t0) > timeout_ms)
			return -ETIMEDOUT;
		usleep(20000);
	}
	e->pid = -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* How many descriptors danced holds: the leak check of the malformed-request tests. */
int danced_fds(const struct env *e)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", e->pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

bool log_contains(const struct env *e, const char *needle)
{
	char buf[1 << 16];
	FILE *f = fopen(e->log, "r");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

/**
 * run - run a program with @in on its stdin, collect stdout and stderr into @out
 *
 * Return: its exit status, 128 + signal, or -ETIMEDOUT (it is then killed).
 */
int run(char *const argv[], const void *in, size_t in_len, char *out, size_t out_max, int timeout_s)
{
	int to[2], from[2], status;
	size_t off = 0, got = 0;
	struct timespec t0;
	pid_t pid;

	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (!pid) {
		dup2(to[0], STDIN_FILENO);
		dup2(from[1], STDOUT_FILENO);
		dup2(from[1], STDERR_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	fcntl(to[1], F_SETFL, O_NONBLOCK);
	if (!in_len) {
		close(to[1]);
		to[1] = -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd p[2] = { { .fd = from[0], .events = POLLIN },
				       { .fd = to[1], .events = POLLOUT } };
		ssize_t n;

		if (ms_since(&t0) > timeout_s * 1000L) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			close(from[0]);
			if (to[1] >= 0)
				close(to[1]);
			return -ETIMEDOUT;
		}
		if (poll(p, to[1] >= 0 ? 2 : 1, 100) < 0)
			continue;
		if (to[1] >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			n = write(to[1], (const char *)in + off, in_len - off);
			if (n > 0)
				off += n;
			if (n < 0 || off == in_len) {
				close(to[1]);
				to[1] = -1;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			char sink[4096];
			char *dst = got + 1 < out_max ? out + got : sink;
			size_t room = got + 1 < out_max ? out_max - got - 1 : sizeof(sink);

			n = read(from[0], dst, room);
			if (n <= 0)
				break;
			if (dst != sink)
				got += n;
		}
	}
	if (out_max)
		out[got] = '\0';
	close(from[0]);
	if (to[1] >= 0)
		close(to[1]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tcp_listen_any(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4096) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		return -errno;
	*port = ntohs(a.sin_port);
	return fd;
}

int tcp_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/*
 * A connection to 127.0.0.1:@port from the loopback address @src (127.0.0.2, ...): the
 * source address danced's per-address limits see. The local port is picked at connect
 * time, so thousands of connections from one address do not exhaust bind(2)'s ports.
 */
int tcp_connect_from(const char *src, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct sockaddr_in from = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, ret;

	if (fd < 0)
		return -errno;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ret = -EINVAL;
	if (inet_pton(AF_INET, src, &from.sin_addr) != 1)
		goto out_close;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		ret = -errno;
		goto out_close;
	}
	return fd;
out_close:
	close(fd);
	return ret;
}

/* A TCP port on 127.0.0.1 that was free a moment ago, for a server the test starts. */
int free_port(void)
{
	int port = 0, fd = tcp_listen_any(&port);

	if (fd >= 0)
		close(fd);
	return port;
}

/*
 * Wait until the peer has ended every one of @fds (EOF or reset), reading whatever else
 * comes; a hang guard of @timeout_ms for all together. Return: how many ended.
 */
int wait_all_closed(const int *fds, int n, int timeout_ms)
{
	struct pollfd *p = calloc(n, sizeof(*p));
	bool *ended = calloc(n, sizeof(bool));
	int i, k, left = n, ret;
	struct timespec t0;
	char buf[4096];
	ssize_t got;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (left && ms_since(&t0) < timeout_ms) {
		for (i = 0, k = 0; i < n; i++)
			if (!ended[i]) {
				p[k].fd = fds[i];
				p[k++].events = POLLIN | POLLRDHUP;
			}
		if (poll(p, k, 200) <= 0)
			continue;
		for (i = 0, k = 0; i < n; i++) {
			if (ended[i])
				continue;
			if (p[k++].revents) {
				do
					got = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
				while (got > 0);
				if (got == 0 || errno != EAGAIN) {
					ended[i] = true;
					left--;
				}
			}
		}
	}
	ret = n - left;
	free(p);
	free(ended);
	return ret;
}

long ms_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A handoff channel of our own, to send raw (and malformed) messages on. */
int raw_channel(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.100s", path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* One message of @len bytes (0 is a message too) with @nfds (at most 8) descriptors. */
int send_raw(int ch, const void *msg, size_t len, const int *fds, int nfds)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 8)] = { 0 };
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	if (nfds > 8)
		return -EINVAL;
	if (nfds) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	return sendmsg(ch, &m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* The same with one descriptor, or none when @fd is negative. */
int send_raw_fd(int ch, const void *msg, size_t len, int fd)
{
	return send_raw(ch, msg, len, &fd, fd >= 0);
}
