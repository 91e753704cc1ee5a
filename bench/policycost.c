// SPDX-License-Identifier: GPL-2.0
/*
 * policycost.c - what the kernel policy costs per send and receive. One process, three
 * loopback TCP connections, the same one-byte ping-pong on each, in one run: before the
 * programs are attached; with them attached, on a port they do not protect; and on a
 * protected port, with an identity the rules allow (the full check: service, socket
 * storage, trie, with a DANE identity and a rule that admits DANE). Prints nanoseconds per send+recv pair and the ratios.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "danced.h"
#include "danced.skel.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* A connected pair on loopback: *b was accepted, so *port is its local port. */
static int tcp_pair(int *a, int *b, int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (l < 0 || bind(l, (struct sockaddr *)&sin, sizeof(sin)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sin, &len))
		return -errno;
	*port = ntohs(sin.sin_port);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (*a < 0 || connect(*a, (struct sockaddr *)&sin, sizeof(sin)))
		return -errno;
	*b = accept(l, NULL, NULL);
	close(l);
	if (*b < 0)
		return -errno;
	setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/* ns per round: b sends a byte and reads the echo that a returns (2 sends, 2 recvs). */
static double pingpong(int a, int b, int rounds)
{
	double t0 = now();
	char c = 'x';
	int i;

	for (i = 0; i < rounds; i++) {
		if (send(b, &c, 1, 0) != 1 || recv(a, &c, 1, 0) != 1 || send(a, &c, 1, 0) != 1 ||
		    recv(b, &c, 1, 0) != 1) {
			perror("policycost: ping-pong");
			exit(1);
		}
	}
	return (now() - t0) * 1e9 / rounds;
}

static int cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

#define BLOCKS 15

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 60000;
	int a[3], b[3], port[3], i, j;
	struct danced_ident id = { .auth = DANCED_AUTH_DANE, .name_len = 13 };
	struct danced_rule_key k = { 0 };
	struct danced_rule r = { .verdict = DANCED_VERDICT_ALLOW };
	struct danced_service svc = { .mode = DANCED_MODE_ENFORCE, .dflt = DANCED_VERDICT_DENY };
	struct danced_service_key sk;
	struct danced_bpf *skel;
	double ns[3][BLOCKS], med[3];
	struct stat st;
	__u16 p;

	for (i = 0; i < 3; i++)
		if (tcp_pair(&a[i], &b[i], &port[i])) {
			perror("policycost: loopback pair");
			return 1;
		}
	skel = danced_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "policycost: cannot load the policy programs: %s\n",
			strerror(errno));
		return 1;
	}
	/* Connection 2's accepted socket is on a protected service, with an allowed name. */
	if (stat("/proc/self/ns/net", &st)) {
		perror("policycost: /proc/self/ns/net");
		return 1;
	}
	p = port[2];
	strcpy(id.rname, "moc.elpmaxe.a.");
	id.port = p;
	id.netns = st.st_ino;
	sk = danced_service_key(st.st_ino, p);
	danced_rule_key_init(&k, st.st_ino, p, id.rname, true);
	if (bpf_map_update_elem(bpf_map__fd(skel->maps.services), &sk, &svc, BPF_ANY) ||
	    bpf_map_update_elem(bpf_map__fd(skel->maps.rules), &k, &r, BPF_ANY) ||
	    bpf_map_update_elem(bpf_map__fd(skel->maps.sk_ident), &b[2], &id, BPF_ANY)) {
		perror("policycost: map update");
		return 1;
	}
	/*
	 * Blocks take turns and each case reports its median block: noise under emulation
	 * is large and drifts, and would otherwise land on whichever case ran at the wrong
	 * moment. The programs are attached once, between the baseline and the rest.
	 */
	for (j = 0; j < BLOCKS; j++)
		ns[0][j] = pingpong(a[0], b[0], rounds / BLOCKS);
	if (danced_bpf__attach(skel)) {
		fprintf(stderr, "policycost: attach: %s\n", strerror(errno));
		return 1;
	}
	pingpong(a[1], b[1], rounds / BLOCKS); /* the first calls through new trampolines */
	pingpong(a[2], b[2], rounds / BLOCKS);
	for (j = 0; j < BLOCKS; j++) {
		ns[1][j] = pingpong(a[1], b[1], rounds / BLOCKS);
		ns[2][j] = pingpong(a[2], b[2], rounds / BLOCKS);
	}
	for (i = 0; i < 3; i++) {
		qsort(ns[i], BLOCKS, sizeof(double), cmp);
		med[i] = ns[i][BLOCKS / 2];
	}
	printf("policy-cost rounds=%d no_programs_ns=%.0f unprotected_ns=%.0f protected_ns=%.0f\n",
	       rounds, med[0], med[1], med[2]);
	printf("  per round (2 sends + 2 receives; on the protected connection, one send and\n"
	       "  one receive are fully checked), medians of %d blocks (the protected and\n"
	       "  unprotected ones alternating):\n"
	       "  attached, unprotected port / no programs: %.3f\n"
	       "  protected port (allowed) / unprotected port: %.3f\n"
	       "  added per fully checked call: %.0f ns\n",
	       BLOCKS, med[1] / med[0], med[2] / med[1], (med[2] - med[1]) / 2);
	danced_bpf__destroy(skel);
	return 0;
}
