// SPDX-License-Identifier: GPL-2.0
/*
 * dance_echo.c - an example server (and client) on libdance, for tests and demos.
 *
 * Return mode accepts TCP itself and hands each socket to danced, blocking from a thread
 * per connection or async from one poll loop; front-door mode takes sockets that danced
 * accepted. Either way it then echoes, or answers one HTTP request, in plaintext over
 * kTLS. The client role connects out and pipes stdin and stdout through the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/evp.h>

#include "../dance.h"

static const char usage_text[] =
	"NAME\n"
	"    dance-echo - echo or HTTP server (and pipe client) whose TLS is done by danced\n"
	"\n"
	"SYNOPSIS\n"
	"    dance-echo --handoff SOCKET --listen ADDR:PORT [--http] [--async] [--once]\n"
	"               [--service NAME] [--timeout MS] [--prove | --pha]\n"
	"    dance-echo --backend SOCKET [--http] [--once]\n"
	"    dance-echo --handoff SOCKET --connect HOST:PORT --name SERVERNAME\n"
	"               [--service NAME] [--alpn LIST] [--timeout MS] [--answer-proofs]\n"
	"\n"
	"DESCRIPTION\n"
	"    An example of libdance (dance.h). The TLS handshake happens in danced, which\n"
	"    installs kernel TLS on the socket; this program only ever sees plaintext.\n"
	"\n"
	"    Return mode (--handoff with --listen) listens on TCP, hands every accepted\n"
	"    connection to danced over the handoff socket and serves it once the handshake\n"
	"    is done. By default each connection gets a thread making a blocking\n"
	"    dance_handshake() call; with --async one thread submits handshakes with\n"
	"    dance_submit() and serves every connection from a single poll() loop.\n"
	"\n"
	"    Front-door mode (--backend) connects to a service's backend socket, where\n"
	"    danced passes on connections it accepted and handshook itself (dance_listen(),\n"
	"    dance_accept()). When danced closes that socket, dance-echo listens again\n"
	"    every second.\n"
	"\n"
	"    Serving: by default every byte read is written back, plaintext that danced\n"
	"    read during the handshake first, until the peer ends the stream; then a TLS\n"
	"    close_notify is sent and the connection closed. With --http, one request is\n"
	"    read (up to the blank line) and answered with \"HTTP/1.1 200 OK\" and a\n"
	"    text/plain body of key=value lines describing the TLS session: tls_version,\n"
	"    cipher, service, sni, alpn, peer_subject, peer_names, auth, verified_name;\n"
	"    then the connection closes. Only HTTP/1.1 is spoken, so a service offering\n"
	"    ALPN should offer http/1.1.\n"
	"\n"
	"    Proofs after the handshake (exported authenticators, RFC 9261): with --prove\n"
	"    the server (blocking return mode) asks danced for a request on each connection\n"
	"    and sends it as a line \"PROVE <base64>\\n\"; the client answers \"AUTH\n"
	"    <base64>\\n\", which danced validates (DANE, or X.509, as the service says);\n"
	"    the server answers \"OK <name> <how>\\n\" and serves the connection, or \"NO\n"
	"    <reason>\\n\" and closes it. A client with --answer-proofs has danced answer a\n"
	"    PROVE line that comes first, with its service's key and identity. Where the\n"
	"    kernel's policy refuses the connection until the proof, the service needs a\n"
	"    proof window (dancectl policy window) for the exchange to pass.\n"
	"\n"
	"    With --pha the proof is TLS 1.3 post-handshake authentication instead (RFC\n"
	"    8446 section 4.6.2), which any TLS 1.3 client that offers it can give (openssl\n"
	"    s_client -enable_pha -cert ... -key ...): danced sends the CertificateRequest\n"
	"    on the connection, the client answers as it reads, and the server writes the\n"
	"    same \"OK\" or \"NO\" line. A client that did not offer it gets \"NO\n"
	"    pha-not-offered\"; one that does not answer within 10 seconds, \"NO\".\n"
	"\n"
	"    Client role (--connect) connects to HOST:PORT, has danced perform the TLS\n"
	"    client handshake (verifying SERVERNAME), then copies standard input to the\n"
	"    connection and the connection to standard output. At the end of standard\n"
	"    input it sends close_notify and keeps reading until the server ends.\n"
	"\n"
	"OPTIONS\n"
	"    --handoff SOCKET     danced's handoff socket (socket = in danced.conf)\n"
	"    --listen ADDR:PORT   TCP address to listen on; ADDR may be empty or * for\n"
	"                         all, [v6addr] for IPv6; PORT 0 picks a free port\n"
	"    --backend SOCKET     a service's backend socket (front-door mode)\n"
	"    --connect HOST:PORT  client role: the server to connect to\n"
	"    --name SERVERNAME    client role: SNI and the name the certificate must have\n"
	"    --service NAME       the danced service to use (return mode: default picks by\n"
	"                         SNI; client role: default is danced's client service)\n"
	"    --alpn LIST          client role: protocols to offer, comma-separated\n"
	"    --timeout MS         handshake timeout (default: the service's)\n"
	"    --http               answer one HTTP request per connection instead of echo\n"
	"    --async              return mode: dance_submit() and one poll loop\n"
	"    --once               serve one connection, then exit\n"
	"    --prove              return mode: ask every client to prove a name (see above)\n"
	"    --pha                return mode: the same, by post-handshake authentication\n"
	"    --answer-proofs      client role: answer the server's PROVE line\n"
	"    -h, --help           this text\n"
	"\n"
	"OUTPUT\n"
	"    Servers print \"listening ADDR:PORT\" once they listen (return mode), then one\n"
	"    line per connection on standard output as its handshake ends:\n"
	"        conn=N status=0 version=TLSv1.3 cipher=NAME service=S sni=S alpn=S\n"
	"            peer=\"SUBJECT\" auth=none|x509|dane name=VERIFIED_NAME\n"
	"            pending=BYTES handshake_us=US offload_us=US\n"
	"        conn=N status=-110 error=\"DESCRIPTION\" reason=\"WHY\"\n"
	"    and with --prove, before the connection is served:\n"
	"        conn=N before-proof=refused|allowed\n"
	"        conn=N proof status=0 auth=ea-dane|ea-x509|pha-dane|pha-x509 name=NAME\n"
	"            reason=\"WHY\"\n"
	"            validate_us=US\n"
	"    (each on one line; \"-\" stands for an empty value). The client role prints\n"
	"    that line on standard error. Other diagnostics go to standard error.\n"
	"\n"
	"EXIT STATUS\n"
	"    0  a server stopped cleanly, --once served a connection, or the client's\n"
	"       connection ended cleanly\n"
	"    1  a handshake failed (client role, --once), or a setup or I/O error\n"
	"    2  bad usage\n"
	"\n"
	"EXAMPLES\n"
	"    dance-echo --handoff /run/danced/danced.sock --listen 127.0.0.1:8443 --http\n"
	"    curl --cacert ca.pem https://localhost:8443/\n"
	"    echo hi | dance-echo --handoff /run/danced/danced.sock \\\n"
	"        --connect 127.0.0.1:4433 --name localhost\n";

struct opts {
	const char *handoff, *backend, *listen, *connect, *name, *service, *alpn;
	unsigned int timeout_ms;
	bool http, async, once, prove, pha, answer_proofs;
};

/* ---- serving one connection ---------------------------------------------------- */

