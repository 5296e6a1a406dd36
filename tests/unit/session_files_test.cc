// SessionFiles (the disk tier of stored sessions): atomic writes, listing, names, stale
// temp files, and clear errors for an unusable or full directory.
#include "server/sessions/session_files.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace rwkvx {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/rwkvx-session-files-XXXXXX";
  char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "";
}

TEST(SessionFilesTest, NamesRoundTripThroughFileNames) {
  for (const std::string& n : std::vector<std::string>{"a", "conv-1", "x.y_z:9", std::string("\x01\xff", 2)}) {
    std::string f = SessionFiles::FileName(n);
    EXPECT_EQ(f.find('/'), std::string::npos);
    auto back = SessionFiles::NameOf(f);
    ASSERT_TRUE(back.has_value()) << f;
    EXPECT_EQ(*back, n);
  }
  EXPECT_FALSE(SessionFiles::NameOf("zz.rwkvxss").has_value());
  EXPECT_FALSE(SessionFiles::NameOf("616.rwkvxss").has_value());
  EXPECT_FALSE(SessionFiles::NameOf("6162.txt").has_value());
  EXPECT_FALSE(SessionFiles::NameOf(".rwkvxss").has_value());
}

TEST(SessionFilesTest, WriteReadListRemove) {
  std::string dir = TempDir();
  auto f = SessionFiles::Open({dir});
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Write("one", "first version").ok());
  ASSERT_TRUE((*f)->Write("one", "second").ok());  // replaces atomically
  ASSERT_TRUE((*f)->Write("two", std::string(100000, 'x')).ok());
  auto r = (*f)->Read("one");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "second");
  auto head = (*f)->ReadHead("two", 10);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, std::string(10, 'x'));
  auto list = (*f)->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  size_t total = 0;
  for (const auto& e : *list) total += e.bytes;
  EXPECT_EQ(total, 6u + 100000u);
  EXPECT_EQ((*f)->Read("three").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE((*f)->Remove("one").ok());
  ASSERT_TRUE((*f)->Remove("one").ok());  // absent is fine
  EXPECT_EQ((*f)->List()->size(), 1u);
  std::system(("rm -rf " + dir).c_str());
}

TEST(SessionFilesTest, OpenRemovesUnfinishedWritesAndKeepsTheOldFile) {
  std::string dir = TempDir();
  {
    auto f = SessionFiles::Open({dir});
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Write("s", "the previous snapshot").ok());
  }
  // What a kill -9 mid-write leaves: a temp file next to the intact previous one.
  std::ofstream(dir + "/.tmp-123-" + SessionFiles::FileName("s")) << "half of a new";
  auto f = SessionFiles::Open({dir});
  ASSERT_TRUE(f.ok());
  auto list = (*f)->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(*(*f)->Read("s"), "the previous snapshot");
  EXPECT_NE(access((dir + "/.tmp-123-" + SessionFiles::FileName("s")).c_str(), F_OK), 0);
  std::system(("rm -rf " + dir).c_str());
}

TEST(SessionFilesTest, NeighboursTempFilesAndFencedWrites) {
  std::string dir = TempDir();
  // Another replica is writing "held": Open must leave its temp file alone.
  const std::string held = dir + "/.tmp-0123456789abcdef-" + SessionFiles::FileName("held");
  const std::string stale = dir + "/.tmp-fedcba9876543210-" + SessionFiles::FileName("stale");
  std::ofstream(held) << "half";
  std::ofstream(stale) << "half";
  SessionFilesOptions o{dir};
  o.writer_id = "aaaa";
  o.temp_is_stale = [](const std::string& name) { return name != "held"; };
  auto f = SessionFiles::Open(o);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(access(held.c_str(), F_OK), 0);
  EXPECT_NE(access(stale.c_str(), F_OK), 0);
  std::ofstream(dir + "/.lease-" + SessionFiles::HexOf("x")) << "{}";  // never listed
  ASSERT_TRUE((*f)->Write("s", "mine").ok());
  // A fenced write (the lease was lost) leaves the old file and no temp file behind.
  auto refused = (*f)->Write("s", "stale writer", [] { return absl::AbortedError("lost the lease"); });
  EXPECT_EQ(refused.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(*(*f)->Read("s"), "mine");
  EXPECT_NE(access((dir + "/.tmp-aaaa-" + SessionFiles::FileName("s")).c_str(), F_OK), 0);
  auto list = (*f)->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  auto st = (*f)->Stat("s");
  ASSERT_TRUE(st.ok() && st->has_value());
  EXPECT_EQ((*st)->bytes, 4u);
  EXPECT_FALSE((*(*f)->Stat("nope")).has_value());
  std::system(("rm -rf " + dir).c_str());
}

TEST(SessionFilesTest, UnusableDirectoryIsAClearError) {
  std::string dir = TempDir();
  std::ofstream(dir + "/file") << "x";
  auto f = SessionFiles::Open({dir + "/file/sub"});  // the parent is a regular file
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("--session-dir"), std::string::npos);
  f = SessionFiles::Open({dir + "/file"});  // a file, not a directory
  ASSERT_FALSE(f.ok());
  std::system(("rm -rf " + dir).c_str());
}

TEST(SessionFilesTest, AFullDiskFailsTheWriteAndKeepsThePreviousFile) {
  std::string dir = TempDir();
  auto f = SessionFiles::Open({dir});
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Write("s", "small").ok());
  // RLIMIT_FSIZE makes writes past 4 KiB fail with EFBIG (SIGXFSZ ignored), like a full disk.
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  absl::Status st = (*f)->Write("s", std::string(100000, 'y'));
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("full"), std::string::npos);
  EXPECT_EQ(st.message().find(dir), std::string::npos);  // no path in client-visible text
  EXPECT_EQ(*(*f)->Read("s"), "small");
  EXPECT_EQ((*f)->List()->size(), 1u);  // and no temp file left behind
  std::system(("rm -rf " + dir).c_str());
}

TEST(SessionFilesTest, SnapshotTokenCountReadsTheHeader) {
  std::string hdr = R"({"tokens_seen": 12, "pending_tokens": [1, 2, 3], "kv_rows": []})";
  std::string b = "RWKVXSS";
  b.push_back('\0');
  uint32_t v = 1, n = static_cast<uint32_t>(hdr.size());
  b.append(reinterpret_cast<char*>(&v), 4);
  b.append(reinterpret_cast<char*>(&n), 4);
  b += hdr;
  auto c = SnapshotTokenCount(b);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->first, 12);
  EXPECT_EQ(c->second, 3);
  EXPECT_FALSE(SnapshotTokenCount(b.substr(0, 20)).has_value());
  EXPECT_FALSE(SnapshotTokenCount("short").has_value());
}

}  // namespace
}  // namespace rwkvx
