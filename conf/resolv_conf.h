// Upstreams taken from a resolv.conf-style file, for `upstreams = ["/etc/resolv.conf"]`
// (what CoreDNS does with `forward . /etc/resolv.conf`). Read when the configuration is
// loaded, so a reload re-reads it. Runs on the loading thread; private to conf/.
#pragma once

#include <string>
#include <vector>

#include "common/net/address.h"

namespace hubdns {

struct ResolvConfNameservers {
  bool file_exists = false;
  std::string read_error;                   // set when the file exists but cannot be read
  std::vector<SocketAddress> nameservers;   // port 53, in file order
  std::vector<std::string> skipped;         // "line N: reason" for unusable nameserver lines
};

// Collects the `nameserver ADDRESS` lines (comments start with '#' or ';'; every other
// directive is ignored). An IPv6 link-local address keeps its "%interface" zone; a line
// whose zone names no existing interface is skipped, since that server cannot be reached.
ResolvConfNameservers read_resolv_conf_nameservers(const std::string& path);

// Used when the file is missing or names no usable server: Azure DNS, reachable from every
// Azure VM, which is where hubdns is meant to run.
inline constexpr const char* kFallbackNameserver = "168.63.129.16";

}  // namespace hubdns
