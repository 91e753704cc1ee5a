// SPDX-License-Identifier: GPL-2.0
/*
 * log.c - one line per event on stderr, prefixed "<N>" with the syslog level so that
 * journald (SyslogLevelPrefix=yes, its default for services) files it at that priority.
 * Lines are written with a single write(2), so workers never interleave mid-line.
 * Callers never pass key material here.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>

#include "agent.h"

static atomic_int log_level = 6;

void log_init(int level)
{
	atomic_store(&log_level, level);
}

void log_set_level(int level)
{
	atomic_store(&log_level, level);
}

bool log_enabled(int level)
{
	return level <= atomic_load(&log_level);
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (level > atomic_load(&log_level))
		return;
	n = snprintf(line, sizeof(line), "<%d>", level);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return; /* nowhere left to complain */
}

/* Drain OpenSSL's error queue of this thread into the log, once, with context. */
void log_ssl_errors(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error())) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_err("%s: %s", what, buf);
	}
}

/* Logs carry what peers sent (SNI, subjects): keep them one printable line. */
const char *log_printable(const char *in, char *out, size_t max)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < max; i++)
		out[i] = in[i] >= 0x20 && in[i] < 0x7f && in[i] != '"' ? in[i] : '?';
	out[i] = '\0';
	return out;
}

/* "192.0.2.1:443", "[2001:db8::1]:443", or "-" for an address that is not IP. */
const char *log_addr(const struct sockaddr_storage *ss, char *out, size_t max)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		snprintf(out, max, "%s:%u", host, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		snprintf(out, max, "[%s]:%u", host, ntohs(s->sin6_port));
	} else {
		snprintf(out, max, "-");
	}
	return out;
}

/* Record why something failed; the first failure is the cause and stays. */
int fail_set(struct fail *f, int status, const char *fmt, ...)
{
	va_list ap;

	if (f->status)
		return f->status;
	f->status = status;
	va_start(ap, fmt);
	vsnprintf(f->why, sizeof(f->why), fmt, ap);
	va_end(ap);
	return status;
}
