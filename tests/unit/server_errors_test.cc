#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/errors.h"
#include "server/api_keys.h"

namespace rwkvx {
namespace {

TEST(ErrorMappingTest, TableRows) {
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kInvalidArgument).http_status, 400);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kInvalidArgument).grpc_code, 3);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kNotFound).http_status, 404);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kResourceExhausted).http_status, 429);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kResourceExhausted).grpc_code, 8);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kUnavailable).http_status, 503);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kUnauthenticated).http_status, 401);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kDeadlineExceeded).http_status, 504);
  EXPECT_EQ(MapStatusCode(absl::StatusCode::kInternal).http_status, 500);
  for (int c = 1; c <= 16; ++c) {
    EXPECT_EQ(MapStatusCode(static_cast<absl::StatusCode>(c)).grpc_code, c);
  }
}

TEST(ErrorMappingTest, InternalTextNeverLeaks) {
  absl::Status s = absl::InternalError("open /secret/path failed at 0x7ffd1234");
  EXPECT_EQ(ClientMessage(s), "internal server error");
  auto j = nlohmann::json::parse(OpenAiErrorJson(s));
  EXPECT_EQ(j["error"]["message"], "internal server error");
  EXPECT_EQ(j["error"]["type"], "server_error");
}

TEST(ErrorMappingTest, OpenAiShape) {
  auto j = nlohmann::json::parse(OpenAiErrorJson(absl::InvalidArgumentError("bad 'n'")));
  EXPECT_EQ(j["error"]["message"], "bad 'n'");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(j["error"]["param"].is_null());
}

TEST(BearerTest, ConstantTimeCompareSemantics) {
  std::vector<std::string> keys = {"alpha", "beta-key"};
  EXPECT_TRUE(CheckBearer("Bearer alpha", keys));
  EXPECT_TRUE(CheckBearer("Bearer beta-key", keys));
  EXPECT_FALSE(CheckBearer("Bearer alph", keys));
  EXPECT_FALSE(CheckBearer("Bearer alphaa", keys));
  EXPECT_FALSE(CheckBearer("bearer alpha", keys));
  EXPECT_FALSE(CheckBearer("", keys));
  EXPECT_FALSE(CheckBearer("Bearer ", keys));
}

TEST(BearerTest, OneCheckForBothFrontends) {
  EXPECT_TRUE(CheckApiKey(nullptr, "", KeyCarrier::kHttpHeader).ok());
  ApiKeys none;
  EXPECT_TRUE(CheckApiKey(&none, "", KeyCarrier::kGrpcMetadata).ok());
  ApiKeys keys({"k1"});
  EXPECT_TRUE(CheckApiKey(&keys, "Bearer k1", KeyCarrier::kHttpHeader).ok());
  absl::Status http = CheckApiKey(&keys, "Bearer k2", KeyCarrier::kHttpHeader);
  absl::Status grpc = CheckApiKey(&keys, "", KeyCarrier::kGrpcMetadata);
  EXPECT_EQ(http.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(grpc.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(http.message().find("Authorization: Bearer"), std::string::npos);
  EXPECT_NE(grpc.message().find("metadata authorization"), std::string::npos);
}

}  // namespace
}  // namespace rwkvx