#define REQ_MAX 8192

/*
 * One connection after its handshake: the same state machine runs under a thread's
 * blocking poll and under the async loop. Only whole-buffer states: the echo buffer is
 * refilled only once it has been written back, which is also the flow control.
 */
struct conn {
	int fd;
	unsigned long serial;
	bool http;
	bool closing; /* the answer is queued: close once it is written */
	bool peer_eof;
	bool handshaking; /* async: the fd belongs to libdance until dance_complete() */
	size_t out_len, out_off;
	size_t req_len;
	char out[DANCE_PENDING_MAX + 4096];
	char req[REQ_MAX];
	char body[2048]; /* --http: the answer, written when the handshake ended */
};

static const char *version_name(uint16_t v, char *buf, size_t size)
{
	if (v == 0x0304)
		return "TLSv1.3";
	if (v == 0x0303)
		return "TLSv1.2";
	snprintf(buf, size, "0x%04x", v);
	return buf;
}

static const char *or_dash(const char *s)
{
	return s && s[0] ? s : "-";
}

/* dance_recv()'s errors, in the words of TLS where they mean a TLS event. */
static const char *recv_error(int err)
{
	if (err == ECONNABORTED)
		/* TLS 1.3: a server that refuses a client after its Finished says so thus. */
		return "the peer ended the connection with a fatal TLS alert";
	if (err == EBADMSG)
		return "a TLS record failed authentication";
	return strerror(err);
}

static const char *auth_name(uint32_t auth)
{
	switch (auth) {
	case DANCE_AUTH_X509:
		return "x509";
	case DANCE_AUTH_DANE:
		return "dane";
	case DANCE_AUTH_EA_X509:
		return "ea-x509";
	case DANCE_AUTH_EA_DANE:
		return "ea-dane";
	case DANCE_AUTH_PHA_X509:
		return "pha-x509";
	case DANCE_AUTH_PHA_DANE:
		return "pha-dane";
	default:
		return "none";
	}
}

/* What the peer proved its key with; nothing to say when it proved nothing. */
static const char *cert_type_name(const struct dance_result *res)
{
	if (res->auth == DANCE_AUTH_NONE)
		return "-";
	return res->peer_cert_type == DANCE_CERT_RPK ? "rpk" : "x509";
}

