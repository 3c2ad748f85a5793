#include "base/toml_lite.h"

#include "base/strings.h"

namespace vmm {

namespace {

class LineParser {
 public:
  LineParser(std::string_view s, int line) : s_(s), line_(line) {}

  Error fail(const std::string& msg) const {
    return invalidArgument("line " + std::to_string(line_) + ": " + msg);
  }
  void skipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  bool atEndOrComment() {
    skipSpace();
    return pos_ >= s_.size() || s_[pos_] == '#';
  }
  Result<std::string> key() {
    skipSpace();
    size_t b = pos_;
    while (pos_ < s_.size() && (isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_' || s_[pos_] == '-')) ++pos_;
    if (b == pos_) return fail("expected a key");
    return std::string(s_.substr(b, pos_ - b));
  }
  bool consume(char c) {
    skipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  Result<nlohmann::json> value() {
    skipSpace();
    if (pos_ >= s_.size()) return fail("expected a value");
    char c = s_[pos_];
    if (c == '"') return basicString();
    if (c == '\'') {
      size_t end = s_.find('\'', pos_ + 1);
      if (end == std::string_view::npos) return fail("unterminated string");
      std::string v(s_.substr(pos_ + 1, end - pos_ - 1));
      pos_ = end + 1;
      return nlohmann::json(v);
    }
    if (c == '[') {
      ++pos_;
      nlohmann::json arr = nlohmann::json::array();
      if (consume(']')) return arr;
      while (true) {
        VMM_ASSIGN(auto v, value());
        arr.push_back(std::move(v));
        if (consume(',')) {
          if (consume(']')) return arr;
          continue;
        }
        if (consume(']')) return arr;
        return fail("expected ',' or ']' in array");
      }
    }
    size_t b = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != ']' && s_[pos_] != '#' && s_[pos_] != ' ' && s_[pos_] != '\t') ++pos_;
    std::string_view tok = s_.substr(b, pos_ - b);
    if (tok == "true") return nlohmann::json(true);
    if (tok == "false") return nlohmann::json(false);
    std::string digits;
    for (char d : tok)
      if (d != '_') digits += d;
    if (auto i = parseInt(digits)) return nlohmann::json(*i);
    return fail("cannot parse value " + quote(tok) + " (strings need quotes)");
  }

 private:
  Result<nlohmann::json> basicString() {
    ++pos_;
    std::string out;
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return nlohmann::json(out);
      if (c == '\\') {
        if (pos_ >= s_.size()) break;
        char e = s_[pos_++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          default: return fail(std::string("unsupported escape \\") + e);
        }
        continue;
      }
      out += c;
    }
    return fail("unterminated string");
  }

  std::string_view s_;
  size_t pos_ = 0;
  int line_;
};

}  // namespace

Result<nlohmann::json> parseTomlLite(std::string_view text) {
  nlohmann::json root = nlohmann::json::object();
  nlohmann::json* table = &root;
  int lineNo = 0;
  for (const auto& rawLine : split(text, '\n')) {
    ++lineNo;
    LineParser p(rawLine, lineNo);
    if (p.atEndOrComment()) continue;
    if (p.consume('[')) {
      table = &root;
      while (true) {
        VMM_ASSIGN(auto k, p.key());
        auto& next = (*table)[k];
        if (next.is_null()) next = nlohmann::json::object();
        if (!next.is_object()) return p.fail("table " + quote(k) + " is already a value");
        table = &next;
        if (p.consume('.')) continue;
        if (p.consume(']')) break;
        return p.fail("expected ']' after table name");
      }
      if (!p.atEndOrComment()) return p.fail("unexpected text after table header");
      continue;
    }
    VMM_ASSIGN(auto k, p.key());
    if (!p.consume('=')) return p.fail("expected '=' after " + quote(k));
    VMM_ASSIGN(auto v, p.value());
    if (!p.atEndOrComment()) return p.fail("unexpected text after the value of " + quote(k));
    if (table->contains(k)) return p.fail("duplicate key " + quote(k));
    (*table)[k] = std::move(v);
  }
  return root;
}

}  // namespace vmm
