// SessionWriter: the background thread that saves idle stored sessions to --session-dir,
// so that a multi-hundred-MB snapshot write (serialization, write, fsync) never stalls the
// scheduler loop and with it every running stream. One thread, jobs in submission order.
//
// The scheduler (loop thread) submits a job with either the snapshot bytes (a session in
// the host tier) or an exported state to serialize (a session still in the backend), and
// collects the outcomes with TakeDone() on its next iteration: it alone decides what a
// finished write means for the session (docs/SESSIONS.md, "Background saves").
//
// Threads: Submit / TakeDone / InFlight / Drain from the loop thread; Write runs on the
// writer thread. SessionFiles calls for different names may run concurrently; the
// scheduler never writes a name that has a job in flight.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"
#include "engine/session_state.h"
#include "engine/snapshot.h"
#include "server/sessions/session_files.h"

namespace rwkvx {

class SessionWriter {
 public:
  struct Job {
    std::string name;
    uint64_t id = 0;  // the scheduler's write id, returned in Done
    std::shared_ptr<const std::string> bytes;  // ready snapshot bytes, or
    std::optional<SessionState> state;          // a state to serialize (with `pending`)
    std::vector<int32_t> pending;
    SnapshotOwner owner;         // stamped into the file's header (docs/SNAPSHOT.md)
    SessionFiles::Fence fence;   // checked before the file replaces the old one
  };
  struct Done {
    std::string name;
    uint64_t id = 0;
    absl::StatusOr<size_t> written;  // the file's size, or why it was not written
  };

  // `files` and `model` must outlive the writer.
  SessionWriter(SessionFiles* files, const Model* model);
  ~SessionWriter();  // Drain(), then stops the thread

  void Submit(Job job);
  std::vector<Done> TakeDone();
  int InFlight() const;  // submitted and not yet taken by TakeDone
  // Blocks until every submitted job has finished (shutdown: before the final saves).
  void Drain();

 private:
  void Run();

  SessionFiles* files_;
  const Model* model_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // a job arrived, or stop
  std::condition_variable idle_cv_;  // the queue emptied
  std::deque<Job> queue_;
  std::vector<Done> done_;
  bool busy_ = false;  // the thread holds a job
  bool stop_ = false;
  int in_flight_ = 0;
  std::thread thread_;
};

}  // namespace rwkvx
