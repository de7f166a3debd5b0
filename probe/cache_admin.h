// POST /cache/flush on the health endpoint: empties the shared answer cache, or with
// ?name=example.com only the entries for that name and the names below it (what an
// operator needs after changing a record upstream). An admin endpoint: loopback clients or
// `Authorization: Bearer <health.admin_token>`, else 403 (probe/admin_auth.h).
//
// Runs on the control loop (the route handler); the cache itself is shared with the DNS
// workers and takes its own shard locks.
#pragma once

#include <memory>
#include <string>

#include "common/cache/packet_cache.h"
#include "probe/health_server.h"

namespace hubdns {

// Adds the route to `server`. `cache` and `config` point at the current cache (nullptr
// while [cache] is disabled: the route then answers 409 and says so) and configuration
// (for health.admin_token); a reload may replace both. They must outlive the server's routes.
void add_cache_routes(HealthServer& server, const std::shared_ptr<PacketCache>* cache, const ConfigSnapshot* config);

}  // namespace hubdns
