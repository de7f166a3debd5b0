#include "probe/cache_admin.h"

#include <vector>

#include "common/dns/name.h"
#include "common/log/log.h"
#include "probe/admin_auth.h"
#include "probe/probe_query.h"

namespace hubdns {

void add_cache_routes(HealthServer& server, const std::shared_ptr<PacketCache>* cache_slot, const ConfigSnapshot* config) {
  server.add_route("POST", "/cache/flush",
                   [cache_slot, config](const HttpRequest& request, const RequestContext& context) {
    const std::string& token = (*config)->health.admin_token;
    PacketCache* cache = cache_slot->get();
    if (auto refusal = admin_refusal(request, context.peer, token)) return std::move(*refusal);
    if (cache == nullptr) return HttpResponse::text(409, "the cache is disabled ([cache] enabled = false): nothing to flush\n");
    std::optional<std::string> name = request.query_param("name");
    if (!name) {
      size_t removed = cache->flush_all();
      LOG_INFO("msg=\"cache flushed\" entries=%zu peer=%s", removed, context.peer.to_string().c_str());
      return HttpResponse::text(200, "flushed " + std::to_string(removed) + " entries\n");
    }
    std::string absolute, error;
    std::vector<uint8_t> wire;
    if (!normalize_dns_name(*name, &absolute, &error) || !encode_dns_name(absolute, &wire)) {
      return HttpResponse::text(400, "bad name \"" + *name + "\": " + error + "\n");
    }
    size_t removed = cache->flush_name(wire.data(), wire.size());
    LOG_INFO("msg=\"cache flushed\" name=%s entries=%zu peer=%s", absolute.c_str(), removed,
             context.peer.to_string().c_str());
    return HttpResponse::text(200, "flushed " + std::to_string(removed) + " entries at or below " + absolute + "\n");
  });
}

}  // namespace hubdns
