// Errors carry the exit code the CLI should return (DESIGN §6): 2 usage, 3 bad input, 4 numerical.
// A message speaks library terms; where it is about a setting, it names the setting as a field of
// the library's options struct (EssOptions::keep_sigma → `keep_sigma`), marked as an Option part,
// so that a front end can name its own spelling of it (the CLI names its flag).
#pragma once
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace ess {

enum class ExitCode : int { ok = 0, usage = 2, bad_input = 3, numerical = 4 };

// Marks the name of a library option inside an error message: Option{"keep_sigma"}.
struct Option {
  std::string name;
};

// One piece of a message: plain text, or the name of an option.
struct MessagePart {
  MessagePart(std::string s) : text(std::move(s)) {}                   // NOLINT: implicit, so messages read naturally
  MessagePart(const char* s) : text(s) {}                              // NOLINT
  MessagePart(Option o) : text(std::move(o.name)), is_option(true) {}  // NOLINT
  std::string text;
  bool is_option = false;
};

class Error : public std::exception {
 public:
  Error(ExitCode code, const std::string& message) : Error(code, std::vector<MessagePart>{message}) {}
  Error(ExitCode code, std::vector<MessagePart> parts) : code_(code), parts_(std::move(parts)) { render_plain(); }
  ExitCode code() const { return code_; }
  const char* what() const noexcept override { return message_.c_str(); }
  // The names of the options the message mentions, in order.
  std::vector<std::string> options() const;
  // The message with every option written as rename(option name) (e.g. the CLI's flag).
  std::string message(const std::function<std::string(const std::string&)>& rename) const;
  // Puts context in front ("layer 'x': "); rethrow with `throw;` to keep the error's type.
  void prepend(const std::string& context);

 private:
  void render_plain();
  ExitCode code_;
  std::vector<MessagePart> parts_;
  std::string message_;
};

// A setting or argument that makes no sense.
struct UsageError : Error {
  explicit UsageError(const std::string& m) : Error(ExitCode::usage, m) {}
  explicit UsageError(std::vector<MessagePart> parts) : Error(ExitCode::usage, std::move(parts)) {}
};
// A file (operator, results, checkpoint, tokens) that is missing, malformed or inconsistent.
struct InputError : Error {
  explicit InputError(const std::string& m) : Error(ExitCode::bad_input, m) {}
  explicit InputError(std::vector<MessagePart> parts) : Error(ExitCode::bad_input, std::move(parts)) {}
};

// A computation that gave no usable number (e.g. every block of a layer non-finite).
struct NumericalError : Error {
  explicit NumericalError(const std::string& m) : Error(ExitCode::numerical, m) {}
  explicit NumericalError(std::vector<MessagePart> parts) : Error(ExitCode::numerical, std::move(parts)) {}
};

inline std::vector<std::string> Error::options() const {
  std::vector<std::string> out;
  for (const auto& p : parts_)
    if (p.is_option) out.push_back(p.text);
  return out;
}

inline std::string Error::message(const std::function<std::string(const std::string&)>& rename) const {
  std::string m;
  for (const auto& p : parts_) m += p.is_option ? rename(p.text) : p.text;
  return m;
}

inline void Error::prepend(const std::string& context) {
  parts_.insert(parts_.begin(), MessagePart(context));
  render_plain();
}

inline void Error::render_plain() {
  message_.clear();
  for (const auto& p : parts_) message_ += p.text;
}

}  // namespace ess
