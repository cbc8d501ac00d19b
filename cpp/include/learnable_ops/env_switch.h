// The tuning switches read from the environment at every call, so that one build
// can time both sides of a choice: "1" forces a path on, "0" off, and anything
// else (or unset) leaves the choice to the measured default.
#pragma once

#include <cstdlib>
#include <cstring>
#include <optional>

namespace learnable_ops {

inline std::optional<bool> env_override(const char* name) {
  const char* flag = std::getenv(name);
  if (flag == nullptr) return std::nullopt;
  if (std::strcmp(flag, "1") == 0) return true;
  if (std::strcmp(flag, "0") == 0) return false;
  return std::nullopt;
}

}  // namespace learnable_ops
