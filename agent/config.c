// SPDX-License-Identifier: GPL-2.0
/*
 * config.c - danced.conf, parsed and checked.
 *
 * Receives a path; hands on a complete struct config with every default resolved (user
 * and group names are numbers, "workers = auto" is a count, every service has its
 * timeout), or one "FILE:LINE: what is wrong" sentence. libinih splits lines into keys
 * and values; one table of keywords per section says how each value is parsed, checked
 * and printed back. Nothing here opens certificates, trust anchors or sockets, or asks
 * the DNS: later stages do.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <openssl/ssl.h>
#include <ini.h>

#include "config.h"

/*
 * The longest line libinih reads whole; it splits longer ones into pieces that each
 * parse as a line of their own. Every key = value line, including the ones
 * config_print() writes, must fit.
 */
#define CFG_LINE_MAX (INI_MAX_LINE - 3)
#define CFG_WORKERS_MAX 1024
#define CFG_DURATION_MAX (10 * 60 * 1000)
#define CFG_TTL_MAX (24 * 60 * 60) /* seconds: the DNS TTL keys' ceiling */
#define CFG_ROOT_KEY "/usr/share/dns/root.key" /* Debian's dns-root-data */
#define CFG_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define CFG_KEYS_MAX 32 /* keys in the larger section table */

struct cfg_load;
struct cfg_key;

/* A value parser writes into @obj (struct config or struct svc_config); 0 or -errno. */
typedef int cfg_parse_fn(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val);
/* A value printer writes whole "key = value" lines, or a comment when there is none. */
typedef void cfg_print_fn(FILE *f, const struct cfg_key *k, const void *obj);

struct cfg_word {
	const char *word;
	int value;
};

#define CFG_SERVER (1u << ROLE_SERVER)
#define CFG_CLIENT (1u << ROLE_CLIENT)

struct cfg_key {
	const char *name;
	cfg_parse_fn *parse;
	cfg_print_fn *print;
	size_t off; /* of the field in obj, for the generic types */
	unsigned long long min, max; /* numbers and durations */
	const struct cfg_word *words; /* word values, first is what config_print() writes */
	unsigned int roles; /* service keys: the roles they apply to */
	bool repeat; /* a list: every line appends */
	const char *instead; /* the key the other role uses */
	const char *unset; /* printed in a comment when there is no value */
};

struct cfg_table {
	const struct cfg_key *keys;
	size_t n;
};

/* Where a section was opened, and where each of its keys was set (0: never). */
struct cfg_section {
	int line;
	int key_line[CFG_KEYS_MAX];
};

struct cfg_load {
	const char *path;
	FILE *f;
	struct config *cfg;
	char *err;
	size_t errlen;
	int ret; /* the first error; later ones are not reported */
	int line; /* the physical line libinih is looking at */
	const struct cfg_table *table; /* of the current section; NULL before the first */
	struct cfg_section *sec;
	void *obj;
	struct cfg_section danced;
	struct cfg_section svc[CFG_MAX_SERVICES];
	int stub_line[CFG_MAX_STUBS]; /* where each dns_stub was set */
};

static __attribute__((format(printf, 3, 4))) int cfg_error(struct cfg_load *ld, int line,
							   const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (ld->ret)
		return ld->ret;
	ld->ret = -EINVAL;
	if (!ld->err || !ld->errlen)
		return ld->ret;
	if (line > 0)
		n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->path, line);
	else
		n = snprintf(ld->err, ld->errlen, "%s: ", ld->path);
	if (n < 0 || (size_t)n >= ld->errlen)
		return ld->ret;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - n, fmt, ap);
	va_end(ap);
	return ld->ret;
}

static int cfg_errno(struct cfg_load *ld, int err, const char *what)
{
	cfg_error(ld, 0, "%s", what);
	ld->ret = err;
	return err;
}

static int cfg_nomem(struct cfg_load *ld)
{
	return cfg_errno(ld, -ENOMEM, "out of memory");
}

static __attribute__((format(printf, 3, 4))) void cfg_warn(struct cfg_load *ld, int line,
							   const char *fmt, ...)
{
	struct config *cfg = ld->cfg;
	char *w;
	va_list ap;
	int n;

	if (cfg->n_warnings == CFG_MAX_WARNINGS)
		return;
	w = cfg->warnings[cfg->n_warnings++];
	n = snprintf(w, CFG_WARNING_MAX, "%s:%d: ", ld->path, line);
	if (n < 0 || n >= CFG_WARNING_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(w + n, CFG_WARNING_MAX - n, fmt, ap);
	va_end(ap);
}

/* The C locale's notions, whatever the process's locale is. */
static bool cfg_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool cfg_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char cfg_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static bool cfg_all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!cfg_digit(*s))
			return false;
	return true;
}

/* Levenshtein distance, ignoring case; only for short words. */
static unsigned int cfg_distance(const char *a, const char *b)
{
	unsigned int row[33], i, j, diag, up;
	size_t la = strlen(a), lb = strlen(b);

	if (la > 32 || lb > 32)
		return 99;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			row[j] = diag + (cfg_lower(a[i - 1]) != cfg_lower(b[j - 1]));
			if (up + 1 < row[j])
				row[j] = up + 1;
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			diag = up;
		}
	}
	return row[lb];
}

/* An obvious typo: at most two edits, and fewer than half the word. */
static bool cfg_typo_of(const char *typed, const char *known)
{
	unsigned int d = cfg_distance(typed, known);

	return d <= 2 && 2 * d < strlen(known);
}

/* Splits a list value at spaces, tabs and commas; calls @item for each element. */
static int cfg_split(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val,
		     int (*item)(struct cfg_load *, const struct cfg_key *, void *, const char *))
{
	char buf[CFG_LINE_MAX + 1];
	size_t len;
	int ret;

	while (*val) {
		while (*val == ',' || cfg_space(*val))
			val++;
		len = strcspn(val, ", \t");
		if (!len)
			break;
		if (len >= sizeof(buf))
			return cfg_error(ld, ld->line, "%s: element too long", k->name);
		memcpy(buf, val, len);
		buf[len] = '\0';
		ret = item(ld, k, obj, buf);
		if (ret)
			return ret;
		val += len;
	}
	return 0;
}

/* Value types. */

static int cfg_set_string(struct cfg_load *ld, char **field, const char *val)
{
	char *s = strdup(val);

	if (!s)
		return cfg_nomem(ld);
	free(*field);
	*field = s;
	return 0;
}

static int cfg_parse_string(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			    const char *val)
{
	return cfg_set_string(ld, (char **)((char *)obj + k->off), val);
}

static int cfg_parse_path(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	if (val[0] != '/')
		return cfg_error(ld, ld->line, "%s: '%s' is not an absolute path", k->name, val);
	return cfg_parse_string(ld, k, obj, val);
}

/* Pins live on bpffs, which the kernel mounts (by convention) at /sys/fs/bpf. */
static int cfg_parse_bpf_path(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			      const char *val)
{
	if (strncmp(val, "/sys/fs/bpf/", 12) || !val[12] || strstr(val, "/../") ||
	    strlen(val) > 200)
		return cfg_error(ld, ld->line,
				 "%s: '%s' is not a directory under /sys/fs/bpf/ (bpffs)", k->name,
				 val);
	return cfg_parse_string(ld, k, obj, val);
}

static int cfg_parse_sock(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	size_t len = strlen(val);

	if (val[0] == '/' && len > CFG_SUN_PATH_MAX)
		return cfg_error(ld, ld->line,
				 "%s: path is %zu bytes; a unix socket path holds at most %zu",
				 k->name, len, CFG_SUN_PATH_MAX);
	return cfg_parse_path(ld, k, obj, val);
}

static void cfg_print_string(FILE *f, const struct cfg_key *k, const void *obj)
{
	const char *s = *(char *const *)((const char *)obj + k->off);

	if (s)
		fprintf(f, "%s = %s\n", k->name, s);
	else
		fprintf(f, "# %s is not set: %s\n", k->name, k->unset);
}

/* Decimal digits only: no sign, no spaces, no hex. */
static int cfg_number(struct cfg_load *ld, const struct cfg_key *k, const char *val,
		      unsigned long long *out)
{
	unsigned long long v;

	if (val[0] == '-' && cfg_all_digits(val + 1))
		return cfg_error(ld, ld->line, "%s: %s is negative (allowed: %llu..%llu)", k->name,
				 val, k->min, k->max);
	if (!cfg_all_digits(val))
		return cfg_error(ld, ld->line, "%s: '%s' is not a number (allowed: %llu..%llu)",
				 k->name, val, k->min, k->max);
	errno = 0;
	v = strtoull(val, NULL, 10);
	if (errno == ERANGE || v < k->min || v > k->max)
		return cfg_error(ld, ld->line, "%s: %s is out of range (allowed: %llu..%llu)",
				 k->name, val, k->min, k->max);
	*out = v;
	return 0;
}

static int cfg_parse_uint(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	unsigned long long v = 0;
	int ret = cfg_number(ld, k, val, &v);

	if (!ret)
		*(unsigned int *)((char *)obj + k->off) = v;
	return ret;
}

static void cfg_print_uint(FILE *f, const struct cfg_key *k, const void *obj)
{
	fprintf(f, "%s = %u\n", k->name, *(const unsigned int *)((const char *)obj + k->off));
}

/* 16-bit fields: codepoints and flag numbers; k->max is at most 65535. */
static int cfg_parse_u16(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	unsigned long long v = 0;
	int ret = cfg_number(ld, k, val, &v);

	if (!ret)
		*(uint16_t *)((char *)obj + k->off) = v;
	return ret;
}

static void cfg_print_u16(FILE *f, const struct cfg_key *k, const void *obj)
{
	fprintf(f, "%s = %u\n", k->name, *(const uint16_t *)((const char *)obj + k->off));
}

/*
 * ExtensionTypes that TLS stacks implement themselves. OpenSSL refuses a custom
 * extension on any type it handles (SSL_CTX_add_custom_ext()), so danced could not
 * start, and a peer's stack would parse our bytes as its own extension. The names are
 * for messages; SSL_extension_supported() catches what the linked OpenSSL adds.
 */
static const struct cfg_word cfg_tls_extensions[] = {
	{ "server_name", 0 },
	{ "max_fragment_length", 1 },
	{ "status_request", 5 },
	{ "supported_groups", 10 },
	{ "ec_point_formats", 11 },
	{ "srp", 12 },
	{ "signature_algorithms", 13 },
	{ "use_srtp", 14 },
	{ "application_layer_protocol_negotiation", 16 },
	{ "signed_certificate_timestamp", 18 },
	{ "client_certificate_type", 19 },
	{ "server_certificate_type", 20 },
	{ "padding", 21 },
	{ "encrypt_then_mac", 22 },
	{ "extended_master_secret", 23 },
	{ "compress_certificate", 27 },
	{ "session_ticket", 35 },
	{ "pre_shared_key", 41 },
	{ "early_data", 42 },
	{ "supported_versions", 43 },
	{ "cookie", 44 },
	{ "psk_key_exchange_modes", 45 },
	{ "certificate_authorities", 47 },
	{ "post_handshake_auth", 49 },
	{ "signature_algorithms_cert", 50 },
	{ "key_share", 51 },
	{ "quic_transport_parameters", 57 },
	{ "next_protocol_negotiation", 13172 },
	{ "encrypted_client_hello", 65037 },
	{ "renegotiation_info", 65281 },
	{ NULL, 0 },
};

