// A conversation turn of /v1/responses (Service::CreateResponse), frontend-neutral.
//
// A stored response is a named session (its name is the response id) holding the state of
// the conversation up to and including the response's answer: the conversation's tokens
// as the chat format renders them (chat_format.h, BuildChatPieces), fed or pending. A turn
// continuing it (previous id) forks that session into a working copy, appends only the new
// messages' tokens and generates there, so it prefills only the new tokens. A stored
// turn first forks the working copy before the answer into the new response's session and,
// once the answer is known, appends the answer's text (ChatAnswerPiece) to it: the stored
// state is then exactly what a conversation sent whole (the same messages with the answer
// as an assistant message) would have read, whatever tokens the model happened to sample.
// The working copy is an ephemeral session, deleted at the end.
//
// Ownership: shared by the frontend call that reads the stream; dropped without Finish it
// cancels the stream and deletes its sessions. Threads: any thread; Finish's callback runs
// on the scheduler's loop thread or on the caller's thread (see Finish).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/request.h"
#include "server/service/chat_format.h"

namespace rwkvx {

class Scheduler;
class Tokenizer;

// One turn: the new messages, and the generation's parameters in `gen` (model,
// max_tokens, temperature, top_p, request_id; its prompt and session_id are set here).
struct ResponseTurn {
  std::vector<ChatMessage> input;  // the new messages (instructions first, as system)
  std::string previous;            // the response continued ("" = a new conversation)
  std::string id;                  // the new response's id (its session's name when stored)
  bool store = true;
};

class ResponseGeneration {
 public:
  using DoneCallback = std::function<void(absl::Status)>;
  ResponseGeneration(Scheduler* scheduler, const Tokenizer* tokenizer, std::string stored,
                     std::string work);
  ~ResponseGeneration();
  ResponseGeneration(const ResponseGeneration&) = delete;
  ResponseGeneration& operator=(const ResponseGeneration&) = delete;

  const std::shared_ptr<RequestStream>& stream() const { return stream_; }
  // Tokens of the conversation the model read before the answer, and of them those carried
  // in the previous response's state (not prefilled again).
  int64_t input_tokens() const { return input_tokens_; }
  int64_t carried_tokens() const { return carried_tokens_; }

  // Call once, with the stream's final event and the answer's text. A generation that ended
  // normally: a stored response's session gets the answer appended; `done` gets OK or that
  // append's error (on the loop thread). One that failed or was cancelled: `done` gets the
  // error at once, on the caller's thread. Either way the working session is deleted, and a
  // failed response's session too.
  void Finish(const GenerateEvent& last, const std::string& answer, DoneCallback done);

 private:
  friend class Service;
  void DeleteSessions(bool stored_too);

  Scheduler* const scheduler_;
  const Tokenizer* const tokenizer_;
  const std::string stored_;  // the response's session ("" = not stored)
  const std::string work_;    // the working copy ("" = none: a plain generate)
  std::shared_ptr<RequestStream> stream_;
  int64_t input_tokens_ = 0, carried_tokens_ = 0;
  std::atomic<bool> finished_{false};
};

}  // namespace rwkvx
