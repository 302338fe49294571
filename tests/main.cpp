#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <iostream>

// doctest's own main, plus one rule: a run that selects no test case fails. ctest runs each case by
// name (doctest_discover_tests), and a name that CMake cuts (at a ';') or that doctest's filter
// reads otherwise would select nothing and pass without running anything (cli.unit_registration
// checks every registered name; this makes the run of such a name fail by itself).
namespace {

int g_selected = -1;  // test cases that passed the filters in the last run; -1: no run ended

struct SelectedCount : doctest::IReporter {
  explicit SelectedCount(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override {
    g_selected = static_cast<int>(s.numTestCasesPassingFilters);
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("selected_count", 1, SelectedCount);

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;  // --help, --list-test-cases and other queries
  if (rc == 0 && g_selected == 0) {
    std::cerr << "ess_tests: no test case matches the filters given (a name cut at ';' by CMake?)\n";
    return 1;
  }
  return rc;
}