/* dane_clientid_codepoint, tls_flags_codepoint: a number no TLS stack claims. */
static int cfg_parse_codepoint(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			       const char *val)
{
	const struct cfg_word *w;
	unsigned long long v = 0;
	int ret;

	ret = cfg_number(ld, k, val, &v);
	if (ret)
		return ret;
	for (w = cfg_tls_extensions; w->word; w++)
		if ((unsigned long long)w->value == v)
			return cfg_error(ld, ld->line,
					 "%s: %llu is %s, an extension OpenSSL handles itself;"
					 " pick an unused one, such as 65282 (private use)",
					 k->name, v, w->word);
	if (SSL_extension_supported(v))
		return cfg_error(ld, ld->line,
				 "%s: %llu is an extension OpenSSL handles itself;"
				 " pick an unused one, such as 65282 (private use)",
				 k->name, v);
	*(uint16_t *)((char *)obj + k->off) = v;
	return 0;
}

static int cfg_parse_mode(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	unsigned long v = 0;
	const char *p;

	for (p = val; *p >= '0' && *p <= '7' && v <= 0777; p++)
		v = v * 8 + (*p - '0');
	if (*p || v > 0777)
		return cfg_error(ld, ld->line, "%s: '%s' is not an octal mode from 0000 to 0777",
				 k->name, val);
	*(unsigned int *)((char *)obj + k->off) = v;
	return 0;
}

static void cfg_print_mode(FILE *f, const struct cfg_key *k, const void *obj)
{
	fprintf(f, "%s = %04o\n", k->name, *(const unsigned int *)((const char *)obj + k->off));
}

static unsigned int cfg_online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > CFG_WORKERS_MAX ? CFG_WORKERS_MAX : n;
}

static int cfg_parse_workers(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			     const char *val)
{
	if (!strcmp(val, "auto")) {
		*(unsigned int *)((char *)obj + k->off) = cfg_online_cpus();
		return 0;
	}
	return cfg_parse_uint(ld, k, obj, val);
}

/*
 * 500ms, 10s, 2m, 1h, or a bare number of seconds, into milliseconds (~0ull when too
 * big to count). @hint shows the forms that suit the key.
 */
static int cfg_duration(struct cfg_load *ld, const struct cfg_key *k, const char *val,
			const char *hint, unsigned long long *ms)
{
	unsigned long long v = 0, unit;
	const char *p = val;

	for (; cfg_digit(*p) && v <= 1000000000ull; p++)
		v = v * 10 + (*p - '0');
	while (cfg_digit(*p)) /* too big already; keep the syntax check honest */
		p++, v = ~0ull;
	if (p == val)
		goto bad;
	if (!*p || !strcmp(p, "s"))
		unit = 1000;
	else if (!strcmp(p, "ms"))
		unit = 1;
	else if (!strcmp(p, "m"))
		unit = 60000;
	else if (!strcmp(p, "h"))
		unit = 3600000;
	else
		goto bad;
	*ms = v == ~0ull ? v : v * unit;
	return 0;
bad:
	return cfg_error(ld, ld->line, "%s: '%s' is not a duration (use %s)", k->name, val, hint);
}

static void cfg_format_duration(char *buf, size_t len, unsigned long long ms)
{
	if (!ms)
		snprintf(buf, len, "0s");
	else if (!(ms % 3600000))
		snprintf(buf, len, "%lluh", ms / 3600000);
	else if (!(ms % 60000))
		snprintf(buf, len, "%llum", ms / 60000);
	else if (!(ms % 1000))
		snprintf(buf, len, "%llus", ms / 1000);
	else
		snprintf(buf, len, "%llums", ms);
}

/* @scale: milliseconds per unit of the field and of k->min, k->max (1 or 1000). */
static int cfg_duration_range(struct cfg_load *ld, const struct cfg_key *k, const char *val,
			      unsigned long long ms, unsigned int scale)
{
	char lo[32], hi[32];

	if (ms != ~0ull && ms >= k->min * scale && ms <= k->max * scale)
		return 0;
	cfg_format_duration(lo, sizeof(lo), k->min * scale);
	cfg_format_duration(hi, sizeof(hi), k->max * scale);
	return cfg_error(ld, ld->line, "%s: '%s' is out of range (allowed: %s..%s)", k->name, val,
			 lo, hi);
}

/* Timeouts: milliseconds. */
static int cfg_parse_duration(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			      const char *val)
{
	unsigned long long ms = 0;
	int ret;

	ret = cfg_duration(ld, k, val, "500ms, 10s or 2m", &ms);
	if (!ret)
		ret = cfg_duration_range(ld, k, val, ms, 1);
	if (!ret)
		*(unsigned int *)((char *)obj + k->off) = ms;
	return ret;
}

static void cfg_print_duration(FILE *f, const struct cfg_key *k, const void *obj)
{
	char buf[32];

	cfg_format_duration(buf, sizeof(buf), *(const unsigned int *)((const char *)obj + k->off));
	fprintf(f, "%s = %s\n", k->name, buf);
}

/* DNS TTLs: whole seconds, the granularity of a TTL. */
static int cfg_parse_seconds(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			     const char *val)
{
	unsigned long long ms = 0;
	int ret;

	ret = cfg_duration(ld, k, val, "30s, 5m or 1h", &ms);
	if (!ret && ms != ~0ull && ms % 1000)
		ret = cfg_error(ld, ld->line, "%s: '%s' is not a whole number of seconds", k->name,
				val);
	if (!ret)
		ret = cfg_duration_range(ld, k, val, ms, 1000);
	if (!ret)
		*(unsigned int *)((char *)obj + k->off) = ms / 1000;
	return ret;
}

static void cfg_print_seconds(FILE *f, const struct cfg_key *k, const void *obj)
{
	char buf[32];

	cfg_format_duration(buf, sizeof(buf),
			    *(const unsigned int *)((const char *)obj + k->off) * 1000ull);
	fprintf(f, "%s = %s\n", k->name, buf);
}

static int cfg_parse_word(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	char list[128];
	size_t i, n = 0;

	for (i = 0; k->words[i].word; i++) {
		if (!strcmp(val, k->words[i].word)) {
			*(int *)((char *)obj + k->off) = k->words[i].value;
			return 0;
		}
	}
	list[0] = '\0';
	for (i = 0; k->words[i].word && n < sizeof(list); i++)
		n += snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", k->words[i].word);
	return cfg_error(ld, ld->line, "%s: '%s' is not one of: %s", k->name, val, list);
}

static const char *cfg_word_of(const struct cfg_word *words, int value)
{
	for (; words->word; words++)
		if (words->value == value)
			return words->word;
	return "?";
}

static void cfg_print_word(FILE *f, const struct cfg_key *k, const void *obj)
{
	fprintf(f, "%s = %s\n", k->name,
		cfg_word_of(k->words, *(const int *)((const char *)obj + k->off)));
}

static const struct cfg_word cfg_bools[] = {
	{ "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 }, { "on", 1 },
	{ "off", 0 }, { "1", 1 },  { "0", 0 },	  { NULL, 0 },
};

static int cfg_parse_bool(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	int v;
	struct cfg_key wk = *k;
	int ret;

	wk.words = cfg_bools;
	wk.off = 0;
	ret = cfg_parse_word(ld, &wk, &v, val);
	if (!ret)
		*(bool *)((char *)obj + k->off) = v;
	return ret;
}

static void cfg_print_bool(FILE *f, const struct cfg_key *k, const void *obj)
{
	fprintf(f, "%s = %s\n", k->name,
		*(const bool *)((const char *)obj + k->off) ? "yes" : "no");
}

/* Lists are written as few lines as fit, repeating the key. */
struct cfg_list_out {
	FILE *f;
	const char *key;
	size_t col;
};

static void cfg_list_item(struct cfg_list_out *lo, const char *item)
{
	size_t len = strlen(item);

	if (lo->col && lo->col + 1 + len > CFG_LINE_MAX) {
		fputc('\n', lo->f);
		lo->col = 0;
	}
	if (!lo->col)
		lo->col = fprintf(lo->f, "%s =", lo->key);
	lo->col += fprintf(lo->f, " %s", item);
}

static void cfg_list_end(struct cfg_list_out *lo, const struct cfg_key *k)
{
	if (lo->col)
		fputc('\n', lo->f);
	else
		fprintf(lo->f, "# %s is not set: %s\n", k->name, k->unset);
}

/* allow_uid, allow_gid: names resolved now, numbers taken as they are. */
static int cfg_id(struct cfg_load *ld, const struct cfg_key *k, const char *item, bool group,
		  uint32_t *id)
{
	unsigned long long v;
	struct passwd *pw;
	struct group *gr;

	if (cfg_all_digits(item)) {
		errno = 0;
		v = strtoull(item, NULL, 10);
		if (errno == ERANGE || v >= UINT32_MAX)
			return cfg_error(ld, ld->line, "%s: %s is out of range", k->name, item);
		*id = v;
		return 0;
	}
	errno = 0;
	if (group) {
		gr = getgrnam(item);
		if (gr) {
			*id = gr->gr_gid;
			return 0;
		}
	} else {
		pw = getpwnam(item);
		if (pw) {
			*id = pw->pw_uid;
			return 0;
		}
	}
	if (errno == ENOMEM)
		return cfg_nomem(ld);
	return cfg_error(ld, ld->line, "%s: no %s '%s' on this system", k->name,
			 group ? "group" : "user", item);
}

static int cfg_ids_append(struct cfg_load *ld, const struct cfg_key *k, const char *item,
			  bool group, uint32_t *ids, size_t *n)
{
	uint32_t id = 0;
	size_t i;
	int ret;

	ret = cfg_id(ld, k, item, group, &id);
	if (ret)
		return ret;
	for (i = 0; i < *n; i++)
		if (ids[i] == id)
			return 0;
	if (*n == CFG_MAX_IDS)
		return cfg_error(ld, ld->line, "%s: more than %d entries", k->name, CFG_MAX_IDS);
	ids[(*n)++] = id;
	return 0;
}

_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
	       "uid_t and gid_t are 32 bits on Linux");

static int cfg_uid_item(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *item)
{
	struct config *cfg = obj;

	return cfg_ids_append(ld, k, item, false, (uint32_t *)cfg->allow_uid, &cfg->n_allow_uid);
}

static int cfg_gid_item(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *item)
{
	struct config *cfg = obj;

	return cfg_ids_append(ld, k, item, true, (uint32_t *)cfg->allow_gid, &cfg->n_allow_gid);
}

static int cfg_parse_uids(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	return cfg_split(ld, k, obj, val, cfg_uid_item);
}

static int cfg_parse_gids(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	return cfg_split(ld, k, obj, val, cfg_gid_item);
}

static void cfg_print_ids(FILE *f, const struct cfg_key *k, const uint32_t *ids, size_t n)
{
	struct cfg_list_out lo = { f, k->name, 0 };
	char buf[16];
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%u", ids[i]);
		cfg_list_item(&lo, buf);
	}
	cfg_list_end(&lo, k);
}

static void cfg_print_uids(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct config *cfg = obj;

	cfg_print_ids(f, k, (const uint32_t *)cfg->allow_uid, cfg->n_allow_uid);
}

static void cfg_print_gids(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct config *cfg = obj;

	cfg_print_ids(f, k, (const uint32_t *)cfg->allow_gid, cfg->n_allow_gid);
}

/* user: a name or a uid in the password database, which also gives its group. */
static int cfg_parse_user(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	struct config *cfg = obj;
	unsigned long long v;
	struct passwd *pw;

	errno = 0;
	if (cfg_all_digits(val)) {
		v = strtoull(val, NULL, 10);
		pw = errno || v >= UINT32_MAX ? NULL : getpwuid(v);
	} else {
		pw = getpwnam(val);
	}
	if (!pw && errno == ENOMEM)
		return cfg_nomem(ld);
	if (!pw)
		return cfg_error(ld, ld->line, "%s: no user '%s' on this system", k->name, val);
	cfg->user_uid = pw->pw_uid;
	cfg->user_gid = pw->pw_gid;
	return cfg_set_string(ld, &cfg->user, pw->pw_name);
}

