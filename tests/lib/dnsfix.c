// SPDX-License-Identifier: GPL-2.0
/*
 * dnsfix.c - the DNSSEC fixture: zone files built from the test's records, two children
 * signed by ldns-signzone and then broken on purpose, knotd (which signs the parent
 * itself) on 127.0.0.2, and a forked proxy on 127.0.0.1 that passes every UDP and TCP
 * message through unchanged and counts queries per name in memory shared with the test.
 *
 * Everything lives under the caller's directory; knotd and the proxy are children of
 * the process that started them and die with it (PR_SET_PDEATHSIG).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dnsfix.h"
#include "pki.h"

/* Debian's paths; the VM rig copies the same files into the guest (.host-bins). */
#define KNOTD "/usr/sbin/knotd"
#define KEYMGR "/usr/sbin/keymgr"
#define LDNS_KEYGEN "/usr/bin/ldns-keygen"
#define LDNS_SIGNZONE "/usr/bin/ldns-signzone"

#define KNOT_ADDR "127.0.0.2" /* the real server, behind the proxy */
#define START_TIMEOUT_MS 30000 /* knotd loading and signing, under TCG */
#define MAX_NAMES 1024
#define UDP_PENDING 64
#define TCP_CONNS 32
#define UDP_WAIT_MS 5000 /* a query knotd never answered is forgotten after this */
#define TCP_IDLE_MS 30000
#define MAX_HOLDS 16 /* names whose answers are held at once */
#define UDP_HELD 256 /* answers held at once; more are passed on at once */
#define HOLD_TICK_MS 10 /* how often the proxy looks at what it holds */

struct dnsfix_counts {
	int silent; /* the proxy takes queries and never answers */
	/* Answers the proxy holds back: the test writes, the proxy reads, under the lock. */
	pthread_mutex_t lock;
	struct {
		bool used;
		bool any; /* every name */
		char name[256];
		long ms; /* how long; 0: until dnsfix_release() */
	} holds[MAX_HOLDS];
	unsigned int held; /* answers held right now (the proxy writes) */
	unsigned int held_total; /* answers ever held */
	unsigned int total;
	unsigned int n; /* names[] in use; only the proxy appends */
	unsigned int lost; /* queries for names that did not fit */
	struct {
		char name[256]; /* lower case, with the final dot */
		unsigned int n;
	} names[MAX_NAMES];
};

static const char *const zone_names[DNSFIX_NZONES] = { DNSFIX_ZONE, DNSFIX_INSECURE, DNSFIX_BOGUS,
						       DNSFIX_EXPIRED };

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void path(char *out, size_t max, const struct dnsfix *f, const char *name)
{
	snprintf(out, max, "%s/%s", f->dir, name);
}

/* Say what went wrong on stderr, which the test runner shows with a failed test. */
static void note(const struct dnsfix *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void note(const struct dnsfix *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "dnsfix: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (in %s)\n", f->dir);
	va_end(ap);
}

/*
 * Run a tool in @cwd, its stdout into @out (NUL-terminated, cut at @max); its stderr is
 * ours, so that its complaints reach the test's output.
 * Return: 0, -ENOENT if it is not installed, -EIO if it failed, or another -errno.
 */