/* The one line per connection that tests and people read. */
static void print_result(FILE *f, unsigned long serial, int status, const struct dance_result *res)
{
	char vbuf[8];

	if (status) {
		fprintf(f, "conn=%lu status=%d error=\"%s\" reason=\"%s\"\n", serial, status,
			dance_strerror(status), or_dash(res->reason));
	} else {
		fprintf(f,
			"conn=%lu status=0 version=%s cipher=%s group=%s service=%s sni=%s "
			"alpn=%s peer=\"%s\" auth=%s cert=%s name=%s pending=%u "
			"handshake_us=%u offload_us=%u\n",
			serial, version_name(res->tls_version, vbuf, sizeof(vbuf)),
			or_dash(res->cipher_name), or_dash(res->group), or_dash(res->service),
			or_dash(res->sni), or_dash(res->alpn), or_dash(res->peer_subject),
			auth_name(res->auth), cert_type_name(res), or_dash(res->verified_name),
			res->pending_len, res->handshake_us, res->offload_us);
	}
	fflush(f);
}

static struct conn *conn_new(int fd, unsigned long serial, bool http)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->serial = serial;
	c->http = http;
	return c;
}

static void conn_answer_http(struct conn *c)
{
	c->out_len = snprintf(c->out, sizeof(c->out),
			      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			      strlen(c->body), c->body);
	c->closing = true;
}

/* --http: answer once the request's blank line is in; refuse requests too big to hold. */
static void conn_http_check(struct conn *c)
{
	static const char too_big[] = "HTTP/1.1 431 Request Header Fields Too Large\r\n"
				      "Content-Length: 0\r\nConnection: close\r\n\r\n";

	c->req[c->req_len] = '\0';
	if (strstr(c->req, "\r\n\r\n")) {
		conn_answer_http(c);
	} else if (c->req_len == REQ_MAX - 1) {
		c->out_len = sizeof(too_big) - 1;
		memcpy(c->out, too_big, c->out_len);
		c->closing = true;
	}
}

/* Plaintext danced read during the handshake: it comes before anything on the socket. */
static void conn_feed(struct conn *c, const void *buf, size_t n)
{
	if (!c->http) {
		memcpy(c->out, buf, n);
		c->out_len = n;
		return;
	}
	if (n > REQ_MAX - 1)
		n = REQ_MAX - 1;
	memcpy(c->req, buf, n);
	c->req_len = n;
	conn_http_check(c);
}

/* The handshake is done: take danced's result, and the plaintext it read before us. */
static void conn_start(struct conn *c, const struct dance_result *res)
{
	char vbuf[8];

	c->handshaking = false;
	snprintf(c->body, sizeof(c->body),
		 "tls_version=%s\ncipher=%s\ngroup=%s\nservice=%s\nsni=%s\nalpn=%s\n"
		 "peer_subject=%s\npeer_names=%s\nauth=%s\ncert_type=%s\nverified_name=%s\n",
		 version_name(res->tls_version, vbuf, sizeof(vbuf)), or_dash(res->cipher_name),
		 or_dash(res->group), or_dash(res->service), or_dash(res->sni), or_dash(res->alpn),
		 or_dash(res->peer_subject), or_dash(res->peer_names), auth_name(res->auth),
		 cert_type_name(res), or_dash(res->verified_name));
	conn_feed(c, res->pending, res->pending_len);
	if (res->flags & DANCE_RES_PEER_CLOSED)
		c->peer_eof = true;
}

static short conn_events(const struct conn *c)
{
	return c->out_off < c->out_len ? POLLOUT : POLLIN;
}

