/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dance_hs.h - the interface of dance_hs.ko, a net/handshake consumer for tests and for
 * operators who want to try the kernel's handshake upcall without NFS: a privileged
 * process hands the module one of its connected TCP sockets and asks, through one
 * blocking ioctl on /dev/dance_hs, for a TLS handshake on it exactly as an in-kernel
 * consumer does (tls_client_hello_*() or tls_server_hello_*()). The handshake agent
 * (danced, or tlshd) receives the socket from the kernel, and the ioctl returns what the
 * kernel's done callback said: the status and the peer identity's key serial. The socket
 * stays the caller's: after a good handshake it carries kTLS, and the caller reads and
 * writes plaintext on it as the kernel consumer would.
 */
#ifndef DANCE_HS_H
#define DANCE_HS_H

#include <linux/ioctl.h>
#include <linux/types.h>

enum dance_hs_role {
	DANCE_HS_CLIENT = 1, /* tls_client_hello_*(): the agent is the TLS client */
	DANCE_HS_SERVER = 2, /* tls_server_hello_*(): the agent is the TLS server */
};

enum dance_hs_auth {
	DANCE_HS_ANON = 1, /* client only: no client certificate (tls_client_hello_anon) */
	DANCE_HS_PSK = 2,
	DANCE_HS_X509 = 3,
};

#define DANCE_HS_PEERNAME_MAX 256
#define DANCE_HS_PEERIDS_MAX 5

struct dance_hs_request {
	/* in */
	__s32 fd; /* a connected TCP socket of the caller's */
	__u32 role; /* enum dance_hs_role */
	__u32 auth; /* enum dance_hs_auth */
	__u32 timeout_ms; /* sent to the agent; 0: none (as NFS does) */
	__s32 keyring; /* key serials: the consumer's keyring, own certificate and key */
	__s32 cert, privkey; /* (x509; 0: the agent's own), PSK identities (psk) */
	__u32 num_peerids;
	__s32 peerids[DANCE_HS_PEERIDS_MAX];
	__u32 wait_ms; /* the consumer's own deadline, then tls_handshake_cancel(); 0: none */
	char peername[DANCE_HS_PEERNAME_MAX]; /* "" for none */
	/* out */
	__s32 status; /* the done callback's: 0, or a negative errno; -ETIME: wait_ms passed */
	__s32 peerid; /* the first REMOTE_AUTH key serial the agent sent, or 0 */
};

/*
 * 0 when the kernel took the request and it ended (see status), or a negative errno the
 * submission failed with: -ESRCH no agent listens, -EBUSY a handshake is already out for
 * this socket, -ENOTSOCK, -EBADF, -EINVAL; -EINTR when a signal ended the wait (the
 * request is cancelled, or its callback has run, before the call returns).
 */
#define DANCE_HS_IOC_HANDSHAKE _IOWR('D', 0x51, struct dance_hs_request)

#endif
