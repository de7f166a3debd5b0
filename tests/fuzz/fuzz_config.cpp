// libFuzzer target: the configuration loader over arbitrary text. It must return a config
// or a list of errors for any input: never crash, hang or leak.
#include <cstdint>
#include <string>
#include <string_view>

#include "conf/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  hubdns::ConfigLoadResult result = hubdns::load_config_text(text, "fuzz.toml");
  // Formatting every error exercises the position bookkeeping too.
  for (const hubdns::ConfigError& error : result.errors) (void)error.to_string();
  return 0;
}