/* Make all the progress possible without blocking. Return: true when finished. */
static bool conn_io(struct conn *c)
{
	ssize_t n;

	for (;;) {
		if (c->out_off < c->out_len) {
			n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return false;
			if (n < 0) {
				fprintf(stderr, "dance-echo: conn=%lu: send: %s\n", c->serial,
					strerror(errno));
				return true;
			}
			c->out_off += n;
			if (c->out_off < c->out_len)
				continue;
			c->out_off = c->out_len = 0;
		}
		if (c->closing || c->peer_eof)
			return true;
		if (c->http)
			n = dance_recv(c->fd, c->req + c->req_len, REQ_MAX - 1 - c->req_len,
				       MSG_DONTWAIT);
		else
			n = dance_recv(c->fd, c->out, sizeof(c->out), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return false;
		if (n < 0) {
			fprintf(stderr, "dance-echo: conn=%lu: receive: %s\n", c->serial,
				recv_error(errno));
			return true;
		}
		if (!n) {
			c->peer_eof = true;
			continue;
		}
		if (c->http) {
			c->req_len += n;
			conn_http_check(c);
		} else {
			c->out_len = n;
		}
	}
}

static void conn_free(struct conn *c)
{
	/* The peer expects close_notify before the FIN; it may already be gone. */
	dance_shutdown(c->fd);
	close(c->fd);
	free(c);
}

/* A thread's connection: the fd is blocking or not, it does not matter with poll. */
static void conn_run(struct conn *c)
{
	struct pollfd pfd = { .fd = c->fd };

	while (!conn_io(c)) {
		pfd.events = conn_events(c);
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			break;
	}
	conn_free(c);
}

/* ---- return mode, blocking: a thread per connection --------------------------------- */

/*
 * A handle is one channel and serves one call at a time, so each connection's thread
 * borrows one. Idle handles are kept, and libdance reconnects them when danced restarts.
 */
struct server {
	const struct opts *o;
	pthread_mutex_t lock;
	struct dance *idle[8];
	int nidle;
};

/* ---- proofs after the handshake: a line protocol around libdance's calls ------------ */

#define LINE_MAX_LEN (4 * DANCE_EA_DATA_MAX / 3 + 64)

static int write_all(int fd, const char *buf, size_t len);

/*
 * One line from the connection, without its newline, NUL-terminated. Bytes past it go
 * back into @res's pending plaintext, which the caller serves first.
 */
static int line_read(int fd, struct dance_result *res, char *line, size_t max)
{
	size_t have = 0, rest;
	char *nl;
	ssize_t n;

	/* Plaintext that came with the handshake comes first. */
	if (res->pending_len) {
		have = res->pending_len < max - 1 ? res->pending_len : max - 1;
		memcpy(line, res->pending, have);
		memmove(res->pending, res->pending + have, res->pending_len - have);
		res->pending_len -= have;
	}
	for (;;) {
		nl = memchr(line, '\n', have);
		if (nl) {
			rest = have - (nl + 1 - line);
			if (rest + res->pending_len > DANCE_PENDING_MAX)
				return -EMSGSIZE;
			memmove(res->pending + rest, res->pending, res->pending_len);
			memcpy(res->pending, nl + 1, rest);
			res->pending_len += rest;
			*nl = '\0';
			return 0;
		}
		if (have == max - 1)
			return -EMSGSIZE;
		n = dance_recv(fd, line + have, max - 1 - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		have += n;
	}
}

static int line_send(int fd, const char *word, const uint8_t *msg, size_t len)
{
	char *line = malloc(LINE_MAX_LEN);
	int n, ret;

	if (!line)
		return -ENOMEM;
	n = snprintf(line, LINE_MAX_LEN, "%s ", word);
	n += EVP_EncodeBlock((unsigned char *)line + n, msg, len);
	line[n++] = '\n';
	ret = write_all(fd, line, n);
	free(line);
	return ret;
}

/* The base64 after "WORD " in @line, decoded into @out: its length, or -EBADMSG. */
static int line_decode(const char *line, const char *word, uint8_t *out, size_t max)
{
	size_t wl = strlen(word), len;
	int n;

	if (strncmp(line, word, wl) || line[wl] != ' ')
		return -EBADMSG;
	line += wl + 1;
	len = strlen(line);
	if (!len || len % 4 || len / 4 * 3 > max)
		return -EBADMSG;
	n = EVP_DecodeBlock(out, (const unsigned char *)line, len);
	if (n < 0)
		return -EBADMSG;
	/* EVP_DecodeBlock() counts the padding as zero bytes. */
	return n - (line[len - 1] == '=') - (line[len - 2] == '=');
}

/*
 * --prove: ask the client for a proof of its name over the connection and have danced
 * judge it. 0 when proved (the connection is then served), else the status.
 */
static int prove_peer(struct dance *d, int fd, unsigned long serial, bool pha,
		      struct dance_result *res)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	struct dance_result *ea = malloc(sizeof(*ea));
	char *line = malloc(LINE_MAX_LEN), answer[DANCE_NAMES_MAX + DANCE_REASON_MAX + 16];
	uint8_t *req = malloc(DANCE_EA_DATA_MAX), *auth = malloc(DANCE_EA_DATA_MAX);
	size_t req_len;
	char probe;
	int ret, n;

	ret = -ENOMEM;
	if (!ea || !line || !req || !auth)
		goto out;
	/* What the kernel thinks of the connection before the proof. */
	n = recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
	printf("conn=%lu before-proof=%s\n", serial,
	       n < 0 && errno == EACCES ? "refused" : "allowed");
	fflush(stdout);
	ret = pha ? dance_pha_request(d, fd, 0, ea) : dance_ea_request(d, fd, 0, NULL, ea);
	if (ret)
		goto report;
	req_len = ea->pending_len;
	memcpy(req, ea->pending, req_len);
	if (pha) {
		/* The client answers as it reads: its answer comes before any data. */
		n = poll(&pfd, 1, 10000) == 1 ? (int)dance_recv(fd, &probe, 1, MSG_PEEK) : 0;
		if (n < 0 && errno == ENOMSG) {
			ret = dance_pha_validate(d, fd, req, req_len, ea);
		} else {
			ret = -EPROTO;
			ea->auth = DANCE_AUTH_NONE;
			ea->verified_name[0] = '\0';
			snprintf(ea->reason, sizeof(ea->reason), "%s",
				 n > 0 ? "the client sent data instead of an answer" :
					 "no answer from the client in 10 seconds");
		}
		goto report;
	}
	ret = line_send(fd, "PROVE", req, req_len);
	if (!ret)
		ret = line_read(fd, res, line, LINE_MAX_LEN);
	if (ret) {
		snprintf(ea->reason, sizeof(ea->reason), "the exchange failed: %s", strerror(-ret));
		ea->auth = DANCE_AUTH_NONE;
		ea->verified_name[0] = '\0';
		goto report;
	}
	n = line_decode(line, "AUTH", auth, DANCE_EA_DATA_MAX - req_len);
	if (n < 0) {
		ret = n;
		snprintf(ea->reason, sizeof(ea->reason), "the client did not answer with AUTH");
		goto report;
	}
	ret = dance_ea_validate(d, fd, req, req_len, auth, n, ea);
report:
	printf("conn=%lu proof status=%d auth=%s name=%s reason=\"%s\" validate_us=%u\n", serial,
	       ret, auth_name(ret ? DANCE_AUTH_NONE : ea->auth),
	       or_dash(ret ? "" : ea->verified_name), ea ? ea->reason : "out of memory",
	       ea ? ea->handshake_us : 0);
	fflush(stdout);
	if (ea) {
		if (ret)
			snprintf(answer, sizeof(answer), "NO %s\n", ea->reason);
		else
			snprintf(answer, sizeof(answer), "OK %s %s\n",
				 or_dash(ea->verified_name[0] ? ea->verified_name : ea->peer_names),
				 auth_name(ea->auth));
		write_all(fd, answer, strlen(answer));
	}
out:
	free(ea);
	free(line);
	free(req);
	free(auth);
	return ret;
}

/* --answer-proofs: the client's side, when the server's first line asks for a proof. */
static int answer_proof(struct dance *d, int fd, struct dance_result *res)
{
	struct dance_result *ea = malloc(sizeof(*ea));
	char *line = malloc(LINE_MAX_LEN);
	uint8_t *req = malloc(DANCE_EA_DATA_MAX);
	int ret, n;

	ret = -ENOMEM;
	if (!ea || !line || !req)
		goto out;
	ret = line_read(fd, res, line, LINE_MAX_LEN);
	if (ret)
		goto out;
	n = line_decode(line, "PROVE", req, DANCE_EA_DATA_MAX);
	ret = n;
	if (n < 0) {
		fprintf(stderr, "dance-echo: the server's first line is not PROVE\n");
		goto out;
	}
	ret = dance_ea_authenticate(d, fd, req, n, 0, ea);
	if (ret) {
		fprintf(stderr, "dance-echo: cannot answer the proof request: %s\n", ea->reason);
		goto out;
	}
	ret = line_send(fd, "AUTH", ea->pending, ea->pending_len);
	if (!ret)
		ret = line_read(fd, res, line, LINE_MAX_LEN);
	if (!ret) {
		fprintf(stderr, "dance-echo: the server says: %s\n", line);
		ret = strncmp(line, "OK ", 3) ? -EACCES : 0;
	}
out:
	free(ea);
	free(line);
	free(req);
	return ret;
}

static int server_get(struct server *s, struct dance **d)
{
	*d = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->nidle)
		*d = s->idle[--s->nidle];
	pthread_mutex_unlock(&s->lock);
	return *d ? 0 : dance_open(s->o->handoff, d);
}

