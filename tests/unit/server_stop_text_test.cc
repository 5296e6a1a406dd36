#include "gtest/gtest.h"
#include "server/scheduling/stop_text.h"

namespace rwkvx {
namespace {

TEST(StopTextTest, NoStopsPassesThrough) {
  StopTextMatcher m({});
  bool stopped;
  EXPECT_EQ(m.Add("abc", &stopped), "abc");
  EXPECT_FALSE(stopped);
}

TEST(StopTextTest, HoldsBackPossiblePrefix) {
  StopTextMatcher m({"\n\nUser:"});
  bool stopped;
  EXPECT_EQ(m.Add("hello\n", &stopped), "hello");
  EXPECT_EQ(m.Add("\nUs", &stopped), "");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.Add("x", &stopped), "\n\nUsx");
  EXPECT_EQ(m.Add("\n\nUser: more", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StopTextTest, FinishReleasesHeld) {
  StopTextMatcher m({"STOP"});
  bool stopped;
  EXPECT_EQ(m.Add("aST", &stopped), "a");
  EXPECT_EQ(m.Finish(), "ST");
}

TEST(StopTextTest, EarliestOfSeveral) {
  StopTextMatcher m({"cd", "b"});
  bool stopped;
  EXPECT_EQ(m.Add("abcd", &stopped), "a");
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace rwkvx
