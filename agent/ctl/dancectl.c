// SPDX-License-Identifier: GPL-2.0
/*
 * dancectl - the operator's view of danced's kernel policy: identities of live sockets,
 * protected services and name rules, revocation, and the refusal events as they happen.
 *
 * It works on the maps danced pinned (bpf/danced.h has their layouts), so it needs
 * neither danced running nor anything bpftool could not do: it is a friendlier front
 * end to the same bytes.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <limits.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "danced.h"

static const char usage_text[] =
	"usage: dancectl [-p DIR] [-n NETNS] [--json] COMMAND [ARGS]\n"
	"\n"
	"Inspect and change danced's kernel policy: which verified client names may exchange\n"
	"data with which protected TCP services. It works on the maps danced pinned under DIR\n"
	"(default /sys/fs/bpf/danced), whether danced runs or not; every change takes effect\n"
	"at the next send or receive of every socket, without restarting anything.\n"
	"\n"
	"A service is a local TCP port in one network namespace: the namespace dancectl runs\n"
	"in, or the one -n names (a container's). UDP on the same port number (QUIC), raw\n"
	"sockets and the same port in other namespaces are not the service.\n"
	"\n"
	"COMMANDS\n"
	"    identities\n"
	"        The live sockets danced returned: cookie, network namespace, local port,\n"
	"        verified name, how it was proven (dane, x509; after the handshake by an\n"
	"        exported authenticator: ea-dane, ea-x509; by TLS 1.3 post-handshake\n"
	"        authentication: pha-dane, pha-x509), TLS version and cipher.\n"
	"    policy list\n"
	"        Protected services (netns, port, mode, default, cgroup) and rules (netns,\n"
	"        port, verdict, the proofs an allow admits, name), of every namespace.\n"
	"    policy service PORT enforce|audit|off [allow|deny] [cgroup DIR]\n"
	"        Protect a service: enforce refuses data I/O (EACCES) of sockets whose\n"
	"        name no rule allows (and of sockets danced did not return); audit lets it\n"
	"        through and records an event; off removes the protection. allow or deny\n"
	"        is the default verdict for names no rule matches (default: deny); a\n"
	"        default allow admits any verified name, however proven. With cgroup DIR\n"
	"        (a cgroup v2 directory, such as a systemd service's), only processes in\n"
	"        that cgroup or below it are held to the policy.\n"
	"    policy default PORT allow|deny\n"
	"        Change a protected service's default verdict.\n"
	"    policy window PORT SECONDS\n"
	"        The proof window: for SECONDS after a server first asks danced for a proof\n"
	"        of a peer (an exported authenticator, RFC 9261), a socket the policy\n"
	"        refuses may carry that exchange over the connection itself, so that an\n"
	"        anonymous client can prove an allowed name in-band; once per socket.\n"
	"        0 (the default) never lets it; the proof then travels some other way.\n"
	"        At most 3600.\n"
	"    policy allow PORT NAME [--proof dane|x509|any]\n"
	"    policy deny PORT NAME\n"
	"        A rule: NAME exactly, or a domain and every name under it written as\n"
	"        *.DOMAIN (for example *._device.example.com). The most specific rule wins,\n"
	"        so an exact rule for DOMAIN overrides *.DOMAIN for DOMAIN itself. An allow\n"
	"        admits the name when it was proven the way --proof says: dane (the\n"
	"        default: a DNSSEC-validated TLSA record), x509 (a certificate from the\n"
	"        service's CA carrying the name as its first non-wildcard SAN dNSName) or\n"
	"        any; another proof of that name is refused. A deny refuses the name\n"
	"        however it was proven.\n"
	"    policy remove PORT NAME\n"
	"        Remove a rule.\n"
	"    revoke NAME\n"
	"        Cut every live connection whose verified name is NAME, now, in every\n"
	"        network namespace.\n"
	"    events\n"
	"        Follow refusals (and audit-mode hits) as they happen, one line each:\n"
	"        pid, command, netns, port, operation, name, reason and proof. Ctrl-C stops.\n"
	"\n"
	"    After a change that can refuse (deny, default deny, enforce, allow with a\n"
	"    narrower proof), live connections the policy now refuses are cut at once, in\n"
	"    every network namespace that has them, and their number is reported.\n"
	"\n"
	"OPTIONS\n"
	"    -p, --pin-path DIR  where danced pinned its maps (danced.conf: bpf_pin_path)\n"
	"    -n, --netns NETNS   the service's network namespace: a PID (its namespace), or a\n"
	"                        namespace file such as /proc/PID/ns/net or /run/netns/NAME\n"
	"                        (default: dancectl's own)\n"
	"    -j, --json          machine-readable output: one JSON document\n"
	"    -h, --help          this text\n"
	"\n"
	"EXIT STATUS\n"
	"    0 done; 1 the policy maps are missing, of another layout, or a map operation\n"
	"    failed (the message says which); 2 bad usage.\n"
	"\n"
	"EXAMPLES\n"
	"    dancectl policy service 8883 enforce deny\n"
	"    dancectl policy allow 8883 '*._device.example.com'\n"
	"    dancectl policy deny 8883 sensor9._device.example.com\n"
	"    dancectl policy allow 443 partner.example.net --proof x509\n"
	"    dancectl -n $(pidof -s mqtt-broker) policy service 8883 enforce\n"
	"    dancectl --json identities\n";

static const char *pin_dir = "/sys/fs/bpf/danced";
static bool json;
static __u32 netns; /* the services' namespace: -n, or our own */
static __u32 own_netns;