static void server_put(struct server *s, struct dance *d)
{
	pthread_mutex_lock(&s->lock);
	if (s->nidle < (int)(sizeof(s->idle) / sizeof(s->idle[0]))) {
		s->idle[s->nidle++] = d;
		d = NULL;
	}
	pthread_mutex_unlock(&s->lock);
	dance_close(d);
}

struct job {
	struct server *s;
	int fd;
	unsigned long serial;
	int status; /* the handshake's, for --once */
};

static void params_init(struct dance_params *p, const struct opts *o)
{
	memset(p, 0, sizeof(*p));
	p->service = o->service;
	p->timeout_ms = o->timeout_ms;
}

static void *job_run(void *arg)
{
	struct job *j = arg;
	struct dance_result *res = malloc(sizeof(*res));
	struct dance_params p;
	struct dance *d;
	struct conn *c;
	int ret;

	params_init(&p, j->s->o);
	c = conn_new(j->fd, j->serial, j->s->o->http);
	ret = res && c ? 0 : -ENOMEM;
	if (!ret)
		ret = server_get(j->s, &d);
	if (ret) {
		/* libdance never saw the socket: it is still ours to close. */
		fprintf(stdout, "conn=%lu status=%d error=\"%s\" reason=\"cannot reach danced\"\n",
			j->serial, ret, dance_strerror(ret));
		fflush(stdout);
		close(j->fd);
		goto out;
	}
	ret = dance_handshake(d, j->fd, &p, res);
	print_result(stdout, j->serial, ret, res);
	if (!ret && j->s->o->prove && prove_peer(d, j->fd, j->serial, j->s->o->pha, res)) {
		server_put(j->s, d);
		close(j->fd);
		goto out;
	}
	server_put(j->s, d);
	if (ret) {
		if (res->flags & DANCE_RES_FD_KEPT)
			close(j->fd);
		goto out;
	}
	conn_start(c, res);
	conn_run(c);
	c = NULL;
out:
	j->status = ret;
	free(c);
	free(res);
	return NULL;
}

static void *job_run_detached(void *arg)
{
	job_run(arg);
	free(arg);
	return NULL;
}