static int tool(const struct dnsfix *f, const char *cwd, char *const argv[], char *out, size_t max)
{
	size_t got = 0;
	int p[2], status;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (!pid) {
		dup2(p[1], STDOUT_FILENO);
		if (chdir(cwd))
			_exit(126);
		execv(argv[0], argv);
		fprintf(stderr, "dnsfix: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		char sink[512];
		bool room = out && got + 1 < max;
		ssize_t n =
			read(p[0], room ? out + got : sink, room ? max - got - 1 : sizeof(sink));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (room)
			got += n;
	}
	close(p[0]);
	if (out && max)
		out[got] = '\0';
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	if (WIFEXITED(status) && !WEXITSTATUS(status))
		return 0;
	note(f, "%s failed: %s %d", argv[0], WIFEXITED(status) ? "exit status" : "signal",
	     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return WIFEXITED(status) && WEXITSTATUS(status) == 127 ? -ENOENT : -EIO;
}

/* ---- zones ------------------------------------------------------------------------ */

/* SOA, apex NS and the caller's lines: what every zone starts from. */
static int zone_write(const char *file, const char *zone, unsigned int ttl, const char *extra,
		      const char *records)
{
	FILE *z = fopen(file, "w");

	if (!z)
		return -errno;
	fprintf(z, "$ORIGIN %s\n$TTL %u\n", zone, ttl);
	/* The last SOA field is the negative TTL: a test waiting for a NODATA to expire
	 * waits for this. */
	fprintf(z, "@ SOA ns.%s hostmaster.%s 1 %u %u 3600 %u\n", DNSFIX_ZONE, DNSFIX_ZONE, ttl,
		ttl, ttl);
	fprintf(z, "@ NS ns.%s\n", DNSFIX_ZONE);
	if (extra)
		fputs(extra, z);
	if (records)
		fprintf(z, "%s\n", records);
	return fclose(z) ? -EIO : 0;
}

/*
 * Make the RRSIGs of a signed zone file fail: change the first base64 character of the
 * signature, so the length and the format stay valid and only the cryptography fails.
 * DNSKEY's own RRSIG is left alone: the key is good and chains to the DS, so validators
 * report bad signatures on the data rather than a broken chain.
 */
static int tamper(const char *in_path, const char *out_path)
{
	FILE *in = fopen(in_path, "r"), *out = fopen(out_path, "w");
	static char line[1 << 16]; /* a TLSA record may hold a whole certificate */
	int broken = 0;

	if (!in || !out) {
		if (in)
			fclose(in);
		if (out)
			fclose(out);
		return -errno;
	}
	while (fgets(line, sizeof(line), in)) {
		char owner[256], class[8], type[16], covered[16];
		unsigned long ttl;
		char *sig;

		if (sscanf(line, "%255s %lu %7s %15s %15s", owner, &ttl, class, type, covered) ==
			    5 &&
		    !strcmp(type, "RRSIG") && strcmp(covered, "DNSKEY")) {
			line[strcspn(line, "\n")] = '\0';
			/* rdata fields are separated by spaces, the first ones by tabs */
			sig = strrchr(line, ' ');
			if (sig && sig[1]) {
				sig[1] = sig[1] == 'A' ? 'B' : 'A';
				broken++;
			}
			strcat(line, "\n");
		}
		fputs(line, out);
	}
	fclose(in);
	if (fclose(out))
		return -EIO;
	return broken ? 0 : -EINVAL;
}

/*
 * A child zone signed by ldns-signzone with a fresh key, valid from @inception to
 * @expiration (seconds since the epoch), its DS line appended to @ds.
 */
static int child_signed(const struct dnsfix *f, const char *zone, const char *label,
			unsigned int ttl, const char *records, long inception, long expiration,
			bool broken, char *ds, size_t ds_max)
{
	char keys[160], src[192], signd[192], tmp[192], base[128], key[320], dsp[336];
	char inc[24], expire[24];
	char *keygen[] = { LDNS_KEYGEN, "-a", "ECDSAP256SHA256", "-k", (char *)zone, NULL };
	char *sign[] = { LDNS_SIGNZONE, "-i", inc, "-e", expire, "-f", tmp, src, key, NULL };
	size_t len;
	FILE *d;
	int ret;

	path(keys, sizeof(keys), f, "keys");
	snprintf(src, sizeof(src), "%s/zones/%s.unsigned", f->dir, label);
	snprintf(signd, sizeof(signd), "%s/zones/%s.zone", f->dir, label);
	snprintf(tmp, sizeof(tmp), "%s/zones/%s.signed", f->dir, label);
	snprintf(inc, sizeof(inc), "%ld", inception);
	snprintf(expire, sizeof(expire), "%ld", expiration);
	ret = zone_write(src, zone, ttl, NULL, records);
	if (ret)
		return ret;
	/* ldns-keygen writes K<zone>+013+<tag>.{key,private,ds} in its cwd, prints the base. */
	ret = tool(f, keys, keygen, base, sizeof(base));
	if (ret)
		return ret;
	base[strcspn(base, "\n")] = '\0';
	snprintf(key, sizeof(key), "%s/%s", keys, base);
	ret = tool(f, keys, sign, NULL, 0);
	if (ret)
		return ret;
	if (broken)
		ret = tamper(tmp, signd);
	else
		ret = rename(tmp, signd) ? -errno : 0;
	if (ret)
		return ret;
	snprintf(dsp, sizeof(dsp), "%s.ds", key);
	d = fopen(dsp, "r");
	if (!d)
		return -errno;
	len = strlen(ds);
	if (!fgets(ds + len, ds_max - len - 1, d)) {
		fclose(d);
		return -EIO;
	}
	fclose(d);
	len = strlen(ds);
	if (ds[len - 1] != '\n')
		strcpy(ds + len, "\n");
	return 0;
}

static int knot_conf(const struct dnsfix *f, unsigned int ttl)
{
	static const char *const files[DNSFIX_NZONES] = { "parent.zone", "insecure.zone",
							  "bogus.zone", "expired.zone" };
	char p[192];
	FILE *c;
	int i;

	path(p, sizeof(p), f, "knot.conf");
	c = fopen(p, "w");
	if (!c)
		return -errno;
	fprintf(c,
		"server:\n"
		"    rundir: \"%s/run\"\n"
		"    listen: %s@%d\n"
		/* one of each is plenty, and starts faster in the guest */
		"    udp-workers: 1\n"
		"    tcp-workers: 1\n"
		"    background-workers: 1\n"
		"database:\n"
		"    storage: \"%s/db\"\n"
		/* the defaults map gigabytes; the guest has 2 GB */
		"    journal-db-max-size: 64M\n"
		"    kasp-db-max-size: 16M\n"
		"    timer-db-max-size: 16M\n"
		"log:\n"
		"  - target: stderr\n"
		"    any: info\n"
		"policy:\n"
		"  - id: fixture\n"
		"    algorithm: ecdsap256sha256\n"
		"    single-type-signing: on\n"
		"    dnskey-ttl: %u\n"
		"template:\n"
		"  - id: default\n"
		"    storage: \"%s/zones\"\n"
		/* The zone files stay as written: a restart loads them again and signs
		 * the parent with the keys in the KASP database, so the anchor holds. */
		"    zonefile-sync: -1\n"
		"    zonefile-load: whole\n"
		"    journal-content: none\n"
		"zone:\n",
		f->dir, KNOT_ADDR, f->port, f->dir, ttl, f->dir);
	for (i = 0; i < DNSFIX_NZONES; i++) {
		fprintf(c, "  - domain: %s\n    file: %s\n", zone_names[i], files[i]);
		/* The children are served as written: unsigned, or pre-signed by ldns. */
		if (i == 0)
			fprintf(c, "    dnssec-signing: on\n    dnssec-policy: fixture\n");
	}
	return fclose(c) ? -EIO : 0;
}

static int zones_build(const struct dnsfix *f, const struct dnsfix_zones *z)
{
	unsigned int ttl = z->ttl ?: 60;
	long now = time(NULL);
	char ds[512] = "", extra[1024], p[192];
	int ret;

	ret = child_signed(f, DNSFIX_BOGUS, "bogus", ttl, z->bogus, now - 3600, now + 30 * 86400,
			   true, ds, sizeof(ds));
	if (ret)
		return ret;
	/* Expired a year ago, so that no allowance for clock skew reaches it. */
	ret = child_signed(f, DNSFIX_EXPIRED, "expired", ttl, z->expired, now - 2 * 365 * 86400,
			   now - 365 * 86400, false, ds, sizeof(ds));
	if (ret)
		return ret;
	path(p, sizeof(p), f, "zones/insecure.zone");
	ret = zone_write(p, DNSFIX_INSECURE, ttl, NULL, z->insecure);
	if (ret)
		return ret;
	/* ns.fixture.example. serves every zone; the parent's NSEC proves that insecure.
	 * has no DS. */
	snprintf(extra, sizeof(extra),
		 "ns A 127.0.0.1\n"
		 "%s NS ns.%s\n%s NS ns.%s\n%s NS ns.%s\n%s",
		 DNSFIX_INSECURE, DNSFIX_ZONE, DNSFIX_BOGUS, DNSFIX_ZONE, DNSFIX_EXPIRED,
		 DNSFIX_ZONE, ds);
	path(p, sizeof(p), f, "zones/parent.zone");
	return zone_write(p, DNSFIX_ZONE, ttl, extra, z->parent) ?: knot_conf(f, ttl);
}

/* ---- DNS messages ----------------------------------------------------------------- */

/* The question's name in presentation form, lower case, with the final dot. */
static int qname_of(const unsigned char *m, size_t len, char *name, size_t max, int *qtype)
{
	size_t off = 12, out = 0;

	if (len < 12 || !(m[4] | m[5]))
		return -EINVAL;
	while (off < len && m[off]) {
		size_t l = m[off++], i;

		if (l > 63 || off + l > len)
			return -EINVAL;
		for (i = 0; i < l; i++) {
			unsigned char c = m[off + i];

			if (out + 5 >= max)
				return -ENOSPC;
			if (c == '.' || c == '\\')
				out += sprintf(name + out, "\\%c", c);
			else if (c > 0x20 && c < 0x7f)
				name[out++] = tolower(c);
			else
				out += sprintf(name + out, "\\%03u", c);
		}
		name[out++] = '.';
		off += l;
	}
	if (off + 5 > len)
		return -EINVAL;
	if (!out)
		name[out++] = '.';
	name[out] = '\0';
	*qtype = m[off + 1] << 8 | m[off + 2];
	return 0;
}

static const char *type_name(int t, char *buf)
{
	switch (t) {
	case 1:
		return "A";
	case 2:
		return "NS";
	case 6:
		return "SOA";
	case 10:
		return "NULL"; /* unbound's trust anchor signal, _ta-XXXX (RFC 8145) */
	case 28:
		return "AAAA";
	case 43:
		return "DS";
	case 48:
		return "DNSKEY";
	case 52:
		return "TLSA";
	}
	sprintf(buf, "TYPE%d", t);
	return buf;
}

/* ---- the proxy -------------------------------------------------------------------- */

/*
 * Is an answer for @name to be held? Returns how long (ms; 0 means until released), or
 * -1 if not. The longest of the matching rules wins.
 */
static long hold_ms(struct dnsfix_counts *c, const char *name)
{
	long ms = -1;
	int i;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < MAX_HOLDS; i++) {
		const char *rule = c->holds[i].name;
		size_t nl = strlen(name), rl = strlen(rule);
		bool under = rule[0] == '*' && rule[1] == '.' && nl > rl - 1 &&
			     !strcmp(name + nl - (rl - 1), rule + 1);

		if (!c->holds[i].used || (!c->holds[i].any && !under && strcmp(rule, name)))
			continue;
		if (!c->holds[i].ms)
			ms = 0;
		else if (ms && c->holds[i].ms > ms)
			ms = c->holds[i].ms;
	}
	pthread_mutex_unlock(&c->lock);
	return ms;
}

/* When an answer for @name held since @since goes out; LONG_MAX: not before released. */
static long hold_until(struct dnsfix_counts *c, const char *name, long since)
{
	long ms = hold_ms(c, name);

	return ms < 0 ? since : ms ? since + ms : LONG_MAX;
}

/* "2" in a second proxy's log lines ("udp2 name TYPE"): set in its child only. */
static const char *proxy_tag = "";

/* Count one query and log it to DIR/queries.log ("udp name TYPE"). */
static void count(struct dnsfix_counts *c, int log, const char *proto, const unsigned char *m,
		  size_t len)
{
	char name[256], line[300], tb[16];
	unsigned int i, n;
	int qtype = 0;

	if (qname_of(m, len, name, sizeof(name), &qtype))
		strcpy(name, "(unparsable)");
	__atomic_add_fetch(&c->total, 1, __ATOMIC_SEQ_CST);
	n = __atomic_load_n(&c->n, __ATOMIC_ACQUIRE);
	for (i = 0; i < n && strcmp(c->names[i].name, name); i++)
		;
	if (i == n && n < MAX_NAMES) {
		/* The only writer appends: fill the slot, then publish it. */
		strcpy(c->names[n].name, name);
		c->names[n].n = 0;
		__atomic_store_n(&c->n, n + 1, __ATOMIC_RELEASE);
	}
	if (i < MAX_NAMES)
		__atomic_add_fetch(&c->names[i].n, 1, __ATOMIC_SEQ_CST);
	else
		__atomic_add_fetch(&c->lost, 1, __ATOMIC_SEQ_CST);
	n = snprintf(line, sizeof(line), "%s%s %s %s\n", proto, proxy_tag, name,
		     type_name(qtype, tb));
	if (write(log, line, n) < 0)
		return; /* the counters are what tests use; the log is for people */
}

static int knot_socket(int type, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	inet_pton(AF_INET, KNOT_ADDR, &a.sin_addr);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

static bool write_all(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf = (const char *)buf + n;
		len -= n;
	}
	return true;
}

struct udp_query {
	int fd; /* connected to knotd; -1: free */
	struct sockaddr_in from;
	long deadline;
};

struct tcp_conn {
	int cfd, kfd; /* client, knotd; cfd -1: free */
	unsigned char *buf; /* the client's bytes up to a whole message */
	size_t len;
	long deadline;
	/* Answers on this connection wait while a query for hold_name is held. */
	char hold_name[256];
	long hold_since;
};

/* An answer from knotd that waits before it goes to the client. */
struct udp_held {
	unsigned char *msg; /* NULL: free */
	size_t len;
	struct sockaddr_in to;
	char name[256];
	long since;
};

static void tcp_close(struct tcp_conn *t, struct dnsfix_counts *c)
{
	close(t->cfd);
	if (t->kfd >= 0)
		close(t->kfd);
	free(t->buf);
	t->cfd = t->kfd = -1;
	t->buf = NULL;
	if (t->hold_name[0])
		__atomic_sub_fetch(&c->held, 1, __ATOMIC_SEQ_CST);
	t->hold_name[0] = '\0';
}

/* Does the connection still wait? Its hold ends with its time, or with the release. */
static bool tcp_holding(struct tcp_conn *t, struct dnsfix_counts *c, long now)
{
	if (!t->hold_name[0])
		return false;
	if (now < hold_until(c, t->hold_name, t->hold_since))
		return true;
	t->hold_name[0] = '\0';
	__atomic_sub_fetch(&c->held, 1, __ATOMIC_SEQ_CST);
	return false;
}

/* A query on @t: if its answer is to be held, stop reading knotd's side until then. */
static void tcp_hold(struct tcp_conn *t, struct dnsfix_counts *c, const unsigned char *m,
		     size_t len)
{
	char name[256];
	int qtype;

	if (t->hold_name[0] || qname_of(m, len, name, sizeof(name), &qtype) || hold_ms(c, name) < 0)
		return;
	snprintf(t->hold_name, sizeof(t->hold_name), "%s", name);
	t->hold_since = now_ms();
	__atomic_add_fetch(&c->held, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&c->held_total, 1, __ATOMIC_SEQ_CST);
}

/* knotd's answer to a UDP query: to the client now, or held. */
static void udp_answer(int ufd, struct udp_held *held, struct dnsfix_counts *c,
		       const unsigned char *m, size_t len, const struct sockaddr_in *to)
{
	char name[256];
	int qtype, i;

	if (!qname_of(m, len, name, sizeof(name), &qtype) && hold_ms(c, name) >= 0) {
		for (i = 0; i < UDP_HELD && held[i].msg; i++)
			;
		if (i < UDP_HELD && (held[i].msg = malloc(len))) {
			memcpy(held[i].msg, m, len);
			held[i].len = len;
			held[i].to = *to;
			held[i].since = now_ms();
			snprintf(held[i].name, sizeof(held[i].name), "%s", name);
			__atomic_add_fetch(&c->held, 1, __ATOMIC_SEQ_CST);
			__atomic_add_fetch(&c->held_total, 1, __ATOMIC_SEQ_CST);
			return;
		}
	}
	sendto(ufd, m, len, 0, (const struct sockaddr *)to, sizeof(*to));
}

/* Send what is held no longer: its time is up, or its name was released. */
static void udp_release(int ufd, struct udp_held *held, struct dnsfix_counts *c, long now)
{
	int i;

	for (i = 0; i < UDP_HELD; i++) {
		if (!held[i].msg || now < hold_until(c, held[i].name, held[i].since))
			continue;
		sendto(ufd, held[i].msg, held[i].len, 0, (struct sockaddr *)&held[i].to,
		       sizeof(held[i].to));
		free(held[i].msg);
		held[i].msg = NULL;
		__atomic_sub_fetch(&c->held, 1, __ATOMIC_SEQ_CST);
	}
}

/* Whole messages from the client's buffer: count each, pass it on unless silent. */
static bool tcp_client_data(struct tcp_conn *t, struct dnsfix_counts *c, int log)
{
	for (;;) {
		size_t mlen = t->len >= 2 ? (size_t)(t->buf[0] << 8 | t->buf[1]) : 0;

		if (t->len < 2 || t->len < 2 + mlen)
			return true;
		count(c, log, "tcp", t->buf + 2, mlen);
		tcp_hold(t, c, t->buf + 2, mlen);
		if (!__atomic_load_n(&c->silent, __ATOMIC_RELAXED) &&
		    (t->kfd < 0 || !write_all(t->kfd, t->buf, 2 + mlen)))
			return false;
		memmove(t->buf, t->buf + 2 + mlen, t->len - 2 - mlen);
		t->len -= 2 + mlen;
	}
}

static void tcp_accept(int lfd, struct tcp_conn *tcp, struct dnsfix_counts *c, int port)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), i;

	if (fd < 0)
		return;
	for (i = 0; i < TCP_CONNS && tcp[i].cfd >= 0; i++)
		;
	if (i == TCP_CONNS) {
		close(fd);
		return;
	}
	tcp[i].cfd = fd;
	tcp[i].len = 0;
	tcp[i].hold_name[0] = '\0';
	tcp[i].buf = malloc(2 + 65535);
	tcp[i].deadline = now_ms() + TCP_IDLE_MS;
	/* knotd down: drop the client, as the real server's port would have refused it */
	tcp[i].kfd = __atomic_load_n(&c->silent, __ATOMIC_RELAXED) ? -1 :
								     knot_socket(SOCK_STREAM, port);
	if (!tcp[i].buf || (tcp[i].kfd < 0 && !__atomic_load_n(&c->silent, __ATOMIC_RELAXED)))
		tcp_close(&tcp[i], c);
}