/* A pinned map, checked against the layout this dancectl knows. */
static int map_fd(const char *name, __u32 key_size, __u32 value_size)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		fprintf(stderr,
			"dancectl: %s: %s (is danced's policy loaded? see bpf_policy and "
			"bpf_pin_path in danced.conf(5))\n",
			path, strerror(errno));
		return -1;
	}
	if (bpf_obj_get_info_by_fd(fd, &info, &len) ||
	    (key_size && (info.key_size != key_size || info.value_size != value_size))) {
		fprintf(stderr,
			"dancectl: %s has another layout than this dancectl's: pins of another "
			"danced version? (README: upgrading)\n",
			path);
		close(fd);
		return -1;
	}
	return fd;
}

/* "a.example.com" -> "moc.elpmaxe.a." (bpf/danced.h); false for an unusable name. */
static bool reverse_name(const char *name, char *out, size_t max)
{
	const char *p;

	for (p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return danced_rname(name, strlen(name), out, max);
}

static int parse_port(const char *s, __u16 *port)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v < 1 || v > 65535) {
		fprintf(stderr, "dancectl: '%s' is not a port (1 to 65535)\n", s);
		return -EINVAL;
	}
	*port = v;
	return 0;
}

/* A network namespace's inode number, from a PID or a namespace file. */
static int parse_netns(const char *spec, __u32 *ino)
{
	char path[PATH_MAX];
	struct statfs fs;
	struct stat st;
	const char *p;

	for (p = spec; isdigit((unsigned char)*p); p++)
		;
	if (*spec && !*p)
		snprintf(path, sizeof(path), "/proc/%s/ns/net", spec);
	else
		snprintf(path, sizeof(path), "%s", spec);
	if (stat(path, &st) || statfs(path, &fs)) {
		fprintf(stderr, "dancectl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fs.f_type != NSFS_MAGIC) {
		fprintf(stderr, "dancectl: %s is not a network namespace (/proc/PID/ns/net)\n",
			path);
		return -1;
	}
	*ino = st.st_ino;
	return 0;
}

static const char *auth_name(__u32 auth)
{
	return danced_auth_name(auth);
}

static const char *proof_name(__u8 proof)
{
	return proof == DANCED_PROOF_DANE ? "dane" :
	       proof == DANCED_PROOF_X509 ? "x509" :
	       proof == DANCED_PROOF_ANY  ? "any" :
					    "none"; /* unknown: admits nothing */
}

static int cmd_identities(void)
{
	int fd = map_fd("identities", sizeof(__u64), sizeof(struct danced_ident));
	__u64 key, *prev = NULL;
	struct danced_ident id;
	char name[256];
	bool first = true;

	if (fd < 0)
		return 1;
	if (json)
		printf("[");
	else
		printf("%-20s %-10s %-6s %-8s %-7s %-6s %s\n", "COOKIE", "NETNS", "PORT", "AUTH",
		       "TLS", "CIPHER", "NAME");
	while (!bpf_map_get_next_key(fd, prev, &key)) {
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &id))
			continue;
		danced_fname(id.rname, sizeof(id.rname), name, sizeof(name));
		if (json)
			printf("%s{\"cookie\":%llu,\"netns\":%u,\"port\":%u,\"auth\":\"%s\","
			       "\"tls_version\":%u,\"cipher\":%u,\"name\":\"%s\"}",
			       first ? "" : ",", (unsigned long long)id.cookie, id.netns, id.port,
			       auth_name(id.auth), id.tls_version, id.cipher, name);
		else
			printf("%-20llu %-10u %-6u %-8s %-7s 0x%04x %s\n",
			       (unsigned long long)id.cookie, id.netns, id.port, auth_name(id.auth),
			       id.tls_version == 0x0304 ? "1.3" : "1.2", id.cipher,
			       name[0] ? name : "-");
		first = false;
	}
	if (json)
		printf("]\n");
	close(fd);
	return 0;
}

