// SPDX-License-Identifier: GPL-2.0
/*
 * kpatch_test.c - kernel-patches/, the tls kfunc bpf_sk_ktls_info(), through a BPF LSM
 * program (kpatch.bpf.c) on the test's own sockets.
 *
 * The same tests run against both modules and say what each must do:
 *   - the stock tls.ko (every boot of make check): the program is refused at load, since
 *     the kfunc does not exist; this is how the tests fail on a stock kernel;
 *   - the patched tls.ko that Kbuild builds from Debian's own 6.12 net/tls with the
 *     series applied (a boot of its own, DANCED_TLS_PATCHED names the module, loaded
 *     before anything else pulls in the stock one): the kfunc reports each socket's
 *     kernel TLS, and a policy built on it refuses plaintext on a protected port.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <bpf/libbpf.h>

#include "../harness.h"
#include "../lib/daemon.h"
#include "kpatch.h"
#include "kpatch.skel.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* Is the loaded tls.ko an out-of-tree one (the patched build taints the kernel "O")? */
static bool tls_out_of_tree(void)
{
	char t[32] = "";
	FILE *f = fopen("/sys/module/tls/taint", "re");

	if (!f)
		return false;
	if (!fgets(t, sizeof(t), f))
		t[0] = '\0';
	fclose(f);
	return strchr(t, 'O') != NULL;
}

/*
 * The module this run is about, loaded: the patched one from @patched before anything
 * else loads tls, or the stock one through modprobe. 0, or -errno.
 */
static int tls_module(const char *patched)
{
	char *argv[] = { "/sbin/modprobe", "tls", NULL };
	char out[512];
	int fd, ret = 0;

	if (!patched)
		return run(argv, NULL, 0, out, sizeof(out), 30) ? -ENOENT :
		       tls_out_of_tree()			? -EEXIST :
								  0;
	if (!access("/sys/module/tls", F_OK))
		return tls_out_of_tree() ? 0 : -EEXIST; /* the stock one came first */
	fd = open(patched, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, "", 0))
		ret = -errno;
	close(fd);
	return ret;
}

/* libbpf's messages during the load, for the reason a load failed. */
static char libbpf_log[16384];

static int libbpf_keep(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	size_t n = strlen(libbpf_log);

	(void)level;
	if (n < sizeof(libbpf_log) - 1)
		vsnprintf(libbpf_log + n, sizeof(libbpf_log) - n, fmt, ap);
	return 0;
}

FIXTURE(kfunc)
{
	const char *patched;
	struct kpatch_bpf *skel;
	int lfd, port, c, s;
	int load; /* kpatch_bpf__load()'s result */
};

FIXTURE_SETUP(kfunc)
{
	self->skel = NULL;
	self->lfd = self->c = self->s = -1;
	self->patched = getenv("DANCED_TLS_PATCHED");
	ASSERT_EQ(0, tls_module(self->patched))
	TH_LOG("%s tls.ko: %s", self->patched ? "patched" : "stock", strerror(errno));
	self->skel = kpatch_bpf__open();
	ASSERT_NE(NULL, self->skel);
	self->skel->rodata->test_pid = getpid();
	libbpf_set_print(libbpf_keep);
	self->load = kpatch_bpf__load(self->skel);
	libbpf_set_print(NULL);
	if (!self->load)
		ASSERT_EQ(0, kpatch_bpf__attach(self->skel));
	self->lfd = tcp_listen_any(&self->port);
	ASSERT_LE(0, self->lfd);
	self->c = tcp_connect(self->port);
	ASSERT_LE(0, self->c);
	self->s = accept4(self->lfd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_LE(0, self->s);
}

FIXTURE_TEARDOWN(kfunc)
{
	kpatch_bpf__destroy(self->skel);
	close(self->s);
	close(self->c);
	close(self->lfd);
}

/*
 * On the stock module the program must not load: the kfunc is missing, so this run's
 * tests fail there by design. Returns true when the test is over (stock, checked).
 */
static bool stock_refuses(struct __test_metadata *_metadata, FIXTURE_DATA(kfunc) * self)
{
	if (self->patched) {
		EXPECT_EQ(0, self->load) TH_LOG("the patched tls.ko lacks bpf_sk_ktls_info");
		return self->load != 0;
	}
	EXPECT_GT(0, self->load) TH_LOG("the stock tls.ko has bpf_sk_ktls_info?");
	/* Refused for the missing kfunc, not for anything else. */
	EXPECT_NE(NULL, strstr(libbpf_log, "bpf_sk_ktls_info")) TH_LOG("%s", libbpf_log);
	return true;
}

/* TLS 1.3, AES-128-GCM, a key of zeros, into one direction: 0, or -errno. */
static int ktls_key(int fd, int dir)
{
	struct tls12_crypto_info_aes_gcm_128 ci = { 0 };

	ci.info.version = TLS_1_3_VERSION;
	ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
	return setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci)) ? -errno : 0;
}

