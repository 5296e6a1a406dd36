// The HTTP route table's matching (server/http/http_routes.h): patterns, parameters,
// methods and the Allow header of a 405.
#include "gtest/gtest.h"
#include "server/http/http_routes.h"

namespace rwkvx {
namespace {

using boost::beast::http::verb;

TEST(HttpRoutesTest, PatternsAndParameters) {
  PathParams p;
  EXPECT_TRUE(MatchPattern("/v1/models", "/v1/models", &p));
  EXPECT_TRUE(p.empty());
  EXPECT_FALSE(MatchPattern("/v1/models", "/v1/models/", &p));
  EXPECT_FALSE(MatchPattern("/v1/models", "/v1/model", &p));
  EXPECT_TRUE(MatchPattern("/v1/sessions/{}/fork", "/v1/sessions/abc/fork", &p));
  EXPECT_EQ(p, PathParams{"abc"});
  p.clear();
  EXPECT_FALSE(MatchPattern("/v1/sessions/{}", "/v1/sessions/", &p));
  EXPECT_FALSE(MatchPattern("/v1/sessions/{}", "/v1/sessions/a/b", &p));
  EXPECT_FALSE(MatchPattern("/v1/sessions/{}/fork", "/v1/sessions/a/forks", &p));
  EXPECT_TRUE(p.empty());  // a failed match leaves nothing behind
  EXPECT_TRUE(MatchPattern("/v1/models/{*}", "/v1/models/org/name", &p));
  EXPECT_EQ(p, PathParams{"org/name"});
  EXPECT_FALSE(MatchPattern("/v1/models/{*}", "/v1/models/", &p));
  EXPECT_FALSE(MatchPattern("/v1/models/{*}", "/v1/models", &p));
}

TEST(HttpRoutesTest, MethodsAndAllow) {
  const std::vector<HttpRoute> table = {
      {"/a", "/a", {{verb::get, nullptr}}},
      {"/a/{}", "/a", {{verb::get, nullptr}, {verb::delete_, nullptr}}},
  };
  PathParams p;
  const HttpRoute* r = FindRoute(table, "/a/x", &p);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->pattern, "/a/{}");
  EXPECT_EQ(p, PathParams{"x"});
  EXPECT_EQ(AllowedMethods(*r), "GET, DELETE");
  EXPECT_EQ(FindRoute(table, "/b", &p), nullptr);
  EXPECT_EQ(FindHandler(*r, verb::post), nullptr);
}

}  // namespace
}  // namespace rwkvx