static void udp_query(int lfd, struct udp_query *udp, struct dnsfix_counts *c, int log, int port)
{
	static unsigned char msg[65536];
	struct sockaddr_in from;
	socklen_t alen = sizeof(from);
	ssize_t n = recvfrom(lfd, msg, sizeof(msg), 0, (struct sockaddr *)&from, &alen);
	int i, fd;

	if (n <= 0)
		return;
	count(c, log, "udp", msg, n);
	if (__atomic_load_n(&c->silent, __ATOMIC_RELAXED))
		return;
	for (i = 0; i < UDP_PENDING && udp[i].fd >= 0; i++)
		;
	if (i == UDP_PENDING)
		return; /* the client will retry, as on any lossy path */
	fd = knot_socket(SOCK_DGRAM, port);
	if (fd < 0)
		return;
	if (send(fd, msg, n, 0) != n) {
		close(fd);
		return;
	}
	udp[i].fd = fd;
	udp[i].from = from;
	udp[i].deadline = now_ms() + UDP_WAIT_MS;
}

/* The proxy's life, in a forked child: poll, pass on, count. Never returns. */
static void __attribute__((noreturn))
proxy_run(int ufd, int tfd, struct dnsfix_counts *c, const char *log_path, int port)
{
	struct udp_query udp[UDP_PENDING];
	struct tcp_conn tcp[TCP_CONNS];
	static struct udp_held held[UDP_HELD];
	static unsigned char buf[65536];
	int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), i;

	for (i = 0; i < UDP_PENDING; i++)
		udp[i].fd = -1;
	for (i = 0; i < TCP_CONNS; i++)
		tcp[i].cfd = tcp[i].kfd = -1;
	for (;;) {
		struct pollfd p[2 + UDP_PENDING + 2 * TCP_CONNS];
		int where[2 + UDP_PENDING + 2 * TCP_CONNS];
		int np = 0;
		long now;

		p[np] = (struct pollfd){ .fd = ufd, .events = POLLIN };
		where[np++] = -1;
		p[np] = (struct pollfd){ .fd = tfd, .events = POLLIN };
		where[np++] = -2;
		for (i = 0; i < UDP_PENDING; i++)
			if (udp[i].fd >= 0) {
				p[np] = (struct pollfd){ .fd = udp[i].fd, .events = POLLIN };
				where[np++] = i;
			}
		for (i = 0; i < TCP_CONNS; i++) {
			if (tcp[i].cfd < 0)
				continue;
			p[np] = (struct pollfd){ .fd = tcp[i].cfd, .events = POLLIN };
			where[np++] = 1000 + i;
			if (tcp[i].kfd >= 0 && !tcp_holding(&tcp[i], c, now_ms())) {
				p[np] = (struct pollfd){ .fd = tcp[i].kfd, .events = POLLIN };
				where[np++] = 2000 + i;
			}
		}
		if (poll(p, np, __atomic_load_n(&c->held, __ATOMIC_SEQ_CST) ? HOLD_TICK_MS : 500) <
			    0 &&
		    errno != EINTR)
			_exit(1);
		now = now_ms();
		udp_release(ufd, held, c, now);
		for (i = 0; i < np; i++) {
			int w = where[i];
			ssize_t n;

			if (!p[i].revents)
				continue;
			if (w == -1) {
				udp_query(ufd, udp, c, log, port);
			} else if (w == -2) {
				tcp_accept(tfd, tcp, c, port);
			} else if (w < 1000) {
				/* knotd's answer, or ECONNREFUSED: knotd is gone */
				n = recv(udp[w].fd, buf, sizeof(buf), 0);
				if (n > 0)
					udp_answer(ufd, held, c, buf, n, &udp[w].from);
				close(udp[w].fd);
				udp[w].fd = -1;
			} else if (w < 2000) {
				struct tcp_conn *t = &tcp[w - 1000];

				if (t->cfd < 0)
					continue;
				n = read(t->cfd, t->buf + t->len, 2 + 65535 - t->len);
				if (n <= 0) {
					tcp_close(t, c);
					continue;
				}
				t->len += n;
				t->deadline = now + TCP_IDLE_MS;
				if (!tcp_client_data(t, c, log))
					tcp_close(t, c);
			} else {
				struct tcp_conn *t = &tcp[w - 2000];

				if (t->cfd < 0)
					continue;
				n = read(t->kfd, buf, sizeof(buf));
				if (n <= 0 || !write_all(t->cfd, buf, n))
					tcp_close(t, c);
				else
					t->deadline = now + TCP_IDLE_MS;
			}
		}
		for (i = 0; i < UDP_PENDING; i++)
			if (udp[i].fd >= 0 && now > udp[i].deadline) {
				close(udp[i].fd);
				udp[i].fd = -1;
			}
		for (i = 0; i < TCP_CONNS; i++)
			if (tcp[i].cfd >= 0 && now > tcp[i].deadline)
				tcp_close(&tcp[i], c);
	}
}

