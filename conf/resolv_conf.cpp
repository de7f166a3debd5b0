#include "conf/resolv_conf.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

namespace hubdns {
namespace {

// resolv.conf is tiny; anything larger is not one, and reading it whole could stall a reload.
constexpr std::streamsize kMaxResolvConfBytes = 1 << 20;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Splits a line into whitespace-separated words, stopping at a comment.
std::vector<std::string_view> words_of(std::string_view line) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    if (i >= line.size() || line[i] == '#' || line[i] == ';') break;
    const size_t begin = i;
    while (i < line.size() && !is_space(line[i]) && line[i] != '#' && line[i] != ';') ++i;
    words.push_back(line.substr(begin, i - begin));
  }
  return words;
}

}  // namespace

ResolvConfNameservers read_resolv_conf_nameservers(const std::string& path) {
  ResolvConfNameservers result;
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      result.file_exists = true;
      result.read_error = std::strerror(errno);
    }
    return result;
  }
  result.file_exists = true;
  if (!S_ISREG(info.st_mode)) {
    result.read_error = "not a regular file";
    return result;
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    result.read_error = std::strerror(errno);
    return result;
  }
  std::string content(static_cast<size_t>(kMaxResolvConfBytes) + 1, '\0');
  file.read(content.data(), kMaxResolvConfBytes + 1);
  if (file.bad()) {
    result.read_error = "read failed";
    return result;
  }
  content.resize(static_cast<size_t>(file.gcount()));
  if (content.size() > static_cast<size_t>(kMaxResolvConfBytes)) {
    result.read_error = "larger than 1 MiB, not a resolv.conf";
    return result;
  }

  std::string_view rest = content;
  unsigned line_number = 0;
  while (!rest.empty()) {
    ++line_number;
    const size_t newline = rest.find('\n');
    const std::string_view line = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view{} : rest.substr(newline + 1);
    const std::vector<std::string_view> words = words_of(line);
    if (words.empty() || words[0] != "nameserver") continue;
    if (words.size() < 2) {
      result.skipped.push_back("line " + std::to_string(line_number) + ": nameserver without an address");
      continue;
    }
    // resolv.conf takes a bare address; a port or brackets are not part of its syntax.
    std::string error;
    const std::string_view text = words[1];
    std::optional<SocketAddress> address;
    if (text.find('[') == std::string_view::npos &&
        (text.find(':') == std::string_view::npos || text.find(':') != text.rfind(':'))) {
      address = SocketAddress::parse(text, 53, &error);
    } else {
      error = "'" + std::string(text) + "' is not a bare IP address";
    }
    if (!address) {
      result.skipped.push_back("line " + std::to_string(line_number) + ": " + error);
      continue;
    }
    result.nameservers.push_back(*address);
  }
  return result;
}

}  // namespace hubdns