static const char *mode_name(__u8 mode)
{
	return mode == DANCED_MODE_ENFORCE ? "enforce" :
	       mode == DANCED_MODE_AUDIT   ? "audit" :
					     "off";
}

static int cmd_list(void)
{
	int sfd = map_fd("services", sizeof(struct danced_service_key),
			 sizeof(struct danced_service)),
	    rfd = map_fd("rules", sizeof(struct danced_rule_key), sizeof(struct danced_rule));
	struct danced_service_key sk, *prevs = NULL;
	struct danced_rule_key k, *prevk = NULL;
	struct danced_service svc;
	struct danced_rule r;
	char name[256];
	bool first = true;

	if (sfd < 0 || rfd < 0)
		return 1;
	printf(json ? "{\"services\":[" : "SERVICES\n%-10s %-6s %-8s %-8s %-7s %s\n", "NETNS",
	       "PORT", "MODE", "DEFAULT", "WINDOW", "CGROUP");
	while (!bpf_map_get_next_key(sfd, prevs, &sk)) {
		prevs = &sk;
		if (bpf_map_lookup_elem(sfd, &sk, &svc))
			continue;
		if (json)
			printf("%s{\"netns\":%u,\"port\":%u,\"mode\":\"%s\",\"default\":\"%s\","
			       "\"proof_window\":%u,\"cgroup\":%llu}",
			       first ? "" : ",", sk.netns, sk.port, mode_name(svc.mode),
			       svc.dflt ? "allow" : "deny", svc.proof_window,
			       (unsigned long long)svc.cgroup_id);
		else
			printf("%-10u %-6u %-8s %-8s %-7u %llu\n", sk.netns, sk.port,
			       mode_name(svc.mode), svc.dflt ? "allow" : "deny", svc.proof_window,
			       (unsigned long long)svc.cgroup_id);
		first = false;
	}
	printf(json ? "],\"rules\":[" : "RULES\n%-10s %-6s %-7s %-5s %s\n", "NETNS", "PORT",
	       "VERDICT", "PROOF", "NAME");
	first = true;
	while (!bpf_map_get_next_key(rfd, prevk, &k)) {
		size_t n = k.prefixlen / 8 - sizeof(k.netns) - sizeof(k.port);
		char rname[256] = "";
		const char *proof;
		bool suffix;

		prevk = &k;
		if (bpf_map_lookup_elem(rfd, &k, &r))
			continue;
		if (n > sizeof(k.rname))
			n = sizeof(k.rname);
		memcpy(rname, k.rname, n);
		/* An exact rule's prefix takes the zero byte after the name's dot too. */
		suffix = !(n && !rname[n - 1]);
		name[0] = '*';
		name[1] = '.';
		danced_fname(rname, sizeof(rname), name + 2, sizeof(name) - 2);
		if (!suffix)
			memmove(name, name + 2, strlen(name + 2) + 1);
		/* A deny refuses every proof of its name. */
		proof = r.verdict ? proof_name(r.proof) : "all";
		if (json)
			printf("%s{\"netns\":%u,\"port\":%u,\"name\":\"%s\",\"verdict\":\"%s\","
			       "\"proof\":\"%s\"}",
			       first ? "" : ",", k.netns, k.port, name,
			       r.verdict ? "allow" : "deny", proof);
		else
			printf("%-10u %-6u %-7s %-5s %s\n", k.netns, k.port,
			       r.verdict ? "allow" : "deny", proof, name);
		first = false;
	}
	if (json)
		printf("]}\n");
	close(sfd);
	close(rfd);
	return 0;
}