static int accept_one(int lfd)
{
	int fd;

	for (;;) {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors: let connections finish rather than spin. */
			fprintf(stderr, "dance-echo: accept: %s\n", strerror(errno));
			sleep(1);
		} else if (errno != EINTR && errno != ECONNABORTED) {
			fprintf(stderr, "dance-echo: accept: %s\n", strerror(errno));
			return -1;
		}
	}
}

static int run_return_blocking(const struct opts *o, int lfd)
{
	struct server s = { .o = o, .lock = PTHREAD_MUTEX_INITIALIZER };
	unsigned long serial = 0;
	pthread_attr_t attr;
	struct job *j;
	pthread_t t;
	int fd, ret;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		fd = accept_one(lfd);
		if (fd < 0)
			return 1;
		j = calloc(1, sizeof(*j));
		if (!j) {
			close(fd);
			continue;
		}
		*j = (struct job){ .s = &s, .fd = fd, .serial = ++serial };
		if (o->once) {
			job_run(j);
			ret = j->status ? 1 : 0;
			free(j);
			while (s.nidle)
				dance_close(s.idle[--s.nidle]);
			close(lfd);
			return ret;
		}
		ret = pthread_create(&t, &attr, job_run_detached, j);
		if (ret) {
			fprintf(stderr, "dance-echo: pthread_create: %s\n", strerror(ret));
			close(fd);
			free(j);
		}
	}
}

/* ---- return mode, async: one poll loop --------------------------------------------- */

/*
 * Connections live in one array. While a handshake runs, libdance owns the socket and
 * it is not polled; the request's id is the struct conn pointer, so dance_complete()
 * says directly which connection finished.
 */
struct loop {
	const struct opts *o;
	struct dance *d;
	struct conn **conns;
	size_t n, cap;
	unsigned long serial;
	int status; /* --once: the first connection's handshake status */
	bool finished_one;
};

static int loop_add(struct loop *l, struct conn *c)
{
	struct conn **tab;
	size_t cap;

	if (l->n == l->cap) {
		cap = l->cap ? l->cap * 2 : 64;
		tab = realloc(l->conns, cap * sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		l->conns = tab;
		l->cap = cap;
	}
	l->conns[l->n++] = c;
	return 0;
}

static void loop_del(struct loop *l, struct conn *c, bool close_fd)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (l->conns[i] == c) {
			l->conns[i] = l->conns[--l->n];
			break;
		}
	}
	if (close_fd)
		conn_free(c);
	else
		free(c);
	l->finished_one = true;
}

static void loop_accept(struct loop *l, int lfd, struct dance_result *res)
{
	struct dance_params p;
	struct conn *c;
	int fd, ret;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	c = conn_new(fd, ++l->serial, l->o->http);
	if (!c || loop_add(l, c)) {
		free(c);
		close(fd);
		return;
	}
	c->handshaking = true;
	params_init(&p, l->o);
	ret = l->d ? 0 : dance_open(l->o->handoff, &l->d);
	if (!ret)
		ret = dance_submit(l->d, fd, &p, (uint64_t)(uintptr_t)c);
	if (!ret)
		return;
	memset(res, 0, DANCE_RESULT_HDR_LEN);
	snprintf(res->reason, sizeof(res->reason), "cannot hand the socket to danced");
	print_result(stdout, c->serial, ret, res);
	l->status = ret;
	/* Refused before sending (or never sent): the socket is still ours. */
	loop_del(l, c,
		 !l->d || ret == -EINVAL || ret == -ENAMETOOLONG || ret == -EEXIST ||
			 ret == -ENOBUFS || ret == -ENOMEM);
}

static void loop_complete(struct loop *l, struct dance_result *res)
{
	struct conn *c;
	int ret;

	while (!(ret = dance_complete(l->d, res))) {
		c = (struct conn *)(uintptr_t)res->id;
		print_result(stdout, c->serial, res->status, res);
		if (!l->finished_one)
			l->status = res->status;
		if (res->status) {
			loop_del(l, c, false); /* libdance closed the socket */
			continue;
		}
		conn_start(c, res);
		if (conn_io(c))
			loop_del(l, c, true);
	}
	if (ret != -EAGAIN)
		fprintf(stderr, "dance-echo: handoff channel: %s\n", dance_strerror(ret));
}