/* server_names: "www.example.com" or "*.example.com"; stored in lower case. */
static int cfg_name_item(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *item)
{
	struct svc_config *svc = obj;
	size_t len = strlen(item), label = 0, i;
	const char *p = item;
	char *name;

	if (!strncmp(p, "*.", 2))
		p += 2;
	if (len > DANCE_HOST_MAX - 3)
		return cfg_error(ld, ld->line, "%s: '%s' is longer than a DNS name can be", k->name,
				 item);
	for (; *p; p++) {
		if (*p == '.' && label) {
			label = 0;
			continue;
		}
		if (!(cfg_digit(*p) || (cfg_lower(*p) >= 'a' && cfg_lower(*p) <= 'z') ||
		      *p == '-' || *p == '_') ||
		    ++label > 63)
			break;
	}
	if (*p || !label)
		return cfg_error(
			ld, ld->line,
			"%s: '%s' is not a host name (use www.example.com, or *.example.com"
			" for any one label)",
			k->name, item);
	name = strdup(item);
	if (!name)
		return cfg_nomem(ld);
	for (i = 0; i < len; i++)
		name[i] = cfg_lower(name[i]);
	for (i = 0; i < svc->n_server_names; i++) {
		if (!strcmp(svc->server_names[i], name)) {
			free(name);
			return 0;
		}
	}
	if (svc->n_server_names == CFG_MAX_NAMES) {
		free(name);
		return cfg_error(ld, ld->line, "%s: more than %d names", k->name, CFG_MAX_NAMES);
	}
	svc->server_names[svc->n_server_names++] = name;
	return 0;
}

static int cfg_parse_names(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	return cfg_split(ld, k, obj, val, cfg_name_item);
}

static void cfg_print_names(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct svc_config *svc = obj;
	struct cfg_list_out lo = { f, k->name, 0 };
	size_t i;

	for (i = 0; i < svc->n_server_names; i++)
		cfg_list_item(&lo, svc->server_names[i]);
	cfg_list_end(&lo, k);
}

/* alpn: "h2,http/1.1", kept as a normalized comma list. */
static int cfg_parse_alpn(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	struct svc_config *svc = obj;
	char out[DANCE_ALPN_MAX];
	size_t n = 0, len;
	const char *p = val;

	for (;;) {
		while (cfg_space(*p))
			p++;
		len = strcspn(p, ",");
		while (len && cfg_space(p[len - 1]))
			len--;
		if (!len)
			return cfg_error(ld, ld->line, "%s: empty protocol id in '%s'", k->name,
					 val);
		if (len > 255)
			return cfg_error(ld, ld->line, "%s: a protocol id is at most 255 bytes",
					 k->name);
		if (strcspn(p, " \t") < len)
			return cfg_error(ld, ld->line,
					 "%s: '%s': separate protocol ids with commas", k->name,
					 val);
		if (n + !!n + len >= sizeof(out))
			return cfg_error(ld, ld->line, "%s: the list is longer than %d bytes",
					 k->name, DANCE_ALPN_MAX - 1);
		if (n)
			out[n++] = ',';
		memcpy(out + n, p, len);
		n += len;
		p += strcspn(p, ",");
		if (!*p)
			break;
		p++;
	}
	out[n] = '\0';
	memcpy(svc->alpn, out, n + 1);
	return 0;
}

static void cfg_print_alpn(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct svc_config *svc = obj;

	if (svc->alpn[0])
		fprintf(f, "%s = %s\n", k->name, svc->alpn);
	else
		fprintf(f, "# %s is not set: %s\n", k->name, k->unset);
}

/*
 * client_certificate_types, server_certificate_types: "rpk, x509" (RFC 7250), in
 * preference order. The count sits right after both arrays (struct svc_config).
 */
static const struct cfg_word cfg_cert_types[] = {
	{ "x509", DANCE_CERT_X509 },
	{ "rpk", DANCE_CERT_RPK },
	{ NULL, 0 },
};

static uint8_t *cfg_cert_types_n(const struct cfg_key *k, void *obj)
{
	struct svc_config *svc = obj;

	return k->off == offsetof(struct svc_config, client_cert_types) ?
		       &svc->n_client_cert_types :
		       &svc->n_server_cert_types;
}

static int cfg_cert_type_item(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			      const char *item)
{
	uint8_t *types = (uint8_t *)obj + k->off, *n = cfg_cert_types_n(k, obj);
	size_t i;

	for (i = 0; cfg_cert_types[i].word; i++)
		if (!strcmp(item, cfg_cert_types[i].word))
			break;
	if (!cfg_cert_types[i].word)
		return cfg_error(ld, ld->line, "%s: '%s' is not a certificate type (x509, rpk)",
				 k->name, item);
	if (memchr(types, cfg_cert_types[i].value, *n))
		return cfg_error(ld, ld->line, "%s: %s is listed twice", k->name, item);
	types[(*n)++] = cfg_cert_types[i].value;
	return 0;
}

static int cfg_parse_cert_types(struct cfg_load *ld, const struct cfg_key *k, void *obj,
				const char *val)
{
	int ret;

	*cfg_cert_types_n(k, obj) = 0;
	ret = cfg_split(ld, k, obj, val, cfg_cert_type_item);
	if (ret)
		return ret;
	if (!*cfg_cert_types_n(k, obj))
		return cfg_error(ld, ld->line, "%s: empty; name x509, rpk or both", k->name);
	return 0;
}

static void cfg_print_cert_types(FILE *f, const struct cfg_key *k, const void *obj)
{
	const uint8_t *types = (const uint8_t *)obj + k->off;
	uint8_t n = *cfg_cert_types_n(k, (void *)obj), i;

	if (!n) {
		fprintf(f, "# %s is not set: %s\n", k->name, k->unset);
		return;
	}
	fprintf(f, "%s =", k->name);
	for (i = 0; i < n; i++)
		fprintf(f, "%s %s", i ? "," : "", cfg_word_of(cfg_cert_types, types[i]));
	fprintf(f, "\n");
}

