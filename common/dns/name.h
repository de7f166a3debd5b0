// Domain names as written in configuration (zones, probe names): validation and the
// canonical form used for comparing them. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hubdns {

// Checks a domain name in presentation form and returns it lower-cased and absolute
// ("Corp.Contoso.COM" -> "corp.contoso.com.", "." -> "."). Labels are 1..63 octets of
// letters, digits, '-' or '_'; the whole name is at most 255 octets in wire form. No
// escapes and no wildcards: configuration names zones, not records. Returns false and sets
// *error to a human reason otherwise (out_lower_absolute is then left untouched).
bool normalize_dns_name(std::string_view in, std::string* out_lower_absolute, std::string* error);

// A wire-format name (uncompressed, `length` octets including the final zero) in
// presentation form for logs: "www.example.com.", "." for the root; octets other than
// letters, digits, '-' and '_' are written \DDD (as dig does), so a log line stays one line.
std::string wire_name_to_text(const uint8_t* name, size_t length);

}  // namespace hubdns