/* Read the sweep iterator in the current network namespace: the sockets it cut, or -1. */
static int sweep_here(void)
{
	char path[256], buf[4096];
	int fd, lines = 0;
	ssize_t n, i;

	snprintf(path, sizeof(path), "%s/danced_sweep", pin_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "dancectl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (i = 0; i < n; i++)
			lines += buf[i] == '\n';
	close(fd);
	return n < 0 ? -1 : lines;
}

/* A way into the network namespace @ino: a process in it, or a bind mount of it. */
static int netns_open(__u32 ino)
{
	static const char *const dirs[] = { "/proc", "/run/netns" };
	char path[PATH_MAX];
	struct dirent *d;
	struct stat st;
	size_t i;
	DIR *dir;
	int fd = -1;

	for (i = 0; i < 2 && fd < 0; i++) {
		dir = opendir(dirs[i]);
		while (dir && fd < 0 && (d = readdir(dir))) {
			if (i == 0 && !isdigit((unsigned char)d->d_name[0]))
				continue;
			if (d->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), i ? "%s/%s" : "%s/%s/ns/net", dirs[i],
				 d->d_name);
			if (!stat(path, &st) && st.st_ino == ino)
				fd = open(path, O_RDONLY | O_CLOEXEC);
		}
		if (dir)
			closedir(dir);
	}
	return fd;
}

/*
 * Run the sweep: cut live sockets the policy now refuses. The iterator walks the
 * namespace it is read in, so it is read in each one that has identities. The count,
 * or -1.
 */
static int sweep(void)
{
	__u32 seen[256], n_seen = 0, i;
	int fd = map_fd("identities", sizeof(__u64), sizeof(struct danced_ident));
	int home, ns, total, n;
	struct danced_ident id;
	__u64 key, *prev = NULL;

	if (fd < 0)
		return -1;
	seen[n_seen++] = own_netns;
	while (!bpf_map_get_next_key(fd, prev, &key)) {
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &id) || !id.netns)
			continue;
		for (i = 0; i < n_seen && seen[i] != id.netns; i++)
			;
		if (i == n_seen && n_seen < sizeof(seen) / sizeof(seen[0]))
			seen[n_seen++] = id.netns;
	}
	close(fd);
	total = sweep_here();
	if (total < 0 || n_seen == 1)
		return total;
	home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home < 0) {
		fprintf(stderr, "dancectl: /proc/self/ns/net: %s\n", strerror(errno));
		return -1;
	}
	for (i = 1; i < n_seen; i++) {
		ns = netns_open(seen[i]);
		if (ns < 0 || setns(ns, CLONE_NEWNET)) {
			fprintf(stderr,
				"dancectl: network namespace %u: %s: its connections were not "
				"swept\n",
				seen[i],
				ns < 0 ? "no process or /run/netns entry in it" : strerror(errno));
			if (ns >= 0)
				close(ns);
			continue;
		}
		close(ns);
		n = sweep_here();
		if (setns(home, CLONE_NEWNET)) {
			fprintf(stderr, "dancectl: back to our network namespace: %s\n",
				strerror(errno));
			close(home);
			return -1;
		}
		if (n > 0)
			total += n;
	}
	close(home);
	return total;
}

static int report_sweep(void)
{
	int n = sweep();

	if (n < 0)
		return 1;
	if (json)
		printf("{\"connections_cut\":%d}\n", n);
	else
		printf("%d live connection%s cut\n", n, n == 1 ? "" : "s");
	return 0;
}