/* listen: 192.0.2.1:443 or [2001:db8::1]:443. */
static int cfg_listen_item(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			   const char *item)
{
	struct svc_config *svc = obj;
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	unsigned long v;
	size_t hlen;

	if (item[0] == '[') {
		port = strstr(item, "]:");
		hlen = port ? (size_t)(port - item - 1) : 0;
		if (port)
			port += 2;
	} else {
		port = strrchr(item, ':');
		hlen = port ? (size_t)(port - item) : 0;
		if (port)
			port++;
	}
	if (!port || !hlen || hlen >= sizeof(host))
		goto bad;
	memcpy(host, item + (item[0] == '['), hlen);
	host[hlen] = '\0';
	if (item[0] == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else if (item[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else
		goto bad;
	v = cfg_all_digits(port) && strlen(port) <= 5 ? strtoul(port, NULL, 10) : 0;
	if (v < 1 || v > 65535)
		return cfg_error(ld, ld->line, "%s: port of '%s' is not in 1..65535", k->name,
				 item);
	if (svc->n_listen == CFG_MAX_LISTEN)
		return cfg_error(ld, ld->line, "%s: more than %d addresses", k->name,
				 CFG_MAX_LISTEN);
	if (ss.ss_family == AF_INET6)
		sin6->sin6_port = htons(v);
	else
		sin->sin_port = htons(v);
	svc->listen[svc->n_listen] = ss;
	svc->listen_len[svc->n_listen++] = ss.ss_family == AF_INET6 ? sizeof(*sin6) : sizeof(*sin);
	return 0;
bad:
	return cfg_error(ld, ld->line,
			 "%s: '%s' is not an address (use 192.0.2.1:443 or [2001:db8::1]:443)",
			 k->name, item);
}

static int cfg_parse_listen(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			    const char *val)
{
	return cfg_split(ld, k, obj, val, cfg_listen_item);
}

static void cfg_format_addr(char *buf, size_t len, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	}
}

static void cfg_print_listen(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct svc_config *svc = obj;
	struct cfg_list_out lo = { f, k->name, 0 };
	char buf[INET6_ADDRSTRLEN + 8];
	size_t i;

	for (i = 0; i < svc->n_listen; i++) {
		cfg_format_addr(buf, sizeof(buf), &svc->listen[i]);
		cfg_list_item(&lo, buf);
	}
	cfg_list_end(&lo, k);
}

/*
 * A DNS name as danced.conf writes it: labels of letters, digits, '-' and '_' (A-labels
 * and underscore labels; no "\DDD" escapes, no wildcards), 1..63 octets each, 253 in
 * all. Copies it in lower case without its trailing dot into @out (DANCE_HOST_MAX
 * bytes) and says whether it had the dot; "." is the root, "" with a dot.
 *
 * Return: NULL, or why it is not such a name, to follow it in a message.
 */
static const char *cfg_dns_name(const char *in, char *out, bool *dot)
{
	size_t len = strlen(in), label = 0, i;
	char c;

	*dot = len && in[len - 1] == '.';
	len -= *dot;
	if (!len) {
		out[0] = '\0';
		return *dot ? NULL : "is empty";
	}
	if (len > 253)
		return "is longer than 253 octets";
	for (i = 0; i < len; i++) {
		c = cfg_lower(in[i]);
		if (c == '.' && !label)
			return "has an empty label";
		if (c == '.')
			label = 0;
		else if (c == '*')
			return "has a '*': wildcards are not allowed";
		else if (!(cfg_digit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_'))
			return "has a character other than letters, digits, '-' and '_'";
		else if (++label > 63)
			return "has a label longer than 63 octets";
		out[i] = c;
	}
	if (!label)
		return "has an empty label";
	out[len] = '\0';
	return NULL;
}

/* A zone or owner name: absolute, kept with its dot ("example.com.", "."). */
static int cfg_zone(struct cfg_load *ld, const struct cfg_key *k, const char *what, const char *in,
		    char *out)
{
	const char *why;
	bool dot;

	why = cfg_dns_name(in, out, &dot);
	if (why)
		return cfg_error(ld, ld->line, "%s: %s '%s' %s", k->name, what, in, why);
	if (!dot)
		return cfg_error(ld, ld->line,
				 "%s: %s '%s' is not absolute: end it with a dot (%s.)", k->name,
				 what, in, in);
	strcat(out, ".");
	return 0;
}

/*
 * dns_stub, dns_forwarder: an IP address and an optional port, stored as libunbound
 * takes it: "192.0.2.1", "192.0.2.1@5353", "2001:db8::1@53". Brackets around IPv6 are
 * accepted and dropped; the address is written canonically (inet_ntop()).
 */
static int cfg_dns_addr(struct cfg_load *ld, const struct cfg_key *k, const char *in, char *out,
			size_t outlen)
{
	char host[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *start = in, *port, *close;
	unsigned long v;
	size_t hlen;
	int af;

	if (in[0] == '[') {
		close = strchr(in, ']');
		if (!close || (close[1] && close[1] != '@'))
			goto bad;
		start = in + 1;
		hlen = close - start;
		port = close[1] ? close + 2 : NULL;
	} else {
		port = strchr(in, '@');
		hlen = port ? (size_t)(port - in) : strlen(in);
		if (port)
			port++;
	}
	if (!hlen || hlen >= sizeof(host))
		goto bad;
	memcpy(host, start, hlen);
	host[hlen] = '\0';
	af = start != in || strchr(host, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(af, host, bin) != 1 || !inet_ntop(af, bin, canon, sizeof(canon)))
		goto bad;
	if (!port) {
		snprintf(out, outlen, "%s", canon);
		return 0;
	}
	v = cfg_all_digits(port) && strlen(port) <= 5 ? strtoul(port, NULL, 10) : 0;
	if (v < 1 || v > 65535)
		return cfg_error(ld, ld->line, "%s: port of '%s' is not in 1..65535", k->name, in);
	snprintf(out, outlen, "%s@%lu", canon, v);
	return 0;
bad:
	return cfg_error(ld, ld->line,
			 "%s: '%s' is not an IP address (use 192.0.2.53, 192.0.2.53@5353 or"
			 " 2001:db8::53@5353)",
			 k->name, in);
}

/* dns_trust_anchor_file: a path, or "none" for NULL. */
static int cfg_parse_anchor_file(struct cfg_load *ld, const struct cfg_key *k, void *obj,
				 const char *val)
{
	char **field = (char **)((char *)obj + k->off);

	if (strcmp(val, "none"))
		return cfg_parse_path(ld, k, obj, val);
	free(*field);
	*field = NULL;
	return 0;
}

static void cfg_print_anchor_file(FILE *f, const struct cfg_key *k, const void *obj)
{
	const char *s = *(char *const *)((const char *)obj + k->off);

	fprintf(f, "%s = %s\n", k->name, s ?: "none");
}

/*
 * dns_trust_anchor: "zone. [TTL] [IN] DS|DNSKEY RDATA", one record in zone-file form as
 * keymgr(8) or ldns-key2ds(1) print it. Only its shape is checked here; libunbound
 * parses the RDATA when danced builds its state. Stored with the owner in lower case,
 * the type in upper case and one space between fields.
 */
static int cfg_parse_anchor(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			    const char *val)
{
	struct config *cfg = obj;
	char norm[CFG_LINE_MAX + 1], tok[CFG_LINE_MAX + 1], owner[DANCE_HOST_MAX];
	const char *p = val, *type = NULL;
	size_t n = 0, len, i, fields = 0;
	bool ttl = false, class = false;
	char *copy;
	int ret;

	for (;; p += len) {
		while (cfg_space(*p))
			p++;
		len = strcspn(p, " \t");
		if (!len)
			break;
		memcpy(tok, p, len);
		tok[len] = '\0';
		if (!n) {
			ret = cfg_zone(ld, k, "owner", tok, owner);
			if (ret)
				return ret;
			n = snprintf(norm, sizeof(norm), "%s", owner);
			continue;
		}
		if (type) {
			fields++;
		} else if (!ttl && cfg_all_digits(tok)) {
			ttl = true;
		} else if (!class && !strcasecmp(tok, "IN")) {
			class = true;
			strcpy(tok, "IN");
		} else if (!strcasecmp(tok, "DS") || !strcasecmp(tok, "DNSKEY")) {
			type = !strcasecmp(tok, "DS") ? "DS" : "DNSKEY";
			strcpy(tok, type);
		} else {
			return cfg_error(ld, ld->line,
					 "%s: '%s' is not DS or DNSKEY: a trust anchor is"
					 " 'zone. DS ...' or 'zone. DNSKEY ...'",
					 k->name, tok);
		}
		n += snprintf(norm + n, sizeof(norm) - n, " %s", tok);
	}
	if (!type)
		return cfg_error(ld, ld->line,
				 "%s: no DS or DNSKEY in '%s': a trust anchor is 'zone. DS ...'"
				 " or 'zone. DNSKEY ...'",
				 k->name, val);
	if (fields < 4)
		return cfg_error(ld, ld->line, "%s: the %s record has %zu of its 4 fields (%s)",
				 k->name, type, fields,
				 type[1] == 'S' ? "key tag, algorithm, digest type, digest" :
						  "flags, protocol, algorithm, public key");
	for (i = 0; i < cfg->n_dns_trust_anchors; i++)
		if (!strcmp(cfg->dns_trust_anchors[i], norm))
			return 0;
	if (cfg->n_dns_trust_anchors == CFG_MAX_ANCHORS)
		return cfg_error(ld, ld->line, "%s: more than %d anchors", k->name,
				 CFG_MAX_ANCHORS);
	copy = strdup(norm);
	if (!copy)
		return cfg_nomem(ld);
	cfg->dns_trust_anchors[cfg->n_dns_trust_anchors++] = copy;
	return 0;
}

static void cfg_print_anchors(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct config *cfg = obj;
	size_t i;

	for (i = 0; i < cfg->n_dns_trust_anchors; i++)
		fprintf(f, "%s = %s\n", k->name, cfg->dns_trust_anchors[i]);
	if (!cfg->n_dns_trust_anchors)
		fprintf(f, "# %s is not set: %s\n", k->name, k->unset);
}

/* dns_stub: "zone. ADDRESS[@PORT]", one server per zone. */
static int cfg_parse_stub(struct cfg_load *ld, const struct cfg_key *k, void *obj, const char *val)
{
	struct config *cfg = obj;
	struct dns_stub stub;
	char zone[CFG_LINE_MAX + 1];
	const char *addr;
	size_t len, i;
	int ret;

	len = strcspn(val, " \t");
	addr = val + len + strspn(val + len, " \t");
	if (!*addr || addr[strcspn(addr, " \t")])
		return cfg_error(
			ld, ld->line,
			"%s: '%s' is not 'ZONE ADDRESS' (such as corp.example. 192.0.2.53@5353)",
			k->name, val);
	memcpy(zone, val, len);
	zone[len] = '\0';
	ret = cfg_zone(ld, k, "zone", zone, stub.zone);
	if (!ret)
		ret = cfg_dns_addr(ld, k, addr, stub.addr, sizeof(stub.addr));
	if (ret)
		return ret;
	for (i = 0; i < cfg->n_dns_stubs; i++)
		if (!strcmp(cfg->dns_stubs[i].zone, stub.zone))
			return cfg_error(
				ld, ld->line,
				"%s: zone %s already has its server at line %d (one per zone)",
				k->name, stub.zone, ld->stub_line[i]);
	if (cfg->n_dns_stubs == CFG_MAX_STUBS)
		return cfg_error(ld, ld->line, "%s: more than %d zones", k->name, CFG_MAX_STUBS);
	ld->stub_line[cfg->n_dns_stubs] = ld->line;
	cfg->dns_stubs[cfg->n_dns_stubs++] = stub;
	return 0;
}

static void cfg_print_stubs(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct config *cfg = obj;
	size_t i;

	for (i = 0; i < cfg->n_dns_stubs; i++)
		fprintf(f, "%s = %s %s\n", k->name, cfg->dns_stubs[i].zone, cfg->dns_stubs[i].addr);
	if (!cfg->n_dns_stubs)
		fprintf(f, "# %s is not set: %s\n", k->name, k->unset);
}

static int cfg_parse_forwarder(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			       const char *val)
{
	char addr[sizeof(((struct dns_stub *)0)->addr)];
	int ret;

	ret = cfg_dns_addr(ld, k, val, addr, sizeof(addr));
	if (ret)
		return ret;
	return cfg_set_string(ld, (char **)((char *)obj + k->off), addr);
}

/* dane_names: suffixes of allowed client names; lower case, no trailing dot. */
static int cfg_dane_name_item(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			      const char *item)
{
	struct svc_config *svc = obj;
	char name[DANCE_HOST_MAX], *copy;
	const char *why;
	bool dot;
	size_t i;

	why = cfg_dns_name(item, name, &dot);
	if (!why && !name[0])
		why = "is the root, which would allow every name";
	if (why)
		return cfg_error(ld, ld->line,
				 "%s: '%s' %s (use names or suffixes such as _device.example.com)",
				 k->name, item, why);
	for (i = 0; i < svc->n_dane_names; i++)
		if (!strcmp(svc->dane_names[i], name))
			return 0;
	if (svc->n_dane_names == CFG_MAX_DANE_NAMES)
		return cfg_error(ld, ld->line, "%s: more than %d names", k->name,
				 CFG_MAX_DANE_NAMES);
	copy = strdup(name);
	if (!copy)
		return cfg_nomem(ld);
	svc->dane_names[svc->n_dane_names++] = copy;
	return 0;
}

static int cfg_parse_dane_names(struct cfg_load *ld, const struct cfg_key *k, void *obj,
				const char *val)
{
	return cfg_split(ld, k, obj, val, cfg_dane_name_item);
}

static void cfg_print_dane_names(FILE *f, const struct cfg_key *k, const void *obj)
{
	const struct svc_config *svc = obj;
	struct cfg_list_out lo = { f, k->name, 0 };
	size_t i;

	for (i = 0; i < svc->n_dane_names; i++)
		cfg_list_item(&lo, svc->dane_names[i]);
	cfg_list_end(&lo, k);
}

/* identity: the exact name a client sends in dane_clientid; lower case, no dot. */
static int cfg_parse_identity(struct cfg_load *ld, const struct cfg_key *k, void *obj,
			      const char *val)
{
	struct svc_config *svc = obj;
	char name[DANCE_HOST_MAX];
	const char *why;
	bool dot;

	why = cfg_dns_name(val, name, &dot);
	if (!why && !name[0])
		why = "is the root, not a client's name";
	if (why)
		return cfg_error(ld, ld->line,
				 "%s: '%s' %s (use the TLSA owner name, such as"
				 " sensor7._device.example.com)",
				 k->name, val, why);
	strcpy(svc->identity, name); /* both DANCE_HOST_MAX */
	return 0;
}

/* A char array field; "" is unset. */
static void cfg_print_chars(FILE *f, const struct cfg_key *k, const void *obj)
{
	const char *s = (const char *)obj + k->off;

	if (s[0])
		fprintf(f, "%s = %s\n", k->name, s);
	else
		fprintf(f, "# %s is not set: %s\n", k->name, k->unset);
}

/* The keywords. */

static const struct cfg_word cfg_log_levels[] = {
	{ "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG },	  { NULL, 0 },
};

static const struct cfg_word cfg_roles[] = {
	{ "server", ROLE_SERVER },
	{ "client", ROLE_CLIENT },
	{ NULL, 0 },
};

static const struct cfg_word cfg_client_auth[] = {
	{ "none", VERIFY_NONE },
	{ "optional", VERIFY_OPTIONAL },
	{ "required", VERIFY_REQUIRED },
	{ "after", VERIFY_AFTER },
	{ NULL, 0 },
};

static const struct cfg_word cfg_verify[] = {
	{ "required", VERIFY_REQUIRED },
	{ "none", VERIFY_NONE },
	{ "dane", VERIFY_DANE },
	{ "dane-or-pkix", VERIFY_DANE_OR_PKIX },
	{ NULL, 0 },
};

static const struct cfg_word cfg_dane_modes[] = {
	{ "off", DANE_OFF },
	{ "optional", DANE_OPTIONAL },
	{ "required", DANE_REQUIRED },
	{ NULL, 0 },
};

static const struct cfg_word cfg_tls_versions[] = {
	{ "1.2", TLS1_2_VERSION },
	{ "1.3", TLS1_3_VERSION },
	{ NULL, 0 },
};

_Static_assert(sizeof(enum svc_role) == sizeof(int) && sizeof(enum verify_mode) == sizeof(int) &&
		       sizeof(enum dane_mode) == sizeof(int),
	       "word values are stored as int");

enum {
	DK_SOCKET,
	DK_SOCKET_MODE,
	DK_WORKERS,
	DK_MAX_HANDSHAKES,
	DK_SOURCE_MAX_HANDSHAKES,
	DK_SOURCE_RATE,
	DK_HANDSHAKE_TIMEOUT,
	DK_ALLOW_UID,
	DK_ALLOW_GID,
	DK_USER,
	DK_LOG_LEVEL,
	DK_DNS_TRUST_ANCHOR_FILE,
	DK_DNS_TRUST_ANCHOR,
	DK_DNS_STUB,
	DK_DNS_FORWARDER,
	DK_DNS_CACHE_SIZE,
	DK_DNS_MIN_TTL,
	DK_DNS_MAX_TTL,
	DK_DNS_NEGATIVE_TTL,
	DK_DANE_CLIENTID_CODEPOINT,
	DK_TLS_FLAGS_CODEPOINT,
	DK_REQUEST_CLIENT_AUTH_FLAG,
	DK_BPF_POLICY,
	DK_BPF_PIN_PATH,
	DK_EXPORTED_AUTHENTICATORS,
	DK_KERNEL_SHARE_WITH_TLSHD,
	DK_COUNT
};

#define DOFF(field) offsetof(struct config, field)
static const struct cfg_key cfg_danced_keys[DK_COUNT] = {
	[DK_SOCKET] = { "socket", cfg_parse_sock, cfg_print_string, DOFF(socket_path) },
	[DK_SOCKET_MODE] = { "socket_mode", cfg_parse_mode, cfg_print_mode, DOFF(socket_mode) },
	[DK_WORKERS] = { "workers", cfg_parse_workers, cfg_print_uint, DOFF(workers), 1,
			 CFG_WORKERS_MAX },
	[DK_MAX_HANDSHAKES] = { "max_handshakes", cfg_parse_uint, cfg_print_uint,
				DOFF(max_handshakes), 1, 1000000 },
	[DK_SOURCE_MAX_HANDSHAKES] = { "source_max_handshakes", cfg_parse_uint, cfg_print_uint,
				       DOFF(source_max_handshakes), 1, 1000000 },
	[DK_SOURCE_RATE] = { "source_rate", cfg_parse_uint, cfg_print_uint, DOFF(source_rate), 0,
			     1000000 },
	[DK_HANDSHAKE_TIMEOUT] = { "handshake_timeout", cfg_parse_duration, cfg_print_duration,
				   DOFF(handshake_timeout_ms), 1, CFG_DURATION_MAX },
	[DK_ALLOW_UID] = { "allow_uid", cfg_parse_uids, cfg_print_uids, .repeat = true,
			   .unset = "no user may connect" },
	[DK_ALLOW_GID] = { "allow_gid", cfg_parse_gids, cfg_print_gids, .repeat = true,
			   .unset = "no group is allowed, only allow_uid" },
	[DK_USER] = { "user", cfg_parse_user, cfg_print_string, DOFF(user),
		      .unset = "danced keeps the user it was started as" },
	[DK_LOG_LEVEL] = { "log_level", cfg_parse_word, cfg_print_word, DOFF(log_level),
			   .words = cfg_log_levels },
	[DK_DNS_TRUST_ANCHOR_FILE] = { "dns_trust_anchor_file", cfg_parse_anchor_file,
				       cfg_print_anchor_file, DOFF(dns_trust_anchor_file) },
	[DK_DNS_TRUST_ANCHOR] = { "dns_trust_anchor", cfg_parse_anchor, cfg_print_anchors,
				  .repeat = true,
				  .unset = "only dns_trust_anchor_file anchors DNSSEC validation" },
	[DK_DNS_STUB] = { "dns_stub", cfg_parse_stub, cfg_print_stubs, .repeat = true,
			  .unset = "no zone has a server of its own" },
	[DK_DNS_FORWARDER] = { "dns_forwarder", cfg_parse_forwarder, cfg_print_string,
			       DOFF(dns_forwarder), .unset = "danced resolves from the root down" },
	[DK_DNS_CACHE_SIZE] = { "dns_cache_size", cfg_parse_uint, cfg_print_uint,
				DOFF(dns_cache_size), 16, 10000000 },
	[DK_DNS_MIN_TTL] = { "dns_min_ttl", cfg_parse_seconds, cfg_print_seconds, DOFF(dns_min_ttl),
			     0, CFG_TTL_MAX },
	[DK_DNS_MAX_TTL] = { "dns_max_ttl", cfg_parse_seconds, cfg_print_seconds, DOFF(dns_max_ttl),
			     0, CFG_TTL_MAX },
	[DK_DNS_NEGATIVE_TTL] = { "dns_negative_ttl", cfg_parse_seconds, cfg_print_seconds,
				  DOFF(dns_negative_ttl), 0, CFG_TTL_MAX },
	[DK_DANE_CLIENTID_CODEPOINT] = { "dane_clientid_codepoint", cfg_parse_codepoint,
					 cfg_print_u16, DOFF(dane_clientid_codepoint), 1, 65535 },
	[DK_TLS_FLAGS_CODEPOINT] = { "tls_flags_codepoint", cfg_parse_codepoint, cfg_print_u16,
				     DOFF(tls_flags_codepoint), 1, 65535 },
	[DK_REQUEST_CLIENT_AUTH_FLAG] = { "request_client_auth_flag", cfg_parse_u16, cfg_print_u16,
					  DOFF(request_client_auth_flag), 0, 2039 },
	[DK_BPF_POLICY] = { "bpf_policy", cfg_parse_bool, cfg_print_bool, DOFF(bpf_policy) },
	[DK_BPF_PIN_PATH] = { "bpf_pin_path", cfg_parse_bpf_path, cfg_print_string,
			      DOFF(bpf_pin_path) },
	[DK_EXPORTED_AUTHENTICATORS] = { "exported_authenticators", cfg_parse_uint, cfg_print_uint,
					 DOFF(exported_authenticators), 0, 1000000 },
	[DK_KERNEL_SHARE_WITH_TLSHD] = { "kernel_share_with_tlshd", cfg_parse_bool, cfg_print_bool,
					 DOFF(kernel_share_with_tlshd) },
};

enum {
	SK_ROLE,
	SK_CERTIFICATE,
	SK_KEY,
	SK_CA,
	SK_CLIENT_AUTH,
	SK_VERIFY,
	SK_SERVER_NAMES,
	SK_DEFAULT,
	SK_ALPN,
	SK_TLS_MIN,
	SK_TLS_MAX,
	SK_CIPHERSUITES,
	SK_CIPHERS,
	SK_GROUPS,
	SK_CLIENT_CERT_TYPES,
	SK_SERVER_CERT_TYPES,
	SK_HANDSHAKE_TIMEOUT,
	SK_MAX_HANDSHAKES,
	SK_LISTEN,
	SK_BACKEND_SOCKET,
	SK_BACKLOG,
	SK_DANE,
	SK_DANE_NAMES,
	SK_DANE_TLS12_LEGACY,
	SK_REQUEST_CLIENT_AUTH,
	SK_IDENTITY,
	SK_KERNEL,
	SK_COUNT
};

#define SOFF(field) offsetof(struct svc_config, field)
#define BOTH (CFG_SERVER | CFG_CLIENT)
static const struct cfg_key cfg_svc_keys[SK_COUNT] = {
	[SK_ROLE] = { "role", cfg_parse_word, cfg_print_word, SOFF(role), .words = cfg_roles,
		      .roles = BOTH },
	[SK_CERTIFICATE] = { "certificate", cfg_parse_path, cfg_print_string, SOFF(certificate),
			     .roles = BOTH, .unset = "no client certificate" },
	[SK_KEY] = { "key", cfg_parse_path, cfg_print_string, SOFF(key), .roles = BOTH,
		     .unset = "no client certificate" },
	[SK_CA] = { "ca", cfg_parse_path, cfg_print_string, SOFF(ca), .roles = BOTH,
		    .unset = "no CA bundle to check peers against (PKIX)" },
	[SK_CLIENT_AUTH] = { "client_auth", cfg_parse_word, cfg_print_word, SOFF(verify),
			     .words = cfg_client_auth, .roles = CFG_SERVER, .instead = "verify" },
	[SK_VERIFY] = { "verify", cfg_parse_word, cfg_print_word, SOFF(verify), .words = cfg_verify,
			.roles = CFG_CLIENT, .instead = "client_auth" },
	[SK_SERVER_NAMES] = { "server_names", cfg_parse_names, cfg_print_names, .roles = CFG_SERVER,
			      .repeat = true,
			      .unset = "picked by service name, or as the default" },
	[SK_DEFAULT] = { "default", cfg_parse_bool, cfg_print_bool, SOFF(is_default),
			 .roles = CFG_SERVER },
	[SK_ALPN] = { "alpn", cfg_parse_alpn, cfg_print_alpn, .roles = BOTH, .unset = "no ALPN" },
	[SK_TLS_MIN] = { "tls_min", cfg_parse_word, cfg_print_word, SOFF(tls_min),
			 .words = cfg_tls_versions, .roles = BOTH },
	[SK_TLS_MAX] = { "tls_max", cfg_parse_word, cfg_print_word, SOFF(tls_max),
			 .words = cfg_tls_versions, .roles = BOTH },
	[SK_CIPHERSUITES] = { "ciphersuites", cfg_parse_string, cfg_print_string,
			      SOFF(ciphersuites), .roles = BOTH,
			      .unset = "every TLS 1.3 suite kTLS can carry" },
	[SK_CIPHERS] = { "ciphers", cfg_parse_string, cfg_print_string, SOFF(ciphers),
			 .roles = BOTH, .unset = "every TLS 1.2 cipher kTLS can carry" },
	[SK_CLIENT_CERT_TYPES] = { "client_certificate_types", cfg_parse_cert_types,
				   cfg_print_cert_types, SOFF(client_cert_types), .roles = BOTH,
				   .unset = "x509 only" },
	[SK_SERVER_CERT_TYPES] = { "server_certificate_types", cfg_parse_cert_types,
				   cfg_print_cert_types, SOFF(server_cert_types), .roles = BOTH,
				   .unset = "x509 only" },
	[SK_GROUPS] = { "groups", cfg_parse_string, cfg_print_string, SOFF(groups), .roles = BOTH,
			.unset = "OpenSSL's default (3.5: X25519MLKEM768 first, hybrid "
				 "post-quantum)" },
	[SK_HANDSHAKE_TIMEOUT] = { "handshake_timeout", cfg_parse_duration, cfg_print_duration,
				   SOFF(handshake_timeout_ms), 1, CFG_DURATION_MAX, .roles = BOTH },
	[SK_MAX_HANDSHAKES] = { "max_handshakes", cfg_parse_uint, cfg_print_uint,
				SOFF(max_handshakes), 1, 1000000, .roles = BOTH },
	[SK_LISTEN] = { "listen", cfg_parse_listen, cfg_print_listen, .roles = CFG_SERVER,
			.repeat = true, .unset = "return mode, servers hand their sockets in" },
	[SK_BACKEND_SOCKET] = { "backend_socket", cfg_parse_sock, cfg_print_string,
				SOFF(backend_socket), .roles = CFG_SERVER, .unset = "return mode" },
	[SK_BACKLOG] = { "backlog", cfg_parse_uint, cfg_print_uint, SOFF(backlog), 1, 65535,
			 .roles = CFG_SERVER },
	[SK_DANE] = { "dane", cfg_parse_word, cfg_print_word, SOFF(dane), .words = cfg_dane_modes,
		      .roles = CFG_SERVER,
		      .instead = "identity to present a DANE name, or verify = dane to check the"
				 " server by DANE" },
	[SK_DANE_NAMES] = { "dane_names", cfg_parse_dane_names, cfg_print_dane_names,
			    .roles = CFG_SERVER, .repeat = true,
			    .unset = "no client name is allowed DANE authentication" },
	[SK_DANE_TLS12_LEGACY] = { "dane_tls12_legacy", cfg_parse_bool, cfg_print_bool,
				   SOFF(dane_tls12_legacy), .roles = CFG_SERVER },
	[SK_REQUEST_CLIENT_AUTH] = { "request_client_auth", cfg_parse_bool, cfg_print_bool,
				     SOFF(request_client_auth), .roles = CFG_SERVER },
	[SK_IDENTITY] = { "identity", cfg_parse_identity, cfg_print_chars, SOFF(identity),
			  .roles = CFG_CLIENT, .instead = "dane and dane_names",
			  .unset = "no dane_clientid is sent" },
	[SK_KERNEL] = { "kernel", cfg_parse_bool, cfg_print_bool, SOFF(kernel), .roles = BOTH },
};

static const struct cfg_table cfg_danced = { cfg_danced_keys, DK_COUNT };
static const struct cfg_table cfg_service = { cfg_svc_keys, SK_COUNT };

_Static_assert(DK_COUNT <= CFG_KEYS_MAX && SK_COUNT <= CFG_KEYS_MAX,
	       "cfg_section has a line for every key");

static const struct cfg_key *cfg_find(const struct cfg_table *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (!strcmp(t->keys[i].name, name))
			return &t->keys[i];
	return NULL;
}

static const char *cfg_closest(const struct cfg_table *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (cfg_typo_of(name, t->keys[i].name))
			return t->keys[i].name;
	return NULL;
}

/* "[danced]" or "[service www]", for messages. */
static const char *cfg_section_name(struct cfg_load *ld, char *buf, size_t len)
{
	if (ld->table == &cfg_danced)
		return "[danced]";
	snprintf(buf, len, "[service %s]", ((struct svc_config *)ld->obj)->name);
	return buf;
}

static int cfg_unknown_key(struct cfg_load *ld, const char *name)
{
	const struct cfg_table *other = ld->table == &cfg_danced ? &cfg_service : &cfg_danced;
	char sec[DANCE_NAME_MAX + 16];
	const char *s = cfg_section_name(ld, sec, sizeof(sec));
	const char *near;

	if (!*name)
		return cfg_error(ld, ld->line, "missing key name before '='");
	if (cfg_find(other, name))
		return cfg_error(ld, ld->line, "unknown key '%s' in %s: %s belongs in %s", name, s,
				 name, other == &cfg_danced ? "[danced]" : "[service NAME]");
	near = cfg_closest(ld->table, name);
	if (near && !strcasecmp(near, name))
		return cfg_error(ld, ld->line, "unknown key '%s' in %s (keys are lower case: '%s')",
				 name, s, near);
	if (near)
		return cfg_error(ld, ld->line, "unknown key '%s' in %s (did you mean '%s'?)", name,
				 s, near);
	return cfg_error(ld, ld->line, "unknown key '%s' in %s", name, s);
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_load *ld = user;
	char sec[DANCE_NAME_MAX + 16];
	const struct cfg_key *k;
	size_t i;

	(void)section; /* the line reader tracks sections: libinih does not report them */
	if (ld->ret)
		return 0;
	if (!ld->table) {
		cfg_error(ld, ld->line,
			  "key '%s' outside any section: put it under [danced] or [service NAME]",
			  name);
		return 0;
	}
	k = cfg_find(ld->table, name);
	if (!k) {
		cfg_unknown_key(ld, name);
		return 0;
	}
	if (!*value) {
		cfg_error(ld, ld->line, "%s: empty value", name);
		return 0;
	}
	/* Whatever loads must print back as a line that loads. */
	if (strlen(name) + 3 + strlen(value) > CFG_LINE_MAX) {
		cfg_error(ld, ld->line,
			  "%s: value too long for one line ('%s = ' and %d bytes at most)", name,
			  name, (int)(CFG_LINE_MAX - strlen(name) - 3));
		return 0;
	}
	i = k - ld->table->keys;
	if (ld->sec->key_line[i] && !k->repeat) {
		cfg_error(ld, ld->line, "duplicate key '%s' in %s (first set at line %d)", name,
			  cfg_section_name(ld, sec, sizeof(sec)), ld->sec->key_line[i]);
		return 0;
	}
	if (!ld->sec->key_line[i])
		ld->sec->key_line[i] = ld->line;
	return !k->parse(ld, k, ld->obj, value);
}

/* Section headers. */

static bool cfg_valid_service_name(const char *name)
{
	for (; *name; name++)
		if (!(cfg_digit(*name) || (cfg_lower(*name) >= 'a' && cfg_lower(*name) <= 'z') ||
		      *name == '.' || *name == '_' || *name == '-'))
			return false;
	return true;
}

static void cfg_svc_defaults(struct svc_config *svc)
{
	svc->role = ROLE_SERVER;
	svc->verify = VERIFY_NONE; /* resolved by role in cfg_finish_service() */
	svc->tls_min = TLS1_2_VERSION;
	svc->tls_max = TLS1_3_VERSION;
	svc->backlog = 1024;
	svc->dane = DANE_OFF;
	svc->request_client_auth = true;
}

/* @inner is what stands between the brackets, trimmed. */
static int cfg_section_begin(struct cfg_load *ld, const char *inner)
{
	struct config *cfg = ld->cfg;
	struct svc_config *svc;
	const char *name;
	size_t i, len, wlen = strcspn(inner, " \t");

	if (!strcmp(inner, "danced")) {
		if (ld->danced.line)
			return cfg_error(ld, ld->line, "[danced] appears twice (first at line %d)",
					 ld->danced.line);
		ld->danced.line = ld->line;
		ld->table = &cfg_danced;
		ld->sec = &ld->danced;
		ld->obj = cfg;
		return 0;
	}
	if (wlen != strlen("service") || strncmp(inner, "service", wlen)) {
		char word[17] = "";

		if (wlen < sizeof(word))
			memcpy(word, inner, wlen);
		if (cfg_typo_of(inner, "danced"))
			return cfg_error(ld, ld->line,
					 "unknown section [%s] (did you mean [danced]?)", inner);
		if (cfg_typo_of(word, "service"))
			return cfg_error(ld, ld->line,
					 "unknown section [%s] (did you mean [service %s]?)", inner,
					 inner + wlen + strspn(inner + wlen, " \t"));
		return cfg_error(
			ld, ld->line,
			"unknown section [%s]: the sections are [danced] and [service NAME]",
			inner);
	}
	name = inner + wlen;
	while (cfg_space(*name))
		name++;
	len = strlen(name);
	if (!len)
		return cfg_error(ld, ld->line, "[service] needs a name: [service NAME]");
	if (!cfg_valid_service_name(name))
		return cfg_error(
			ld, ld->line,
			"service name '%s' may only have letters, digits, '.', '_' and '-'", name);
	if (len >= DANCE_NAME_MAX)
		return cfg_error(ld, ld->line, "service name '%s' is %zu characters; at most %d",
				 name, len, DANCE_NAME_MAX - 1);
	for (i = 0; i < cfg->n_svcs; i++)
		if (!strcmp(cfg->svcs[i].name, name))
			return cfg_error(ld, ld->line, "duplicate [service %s] (first at line %d)",
					 name, ld->svc[i].line);
	if (cfg->n_svcs == CFG_MAX_SERVICES)
		return cfg_error(ld, ld->line, "too many services: at most %d", CFG_MAX_SERVICES);
	svc = &cfg->svcs[cfg->n_svcs];
	memcpy(svc->name, name, len + 1);
	cfg_svc_defaults(svc);
	ld->sec = &ld->svc[cfg->n_svcs++];
	ld->sec->line = ld->line;
	ld->table = &cfg_service;
	ld->obj = svc;
	return 0;
}

/*
 * libinih's line source. It sees every physical line before libinih does, so it is
 * where what libinih cannot report is caught: a line too long (libinih would split it
 * into two lines that may both parse), a NUL byte (libinih would end the line there),
 * control characters, and section headers (libinih does not call the handler for them,
 * so an empty or repeated section would pass unseen). It strips leading whitespace, so
 * indented keys never become libinih's continuation lines. Returning NULL stops the
 * parse at the first error.
 */
static char *cfg_read_line(char *str, int num, void *stream)
{
	struct cfg_load *ld = stream;
	size_t max = CFG_LINE_MAX < num - 1 ? CFG_LINE_MAX : (size_t)(num - 1);
	char buf[CFG_LINE_MAX + 2], *p = buf, *end;
	size_t n = 0;
	int c;

	if (ld->ret)
		return NULL;
	while ((c = getc(ld->f)) != EOF && c != '\n') {
		if (n == max + 1) {
			cfg_error(ld, ld->line + 1, "line longer than %zu bytes", max);
			return NULL;
		}
		buf[n++] = c;
	}
	if (c == EOF && ferror(ld->f)) {
		cfg_errno(ld, -EIO, "read error");
		return NULL;
	}
	if (c == EOF && !n)
		return NULL;
	ld->line++;
	if (n && buf[n - 1] == '\r')
		n--;
	if (n > max) {
		cfg_error(ld, ld->line, "line longer than %zu bytes", max);
		return NULL;
	}
	buf[n] = '\0';
	if (ld->line == 1 && n >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		p += 3; /* UTF-8 byte order mark */
	for (end = p; end < buf + n; end++) {
		if (!*end) {
			cfg_error(ld, ld->line, "NUL byte in column %zu: not a text file?",
				  (size_t)(end - buf) + 1);
			return NULL;
		}
		if (((unsigned char)*end < 0x20 && *end != '\t') || *end == 0x7f) {
			cfg_error(ld, ld->line, "control character 0x%02x in column %zu",
				  (unsigned char)*end, (size_t)(end - buf) + 1);
			return NULL;
		}
	}
	while (cfg_space(*p))
		p++;
	if (*p == '[') {
		char inner[CFG_LINE_MAX + 1];
		const char *close = strchr(p, ']'), *rest, *q;
		size_t len;

		if (!close) {
			cfg_error(ld, ld->line, "section header without ']'");
			return NULL;
		}
		for (rest = close + 1; cfg_space(*rest); rest++)
			;
		if (*rest && *rest != ';' && *rest != '#') {
			cfg_error(ld, ld->line, "text after the section header: '%s'", rest);
			return NULL;
		}
		for (q = p + 1; cfg_space(*q); q++)
			;
		for (len = close - q; len && cfg_space(q[len - 1]); len--)
			;
		memcpy(inner, q, len);
		inner[len] = '\0';
		if (cfg_section_begin(ld, inner))
			return NULL;
	} else if (*p && *p != ';' && *p != '#') {
		size_t eq = strcspn(p, "=");

		/* libinih would also take ':' as the separator, and ' ;' as a comment. */
		if (!p[eq] || strcspn(p, ":;") < eq) {
			cfg_error(ld, ld->line, "expected 'key = value', a [section] or a comment");
			return NULL;
		}
	}
	if (strlen(p) >= (size_t)num) { /* cannot happen: max < num; never cut a line short */
		cfg_error(ld, ld->line, "line longer than %d bytes", num - 1);
		return NULL;
	}
	strcpy(str, p);
	return str;
}

/* After the whole file: defaults that depend on other keys, and rules across keys. */

static int cfg_later(int a, int b)
{
	return a > b ? a : b;
}

/* Without any anchor libunbound validates nothing: every answer would be insecure. */
static int cfg_need_anchor(struct cfg_load *ld, int line, const char *name, const char *what)
{
	const struct config *cfg = ld->cfg;

	if (cfg->dns_trust_anchor_file || cfg->n_dns_trust_anchors)
		return 0;
	return cfg_error(ld, line,
			 "[service %s]: %s needs a DNSSEC trust anchor, but dns_trust_anchor_file"
			 " = none and there is no dns_trust_anchor",
			 name, what);
}

/* A server service's DANE client authentication. */
static int cfg_finish_dane(struct cfg_load *ld, size_t i)
{
	struct svc_config *svc = &ld->cfg->svcs[i];
	const int *at = ld->svc[i].key_line;
	const char *mode = cfg_word_of(cfg_dane_modes, svc->dane);
	char what[32];
	int ret;

	if (svc->dane == DANE_OFF) {
		if (svc->dane_tls12_legacy)
			return cfg_error(ld, at[SK_DANE_TLS12_LEGACY],
					 "[service %s]: dane_tls12_legacy = yes needs dane ="
					 " optional or required",
					 svc->name);
		if (svc->n_dane_names)
			cfg_warn(ld, at[SK_DANE_NAMES],
				 "[service %s]: dane_names does nothing with dane = off",
				 svc->name);
		return 0;
	}
	if (!svc->n_dane_names)
		return cfg_error(ld, at[SK_DANE],
				 "[service %s]: dane = %s needs dane_names, the client names it"
				 " allows (checked before any DNS query)",
				 svc->name, mode);
	if (svc->dane == DANE_REQUIRED && svc->tls_min < TLS1_3_VERSION && !svc->dane_tls12_legacy)
		return cfg_error(ld, cfg_later(at[SK_DANE], at[SK_TLS_MIN]),
				 "[service %s]: dane = required: DANE client authentication needs"
				 " TLS 1.3 (set tls_min = 1.3), or dane_tls12_legacy = yes for the"
				 " old drafts' weaker TLS 1.2 signal",
				 svc->name);
	if (svc->tls_max < TLS1_3_VERSION && !svc->dane_tls12_legacy)
		return cfg_error(
			ld, cfg_later(at[SK_DANE], at[SK_TLS_MAX]),
			"[service %s]: dane = %s with tls_max = 1.2 never happens: DANE"
			" client authentication needs TLS 1.3 (set tls_max = 1.3), or"
			" dane_tls12_legacy = yes for the old drafts' weaker TLS 1.2 signal",
			svc->name, mode);
	if (svc->dane == DANE_REQUIRED && svc->verify != VERIFY_NONE)
		return cfg_error(
			ld, at[SK_CLIENT_AUTH],
			"[service %s]: client_auth = %s is never used with dane = required,"
			" where DANE authenticates every client (remove it, or use dane ="
			" optional to fall back to it)",
			svc->name, cfg_word_of(cfg_client_auth, svc->verify));
	snprintf(what, sizeof(what), "dane = %s", mode);
	ret = cfg_need_anchor(ld, at[SK_DANE], svc->name, what);
	if (ret)
		return ret;
	if (svc->dane_tls12_legacy && svc->tls_min == TLS1_3_VERSION)
		cfg_warn(ld, at[SK_DANE_TLS12_LEGACY],
			 "[service %s]: dane_tls12_legacy = yes does nothing with tls_min = 1.3",
			 svc->name);
	return 0;
}

/* A client service's DANE: the name it presents, and checking the server by DANE. */
static int cfg_finish_identity(struct cfg_load *ld, size_t i)
{
	struct svc_config *svc = &ld->cfg->svcs[i];
	const int *at = ld->svc[i].key_line;

	if (svc->identity[0] && !svc->certificate)
		return cfg_error(ld, at[SK_IDENTITY],
				 "[service %s]: identity needs certificate and key, which the"
				 " server matches against the TLSA records at %s",
				 svc->name, svc->identity);
	if (svc->identity[0] && svc->tls_max < TLS1_3_VERSION)
		return cfg_error(ld, cfg_later(at[SK_IDENTITY], at[SK_TLS_MAX]),
				 "[service %s]: identity needs TLS 1.3 (tls_max = 1.3): the name"
				 " travels in the TLS 1.3 Certificate message",
				 svc->name);
	if (svc->verify == VERIFY_DANE || svc->verify == VERIFY_DANE_OR_PKIX)
		return cfg_need_anchor(ld, at[SK_VERIFY], svc->name,
				       svc->verify == VERIFY_DANE ? "verify = dane" :
								    "verify = dane-or-pkix");
	return 0;
}

/* Is absolute name @a at or below absolute name @b? Both lower case. */
static bool cfg_name_under(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (!strcmp(b, "."))
		return true;
	return la >= lb && !strcmp(a + la - lb, b) && (la == lb || a[la - lb - 1] == '.');
}

/* TTL key @lo may not be above TTL key @hi; the error is at the later line. */
static int cfg_ttl_order(struct cfg_load *ld, int lo, unsigned int lo_s, int hi, unsigned int hi_s)
{
	const int *at = ld->danced.key_line;
	char a[32], b[32];

	if (lo_s <= hi_s)
		return 0;
	cfg_format_duration(a, sizeof(a), lo_s * 1000ull);
	cfg_format_duration(b, sizeof(b), hi_s * 1000ull);
	return cfg_error(ld, cfg_later(at[lo], at[hi]), "%s = %s is above %s = %s%s",
			 cfg_danced_keys[lo].name, a, cfg_danced_keys[hi].name, b,
			 at[hi] ? "" : " (the default)");
}

/* The [danced] DNS keys against each other. */
static int cfg_finish_dns(struct cfg_load *ld)
{
	const struct config *cfg = ld->cfg;
	const int *at = ld->danced.key_line;
	char owner[DANCE_HOST_MAX];
	const char *z;
	size_t i, j;
	int ret;

	ret = cfg_ttl_order(ld, DK_DNS_MIN_TTL, cfg->dns_min_ttl, DK_DNS_MAX_TTL, cfg->dns_max_ttl);
	if (!ret)
		ret = cfg_ttl_order(ld, DK_DNS_NEGATIVE_TTL, cfg->dns_negative_ttl, DK_DNS_MAX_TTL,
				    cfg->dns_max_ttl);
	/* A negative answer is kept at least dns_min_ttl, at most dns_negative_ttl. */
	if (!ret)
		ret = cfg_ttl_order(ld, DK_DNS_MIN_TTL, cfg->dns_min_ttl, DK_DNS_NEGATIVE_TTL,
				    cfg->dns_negative_ttl);
	if (ret)
		return ret;
	if (cfg->dane_clientid_codepoint == cfg->tls_flags_codepoint)
		return cfg_error(
			ld, cfg_later(at[DK_DANE_CLIENTID_CODEPOINT], at[DK_TLS_FLAGS_CODEPOINT]),
			"dane_clientid_codepoint and tls_flags_codepoint are both %u: two"
			" extensions cannot share a codepoint",
			cfg->dane_clientid_codepoint);
	/* Only the configured anchors can make a stub zone's answers secure. */
	if (cfg->dns_trust_anchor_file)
		return 0;
	for (i = 0; i < cfg->n_dns_stubs; i++) {
		z = cfg->dns_stubs[i].zone;
		for (j = 0; j < cfg->n_dns_trust_anchors; j++) {
			snprintf(owner, sizeof(owner), "%.*s",
				 (int)strcspn(cfg->dns_trust_anchors[j], " "),
				 cfg->dns_trust_anchors[j]);
			if (cfg_name_under(z, owner) || cfg_name_under(owner, z))
				break;
		}
		if (j == cfg->n_dns_trust_anchors)
			cfg_warn(ld, ld->stub_line[i],
				 "dns_stub: no dns_trust_anchor covers %s and dns_trust_anchor_file"
				 " = none, so none of its answers can be DNSSEC-secure",
				 z);
	}
	return 0;
}

static int cfg_finish_service(struct cfg_load *ld, size_t i)
{
	struct svc_config *svc = &ld->cfg->svcs[i];
	const int *at = ld->svc[i].key_line;
	int line = ld->svc[i].line;
	bool server = svc->role == ROLE_SERVER;
	const char *role = server ? "server" : "client";
	size_t k;
	int ret;

	for (k = 0; k < SK_COUNT; k++) {
		if (!at[k] || cfg_svc_keys[k].roles & (1u << svc->role))
			continue;
		if (cfg_svc_keys[k].instead)
			return cfg_error(ld, at[k], "[service %s]: %s is not for role = %s; use %s",
					 svc->name, cfg_svc_keys[k].name, role,
					 cfg_svc_keys[k].instead);
		return cfg_error(ld, at[k], "[service %s]: %s is not for role = %s", svc->name,
				 cfg_svc_keys[k].name, role);
	}
	if (!at[SK_CLIENT_AUTH] && !at[SK_VERIFY])
		svc->verify = server ? VERIFY_NONE : VERIFY_REQUIRED;
	if (!at[SK_HANDSHAKE_TIMEOUT])
		svc->handshake_timeout_ms = ld->cfg->handshake_timeout_ms;

	if (svc->key && !svc->certificate)
		return cfg_error(ld, at[SK_KEY], "[service %s]: key without certificate",
				 svc->name);
	if (svc->certificate && !svc->key)
		return cfg_error(ld, at[SK_CERTIFICATE],
				 "[service %s]: certificate needs key (its private key)",
				 svc->name);
	if (server && !svc->certificate)
		return cfg_error(ld, line, "[service %s]: role = server needs certificate and key",
				 svc->name);
	if (svc->verify == VERIFY_DANE_OR_PKIX && !svc->ca)
		return cfg_error(ld, at[SK_VERIFY],
				 "[service %s]: verify = dane-or-pkix needs ca, the CA bundle for"
				 " servers whose zone is unsigned or has no TLSA records",
				 svc->name);
	if (svc->verify != VERIFY_NONE && svc->verify != VERIFY_DANE && !svc->ca) {
		if (server)
			return cfg_error(ld, at[SK_CLIENT_AUTH],
					 "[service %s]: client_auth = %s needs ca, the CA bundle"
					 " that client certificates must lead to",
					 svc->name, cfg_word_of(cfg_client_auth, svc->verify));
		return cfg_error(ld, at[SK_VERIFY] ?: line,
				 "[service %s]: verify = required%s needs ca, the CA bundle that"
				 " the server's certificate must lead to (or verify = none)",
				 svc->name, at[SK_VERIFY] ? "" : " (the default)");
	}
	if (svc->tls_min > svc->tls_max)
		return cfg_error(ld,
				 at[SK_TLS_MIN] > at[SK_TLS_MAX] ? at[SK_TLS_MIN] : at[SK_TLS_MAX],
				 "[service %s]: tls_min = %s is above tls_max = %s", svc->name,
				 cfg_word_of(cfg_tls_versions, svc->tls_min),
				 cfg_word_of(cfg_tls_versions, svc->tls_max));
	if (svc->n_listen && !svc->backend_socket)
		return cfg_error(ld, at[SK_LISTEN],
				 "[service %s]: listen needs backend_socket, the unix socket"
				 " that backends connect to",
				 svc->name);
	if (svc->backend_socket && !svc->n_listen)
		return cfg_error(ld, at[SK_BACKEND_SOCKET],
				 "[service %s]: backend_socket needs listen: danced accepts"
				 " connections for backends only on the addresses it listens on",
				 svc->name);
	ret = server ? cfg_finish_dane(ld, i) : cfg_finish_identity(ld, i);
	if (ret)
		return ret;
	if (!server && svc->verify == VERIFY_NONE)
		cfg_warn(ld, at[SK_VERIFY],
			 "[service %s]: verify = none: the server's certificate and name are"
			 " not checked, so anyone on the path can impersonate it",
			 svc->name);
	return 0;
}

/* Could both bind? Same family and port, and the same address or a wildcard. */
static bool cfg_addr_collides(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;

	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		       (!memcmp(&a6->sin6_addr, &b6->sin6_addr, sizeof(a6->sin6_addr)) ||
			IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ||
			IN6_IS_ADDR_UNSPECIFIED(&b6->sin6_addr));
	return a4->sin_port == b4->sin_port &&
	       (a4->sin_addr.s_addr == b4->sin_addr.s_addr || a4->sin_addr.s_addr == INADDR_ANY ||
		b4->sin_addr.s_addr == INADDR_ANY);
}

/*
 * kernel = yes: one service per role answers the kernel's requests, which are TLS 1.3
 * only (as tlshd's are), and the ACCEPT and DONE commands need CAP_NET_ADMIN, which
 * user = drops.
 */
static int cfg_finish_kernel(struct cfg_load *ld)
{
	struct config *cfg = ld->cfg;
	const struct svc_config *s, *by_role[2] = { NULL, NULL };
	size_t i;
	int line;

	for (i = 0; i < cfg->n_svcs; i++) {
		s = &cfg->svcs[i];
		if (!s->kernel)
			continue;
		line = ld->svc[i].key_line[SK_KERNEL];
		if (by_role[s->role])
			return cfg_error(ld, line,
					 "[service %s]: kernel = yes: [service %s] already serves"
					 " the kernel's %s-role requests; one service per role",
					 s->name, by_role[s->role]->name,
					 s->role == ROLE_SERVER ? "server" : "client");
		by_role[s->role] = s;
		if (s->tls_max != TLS1_3_VERSION)
			return cfg_error(ld, line,
					 "[service %s]: kernel = yes needs TLS 1.3 (tls_max = 1.3):"
					 " the kernel's handshakes are TLS 1.3 only",
					 s->name);
		if (cfg->user)
			return cfg_error(ld, line,
					 "[service %s]: kernel = yes needs CAP_NET_ADMIN for the"
					 " kernel's handshake commands, and user = %s drops it;"
					 " remove user from [danced]",
					 s->name, cfg->user);
	}
	return 0;
}

static int cfg_finish_across(struct cfg_load *ld)
{
	struct config *cfg = ld->cfg;
	struct svc_config *s, *t, *def = NULL, *only_server = NULL;
	size_t i, j, a, b, servers = 0;
	char x[INET6_ADDRSTRLEN + 8], y[INET6_ADDRSTRLEN + 8];

	for (i = 0; i < cfg->n_svcs; i++) {
		s = &cfg->svcs[i];
		if (s->role == ROLE_SERVER) {
			servers++;
			only_server = s;
		}
		if (s->is_default && def)
			return cfg_error(ld, ld->svc[i].key_line[SK_DEFAULT],
					 "more than one default service: [service %s] and"
					 " [service %s]",
					 def->name, s->name);
		if (s->is_default)
			def = s;
		if (s->backend_socket && !strcmp(s->backend_socket, cfg->socket_path))
			return cfg_error(ld, ld->svc[i].key_line[SK_BACKEND_SOCKET],
					 "[service %s]: backend_socket is danced's own socket",
					 s->name);
		for (j = 0; j <= i; j++) {
			t = &cfg->svcs[j];
			for (a = 0; a < s->n_listen; a++)
				for (b = 0; b < (i == j ? a : t->n_listen); b++) {
					if (!cfg_addr_collides(&s->listen[a], &t->listen[b]))
						continue;
					cfg_format_addr(x, sizeof(x), &s->listen[a]);
					cfg_format_addr(y, sizeof(y), &t->listen[b]);
					return cfg_error(ld, ld->svc[i].key_line[SK_LISTEN],
							 "[service %s]: listen %s collides with %s"
							 " of [service %s]",
							 s->name, x, y, t->name);
				}
			if (j == i)
				break;
			if (s->backend_socket && t->backend_socket &&
			    !strcmp(s->backend_socket, t->backend_socket))
				return cfg_error(ld, ld->svc[i].key_line[SK_BACKEND_SOCKET],
						 "[service %s]: backend_socket %s is also"
						 " [service %s]'s",
						 s->name, s->backend_socket, t->name);
			for (a = 0; a < s->n_server_names; a++)
				for (b = 0; b < t->n_server_names; b++)
					if (!strcmp(s->server_names[a], t->server_names[b]))
						return cfg_error(
							ld, ld->svc[i].key_line[SK_SERVER_NAMES],
							"[service %s]: server name %s is also in"
							" [service %s]",
							s->name, s->server_names[a], t->name);
		}
	}
	if (!def && servers == 1 && !ld->svc[only_server - cfg->svcs].key_line[SK_DEFAULT])
		only_server->is_default = true;
	return cfg_finish_kernel(ld);
}

static int cfg_finish(struct cfg_load *ld)
{
	struct config *cfg = ld->cfg;
	unsigned int share;
	size_t i;
	int ret;

	if (!cfg->n_svcs)
		return cfg_error(ld, 0, "no [service] section: danced has nothing to serve");
	if (!ld->danced.key_line[DK_WORKERS])
		cfg->workers = cfg_online_cpus();
	if (!ld->danced.key_line[DK_ALLOW_UID]) {
		cfg->allow_uid[0] = 0;
		cfg->n_allow_uid = 1;
	}
	/*
	 * Shares of the pool: one source address may hold an eighth of it (but 16 in any
	 * case, so that a small pool still serves one busy client), so idle connections from
	 * one host cannot take it all; with several services each may hold three quarters,
	 * so one flooded service leaves room for the others.
	 */
	if (!ld->danced.key_line[DK_SOURCE_MAX_HANDSHAKES]) {
		cfg->source_max_handshakes = cfg->max_handshakes / 8;
		if (cfg->source_max_handshakes < 16)
			cfg->source_max_handshakes =
				cfg->max_handshakes < 16 ? cfg->max_handshakes : 16;
	}
	share = cfg->n_svcs > 1 ? cfg->max_handshakes / 4 * 3 : cfg->max_handshakes;
	for (i = 0; i < cfg->n_svcs; i++)
		if (!ld->svc[i].key_line[SK_MAX_HANDSHAKES])
			cfg->svcs[i].max_handshakes = share > 0 ? share : 1;
	ret = cfg_finish_dns(ld);
	if (ret)
		return ret;
	for (i = 0; i < cfg->n_svcs; i++) {
		ret = cfg_finish_service(ld, i);
		if (ret)
			return ret;
	}
	return cfg_finish_across(ld);
}

static struct config *cfg_alloc(const char *path)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	cfg->path = strdup(path);
	cfg->socket_path = strdup("/run/danced/danced.sock");
	cfg->socket_mode = 0660;
	cfg->max_handshakes = 4096;
	cfg->handshake_timeout_ms = 10000;
	cfg->log_level = LOG_INFO;
	cfg->dns_trust_anchor_file = strdup(CFG_ROOT_KEY);
	cfg->dns_cache_size = 10000;
	cfg->dns_min_ttl = 0;
	cfg->dns_max_ttl = 3600;
	cfg->dns_negative_ttl = 300;
	cfg->dane_clientid_codepoint = 65282;
	cfg->tls_flags_codepoint = 62;
	cfg->request_client_auth_flag = 80;
	cfg->bpf_policy = true;
	cfg->exported_authenticators = 16384;
	cfg->bpf_pin_path = strdup("/sys/fs/bpf/danced");
	if (!cfg->path || !cfg->socket_path || !cfg->dns_trust_anchor_file || !cfg->bpf_pin_path) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/*
 * Regular files only: a directory, a FIFO (whose open would wait for a writer without
 * O_NONBLOCK) or /dev/zero (endless) is refused before anything is read.
 */
static int cfg_open(struct cfg_load *ld)
{
	struct stat st;
	int fd, ret;

	fd = open(ld->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		return cfg_errno(ld, ret, strerror(-ret));
	}
	if (fstat(fd, &st)) {
		ret = cfg_errno(ld, -errno, strerror(errno));
		goto out_close;
	}
	if (S_ISDIR(st.st_mode)) {
		ret = cfg_errno(ld, -EISDIR, "is a directory, not a configuration file");
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = cfg_errno(ld, -EINVAL, "not a regular file");
		goto out_close;
	}
	/* Back to blocking reads; fdopen() then owns fd. */
	if (fcntl(fd, F_SETFL, 0) || !(ld->f = fdopen(fd, "r"))) {
		ret = cfg_errno(ld, -errno, strerror(errno));
		goto out_close;
	}
	return 0;
out_close:
	close(fd);
	return ret;
}

/**
 * config_load - read, check and resolve a danced.conf
 * @path: the file; kept in the result as cfg->path and used in messages
 * @out: on success, the new configuration, for config_free(); NULL on error
 * @err: on error, one line for the operator: "PATH:LINE: what is wrong" (": LINE" when
 *       the problem has no single line); may be NULL
 *
 * Every default is resolved: workers is a count, user and group names are ids, and
 * each service has its handshake timeout and verify mode. Certificate, key and CA
 * files are not opened here. Things that load but look wrong are in cfg->warnings.
 *
 * Return: 0; -ENOENT, -EACCES, -ELOOP, ... when the file cannot be opened; -EISDIR for
 * a directory; -EINVAL for another non-regular file or for content that is not a
 * valid configuration; -EIO when reading fails; -ENOMEM.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct cfg_load *ld;
	int ret;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	ld = calloc(1, sizeof(*ld));
	if (!ld) {
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	ld->path = path;
	ld->err = err;
	ld->errlen = errlen;
	ret = cfg_open(ld);
	if (ret)
		goto out_free_ld;
	ld->cfg = cfg_alloc(path);
	if (!ld->cfg) {
		ret = cfg_nomem(ld);
		goto out_close;
	}
	ret = ini_parse_stream(cfg_read_line, ld, cfg_handler, ld);
	if (!ld->ret && ret == -2)
		cfg_nomem(ld);
	else if (!ld->ret && ret)
		cfg_error(ld, ret, "syntax error");
	if (!ld->ret)
		cfg_finish(ld);
	ret = ld->ret;
	if (ret)
		goto out_free_cfg;
	*out = ld->cfg;
	goto out_close;
out_free_cfg:
	config_free(ld->cfg);
out_close:
	fclose(ld->f);
out_free_ld:
	free(ld);
	return ret;
}

void config_free(struct config *cfg)
{
	struct svc_config *svc;
	size_t i, j;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n_svcs; i++) {
		svc = &cfg->svcs[i];
		free(svc->certificate);
		free(svc->key);
		free(svc->ca);
		for (j = 0; j < svc->n_server_names; j++)
			free(svc->server_names[j]);
		free(svc->ciphersuites);
		free(svc->ciphers);
		free(svc->groups);
		free(svc->backend_socket);
		for (j = 0; j < svc->n_dane_names; j++)
			free(svc->dane_names[j]);
	}
	for (i = 0; i < cfg->n_dns_trust_anchors; i++)
		free(cfg->dns_trust_anchors[i]);
	free(cfg->dns_trust_anchor_file);
	free(cfg->dns_forwarder);
	free(cfg->bpf_pin_path);
	free(cfg->path);
	free(cfg->socket_path);
	free(cfg->user);
	free(cfg);
}

static void cfg_print_keys(FILE *f, const struct cfg_table *t, const void *obj, int role)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (role < 0 || t->keys[i].roles & (1u << role))
			t->keys[i].print(f, &t->keys[i], obj);
}

/**
 * config_print - write the effective configuration, every default filled in
 *
 * The output is a danced.conf that config_load() reads back into an equal
 * configuration (except cfg->path and the warnings). Keys without a value appear as
 * comments; names of users and groups appear as the ids they resolved to.
 */
void config_print(const struct config *cfg, FILE *f)
{
	const char *p;
	size_t i;

	fputs("# effective configuration of ", f);
	for (p = cfg->path; *p; p++)
		fputc((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p, f);
	fputs("\n[danced]\n", f);
	cfg_print_keys(f, &cfg_danced, cfg, -1);
	for (i = 0; i < cfg->n_svcs; i++) {
		fprintf(f, "\n[service %s]\n", cfg->svcs[i].name);
		cfg_print_keys(f, &cfg_service, &cfg->svcs[i], cfg->svcs[i].role);
	}
}

/**
 * config_service - the service called @name
 *
 * Return: the service, or NULL when there is none by that name.
 */
const struct svc_config *config_service(const struct config *cfg, const char *name)
{
	size_t i;

	if (!cfg || !name)
		return NULL;
	for (i = 0; i < cfg->n_svcs; i++)
		if (!strcmp(cfg->svcs[i].name, name))
			return &cfg->svcs[i];
	return NULL;
}
