// SPDX-License-Identifier: GPL-2.0
/*
 * upcall.c - the handshake rate through the kernel's upcall (net/handshake, by way of
 * tests/kmod's dance_hs.ko) beside the socket handoff (libdance), the same danced, the
 * same services, the same pairs: each pair is two loopback TCP sockets whose ends
 * danced handshakes with each other, one as the TLS client and one as the server. The
 * only difference between the modes is how the sockets reach danced and how the
 * answer comes back.
 *
 *   upcall -m kernel|handoff -s HANDOFF_SOCKET [-n PAIRS] [-c CONCURRENT] [-S SERVER]
 *          [-C CLIENT] [-P PEERNAME]
 *
 * It prints one line: mode=M pairs=N secs=S handshakes=2N rate=HANDSHAKES_PER_S, and
 * exits 1 if any handshake failed (after printing how many).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "../agent/lib/dance.h"
#include "../tests/kmod/dance_hs.h"
#include "../tests/lib/pair.h"

static const char *mode = "kernel", *sock_path, *server_svc = "kserver", *client_svc = "kclient",
		  *peername = "localhost";
static unsigned int pairs = 200, conc = 4;
static atomic_uint next_pair, failures;
static int dev = -1;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One end's handshake: 0, or a negative errno. */
struct end {
	int fd;
	bool client;
	struct dance *d; /* handoff mode: this end's channel */
	int ret;
};

static int end_kernel(struct end *e)
{
	struct dance_hs_request r = { .fd = e->fd, .timeout_ms = 60000, .wait_ms = 120000 };
	int ret;

	r.role = e->client ? DANCE_HS_CLIENT : DANCE_HS_SERVER;
	r.auth = e->client ? DANCE_HS_ANON : DANCE_HS_X509;
	if (e->client)
		snprintf(r.peername, sizeof(r.peername), "%s", peername);
	/* The kernel lets only a few requests wait for an agent: try again. */
	while ((ret = ioctl(dev, DANCE_HS_IOC_HANDSHAKE, &r) ? -errno : 0) == -EAGAIN)
		usleep(1000);
	return ret ?: r.status;
}

static int end_handoff(struct end *e)
{
	struct dance_params p = { .service = e->client ? client_svc : server_svc,
				  .peer_name = peername,
				  .client = e->client };
	struct dance_result res;
	int ret = dance_handshake(e->d, e->fd, &p, &res);

	if (!ret && res.status)
		ret = res.status;
	return ret;
}

static void *end_main(void *arg)
{
	struct end *e = arg;

	e->ret = !strcmp(mode, "kernel") ? end_kernel(e) : end_handoff(e);
	return NULL;
}

/* One concurrency slot: pairs until none are left, the server end on a second thread. */
static void *slot_main(void *arg)
{
	struct end ends[2] = { { .client = true }, { .client = false } };
	pthread_t t;
	int c, s, i;

	(void)arg;
	if (strcmp(mode, "kernel"))
		for (i = 0; i < 2; i++)
			if (dance_open(sock_path, &ends[i].d)) {
				fprintf(stderr, "upcall: cannot connect to %s\n", sock_path);
				atomic_fetch_add(&failures, pairs);
				return NULL;
			}
	while (atomic_fetch_add(&next_pair, 1) < pairs) {
		if (pair_tcp(&c, &s)) {
			atomic_fetch_add(&failures, 1);
			continue;
		}
		ends[0].fd = c;
		ends[1].fd = s;
		if (pthread_create(&t, NULL, end_main, &ends[1])) {
			atomic_fetch_add(&failures, 1);
			close(c);
			close(s);
			continue;
		}
		end_main(&ends[0]);
		pthread_join(t, NULL);
		if (ends[0].ret || ends[1].ret) {
			atomic_fetch_add(&failures, 1);
			fprintf(stderr, "upcall: pair failed: client %s, server %s\n",
				strerror(-ends[0].ret), strerror(-ends[1].ret));
		}
		/* A refused handoff closed the socket already; kernel ends are ours. */
		if (!strcmp(mode, "kernel") || !ends[0].ret)
			close(c);
		if (!strcmp(mode, "kernel") || !ends[1].ret)
			close(s);
	}
	for (i = 0; i < 2; i++)
		if (ends[i].d)
			dance_close(ends[i].d);
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: upcall -m kernel|handoff -s HANDOFF_SOCKET [-n PAIRS] [-c CONCURRENT]\n"
		"              [-S SERVER_SERVICE] [-C CLIENT_SERVICE] [-P PEERNAME]\n"
		"\n"
		"Full TLS handshakes per second with danced on both ends of loopback TCP pairs:\n"
		"through the kernel's handshake upcall (net/handshake, /dev/dance_hs from\n"
		"tests/kmod, which must be loaded; danced needs kernel = yes services), or by\n"
		"handing the sockets to danced over HANDOFF_SOCKET (libdance), with the same\n"
		"services. One pair is two handshakes. Defaults: 200 pairs, 4 at a time,\n"
		"services kserver and kclient, peer name localhost. Exit status 1 if any\n"
		"handshake failed, 2 for bad usage.\n");
}

int main(int argc, char **argv)
{
	pthread_t *t;
	double t0, secs;
	unsigned int i;
	int opt;

	while ((opt = getopt(argc, argv, "m:s:n:c:S:C:P:h")) != -1) {
		switch (opt) {
		case 'm':
			mode = optarg;
			break;
		case 's':
			sock_path = optarg;
			break;
		case 'n':
			pairs = strtoul(optarg, NULL, 10);
			break;
		case 'c':
			conc = strtoul(optarg, NULL, 10);
			break;
		case 'S':
			server_svc = optarg;
			break;
		case 'C':
			client_svc = optarg;
			break;
		case 'P':
			peername = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if ((strcmp(mode, "kernel") && strcmp(mode, "handoff")) || !pairs || !conc || conc > 256 ||
	    (!strcmp(mode, "handoff") && !sock_path) || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(mode, "kernel")) {
		dev = open("/dev/dance_hs", O_RDWR | O_CLOEXEC);
		if (dev < 0) {
			perror("upcall: /dev/dance_hs (load tests/kmod's dance_hs.ko)");
			return 1;
		}
	}
	t = calloc(conc, sizeof(*t));
	if (!t)
		return 1;
	t0 = now_s();
	for (i = 0; i < conc; i++)
		if (pthread_create(&t[i], NULL, slot_main, NULL)) {
			perror("upcall: pthread_create");
			return 1;
		}
	for (i = 0; i < conc; i++)
		pthread_join(t[i], NULL);
	secs = now_s() - t0;
	printf("mode=%s pairs=%u concurrent=%u secs=%.2f handshakes=%u failed=%u rate=%.1f\n", mode,
	       pairs, conc, secs, 2 * pairs, atomic_load(&failures),
	       2 * (pairs - atomic_load(&failures)) / secs);
	free(t);
	if (dev >= 0)
		close(dev);
	return atomic_load(&failures) ? 1 : 0;
}
