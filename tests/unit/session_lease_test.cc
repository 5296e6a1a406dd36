// Session leases (server/sessions/session_lease.h): acquire, renew, expire, takeover after
// expiry or of a dead process, fencing by generation. An injected clock: no sleeps.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "server/sessions/session_lease.h"

namespace rwkvx {
namespace {

struct Clock {
  absl::Time now = absl::FromUnixSeconds(1000000);
};

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/rwkvx-lease-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  std::unique_ptr<SessionLeases> Replica(const std::string& id, const std::string& host = "h",
                                         bool dead = false) {
    SessionLeaseOptions o;
    o.dir = dir_;
    o.replica_id = id;
    o.host = host;
    o.ttl = absl::Seconds(30);
    o.clock = [this] { return clock_.now; };
    o.holder_dead = [dead](const LeaseHolder&) { return dead; };
    return std::make_unique<SessionLeases>(o);
  }
  std::string dir_;
  Clock clock_;
};

TEST_F(LeaseTest, OneOwnerAtATimeUntilReleased) {
  auto a = Replica("aaaa"), b = Replica("bbbb");
  auto g = a->Acquire("s", 0);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(*g, 1u);
  EXPECT_EQ(*a->Acquire("s", 0), 1u);  // already its own
  EXPECT_FALSE(a->HandoffRequested("s"));
  auto other = b->Acquire("s", 0);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnavailable);  // retry: it is asked to let go
  EXPECT_NE(other.status().message().find("held by another replica"), std::string::npos);
  EXPECT_TRUE(a->HandoffRequested("s"));  // b's refusal asked the holder to hand it over
  ASSERT_TRUE(b->HeldElsewhere("s").has_value());
  EXPECT_EQ(b->HeldElsewhere("s")->owner, "aaaa");
  EXPECT_FALSE(a->HeldElsewhere("s").has_value());
  EXPECT_TRUE(a->Check("s", 1).ok());
  EXPECT_FALSE(b->Check("s", 1).ok());
  a->Release("s", 1);
  EXPECT_FALSE(a->HandoffRequested("s"));  // met: the request is gone with the lease
  EXPECT_FALSE(b->HeldElsewhere("s").has_value());
  auto g2 = b->Acquire("s", 1);  // the file was written at generation 1
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(*g2, 2u);
  EXPECT_EQ(a->Check("s", 1).code(), absl::StatusCode::kAborted);
}