/* A cgroup v2 directory's id (its inode number) and its depth below the root. */
static int cgroup_of(const char *dir, struct danced_service *svc)
{
	char path[PATH_MAX], *slash;
	struct statfs fs;
	struct stat st;

	if (!realpath(dir, path) || stat(path, &st) || statfs(path, &fs)) {
		fprintf(stderr, "dancectl: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (fs.f_type != CGROUP2_SUPER_MAGIC || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "dancectl: %s is not a cgroup v2 directory\n", dir);
		return -1;
	}
	svc->cgroup_id = st.st_ino;
	svc->cgroup_level = 0;
	/* Up to the root of the hierarchy: the last directory still on cgroup2. */
	while ((slash = strrchr(path, '/')) && slash != path) {
		*slash = '\0';
		if (statfs(path, &fs) || fs.f_type != CGROUP2_SUPER_MAGIC)
			break;
		svc->cgroup_level++;
	}
	return 0;
}

static int services_fd(void)
{
	return map_fd("services", sizeof(struct danced_service_key), sizeof(struct danced_service));
}

static int cmd_service(int argc, char **argv)
{
	struct danced_service svc = { .dflt = DANCED_VERDICT_DENY };
	struct danced_service_key key;
	int fd, ret;
	__u16 port;

	if (argc >= 4 && !strcmp(argv[argc - 2], "cgroup")) {
		if (cgroup_of(argv[argc - 1], &svc))
			return 1;
		argc -= 2;
	}
	if (argc < 2 || argc > 3 || parse_port(argv[0], &port))
		return 2;
	if (!strcmp(argv[1], "enforce"))
		svc.mode = DANCED_MODE_ENFORCE;
	else if (!strcmp(argv[1], "audit"))
		svc.mode = DANCED_MODE_AUDIT;
	else if (strcmp(argv[1], "off"))
		return 2;
	if (argc == 3 && !strcmp(argv[2], "allow"))
		svc.dflt = DANCED_VERDICT_ALLOW;
	else if (argc == 3 && strcmp(argv[2], "deny"))
		return 2;
	fd = services_fd();
	if (fd < 0)
		return 1;
	key = danced_service_key(netns, port);
	{
		struct danced_service old;

		/* Changing the mode keeps the proof window an operator set. */
		if (!bpf_map_lookup_elem(fd, &key, &old))
			svc.proof_window = old.proof_window;
	}
	ret = svc.mode ? bpf_map_update_elem(fd, &key, &svc, BPF_ANY) :
			 bpf_map_delete_elem(fd, &key);
	close(fd);
	if (ret && !(ret == -ENOENT && !svc.mode)) {
		fprintf(stderr, "dancectl: services: %s\n", strerror(-ret));
		return 1;
	}
	return svc.mode == DANCED_MODE_ENFORCE ? report_sweep() : 0;
}

static int cmd_default(int argc, char **argv)
{
	struct danced_service_key key;
	struct danced_service svc;
	__u16 port;
	int fd, ret;

	if (argc != 2 || parse_port(argv[0], &port) ||
	    (strcmp(argv[1], "allow") && strcmp(argv[1], "deny")))
		return 2;
	fd = services_fd();
	if (fd < 0)
		return 1;
	key = danced_service_key(netns, port);
	ret = bpf_map_lookup_elem(fd, &key, &svc);
	if (ret) {
		fprintf(stderr,
			"dancectl: port %u in network namespace %u is not a protected service "
			"(policy service)\n",
			port, netns);
		close(fd);
		return 1;
	}
	svc.dflt = !strcmp(argv[1], "allow");
	ret = bpf_map_update_elem(fd, &key, &svc, BPF_EXIST);
	close(fd);
	if (ret) {
		fprintf(stderr, "dancectl: services: %s\n", strerror(-ret));
		return 1;
	}
	return svc.dflt ? 0 : report_sweep();
}

static int cmd_window(int argc, char **argv)
{
	struct danced_service_key key;
	struct danced_service svc;
	unsigned long secs;
	char *end;
	__u16 port;
	int fd, ret;

	if (argc != 2 || parse_port(argv[0], &port))
		return 2;
	errno = 0;
	secs = strtoul(argv[1], &end, 10);
	if (errno || end == argv[1] || *end || secs > 3600) {
		fprintf(stderr, "dancectl: the proof window is 0 to 3600 seconds, not '%s'\n",
			argv[1]);
		return 2;
	}
	fd = services_fd();
	if (fd < 0)
		return 1;
	key = danced_service_key(netns, port);
	ret = bpf_map_lookup_elem(fd, &key, &svc);
	if (ret) {
		fprintf(stderr,
			"dancectl: port %u in network namespace %u is not a protected service "
			"(policy service)\n",
			port, netns);
		close(fd);
		return 1;
	}
	svc.proof_window = secs;
	ret = bpf_map_update_elem(fd, &key, &svc, BPF_EXIST);
	close(fd);
	if (ret) {
		fprintf(stderr, "dancectl: services: %s\n", strerror(-ret));
		return 1;
	}
	/* A shorter window can end proofs in progress: the sweep cuts what it refuses now. */
	return report_sweep();
}

static int rule_key(const char *port_s, const char *name, struct danced_rule_key *k)
{
	bool suffix = !strncmp(name, "*.", 2);
	char rname[256];
	__u16 port;

	if (parse_port(port_s, &port))
		return -EINVAL;
	if (!reverse_name(suffix ? name + 2 : name, rname, sizeof(rname))) {
		fprintf(stderr, "dancectl: '%s' is not a DNS name (letters, digits, '-', '_')\n",
			name);
		return -EINVAL;
	}
	if (!danced_rule_key_init(k, netns, port, rname, !suffix)) {
		fprintf(stderr, "dancectl: '%s' is longer than a rule can name (%d characters)\n",
			name, DANCED_BPF_RULE_NAME_MAX - 2 + suffix);
		return -EINVAL;
	}
	return 0;
}

static int parse_proof(const char *s, __u8 *proof)
{
	if (!strcmp(s, "dane"))
		*proof = DANCED_PROOF_DANE;
	else if (!strcmp(s, "x509"))
		*proof = DANCED_PROOF_X509;
	else if (!strcmp(s, "any"))
		*proof = DANCED_PROOF_ANY;
	else
		return -EINVAL;
	return 0;
}

static const char *proof_arg; /* --proof */

static int cmd_rule(const char *verb, int argc, char **argv)
{
	struct danced_rule r = { .verdict = !strcmp(verb, "allow") };
	struct danced_rule_key k;
	int fd, ret;

	if (proof_arg && !r.verdict) {
		fprintf(stderr, "dancectl: --proof is for allow rules: a deny refuses its name "
				"however it was proven\n");
		return 2;
	}
	if (proof_arg && parse_proof(proof_arg, &r.proof)) {
		fprintf(stderr, "dancectl: --proof is dane, x509 or any, not '%s'\n", proof_arg);
		return 2;
	}
	if (argc != 2 || rule_key(argv[0], argv[1], &k))
		return 2;
	fd = map_fd("rules", sizeof(struct danced_rule_key), sizeof(struct danced_rule));
	if (fd < 0)
		return 1;
	ret = !strcmp(verb, "remove") ? bpf_map_delete_elem(fd, &k) :
					bpf_map_update_elem(fd, &k, &r, BPF_ANY);
	close(fd);
	if (ret) {
		fprintf(stderr, "dancectl: rules: %s %s: %s\n", verb, argv[1], strerror(-ret));
		return 1;
	}
	/* An allow can refuse too: a narrower proof than the rule it replaces. */
	return strcmp(verb, "remove") ? report_sweep() : 0;
}

static int cmd_revoke(int argc, char **argv)
{
	char rname[256];
	__u8 one = 1;
	int fd, n;

	if (argc != 1 || !reverse_name(argv[0], rname, sizeof(rname)))
		return 2;
	fd = map_fd("revoke", sizeof(rname), sizeof(one));
	if (fd < 0)
		return 1;
	if (bpf_map_update_elem(fd, rname, &one, BPF_ANY)) {
		fprintf(stderr, "dancectl: revoke: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	n = sweep();
	bpf_map_delete_elem(fd, rname);
	close(fd);
	if (n < 0)
		return 1;
	if (json)
		printf("{\"name\":\"%s\",\"connections_cut\":%d}\n", argv[0], n);
	else
		printf("%s: %d live connection%s cut\n", argv[0], n, n == 1 ? "" : "s");
	return 0;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static const char *why_name(__u8 why)
{
	return why == DANCED_WHY_NO_IDENTITY ? "no-identity" :
	       why == DANCED_WHY_PROOF	     ? "proof" :
					       "denied";
}

static int print_event(void *ctx, void *data, size_t len)
{
	const struct danced_event *ev = data;
	char name[256], comm[17];

	if (len < sizeof(*ev) || ev->ts < *(const __u64 *)ctx)
		return 0; /* buffered before we came */
	danced_fname(ev->rname, sizeof(ev->rname), name, sizeof(name));
	memcpy(comm, ev->comm, 16);
	comm[16] = '\0';
	if (json)
		printf("{\"pid\":%u,\"comm\":\"%s\",\"netns\":%u,\"port\":%u,\"op\":\"%s\","
		       "\"name\":\"%s\",\"auth\":\"%s\",\"reason\":\"%s\",\"audit\":%s,"
		       "\"cookie\":%llu}\n",
		       ev->pid, comm, ev->netns, ev->port,
		       ev->op == DANCED_EV_SEND ? "send" : "recv", name, auth_name(ev->auth),
		       why_name(ev->why), ev->audit ? "true" : "false",
		       (unsigned long long)ev->cookie);
	else
		printf("%s pid=%u comm=%s netns=%u port=%u op=%s name=%s reason=%s auth=%s\n",
		       ev->audit ? "audit" : "refused", ev->pid, comm, ev->netns, ev->port,
		       ev->op == DANCED_EV_SEND ? "send" : "recv", name[0] ? name : "-",
		       why_name(ev->why), auth_name(ev->auth));
	fflush(stdout);
	return 0;
}

static int cmd_events(void)
{
	int fd = map_fd("watch", 0, 0);
	struct ring_buffer *rb;
	struct timespec t;
	__u64 start;

	if (fd < 0)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &t);
	start = (__u64)t.tv_sec * 1000000000ULL + t.tv_nsec;
	rb = ring_buffer__new(fd, print_event, &start, NULL);
	if (!rb) {
		fprintf(stderr, "dancectl: events: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	while (!stop) {
		int ret = ring_buffer__poll(rb, 500);

		if (ret < 0 && ret != -EINTR) {
			fprintf(stderr, "dancectl: events: %s\n", strerror(-ret));
			break;
		}
	}
	ring_buffer__free(rb);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pin-path", required_argument, NULL, 'p' },
		{ "netns", required_argument, NULL, 'n' },
		{ "proof", required_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *netns_arg = NULL;
	int opt, ret = 2;

	/* Options may follow the command too: policy allow 443 NAME --proof x509. */
	while ((opt = getopt_long(argc, argv, "p:n:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			pin_dir = optarg;
			break;
		case 'n':
			netns_arg = optarg;
			break;
		case 'P':
			proof_arg = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	libbpf_set_print(NULL);
	if (parse_netns("/proc/self/ns/net", &own_netns))
		return 1;
	netns = own_netns;
	if (netns_arg && parse_netns(netns_arg, &netns))
		return 2;
	if (proof_arg && (argc < 2 || strcmp(argv[0], "policy") ||
			  (strcmp(argv[1], "allow") && strcmp(argv[1], "deny")))) {
		fputs("dancectl: --proof goes with policy allow\n", stderr);
		return 2;
	}
	if (argc < 1)
		ret = 2;
	else if (!strcmp(argv[0], "identities") && argc == 1)
		ret = cmd_identities();
	else if (!strcmp(argv[0], "revoke"))
		ret = cmd_revoke(argc - 1, argv + 1);
	else if (!strcmp(argv[0], "events") && argc == 1)
		ret = cmd_events();
	else if (!strcmp(argv[0], "policy") && argc >= 2) {
		if (!strcmp(argv[1], "list") && argc == 2)
			ret = cmd_list();
		else if (!strcmp(argv[1], "service"))
			ret = cmd_service(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "default"))
			ret = cmd_default(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "window"))
			ret = cmd_window(argc - 2, argv + 2);
		else if (!strcmp(argv[1], "allow") || !strcmp(argv[1], "deny") ||
			 !strcmp(argv[1], "remove"))
			ret = cmd_rule(argv[1], argc - 2, argv + 2);
	}
	if (ret == 2)
		fputs(usage_text, stderr);
	return ret;
}
