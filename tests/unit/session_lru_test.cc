// The stored-session eviction policy: least recently used first, busy sessions stay,
// and a tier that cannot fit says so.
#include "server/sessions/session_lru.h"

#include <gtest/gtest.h>

namespace rwkvx {
namespace {

absl::Time T(int s) { return absl::FromUnixSeconds(1000 + s); }

TEST(SessionLruTest, NothingMovesUnderBudget) {
  auto p = PlanEvictions({{"a", 10, T(1), false}, {"b", 10, T(2), false}}, 20);
  EXPECT_TRUE(p.victims.empty());
  EXPECT_TRUE(p.fits);
}

TEST(SessionLruTest, OldestFirstUntilItFits) {
  auto p = PlanEvictions({{"new", 10, T(3), false}, {"old", 10, T(1), false}, {"mid", 10, T(2), false}}, 15);
  ASSERT_EQ(p.victims.size(), 2u);
  EXPECT_EQ(p.victims[0], "old");
  EXPECT_EQ(p.victims[1], "mid");
  EXPECT_TRUE(p.fits);
}

TEST(SessionLruTest, BusySessionsNeverMove) {
  auto p = PlanEvictions({{"busy", 10, T(1), true}, {"idle", 10, T(2), false}}, 10);
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], "idle");
  EXPECT_TRUE(p.fits);
  p = PlanEvictions({{"busy", 30, T(1), true}, {"idle", 10, T(2), false}}, 10);
  EXPECT_FALSE(p.fits);
}

TEST(SessionLruTest, RoomForANewSession) {
  auto p = PlanEvictions({{"a", 10, T(1), false}, {"b", 10, T(2), false}}, 25, 10);
  ASSERT_EQ(p.victims.size(), 1u);
  EXPECT_EQ(p.victims[0], "a");
  p = PlanEvictions({}, 5, 10);
  EXPECT_FALSE(p.fits);
}

}  // namespace
}  // namespace rwkvx
