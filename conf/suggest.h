// "Did you mean ...?" for configuration errors: the valid name closest to a misspelt one.
// Pure function; any thread. Private to conf/.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace hubdns {

// Edit distance counting insertions, deletions, substitutions and swaps of neighbours
// ("tpye" -> "type" is 1), ignoring ASCII case.
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate nearest to `wrong`, if it is close enough to be a plausible typo (1 edit for
// names up to 4 characters, 2 up to 8, 3 beyond); empty otherwise.
std::string nearest_name(std::string_view wrong, std::span<const std::string_view> candidates);

}  // namespace hubdns