/* UDP and TCP on 127.0.0.1:@port; port 0 picks one free for both. */
static int proxy_bind(int *port, int *ufd, int *tfd)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int tries, one = 1, ret = -EADDRINUSE;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (tries = 0; tries < 20; tries++) {
		*ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		*tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (*ufd < 0 || *tfd < 0) {
			ret = -errno;
			break;
		}
		/* A restart must not wait for TIME_WAIT of the last run's connections. */
		setsockopt(*tfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		a.sin_port = htons(*port);
		if (bind(*ufd, (struct sockaddr *)&a, sizeof(a)) ||
		    getsockname(*ufd, (struct sockaddr *)&a, &alen)) {
			ret = -errno;
			break; /* port 0 cannot fail here; a given port is taken */
		}
		if (!bind(*tfd, (struct sockaddr *)&a, sizeof(a)) && !listen(*tfd, 64)) {
			*port = ntohs(a.sin_port);
			return 0;
		}
		ret = -errno;
		close(*ufd);
		close(*tfd);
		*ufd = *tfd = -1;
		if (*port)
			return ret;
	}
	if (*ufd >= 0)
		close(*ufd);
	if (*tfd >= 0)
		close(*tfd);
	*ufd = *tfd = -1;
	return ret;
}

/* Fork the proxy onto sockets from proxy_bind(); the parent's copies are closed. */
static int proxy_start(struct dnsfix *f, int ufd, int tfd)
{
	pid_t parent = getpid();
	char log_path[192];
	int ret;

	path(log_path, sizeof(log_path), f, "queries.log");
	f->proxy = fork();
	if (!f->proxy) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		proxy_run(ufd, tfd, f->counts, log_path, f->port);
	}
	ret = f->proxy < 0 ? -errno : 0;
	close(ufd);
	close(tfd);
	return ret;
}

