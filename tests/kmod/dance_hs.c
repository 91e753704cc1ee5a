// SPDX-License-Identifier: GPL-2.0
/*
 * dance_hs.c - a net/handshake consumer, for danced's tests and for operators who want to
 * try the kernel's TLS handshake upcall without NFS or NVMe. /dev/dance_hs takes one
 * blocking ioctl (dance_hs.h): the caller names a connected TCP socket of its own, a
 * role, an authentication mode, a peer name, key serials and timeouts, and the module
 * asks the kernel for a handshake on that socket exactly as NFS does, with
 * tls_client_hello_*() or tls_server_hello_*(). The kernel hands the socket to whichever
 * agent accepts (danced, tlshd); the ioctl returns when the kernel's done callback ran,
 * with its status and peer identity. A caller that gives up (its deadline, or a signal:
 * the consumer going away) cancels the request as a kernel consumer must,
 * tls_handshake_cancel(), and the call returns only once no callback can come any more.
 */
#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/in.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <net/handshake.h>
#include <net/sock.h>

#include "dance_hs.h"

struct hs_call {
	struct completion done;
	int status;
	key_serial_t peerid;
};

/* The kernel's verdict: from the agent's DONE, a failed ACCEPT, or the netns going away. */
static void dance_hs_done(void *data, int status, key_serial_t peerid)
{
	struct hs_call *call = data;

	call->status = status;
	call->peerid = peerid;
	complete(&call->done);
}

static int dance_hs_submit(const struct dance_hs_request *req, struct tls_handshake_args *args)
{
	switch (req->role * 8 + req->auth) {
	case DANCE_HS_CLIENT * 8 + DANCE_HS_ANON:
		return tls_client_hello_anon(args, GFP_KERNEL);
	case DANCE_HS_CLIENT * 8 + DANCE_HS_X509:
		return tls_client_hello_x509(args, GFP_KERNEL);
	case DANCE_HS_CLIENT * 8 + DANCE_HS_PSK:
		return tls_client_hello_psk(args, GFP_KERNEL);
	case DANCE_HS_SERVER * 8 + DANCE_HS_X509:
		return tls_server_hello_x509(args, GFP_KERNEL);
	case DANCE_HS_SERVER * 8 + DANCE_HS_PSK:
		return tls_server_hello_psk(args, GFP_KERNEL);
	default:
		/* No anonymous server in net/handshake: a TLS server always has a key. */
		return -EINVAL;
	}
}

static long dance_hs_handshake(struct dance_hs_request __user *ureq)
{
	struct dance_hs_request req;
	struct tls_handshake_args args = {};
	struct hs_call *call;
	struct socket *sock;
	long left = 1;
	unsigned int i;
	int ret;

	if (copy_from_user(&req, ureq, sizeof(req)))
		return -EFAULT;
	req.peername[DANCE_HS_PEERNAME_MAX - 1] = '\0';
	if (req.num_peerids > DANCE_HS_PEERIDS_MAX)
		return -EINVAL;
	sock = sockfd_lookup(req.fd, &ret);
	if (!sock)
		return ret;
	if (sock->type != SOCK_STREAM || sock->sk->sk_protocol != IPPROTO_TCP) {
		ret = -EPROTONOSUPPORT;
		goto out_put;
	}
	call = kzalloc(sizeof(*call), GFP_KERNEL);
	if (!call) {
		ret = -ENOMEM;
		goto out_put;
	}
	init_completion(&call->done);
	args.ta_sock = sock;
	args.ta_done = dance_hs_done;
	args.ta_data = call;
	args.ta_peername = req.peername[0] ? req.peername : NULL;
	args.ta_timeout_ms = req.timeout_ms;
	args.ta_keyring = req.keyring;
	args.ta_my_cert = req.cert;
	args.ta_my_privkey = req.privkey;
	args.ta_num_peerids = req.num_peerids;
	for (i = 0; i < req.num_peerids; i++)
		args.ta_my_peerids[i] = req.peerids[i];

	/* A failed submission never calls back: -ESRCH means no agent listens. */
	ret = dance_hs_submit(&req, &args);
	if (ret)
		goto out_free;

	if (req.wait_ms) {
		left = wait_for_completion_interruptible_timeout(&call->done,
								 msecs_to_jiffies(req.wait_ms));
		if (left < 0)
			ret = left;
	} else
		ret = wait_for_completion_interruptible(&call->done);
	if (ret || !left) {
		/*
		 * The consumer gives up. If the cancel wins, no callback will come; if it
		 * loses, the callback has run or is running, and its verdict stands.
		 */
		if (tls_handshake_cancel(sock->sk)) {
			ret = ret ? -EINTR : 0;
			call->status = -ETIME;
			call->peerid = 0;
			if (ret)
				goto out_free;
		} else {
			wait_for_completion(&call->done);
			ret = 0;
		}
	}
	req.status = call->status;
	req.peerid = call->peerid;
	if (copy_to_user(&ureq->status, &req.status, sizeof(req.status)) ||
	    copy_to_user(&ureq->peerid, &req.peerid, sizeof(req.peerid)))
		ret = -EFAULT;
out_free:
	kfree(call);
out_put:
	sockfd_put(sock);
	return ret;
}

static long dance_hs_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	if (cmd != DANCE_HS_IOC_HANDSHAKE)
		return -ENOTTY;
	if (!capable(CAP_NET_ADMIN))
		return -EPERM;
	return dance_hs_handshake((struct dance_hs_request __user *)arg);
}

static const struct file_operations dance_hs_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = dance_hs_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice dance_hs_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "dance_hs",
	.fops = &dance_hs_fops,
	.mode = 0600,
};

module_misc_device(dance_hs_dev);

MODULE_DESCRIPTION("danced: a net/handshake consumer for tests (TLS handshakes on demand)");
MODULE_AUTHOR("danced");
MODULE_LICENSE("GPL");