TEST_F(LeaseTest, RenewedLeaseHoldsExpiredLeaseIsTakenOver) {
  auto a = Replica("aaaa"), b = Replica("bbbb");
  ASSERT_EQ(*a->Acquire("s", 0), 1u);
  clock_.now += absl::Seconds(20);
  ASSERT_EQ(*a->Renew("s", 1), 1u);  // expires at 50 s now
  clock_.now += absl::Seconds(20);
  EXPECT_EQ(b->Acquire("s", 0).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(b->HandoffRequested("s"));  // a crashed owner never meets it
  clock_.now += absl::Seconds(11);  // past the renewed expiry: a crashed owner
  EXPECT_FALSE(b->HeldElsewhere("s").has_value());
  auto g = b->Acquire("s", 0);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(*g, 2u);  // above the expired lease's generation
  EXPECT_FALSE(b->HandoffRequested("s"));  // the request for the dead owner went with it
  // The old owner has lost it: renewing and writing (Check) fail, and it cannot take it back.
  EXPECT_EQ(a->Renew("s", 1).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(a->Check("s", 1).code(), absl::StatusCode::kAborted);
  EXPECT_EQ(a->Acquire("s", 0).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(b->HandoffRequested("s"));  // a asked b
  a->Release("s", 1);  // not its own any more: nothing happens
  EXPECT_TRUE(b->HandoffRequested("s"));
  EXPECT_TRUE(b->Check("s", 2).ok());
}

TEST_F(LeaseTest, OneHandoffRequestWhoeverAsks) {
  auto a = Replica("aaaa"), b = Replica("bbbb"), c = Replica("cccc");
  ASSERT_EQ(*a->Acquire("s", 0), 1u);
  b->RequestHandoff("s");
  const std::string path = dir_ + "/.handoff-73";
  std::ifstream first(path);
  std::string body((std::istreambuf_iterator<char>(first)), std::istreambuf_iterator<char>());
  EXPECT_NE(body.find("\"from\":\"bbbb\""), std::string::npos) << body;
  c->RequestHandoff("s");  // one request stands: the first asker's
  std::ifstream again(path);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()), body);
  EXPECT_FALSE(a->HandoffRequested("t"));
  EXPECT_TRUE(a->Renew("s", 1).ok());  // a renewal does not meet it
  EXPECT_TRUE(a->HandoffRequested("s"));
  a->Release("s", 1);
  EXPECT_FALSE(c->HandoffRequested("s"));
}

TEST_F(LeaseTest, AnExpiredLeaseNobodyTookIsRenewedWithANewGeneration) {
  auto a = Replica("aaaa");
  ASSERT_EQ(*a->Acquire("s", 4), 5u);
  clock_.now += absl::Seconds(31);
  EXPECT_EQ(a->Check("s", 5).code(), absl::StatusCode::kAborted);  // expired: no writes
  auto g = a->Renew("s", 5);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(*g, 6u);
  EXPECT_TRUE(a->Check("s", 6).ok());
  EXPECT_FALSE(a->Check("s", 5).ok());  // a writer of the old generation is fenced
}

TEST_F(LeaseTest, ADeadHolderIsTakenOverBeforeExpiry) {
  auto a = Replica("aaaa");
  ASSERT_EQ(*a->Acquire("s", 0), 1u);
  auto b = Replica("bbbb", "h", /*dead=*/true);  // b sees a's process gone
  EXPECT_FALSE(b->HeldElsewhere("s").has_value());
  EXPECT_EQ(*b->Acquire("s", 0), 2u);
}

TEST_F(LeaseTest, DefaultDeadCheckOnlyTrustsThisHost) {
  SessionLeaseOptions o;
  o.dir = dir_;
  o.replica_id = "bbbb";
  o.host = "here";
  SessionLeases same_host(o);
  auto lease = [&](const char* hex, long long pid) {
    std::ofstream(dir_ + "/.lease-" + hex) << "{\"owner\":\"cccc\",\"host\":\"here\",\"pid\":" << pid
                                           << ",\"generation\":3,\"expires_ms\":99999999999999}\n";
  };
  lease("73", getppid());  // "s": a live process of this host (the parent): held
  EXPECT_TRUE(same_host.HeldElsewhere("s").has_value());
  lease("74", 2147483000);  // "t": no such process on this host: dead
  EXPECT_FALSE(same_host.HeldElsewhere("t").has_value());
  EXPECT_EQ(*same_host.Acquire("t", 0), 4u);
  lease("76", getpid());  // "v": this pid, another replica id: an earlier incarnation
  EXPECT_FALSE(same_host.HeldElsewhere("v").has_value());
  o.host = "elsewhere";
  SessionLeases other_host(o);  // a process of another host is never seen dead
  lease("75", 2147483000);
  EXPECT_TRUE(other_host.HeldElsewhere("u").has_value());
}

TEST_F(LeaseTest, AnUnreadableLeaseExpiresALeaseTimeAfterItsMtime) {
  auto b = Replica("bbbb");
  std::ofstream(dir_ + "/.lease-73") << "garbage";  // "s"
  clock_.now = absl::Now();
  EXPECT_TRUE(b->HeldElsewhere("s").has_value());
  clock_.now += absl::Seconds(31);
  EXPECT_EQ(*b->Acquire("s", 0), 1u);
}

}  // namespace
}  // namespace rwkvx