static int run_return_async(const struct opts *o, int lfd)
{
	struct dance_result *res = malloc(sizeof(*res));
	struct loop l = { .o = o };
	struct pollfd *pfds = NULL;
	struct conn **polled = NULL;
	size_t i, npfd, cap = 0;
	bool accepting = true;

	if (!res)
		return 1;
	for (;;) {
		if (o->once && l.finished_one)
			break;
		if (cap < l.n + 2) {
			cap = (l.n + 2) * 2;
			pfds = realloc(pfds, cap * sizeof(*pfds));
			polled = realloc(polled, cap * sizeof(*polled));
			if (!pfds || !polled)
				return 1;
		}
		/* The listening socket, the handoff channel, then connections being served. */
		pfds[0] = (struct pollfd){ .fd = accepting ? lfd : -1, .events = POLLIN };
		pfds[1] = (struct pollfd){ .fd = l.d ? dance_fd(l.d) : -1, .events = POLLIN };
		npfd = 2;
		for (i = 0; i < l.n; i++) {
			if (l.conns[i]->handshaking)
				continue;
			polled[npfd] = l.conns[i];
			pfds[npfd++] = (struct pollfd){ .fd = l.conns[i]->fd,
							.events = conn_events(l.conns[i]) };
		}
		if (poll(pfds, npfd, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "dance-echo: poll: %s\n", strerror(errno));
			return 1;
		}
		for (i = 2; i < npfd; i++)
			if (pfds[i].revents && conn_io(polled[i]))
				loop_del(&l, polled[i], true);
		if (pfds[1].revents)
			loop_complete(&l, res);
		if (pfds[0].revents & POLLIN) {
			loop_accept(&l, lfd, res);
			if (o->once)
				accepting = false;
		}
	}
	/* Only --once gets here: nothing is in flight any more. */
	dance_close(l.d);
	free(l.conns);
	free(pfds);
	free(polled);
	free(res);
	close(lfd);
	return l.status ? 1 : 0;
}

/* ---- front-door mode ----------------------------------------------------------------- */

static void *conn_run_detached(void *arg)
{
	conn_run(arg);
	return NULL;
}

static int run_backend(const struct opts *o)
{
	struct dance_result *res = malloc(sizeof(*res));
	unsigned long serial = 0;
	struct dance *d = NULL;
	pthread_attr_t attr;
	struct conn *c;
	pthread_t t;
	int fd, ret;

	if (!res)
		return 1;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (;;) {
		if (!d) {
			ret = dance_listen(o->backend, 0, &d);
			if (ret) {
				fprintf(stderr, "dance-echo: %s: %s\n", o->backend,
					dance_strerror(ret));
				if (o->once)
					return 1;
				sleep(1);
				continue;
			}
		}
		fd = dance_accept(d, res);
		if (fd < 0) {
			fprintf(stderr, "dance-echo: backend channel: %s: %s\n", dance_strerror(fd),
				res->reason);
			/* No reconnect in libdance for backends: it is ours to decide. */
			if (fd == -ECONNRESET) {
				dance_close(d);
				d = NULL;
				if (o->once)
					return 1;
				sleep(1);
			}
			continue;
		}
		print_result(stdout, ++serial, 0, res);
		c = conn_new(fd, serial, o->http);
		if (!c) {
			close(fd);
			continue;
		}
		conn_start(c, res);
		if (o->once) {
			conn_run(c);
			dance_close(d);
			free(res);
			return 0;
		}
		ret = pthread_create(&t, &attr, conn_run_detached, c);
		if (ret) {
			fprintf(stderr, "dance-echo: pthread_create: %s\n", strerror(ret));
			conn_free(c);
		}
	}
}

/* ---- client role ----------------------------------------------------------------------- */

static int write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= n;
	}
	return 0;
}

/* "host:port", "[v6]:port"; an empty or "*" host is NULL (any). */
static int split_hostport(const char *arg, char *host, size_t size, const char **port)
{
	const char *colon = strrchr(arg, ':');
	size_t len;

	if (!colon || !colon[1])
		return -EINVAL;
	len = colon - arg;
	if (len >= 2 && arg[0] == '[' && arg[len - 1] == ']') {
		arg++;
		len -= 2;
	}
	if (len >= size)
		return -ENAMETOOLONG;
	memcpy(host, arg, len);
	host[len] = '\0';
	*port = colon + 1;
	return 0;
}

static int tcp_socket(const char *hostport, bool passive)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *a;
	char host[256];
	const char *port;
	int fd = -1, one = 1, ret;

	if (split_hostport(hostport, host, sizeof(host), &port)) {
		fprintf(stderr, "dance-echo: %s: expected ADDR:PORT\n", hostport);
		return -1;
	}
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : AI_ADDRCONFIG);
	ret = getaddrinfo(host[0] && strcmp(host, "*") ? host : NULL, port, &hints, &ai);
	if (ret) {
		fprintf(stderr, "dance-echo: %s: %s\n", hostport, gai_strerror(ret));
		return -1;
	}
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		if (passive) {
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (!bind(fd, a->ai_addr, a->ai_addrlen) && !listen(fd, 128))
				break;
		} else if (!connect(fd, a->ai_addr, a->ai_addrlen)) {
			break;
		}
		ret = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		fprintf(stderr, "dance-echo: %s: %s\n", hostport, strerror(ret ? ret : EINVAL));
	return fd;
}