static void proxy_stop(struct dnsfix *f)
{
	if (f->proxy2 > 0) {
		kill(f->proxy2, SIGKILL);
		waitpid(f->proxy2, NULL, 0);
	}
	f->proxy2 = -1;
	if (f->proxy <= 0)
		return;
	kill(f->proxy, SIGKILL);
	waitpid(f->proxy, NULL, 0);
	f->proxy = -1;
}

/**
 * dnsfix_second_port - another proxy in front of the same knotd, on its own port
 * @port: in: the port, 0 for any free one; out: the port
 *
 * For a second dns_stub (or a forwarder beside a stub): the same zones, counted with
 * the first proxy's queries and held by the same rules; queries.log marks its lines
 * "udp2" and "tcp2", so a test can tell which server a resolver asked. It stops with
 * dnsfix_stop() and is not restarted.
 *
 * Return: 0, -EBUSY if there is one already, -ESRCH if the fixture is not running, or
 * what binding the port returns.
 */
int dnsfix_second_port(struct dnsfix *f, int *port)
{
	pid_t parent = getpid();
	char log_path[192];
	int ufd, tfd, ret;

	if (f->proxy <= 0)
		return -ESRCH;
	if (f->proxy2 > 0)
		return -EBUSY;
	ret = proxy_bind(port, &ufd, &tfd);
	if (ret)
		return ret;
	path(log_path, sizeof(log_path), f, "queries.log");
	f->proxy2 = fork();
	if (!f->proxy2) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		proxy_tag = "2";
		proxy_run(ufd, tfd, f->counts, log_path, f->port);
	}
	ret = f->proxy2 < 0 ? -errno : 0;
	close(ufd);
	close(tfd);
	return ret;
}

