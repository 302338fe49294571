#include "operators/family.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace ess {

namespace {
std::map<std::string, Family>& registry() {
  static std::map<std::string, Family> r;  // constructed on first use: safe from static initialisers
  return r;
}
}  // namespace

bool register_family(Family family) {
  if (family.name.empty() || !family.read || !family.example)
    throw std::logic_error("register_family: family '" + family.name + "' needs a name, read and example");
  if (!registry().emplace(family.name, family).second)
    throw std::logic_error("register_family: family '" + family.name + "' registered twice");
  return true;
}

std::vector<Family> families() {
  std::vector<Family> out;
  for (const auto& [name, f] : registry()) out.push_back(f);
  return out;
}

const Family* find_family(const std::string& name) {
  const auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

std::vector<std::string> known_families() {
  std::vector<std::string> out;
  for (const auto& [name, f] : registry()) out.push_back(name);
  return out;
}

}  // namespace ess
