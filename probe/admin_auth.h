// Who may use the admin endpoints (POST /drain, /undrain, /reload, /cache/flush):
// a client on a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104: only processes
// on this host can send from there), or anyone presenting `Authorization: Bearer <token>`
// with the configured health.admin_token. An empty token means loopback only. No state;
// any thread (admin_refusal also logs).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/net/address.h"
#include "probe/http_request.h"
#include "probe/http_response.h"

namespace hubdns {

// Compares without an early exit, so the time taken does not reveal how many leading bytes
// of a guess were right (the length of the token is not secret: it is in the config docs'
// range anyway, and hiding it would cost more than it gains).
bool constant_time_equal(std::string_view a, std::string_view b);

// True when `authorization` (the header's value, or nullptr when absent) is "Bearer <token>"
// (scheme case-insensitive, RFC 9110 §11.1) and token is not empty.
bool bearer_token_matches(const std::string* authorization, std::string_view token);

// The whole decision for one request.
bool admin_request_allowed(const SocketAddress& peer, const std::string* authorization,
                           std::string_view admin_token);

// What every admin route does first: nothing (nullopt) when the request is allowed, else the
// 403 to send back, after logging the refusal with the path and the peer. The answer says
// which way in exists, so an operator who gets it knows whether to set a token or use one.
std::optional<HttpResponse> admin_refusal(const HttpRequest& request, const SocketAddress& peer,
                                          std::string_view admin_token);

}  // namespace hubdns
