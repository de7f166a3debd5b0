// Configuration loading and validation (the only module that includes toml++).
// Turns a TOML file, or the embedded default, into an immutable Config, or into the full
// list of problems found, each with file, line and column. Runs on whichever thread calls
// it (start-up, or the control loop on reload); holds no state between calls.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/config/config.h"

namespace hubdns {

struct ConfigError {
  std::string file;
  unsigned line = 0;    // 1-based; 0 when the problem has no position (e.g. file unreadable)
  unsigned column = 0;  // 1-based
  std::string message;

  // "FILE:LINE:COL: message" (or "FILE: message" without a position).
  std::string to_string() const;
};

struct ConfigLoadResult {
  ConfigSnapshot config;            // set only when errors is empty
  std::vector<ConfigError> errors;  // every problem found, in file order
  bool ok() const { return errors.empty() && config != nullptr; }
};

// Parse and validate TOML text; source_name is used in errors and Config::source.
ConfigLoadResult load_config_text(std::string_view text, const std::string& source_name);

// Read and load a file.
ConfigLoadResult load_config_file(const std::string& path);

// The embedded default configuration, as printed by --print-default-config.
std::string_view default_config_text();

// Load the embedded default.
ConfigLoadResult load_default_config();

}  // namespace hubdns