static int run_client(const struct opts *o)
{
	struct dance_params p = { .client = 1 };
	struct dance_result *res = malloc(sizeof(*res));
	struct pollfd pfd[2];
	bool in_eof = false, peer_eof;
	struct dance *d;
	char buf[16384];
	int fd = -1, ret, rc = 1;
	ssize_t n;

	if (!res)
		return 1;
	fd = tcp_socket(o->connect, false);
	if (fd < 0)
		goto out_free;
	ret = dance_open(o->handoff, &d);
	if (ret) {
		fprintf(stderr, "dance-echo: %s: %s\n", o->handoff, dance_strerror(ret));
		goto out_close;
	}
	p.peer_name = o->name;
	p.service = o->service;
	p.alpn = o->alpn;
	p.timeout_ms = o->timeout_ms;
	ret = dance_handshake(d, fd, &p, res);
	print_result(stderr, 1, ret, res);
	if (ret) {
		dance_close(d);
		/* On failure libdance closed the socket, unless it never left us. */
		if (!(res->flags & DANCE_RES_FD_KEPT))
			fd = -1;
		goto out_close;
	}
	ret = o->answer_proofs ? answer_proof(d, fd, res) : 0;
	dance_close(d);
	if (ret)
		goto out_close;
	if (write_all(STDOUT_FILENO, (char *)res->pending, res->pending_len))
		goto out_close;
	peer_eof = res->flags & DANCE_RES_PEER_CLOSED;
	while (!peer_eof) {
		pfd[0] = (struct pollfd){ .fd = in_eof ? -1 : STDIN_FILENO, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			goto out_close;
		}
		if (pfd[0].revents) {
			n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				/* Our side is done; the server may still have more to say. */
				in_eof = true;
				dance_shutdown(fd);
			} else if (write_all(fd, buf, n)) {
				fprintf(stderr, "dance-echo: send: %s\n", strerror(errno));
				goto out_close;
			}
		}
		if (pfd[1].revents) {
			n = dance_recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0) {
				fprintf(stderr, "dance-echo: receive: %s\n", recv_error(errno));
				goto out_close;
			}
			if (!n)
				peer_eof = true;
			else if (write_all(STDOUT_FILENO, buf, n))
				goto out_close;
		}
	}
	if (!in_eof)
		dance_shutdown(fd);
	rc = 0;
out_close:
	if (fd >= 0)
		close(fd);
out_free:
	free(res);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

static void print_listening(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN + 2], port[8];

	if (getsockname(lfd, (struct sockaddr *)&ss, &len) ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV))
		return;
	printf(ss.ss_family == AF_INET6 ? "listening [%s]:%s\n" : "listening %s:%s\n", host, port);
	fflush(stdout);
}

static void usage(FILE *f)
{
	fputs(usage_text, f);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "handoff", required_argument, NULL, 'H' },
		{ "backend", required_argument, NULL, 'B' },
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "service", required_argument, NULL, 's' },
		{ "alpn", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 't' },
		{ "http", no_argument, NULL, 'w' },
		{ "async", no_argument, NULL, 'A' },
		{ "once", no_argument, NULL, '1' },
		{ "prove", no_argument, NULL, 'P' },
		{ "pha", no_argument, NULL, 'Q' },
		{ "answer-proofs", no_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 0 };
	char *end;
	int opt, lfd;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'H':
			o.handoff = optarg;
			break;
		case 'B':
			o.backend = optarg;
			break;
		case 'l':
			o.listen = optarg;
			break;
		case 'c':
			o.connect = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 's':
			o.service = optarg;
			break;
		case 'a':
			o.alpn = optarg;
			break;
		case 't':
			errno = 0;
			o.timeout_ms = strtoul(optarg, &end, 10);
			if (errno || *end || !optarg[0]) {
				fprintf(stderr, "dance-echo: --timeout: not a number: %s\n",
					optarg);
				return 2;
			}
			break;
		case 'w':
			o.http = true;
			break;
		case 'A':
			o.async = true;
			break;
		case '1':
			o.once = true;
			break;
		case 'P':
			o.prove = true;
			break;
		case 'Q':
			o.prove = o.pha = true;
			break;
		case 'E':
			o.answer_proofs = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc)
		goto bad_usage;
	/* A peer that leaves mid-write must cost one connection, not the process. */
	signal(SIGPIPE, SIG_IGN);

	if (o.backend) {
		if (o.handoff || o.listen || o.connect || o.async || o.name || o.prove ||
		    o.answer_proofs)
			goto bad_usage;
		return run_backend(&o);
	}
	if (!o.handoff)
		goto bad_usage;
	if (o.connect) {
		if (o.listen || o.http || o.async || o.once || o.prove || !o.name)
			goto bad_usage;
		return run_client(&o);
	}
	if (!o.listen || o.name || o.alpn || o.answer_proofs || (o.prove && (o.async || o.http)))
		goto bad_usage;
	lfd = tcp_socket(o.listen, true);
	if (lfd < 0)
		return 1;
	print_listening(lfd);
	return o.async ? run_return_async(&o, lfd) : run_return_blocking(&o, lfd);

bad_usage:
	fprintf(stderr, "usage: dance-echo --handoff SOCKET --listen ADDR:PORT [--http] [--async] "
			"[--once]\n"
			"       dance-echo --backend SOCKET [--http] [--once]\n"
			"       dance-echo --handoff SOCKET --connect HOST:PORT --name SERVERNAME\n"
			"Try 'dance-echo --help'.\n");
	return 2;
}
