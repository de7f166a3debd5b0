#include "probe/admin_auth.h"

#include <cstddef>

#include "common/log/log.h"

namespace hubdns {

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = static_cast<unsigned char>(difference | (static_cast<unsigned char>(a[i]) ^
                                                          static_cast<unsigned char>(b[i])));
  }
  // volatile: keeps the compiler from turning the loop back into an early-exit compare.
  volatile unsigned char result = difference;
  return result == 0;
}

bool bearer_token_matches(const std::string* authorization, std::string_view token) {
  if (authorization == nullptr || token.empty()) return false;
  std::string_view value = *authorization;
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() || value[kScheme.size()] != ' ') return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = value[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  std::string_view presented = value.substr(kScheme.size() + 1);
  while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
  return constant_time_equal(presented, token);
}

bool admin_request_allowed(const SocketAddress& peer, const std::string* authorization,
                           std::string_view admin_token) {
  if (peer.is_loopback()) return true;
  return bearer_token_matches(authorization, admin_token);
}

std::optional<HttpResponse> admin_refusal(const HttpRequest& request, const SocketAddress& peer,
                                          std::string_view admin_token) {
  if (admin_request_allowed(peer, request.header("authorization"), admin_token)) return std::nullopt;
  LOG_WARN("msg=\"admin request refused\" path=%s peer=%s", request.path.c_str(), peer.to_string().c_str());
  return HttpResponse::text(403, admin_token.empty()
                                     ? "forbidden: admin endpoints answer loopback clients only (no admin_token is set)\n"
                                     : "forbidden: admin endpoints need a loopback client or Authorization: Bearer <admin_token>\n");
}

}  // namespace hubdns