static int ulp(int fd)
{
	return setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) ? -errno : 0;
}

/* A send on @fd, and what the program saw of it: send()'s result or -errno. */
static int probe(FIXTURE_DATA(kfunc) * self, int fd)
{
	ssize_t n = send(fd, "x", 1, MSG_DONTWAIT);

	return n < 0 ? -errno : (int)n;
}

TEST_F(kfunc, reports_each_sockets_kernel_tls)
{
	struct kpatch_bpf__bss *b;
	__u32 n;

	if (stock_refuses(_metadata, self))
		return;
	b = self->skel->bss;
	n = b->sends;
	/* Plain TCP: no tls ULP. */
	EXPECT_EQ(1, probe(self, self->c));
	EXPECT_EQ(n + 1, b->sends);
	EXPECT_EQ(-ENOENT, b->last_ret);
	EXPECT_EQ(0, b->last.version);
	/* The ULP, no keys yet: both directions TLS_CONF_BASE. */
	ASSERT_EQ(0, ulp(self->c));
	EXPECT_EQ(1, probe(self, self->c));
	EXPECT_EQ(0, b->last_ret);
	EXPECT_EQ(0, b->last.version);
	EXPECT_EQ(TLS_CONF_BASE, b->last.tx_conf);
	EXPECT_EQ(TLS_CONF_BASE, b->last.rx_conf);
	/* Transmit keys: TLS 1.3, AES-128-GCM, software; receive still none. */
	ASSERT_EQ(0, ktls_key(self->c, TLS_TX));
	EXPECT_EQ(1, probe(self, self->c));
	EXPECT_EQ(0, b->last_ret);
	EXPECT_EQ(TLS_1_3_VERSION, b->last.version);
	EXPECT_EQ(TLS_CIPHER_AES_GCM_128, b->last.cipher_type);
	EXPECT_EQ(TLS_CONF_SW, b->last.tx_conf);
	EXPECT_EQ(TLS_CONF_BASE, b->last.rx_conf);
	/* Both directions. */
	ASSERT_EQ(0, ktls_key(self->c, TLS_RX));
	EXPECT_EQ(1, probe(self, self->c));
	EXPECT_EQ(TLS_CONF_SW, b->last.tx_conf);
	EXPECT_EQ(TLS_CONF_SW, b->last.rx_conf);
	/* The other end is still plain. */
	EXPECT_EQ(1, probe(self, self->s));
	EXPECT_EQ(-ENOENT, b->last_ret);
}

/*
 * The policy the kfunc exists for: on a protected port, no send unless both directions
 * carry kernel TLS 1.3; other ports are not affected.
 */
TEST_F(kfunc, policy_refuses_plaintext_on_a_protected_port)
{
	if (stock_refuses(_metadata, self))
		return;
	self->skel->bss->protected_port = self->port; /* the accepted end's local port */
	EXPECT_EQ(-EPERM, probe(self, self->s));
	EXPECT_EQ(1, probe(self, self->c)); /* the client's local port is another */
	ASSERT_EQ(0, ulp(self->s));
	EXPECT_EQ(-EPERM, probe(self, self->s));
	ASSERT_EQ(0, ktls_key(self->s, TLS_TX));
	EXPECT_EQ(-EPERM, probe(self, self->s)); /* receive is still plaintext */
	ASSERT_EQ(0, ktls_key(self->s, TLS_RX));
	EXPECT_EQ(1, probe(self, self->s));
}

DANCED_HARNESS_MAIN
