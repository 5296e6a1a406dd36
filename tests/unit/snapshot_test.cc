// Session snapshots: round trip, and refusal of damaged / foreign / other-version bytes.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>

#include "engine/backend.h"
#include "engine/snapshot.h"

namespace rwkvx {
namespace {

std::shared_ptr<Model> Small(uint64_t seed) {
  ModelShape s;
  s.vocab = 260; s.n_embd = 128; s.head_size = 64; s.n_rwkv_layer = 2; s.n_attn_layer = 2;
  s.ffn_dim = 256; s.rank_w = 8; s.rank_a = 8; s.rank_v = 4; s.rank_g = 8;
  auto m = MakeRandomModel(s, seed, "snap");
  m->attn.chunk_size = 4;
  m->attn.topk = 2;
  m->attn.max_kv_cache_size = 0;
  return m;
}

std::string Snap(const Model& m, Backend& be, SessionId id) { return SerializeSnapshot(m, *be.ExportSession(id)); }

// A session that has read tokens 1..6.
SessionId SixTokens(Backend& be) {
  auto a = *be.CreateSession();
  std::vector<float> l;
  EXPECT_TRUE(be.Step({{a, {1, 2, 3, 4, 5, 6}, true}}, &l).ok());
  return a;
}

void FixCrc(std::string& b) {
  const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(b.data()), b.size() - 4);
  std::memcpy(&b[b.size() - 4], &crc, 4);
}

TEST(Snapshot, RestoredSessionContinuesWithIdenticalLogits) {
  auto m = Small(1);
  auto be = MakeCpuBackend(m);
  auto a = *be->CreateSession();
  std::vector<float> la, lb;
  ASSERT_TRUE(be->Step({{a, {5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, true}}, &la).ok());
  const std::string bytes = Snap(*m, *be, a);
  auto st = ParseSnapshot(*m, bytes);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->tokens_seen, 10);
  auto b = *be->ImportSession(*st);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(be->Step({{a, {i + 20}, true}}, &la).ok());
    ASSERT_TRUE(be->Step({{b, {i + 20}, true}}, &lb).ok());
    ASSERT_EQ(la, lb);
  }
}

TEST(Snapshot, RefusesDamagedForeignAndOtherVersions) {
  auto m = Small(1);
  auto be = MakeCpuBackend(m);
  const SessionId a = SixTokens(*be);
  const std::string good = Snap(*m, *be, a);

  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x20;
  EXPECT_NE(ParseSnapshot(*m, flipped).status().message().find("checksum"), std::string::npos);

  for (size_t n : {size_t(0), size_t(7), size_t(19), good.size() / 2, good.size() - 1})
    EXPECT_FALSE(ParseSnapshot(*m, good.substr(0, n)).ok()) << n;

  auto other = Small(2);
  auto r = ParseSnapshot(*other, good);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("another model"), std::string::npos);

  std::string v2 = good;
  const uint32_t ver = 2;
  std::memcpy(&v2[8], &ver, 4);
  FixCrc(v2);
  EXPECT_NE(ParseSnapshot(*m, v2).status().message().find("version 2"), std::string::npos);

  auto m2 = Small(1);
  m2->attn.topk = 3;
  EXPECT_EQ(ParseSnapshot(*m2, good).status().code(), absl::StatusCode::kFailedPrecondition);

  // A valid checksum over a lying header is still refused, without reading past the end.
  std::string lie = good;
  const uint32_t hlen = 1u << 30;
  std::memcpy(&lie[12], &hlen, 4);
  FixCrc(lie);
  EXPECT_FALSE(ParseSnapshot(*m, lie).ok());
}

TEST(Snapshot, OwnerFieldsAreStampedAndOldSnapshotsStillLoad) {
  auto m = Small(1);
  auto be = MakeCpuBackend(m);
  const SessionId a = SixTokens(*be);
  const std::vector<int32_t> pending = {7, 8};
  const std::string old = SerializeSnapshot(*m, *be->ExportSession(a), &pending);  // no owner fields
  auto o = SnapshotOwnerOf(old);
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->owner, "");
  EXPECT_EQ(o->generation, 0u);

  const SnapshotOwner me{"0123456789abcdef", 7};
  auto stamped = StampSnapshot(old, me);
  ASSERT_TRUE(stamped.ok()) << stamped.status();
  const std::string direct = SerializeSnapshot(*m, *be->ExportSession(a), &pending, &me);
  EXPECT_EQ(*stamped, direct);  // stamping equals serializing with the owner
  uint32_t hlen;
  std::memcpy(&hlen, stamped->data() + 12, 4);
  o = SnapshotOwnerOf(stamped->substr(0, 16 + hlen));  // the header alone is enough
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->owner, me.owner);
  EXPECT_EQ(o->generation, 7u);
  // Same state and pending tokens either way.
  std::vector<int32_t> p1, p2;
  auto s1 = ParseSnapshot(*m, old, &p1), s2 = ParseSnapshot(*m, *stamped, &p2);
  ASSERT_TRUE(s1.ok() && s2.ok()) << s2.status();
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(SerializeSnapshot(*m, *s1, &p1), SerializeSnapshot(*m, *s2, &p2));
  EXPECT_FALSE(StampSnapshot("not a snapshot", me).ok());
  EXPECT_FALSE(SnapshotOwnerOf("not a snapshot").has_value());
}

}  // namespace
}  // namespace rwkvx
