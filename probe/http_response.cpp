#include "probe/http_response.h"

namespace hubdns {

HttpResponse HttpResponse::text(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse HttpResponse::json(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = std::move(body);
  return response;
}

const char* http_reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string http_date(std::time_t when) {
  std::tm parts{};
  gmtime_r(&when, &parts);
  char text[64];
  // The C locale's %a and %b are the English names HTTP requires.
  size_t length = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
  return std::string(text, length);
}

std::string serialize_response(const HttpResponse& response, const ResponseOptions& options) {
  const bool keep_alive = options.keep_alive && !response.close_connection;
  std::string out;
  out.reserve(192 + response.body.size());
  // Always HTTP/1.1: a server answers with the highest minor version it supports
  // (RFC 9110 §6.2), also to HTTP/1.0 clients.
  out += "HTTP/1.1 ";
  out += std::to_string(response.status);
  out += ' ';
  out += http_reason_phrase(response.status);
  out += "\r\n";
  if (options.date != 0) {
    out += "Date: ";
    out += http_date(options.date);
    out += "\r\n";
  }
  out += "Content-Type: ";
  out += response.content_type;
  out += "\r\nContent-Length: ";
  out += std::to_string(response.body.size());
  out += "\r\nCache-Control: no-store\r\n";
  if (!response.allow.empty()) {
    out += "Allow: ";
    out += response.allow;
    out += "\r\n";
  }
  for (const auto& [name, value] : response.extra_headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  if (!options.head_request) out += response.body;
  return out;
}

}  // namespace hubdns
