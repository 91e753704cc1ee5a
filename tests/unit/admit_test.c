// SPDX-License-Identifier: GPL-2.0
/*
 * admit_test.c - host unit tests for agent/admit.c: the pool, a service's share, and a
 * source address's handshakes in flight and rate, against a clock the test moves.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <netinet/in.h>

#include "../harness.h"
#include "../../agent/agent.h"

/* What main.c provides to the agent: the shared state, and the clock. */
struct agent agent;
static uint64_t fake_now = 1000000000ULL;

uint64_t now_ns(void)
{
	return fake_now;
}

struct admit_env {
	struct config cfg;
	struct state st;
	struct svc_config a, b;
};

static void env_init(struct admit_env *e, unsigned int max, unsigned int source_max,
		     unsigned int rate)
{
	memset(e, 0, sizeof(*e));
	e->cfg.max_handshakes = max;
	e->cfg.source_max_handshakes = source_max;
	e->cfg.source_rate = rate;
	e->st.cfg = &e->cfg;
	strcpy(e->a.name, "a");
	strcpy(e->b.name, "b");
	e->a.max_handshakes = e->b.max_handshakes = max;
	atomic_store(&agent.inflight, 0);
	fake_now += 100000000000ULL; /* far from any earlier test's buckets */
}

static struct sockaddr_storage v4(const char *ip, int port)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s = (struct sockaddr_in *)&ss;

	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	inet_pton(AF_INET, ip, &s->sin_addr);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

	s->sin6_family = AF_INET6;
	s->sin6_port = htons(4433);
	inet_pton(AF_INET6, ip, &s->sin6_addr);
	return ss;
}

FIXTURE(admit)
{
	struct admit_env e;
	struct admit_ticket t[64];
	struct fail f;
};

FIXTURE_SETUP(admit)
{
	ASSERT_EQ(0, admit_init(&(struct config){ .max_handshakes = 64 }));
	memset(self->t, 0, sizeof(self->t));
}

FIXTURE_TEARDOWN(admit)
{
	admit_fini();
}

static int try(FIXTURE_DATA(admit) * self, int i, const struct svc_config *svc,
	       struct sockaddr_storage ss)
{
	memset(&self->f, 0, sizeof(self->f));
	return admit(&self->t[i], &self->e.st, svc, &ss, &self->f);
}

TEST_F(admit, one_source_holds_its_share_and_no_more)
{
	int i;

	env_init(&self->e, 64, 3, 0);
	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, try(self, i, &self->e.a, v4("192.0.2.1", 1000 + i)));
	/* The fourth from the same address, on any port or service, is refused ... */
	EXPECT_EQ(-EBUSY, try(self, 3, &self->e.b, v4("192.0.2.1", 2000)));
	EXPECT_NE(NULL, strstr(self->f.why, "source_max_handshakes")) TH_LOG("%s", self->f.why);
	EXPECT_NE(NULL, strstr(self->f.why, "192.0.2.1")) TH_LOG("%s", self->f.why);
	EXPECT_FALSE(self->t[3].global);
	/* ... while another address is served, and a refusal took nothing from the pool. */
	ASSERT_EQ(0, try(self, 4, &self->e.a, v4("192.0.2.2", 1000)));
	EXPECT_EQ(4U, atomic_load(&agent.inflight));
	/* One finishes: the address may start one more. */
	admit_release(&self->t[0]);
	admit_release(&self->t[0]); /* twice is harmless */
	EXPECT_EQ(0, try(self, 5, &self->e.a, v4("192.0.2.1", 3000)));
	for (i = 0; i < 6; i++)
		admit_release(&self->t[i]);
	EXPECT_EQ(0U, atomic_load(&agent.inflight));
}

TEST_F(admit, an_ipv6_host_is_its_slash_64)
{
	env_init(&self->e, 64, 2, 0);
	ASSERT_EQ(0, try(self, 0, &self->e.a, v6("2001:db8:1:2::1")));
	ASSERT_EQ(0, try(self, 1, &self->e.a, v6("2001:db8:1:2:ffff::7")));
	/* A third address in the same /64 is the same source ... */
	EXPECT_EQ(-EBUSY, try(self, 2, &self->e.a, v6("2001:db8:1:2:abcd::1")));
	/* ... the next /64 is another, and a v4-mapped address counts as its IPv4 one. */
	EXPECT_EQ(0, try(self, 3, &self->e.a, v6("2001:db8:1:3::1")));
	EXPECT_EQ(0, try(self, 4, &self->e.a, v6("::ffff:192.0.2.9")));
	EXPECT_EQ(0, try(self, 5, &self->e.a, v4("192.0.2.9", 1)));
	EXPECT_EQ(-EBUSY, try(self, 6, &self->e.a, v4("192.0.2.9", 2)));
}

TEST_F(admit, a_service_keeps_to_its_share_and_the_pool_to_its_size)
{
	int i;

	env_init(&self->e, 6, 100, 0);
	self->e.a.max_handshakes = 4;
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, try(self, i, &self->e.a, v4("198.51.100.1", i)));
	EXPECT_EQ(-EBUSY, try(self, 4, &self->e.a, v4("198.51.100.2", 1)));
	EXPECT_NE(NULL, strstr(self->f.why, "service a")) TH_LOG("%s", self->f.why);
	/* The flooded service left room for the other ... */
	EXPECT_EQ(0, try(self, 5, &self->e.b, v4("198.51.100.3", 1)));
	EXPECT_EQ(0, try(self, 6, &self->e.b, v4("198.51.100.3", 2)));
	/* ... until the pool itself is full. */
	EXPECT_EQ(-EBUSY, try(self, 7, &self->e.b, v4("198.51.100.4", 1)));
	EXPECT_NE(NULL, strstr(self->f.why, "(max_handshakes)")) TH_LOG("%s", self->f.why);
}

TEST_F(admit, source_rate_allows_a_burst_then_its_rate)
{
	int i, n = 0;

	env_init(&self->e, 64, 64, 5);
	/* A burst of 5 at once ... */
	for (i = 0; i < 5; i++) {
		ASSERT_EQ(0, try(self, i, &self->e.a, v4("203.0.113.5", i)));
		admit_release(&self->t[i]);
	}
	/* ... then none until time passes, whatever finished meanwhile ... */
	EXPECT_EQ(-EBUSY, try(self, 5, &self->e.a, v4("203.0.113.5", 9)));
	EXPECT_NE(NULL, strstr(self->f.why, "source_rate")) TH_LOG("%s", self->f.why);
	/* ... while another address has its own bucket ... */
	EXPECT_EQ(0, try(self, 6, &self->e.a, v4("203.0.113.6", 1)));
	/* ... and then 5 a second: over two seconds, 10 more. */
	for (i = 0; i < 20; i++) {
		fake_now += 100000000ULL; /* 0.1 s */
		if (!try(self, 7, &self->e.a, v4("203.0.113.5", i))) {
			n++;
			admit_release(&self->t[7]);
		}
	}
	EXPECT_EQ(10, n);
	/* Idle for long enough, the bucket is full again: a whole burst. */
	fake_now += 10000000000ULL;
	for (i = 0; i < 5; i++) {
		EXPECT_EQ(0, try(self, 8, &self->e.a, v4("203.0.113.5", i)));
		admit_release(&self->t[8]);
	}
}

DANCED_HARNESS_MAIN
