#include "client/vmctl/terminal_safe.h"

#include <cstdio>
#include <iostream>

namespace vmm::vmctl {

namespace {

constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD

enum class Utf8 { valid, invalid, incomplete };

struct Utf8Sequence {
  Utf8 status;
  size_t length;
};

unsigned char byteAt(std::string_view s, size_t i) { return static_cast<unsigned char>(s[i]); }

// The UTF-8 sequence that starts `s` (whose first byte is not ASCII). Overlong forms,
// surrogates and code points past U+10FFFF are invalid.
Utf8Sequence utf8SequenceAt(std::string_view s) {
  unsigned char lead = byteAt(s, 0);
  size_t length = 0;
  unsigned char secondMin = 0x80, secondMax = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) secondMin = 0xa0;
    if (lead == 0xed) secondMax = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) secondMin = 0x90;
    if (lead == 0xf4) secondMax = 0x8f;
  } else {
    return {Utf8::invalid, 1};
  }
  for (size_t i = 1; i < length; ++i) {
    if (i >= s.size()) return {Utf8::incomplete, s.size()};
    unsigned char min = i == 1 ? secondMin : 0x80, max = i == 1 ? secondMax : 0xbf;
    if (byteAt(s, i) < min || byteAt(s, i) > max) return {Utf8::invalid, 1};
  }
  return {Utf8::valid, length};
}

bool isPlainAscii(unsigned char c, bool text) {
  return (c >= 0x20 && c < 0x7f) || (text && (c == '\n' || c == '\t'));
}

bool isC1Control(std::string_view sequence) {
  return sequence.size() == 2 && byteAt(sequence, 0) == 0xc2 && byteAt(sequence, 1) < 0xa0;
}

std::ostream* g_rawStdout = nullptr;
std::ostream* g_rawStderr = nullptr;

}  // namespace

void TerminalSanitizer::feed(std::string_view in, std::string& out) {
  if (held_.empty()) return feedComplete(in, out);
  std::string joined = held_;
  joined += in;
  held_.clear();
  feedComplete(joined, out);
}

void TerminalSanitizer::feedComplete(std::string_view in, std::string& out) {
  bool text = mode_ == Mode::text;
  size_t i = 0;
  while (i < in.size()) {
    size_t plainEnd = i;
    while (plainEnd < in.size() && isPlainAscii(byteAt(in, plainEnd), text)) ++plainEnd;
    out.append(in.substr(i, plainEnd - i));
    i = plainEnd;
    if (i == in.size()) break;
    unsigned char c = byteAt(in, i);
    if (c == '\r' && text) {
      if (i + 1 == in.size()) {
        held_ = "\r";
        return;
      }
      bool lineEnd = in[i + 1] == '\n';
      out += lineEnd ? std::string_view("\n") : kReplacement;
      i += lineEnd ? 2 : 1;
    } else if (c < 0x80) {
      out += kReplacement;
      ++i;
    } else {
      auto seq = utf8SequenceAt(in.substr(i));
      if (seq.status == Utf8::incomplete) {
        held_ = in.substr(i);
        return;
      }
      std::string_view bytes = in.substr(i, seq.length);
      out += seq.status == Utf8::invalid || isC1Control(bytes) ? kReplacement : bytes;
      i += seq.length;
    }
  }
}

void TerminalSanitizer::finish(std::string& out) {
  if (!held_.empty()) out += kReplacement;
  held_.clear();
}

namespace {

std::string sanitized(std::string_view text, TerminalSanitizer::Mode mode) {
  TerminalSanitizer s(mode);
  std::string out;
  s.feed(text, out);
  s.finish(out);
  return out;
}

}  // namespace

std::string terminalSafe(std::string_view text) { return sanitized(text, TerminalSanitizer::Mode::text); }

std::string terminalSafeLine(std::string_view text) { return sanitized(text, TerminalSanitizer::Mode::line); }

std::string escapeRawControlsInJson(std::string serialized) {
  // In serialized JSON (valid UTF-8) 0xc2 is always the lead byte of U+0080..U+00BF.
  std::string_view in = serialized;
  std::string out;
  size_t copied = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    unsigned char c = byteAt(in, i);
    bool c1 = c == 0xc2 && isC1Control(in.substr(i, 2));
    if (c != 0x7f && !c1) continue;
    out.append(in.substr(copied, i - copied));
    char escaped[8];
    std::snprintf(escaped, sizeof escaped, "\\u%04x", c1 ? byteAt(in, ++i) : c);
    out += escaped;
    copied = i + 1;
  }
  if (copied == 0) return serialized;
  out.append(in.substr(copied));
  return out;
}

TerminalSafeBuf::int_type TerminalSafeBuf::overflow(int_type ch) {
  if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
  char c = traits_type::to_char_type(ch);
  out_.clear();
  sanitizer_.feed(std::string_view(&c, 1), out_);
  return write(out_) ? ch : traits_type::eof();
}

std::streamsize TerminalSafeBuf::xsputn(const char* s, std::streamsize n) {
  out_.clear();
  sanitizer_.feed(std::string_view(s, static_cast<size_t>(n)), out_);
  return write(out_) ? n : 0;
}

void TerminalSafeBuf::finish() {
  out_.clear();
  sanitizer_.finish(out_);
  write(out_);
  sink_->pubsync();
}

bool TerminalSafeBuf::write(const std::string& safe) {
  auto size = static_cast<std::streamsize>(safe.size());
  return size == 0 || sink_->sputn(safe.data(), size) == size;
}

TerminalSafeOutput::TerminalSafeOutput()
    : coutSink_(std::cout.rdbuf()),
      cerrSink_(std::cerr.rdbuf()),
      coutSafe_(coutSink_),
      cerrSafe_(cerrSink_),
      rawOut_(coutSink_),
      rawErr_(cerrSink_) {
  rawErr_.setf(std::ios::unitbuf);
  std::cout.rdbuf(&coutSafe_);
  std::cerr.rdbuf(&cerrSafe_);
  g_rawStdout = &rawOut_;
  g_rawStderr = &rawErr_;
}

TerminalSafeOutput::~TerminalSafeOutput() {
  std::cout.flush();
  std::cerr.flush();
  coutSafe_.finish();
  cerrSafe_.finish();
  std::cout.rdbuf(coutSink_);
  std::cerr.rdbuf(cerrSink_);
  g_rawStdout = nullptr;
  g_rawStderr = nullptr;
}

std::ostream& rawStdout() { return g_rawStdout ? *g_rawStdout : std::cout; }
std::ostream& rawStderr() { return g_rawStderr ? *g_rawStderr : std::cerr; }

}  // namespace vmm::vmctl
