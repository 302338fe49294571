// Errors carry the exit code the CLI should return (DESIGN §6): 2 usage, 3 bad input, 4 numerical.
#pragma once
#include <stdexcept>
#include <string>

namespace ess {

enum class ExitCode : int { ok = 0, usage = 2, bad_input = 3, numerical = 4 };

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// A command-line argument or option that makes no sense.
struct UsageError : Error {
  explicit UsageError(const std::string& m) : Error(ExitCode::usage, m) {}
};
// A file (operator, results, checkpoint, tokens) that is missing, malformed or inconsistent.
struct InputError : Error {
  explicit InputError(const std::string& m) : Error(ExitCode::bad_input, m) {}
};
// A computation that could not be completed numerically.
struct NumericalError : Error {
  explicit NumericalError(const std::string& m) : Error(ExitCode::numerical, m) {}
};

}  // namespace ess