/* ---- knotd ------------------------------------------------------------------------ */

/* Is @zone loaded? An authoritative SOA answer straight from knotd says so. */
static bool knot_serves(int port, const char *zone)
{
	unsigned char q[300] = { 0x12, 0x34, 0, 0, 0, 1 }, r[512];
	size_t off = 12;
	const char *s = zone;
	struct pollfd p;
	bool ok = false;
	int fd;

	while (*s) {
		size_t l = strcspn(s, ".");

		q[off++] = l;
		memcpy(q + off, s, l);
		off += l;
		s += l + (s[l] == '.');
	}
	q[off++] = 0;
	q[off++] = 0, q[off++] = 6; /* SOA */
	q[off++] = 0, q[off++] = 1; /* IN */
	fd = knot_socket(SOCK_DGRAM, port);
	if (fd < 0)
		return false;
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	if (send(fd, q, off, 0) == (ssize_t)off && poll(&p, 1, 200) == 1) {
		ssize_t n = recv(fd, r, sizeof(r), 0);

		/* same ID, a response, AA, NOERROR */
		ok = n >= 12 && r[0] == 0x12 && r[1] == 0x34 && (r[2] & 0x84) == 0x84 &&
		     !(r[3] & 0x0f);
	}
	close(fd);
	return ok;
}

static int knot_stop(struct dnsfix *f)
{
	long deadline = now_ms() + 10000;
	int status;

	if (f->knotd <= 0)
		return 0;
	kill(f->knotd, SIGTERM);
	while (waitpid(f->knotd, &status, WNOHANG) == 0) {
		if (now_ms() > deadline) {
			kill(f->knotd, SIGKILL);
			waitpid(f->knotd, &status, 0);
			break;
		}
		usleep(5000);
	}
	f->knotd = -1;
	return 0;
}

/* Has knotd logged, after @off, that it could not load a zone? Then show why. */
static bool knot_load_failed(const char *log, off_t off)
{
	char line[512];
	bool failed = false;
	FILE *l = fopen(log, "r");

	if (!l)
		return false;
	fseeko(l, off, SEEK_SET);
	while (fgets(line, sizeof(line), l))
		if (strstr(line, "error: ") && strstr(line, "zone")) {
			fprintf(stderr, "dnsfix: knotd: %s", line);
			failed = true;
		}
	fclose(l);
	return failed;
}

static int knot_start(struct dnsfix *f)
{
	char conf[192], log[192];
	char *argv[] = { KNOTD, "-c", conf, NULL };
	pid_t parent = getpid();
	struct stat st;
	long deadline;
	off_t log_off;
	int i, fd;

	path(conf, sizeof(conf), f, "knot.conf");
	path(log, sizeof(log), f, "knotd.log");
	log_off = stat(log, &st) ? 0 : st.st_size;
	f->knotd = fork();
	if (f->knotd < 0)
		return -errno;
	if (!f->knotd) {
		/* A test that dies, however it dies, takes its DNS server along. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		fd = open("/dev/null", O_RDONLY);
		dup2(fd, STDIN_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	deadline = now_ms() + START_TIMEOUT_MS;
	for (i = 0; i < DNSFIX_NZONES;) {
		int status;

		if (waitpid(f->knotd, &status, WNOHANG) == f->knotd) {
			f->knotd = -1;
			note(f, "knotd exited at start; see knotd.log");
			return -ECHILD;
		}
		if (knot_serves(f->port, zone_names[i])) {
			i++;
			continue;
		}
		/* A zone file knotd rejects stays rejected: say so now, not at the deadline. */
		if (knot_load_failed(log, log_off)) {
			note(f, "knotd could not load a zone");
			knot_stop(f);
			return -EINVAL;
		}
		if (now_ms() > deadline) {
			note(f, "knotd does not serve %s; see knotd.log", zone_names[i]);
			knot_stop(f);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
	return 0;
}

/* The parent's DS, digest type 2, as keymgr prints it: the anchor tests configure. */
static int anchor(struct dnsfix *f)
{
	char conf[192], out[1024];
	char *argv[] = { KEYMGR, "-c", conf, DNSFIX_ZONE, "ds", NULL };
	char *line, *save;
	int ret;

	path(conf, sizeof(conf), f, "knot.conf");
	ret = tool(f, f->dir, argv, out, sizeof(out));
	if (ret)
		return ret;
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, " DS ") && strstr(line, " 13 2 ")) {
			snprintf(f->trust_anchor, sizeof(f->trust_anchor), "%s", line);
			return 0;
		}
	note(f, "keymgr printed no SHA-256 DS for %s", DNSFIX_ZONE);
	return -ENOENT;
}

/* ---- the API ---------------------------------------------------------------------- */

/**
 * dnsfix_start - build the zones under @dir and serve them on 127.0.0.1:@port
 * @f: filled in; dnsfix_fini() undoes it, also after a failure
 * @dir: an existing directory that the caller removes afterwards
 * @port: UDP and TCP; 53 in the VM, 0 for any free port (then read f->port)
 * @z: the caller's records per zone, and the TTL
 *
 * Returns once knotd answers for every zone; f->trust_anchor and f->stubs are then set.
 * What went wrong is on stderr; knotd's own log is @dir/knotd.log.
 *
 * Return: 0; -EADDRINUSE or -EACCES for the port; -ENOENT if a tool is not installed;
 * -EIO if ldns-keygen, ldns-signzone or keymgr failed (a bad record in the bogus or
 * expired zone: ldns says which line); -EINVAL if knotd rejected a zone file (a bad
 * record in the parent or insecure zone: knotd's error lines are on stderr); -ECHILD if
 * knotd exited at start; -ETIMEDOUT if it never served a zone; -ENOMEM; -ENAMETOOLONG
 * for @dir; another -errno from creating files.
 */
