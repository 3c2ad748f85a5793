// Text from vmmd reaches a terminal: names, descriptions and error messages, some of them
// written by a guest (agent replies, console output). Control characters in such text could
// move the cursor, rewrite what was printed, retitle the window or make the terminal answer
// back (escape injection), so vmctl's human output goes through a filter that shows them as
// U+FFFD instead. Only the bytes that are the guest's own on purpose (console sessions, the
// output of exec and run) bypass it.
#pragma once

#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>

namespace vmm::vmctl {

// Replaces C0 controls, DEL, C1 controls (U+0080..U+009F) and bytes that are not UTF-8 with
// U+FFFD, one for each. Text mode keeps \n and \t and turns \r\n into \n; line mode replaces
// them too (a table cell or a field stays on its line).
class TerminalSanitizer {
 public:
  enum class Mode { text, line };
  explicit TerminalSanitizer(Mode mode = Mode::text) : mode_(mode) {}

  // Appends the safe form of `in` to `out`. A UTF-8 sequence or a \r cut at the end of `in`
  // is held until the next call decides it.
  void feed(std::string_view in, std::string& out);
  // Ends the text: what is held can no longer complete.
  void finish(std::string& out);

 private:
  void feedComplete(std::string_view in, std::string& out);

  Mode mode_;
  std::string held_;
};

std::string terminalSafe(std::string_view text);       // text mode
std::string terminalSafeLine(std::string_view text);   // line mode

// JSON as serialized (control characters below U+0020 already escaped) with DEL and C1 controls
// escaped as \u00XX too: the same JSON value, with nothing in it a terminal acts on.
std::string escapeRawControlsInJson(std::string serialized);

// A stream buffer that writes the text-mode safe form of its input to `sink`, unbuffered, so
// that its output keeps its order with writes that bypass it.
class TerminalSafeBuf : public std::streambuf {
 public:
  explicit TerminalSafeBuf(std::streambuf* sink) : sink_(sink) {}
  void finish();

 protected:
  int_type overflow(int_type ch) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override { return sink_->pubsync(); }

 private:
  bool write(const std::string& safe);

  std::streambuf* sink_;
  TerminalSanitizer sanitizer_;
  std::string out_;
};

// While it lives, std::cout and std::cerr go through TerminalSafeBuf.
class TerminalSafeOutput {
 public:
  TerminalSafeOutput();
  ~TerminalSafeOutput();
  TerminalSafeOutput(const TerminalSafeOutput&) = delete;
  TerminalSafeOutput& operator=(const TerminalSafeOutput&) = delete;

 private:
  std::streambuf* coutSink_;
  std::streambuf* cerrSink_;
  TerminalSafeBuf coutSafe_;
  TerminalSafeBuf cerrSafe_;
  std::ostream rawOut_;
  std::ostream rawErr_;
};

// Standard output and error without the filter: for the guest's own bytes only.
std::ostream& rawStdout();
std::ostream& rawStderr();

}  // namespace vmm::vmctl