int dnsfix_start(struct dnsfix *f, const char *dir, int port, const struct dnsfix_zones *z)
{
	static const char *const sub[] = { "keys", "zones", "db", "run" };
	static const struct dnsfix_zones none;
	int i, ufd = -1, tfd = -1, ret;
	char p[192];

	memset(f, 0, sizeof(*f));
	f->knotd = f->proxy = f->proxy2 = -1;
	f->port = port;
	if (snprintf(f->dir, sizeof(f->dir), "%s", dir) >= (int)sizeof(f->dir))
		return -ENAMETOOLONG;
	for (i = 0; i < (int)(sizeof(sub) / sizeof(sub[0])); i++) {
		path(p, sizeof(p), f, sub[i]);
		if (mkdir(p, 0700) && errno != EEXIST)
			return -errno;
	}
	f->counts = mmap(NULL, sizeof(*f->counts), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (f->counts == MAP_FAILED) {
		f->counts = NULL;
		return -ENOMEM;
	}
	{
		pthread_mutexattr_t a;

		pthread_mutexattr_init(&a);
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
		pthread_mutex_init(&f->counts->lock, &a);
		pthread_mutexattr_destroy(&a);
	}
	/* The port first: knotd listens on the same number on 127.0.0.2. */
	ret = proxy_bind(&f->port, &ufd, &tfd);
	if (ret)
		return ret;
	for (i = 0; i < DNSFIX_NZONES; i++) {
		f->stubs[i].zone = zone_names[i];
		snprintf(f->stubs[i].addr, sizeof(f->stubs[i].addr), "127.0.0.1@%d", f->port);
	}
	ret = zones_build(f, z ?: &none) ?: knot_start(f) ?: anchor(f);
	if (ret) {
		close(ufd);
		close(tfd);
		return ret;
	}
	/* Open to clients only now, so that they never meet a half-started server. */
	return proxy_start(f, ufd, tfd);
}

/**
 * dnsfix_stop - the DNS server goes away: knotd stops and the port closes
 *
 * Queries then meet a closed port (ICMP port unreachable for UDP, RST for TCP), as with
 * a real server that is down. libunbound ignores the ICMP error and waits for its
 * timeouts, so over UDP this looks to it like dnsfix_silence(): a server that takes
 * queries and never answers.
 *
 * Return: 0, or -ESRCH if it was not running.
 */
int dnsfix_stop(struct dnsfix *f)
{
	if (f->knotd <= 0 && f->proxy <= 0)
		return -ESRCH;
	proxy_stop(f);
	return knot_stop(f);
}

/**
 * dnsfix_restart - start the stopped server again, with the same zones and keys
 *
 * The trust anchor stays valid: the KASP database keeps the parent's key, and knotd
 * signs the same zone file with it again. The query counts carry on.
 *
 * Return: 0, -EBUSY if it is running, or what dnsfix_start() returns for knotd and the
 * port.
 */
int dnsfix_restart(struct dnsfix *f)
{
	int ufd, tfd, ret;

	if (f->knotd > 0 || f->proxy > 0)
		return -EBUSY;
	ret = knot_start(f);
	if (ret)
		return ret;
	ret = proxy_bind(&f->port, &ufd, &tfd) ?: proxy_start(f, ufd, tfd);
	if (ret)
		knot_stop(f);
	return ret;
}

/**
 * dnsfix_silence - make the server take queries and never answer (@on), or answer again
 *
 * The queries are still counted. This is a server behind a black hole: resolvers time
 * out instead of hearing that the port is closed. TCP connections are accepted and
 * then left without answers.
 */
void dnsfix_silence(struct dnsfix *f, bool on)
{
	if (f->counts)
		__atomic_store_n(&f->counts->silent, on, __ATOMIC_SEQ_CST);
}

/* @qname as the proxy keeps names: lower case, with the final dot. */
static int norm_name(const char *qname, char *want, size_t max)
{
	size_t len = strlen(qname), i;

	if (len + 2 > max)
		return -ENAMETOOLONG;
	for (i = 0; i < len; i++)
		want[i] = tolower((unsigned char)qname[i]);
	if (!len || want[len - 1] != '.')
		want[len++] = '.';
	want[len] = '\0';
	return 0;
}

/**
 * dnsfix_hold - hold the server's answers for @qname back for @ms milliseconds
 * @qname: case and the final dot do not matter; "*.zone": every name under zone (not
 *	    zone itself); NULL: every name
 * @ms: how long each answer waits, from when knotd gave it; 0: until dnsfix_release()
 *
 * The query still reaches knotd at once and is counted; only the answer waits in the
 * proxy (UDP: the datagram; TCP: everything on that connection after it), then goes to
 * the address that asked, as a slow server's would. A resolver that gave up on the
 * query in the meantime drops it and asks again (each retry is held too). Holding a
 * name again replaces its time; answers already held keep theirs.
 *
 * Return: 0, -ENOSPC if 16 names are already held, -ESRCH if the fixture never started.
 */
int dnsfix_hold(struct dnsfix *f, const char *qname, unsigned int ms)
{
	struct dnsfix_counts *c = f->counts;
	char want[256] = "";
	int i, free_slot = -1, ret = 0;

	if (!c)
		return -ESRCH;
	if (qname && norm_name(qname, want, sizeof(want)))
		return -ENAMETOOLONG;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < MAX_HOLDS; i++) {
		if (!c->holds[i].used) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (c->holds[i].any == !qname && !strcmp(c->holds[i].name, want))
			break;
	}
	if (i == MAX_HOLDS)
		i = free_slot;
	if (i >= 0) {
		c->holds[i].used = true;
		c->holds[i].any = !qname;
		strcpy(c->holds[i].name, want);
		c->holds[i].ms = ms;
	} else {
		ret = -ENOSPC;
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

/**
 * dnsfix_release - stop holding @qname (NULL: every hold), and send what waits for it
 *
 * The answers held for the name go out within a few milliseconds, in the order they
 * came from knotd. An answer held under another rule that still matches it (a hold of
 * every name, say) keeps waiting.
 */
void dnsfix_release(struct dnsfix *f, const char *qname)
{
	struct dnsfix_counts *c = f->counts;
	char want[256] = "";
	int i;

	if (!c || (qname && norm_name(qname, want, sizeof(want))))
		return;
	pthread_mutex_lock(&c->lock);
	for (i = 0; i < MAX_HOLDS; i++)
		if (c->holds[i].used &&
		    (!qname || (!c->holds[i].any && !strcmp(c->holds[i].name, want))))
			c->holds[i].used = false;
	pthread_mutex_unlock(&c->lock);
}

/**
 * dnsfix_held - how many answers the proxy holds now (@ever: how many it ever held)
 *
 * A test that waits for this to become non-zero knows that the resolver's query reached
 * the server and that its answer is waiting.
 */
int dnsfix_held(struct dnsfix *f, bool ever)
{
	if (!f->counts)
		return -ESRCH;
	return __atomic_load_n(ever ? &f->counts->held_total : &f->counts->held, __ATOMIC_SEQ_CST);
}

/* Stop what runs and unmap the counters; the directory stays, for the caller. */
void dnsfix_fini(struct dnsfix *f)
{
	proxy_stop(f);
	knot_stop(f);
	if (f->counts)
		munmap(f->counts, sizeof(*f->counts));
	f->counts = NULL;
}

/**
 * dnsfix_queries - how many queries the server got for @qname, of any type
 * @qname: case does not matter, nor does the final dot; NULL counts every query
 *
 * Counted since dnsfix_start() or dnsfix_reset_counts(), also while silenced. A query
 * is counted before it is passed on, so once a resolver has its answer, the count
 * includes its query.
 *
 * Return: the count; -ENOSPC if @qname is not among the names counted and some names
 * did not fit; -ESRCH if the fixture never started.
 */
int dnsfix_queries(struct dnsfix *f, const char *qname)
{
	unsigned int i, n;
	char want[256];

	if (!f->counts)
		return -ESRCH;
	if (!qname)
		return __atomic_load_n(&f->counts->total, __ATOMIC_SEQ_CST);
	if (norm_name(qname, want, sizeof(want)))
		return 0;
	n = __atomic_load_n(&f->counts->n, __ATOMIC_ACQUIRE);
	for (i = 0; i < n; i++)
		if (!strcmp(f->counts->names[i].name, want))
			return __atomic_load_n(&f->counts->names[i].n, __ATOMIC_SEQ_CST);
	return __atomic_load_n(&f->counts->lost, __ATOMIC_SEQ_CST) ? -ENOSPC : 0;
}

/* Zero every count; the names stay in the table. */
void dnsfix_reset_counts(struct dnsfix *f)
{
	unsigned int i, n;

	if (!f->counts)
		return;
	n = __atomic_load_n(&f->counts->n, __ATOMIC_ACQUIRE);
	for (i = 0; i < n; i++)
		__atomic_store_n(&f->counts->names[i].n, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&f->counts->total, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&f->counts->lost, 0, __ATOMIC_SEQ_CST);
}

/**
 * dnsfix_tlsa - the RDATA of a TLSA record for @cert, as a zone file writes it
 * @usage: 0-3 (PKIX-TA, PKIX-EE, DANE-TA, DANE-EE); written as given
 * @selector: 0 the whole certificate, 1 its SubjectPublicKeyInfo (DER)
 * @mtype: 0 the data itself, 1 SHA-256, 2 SHA-512
 * @out: "3 1 1 <hex>"
 *
 * Return: 0, -EINVAL for a selector or matching type out of range, -ENOSPC if @max is
 * too small, -ENOMEM.
 */
int dnsfix_tlsa(X509 *cert, int usage, int selector, int mtype, char *out, size_t max)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	const unsigned char *data;
	unsigned int mdlen;
	int len, off, ret = -ENOSPC, i;

	if (usage < 0 || usage > 255 || selector < 0 || selector > 1 || mtype < 0 || mtype > 2)
		return -EINVAL;
	len = selector ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der) : i2d_X509(cert, &der);
	if (len <= 0)
		return -ENOMEM;
	data = der;
	if (mtype) {
		if (!EVP_Digest(der, len, md, &mdlen, mtype == 1 ? EVP_sha256() : EVP_sha512(),
				NULL)) {
			ret = -ENOMEM;
			goto out_free;
		}
		data = md;
		len = mdlen;
	}
	off = snprintf(out, max, "%d %d %d ", usage, selector, mtype);
	if (off < 0 || (size_t)off + 2 * len + 1 > max)
		goto out_free;
	for (i = 0; i < len; i++)
		off += sprintf(out + off, "%02x", data[i]);
	ret = 0;
out_free:
	OPENSSL_free(der);
	return ret;
}

/**
 * dnsfix_dane_ee - a self-signed identity for DANE-EE tests: @cn's certificate (its
 * only DNS name @name) and key in @dir as CN.pem and CN.key, and the "3 1 1" TLSA
 * RDATA of its key, for the zone
 * @cert, @key, @tlsa: where the paths and the RDATA go, 160, 160 and 256 bytes at least
 *
 * Return: 0, or a negative errno.
 */
int dnsfix_dane_ee(const char *dir, const char *cn, const char *name, char cert[160], char key[160],
		   char tlsa[256])
{
	const char *const names[] = { name, NULL };
	X509 *x;
	int ret;

	snprintf(cert, 160, "%.100s/%.40s.pem", dir, cn);
	snprintf(key, 160, "%.100s/%.40s.key", dir, cn);
	if (pki_leaf(NULL, cn, names, 0, cert, key))
		return -EIO;
	x = pki_read_cert(cert);
	if (!x)
		return -EIO;
	ret = dnsfix_tlsa(x, 3, 1, 1, tlsa, 256);
	X509_free(x);
	return ret;
}
