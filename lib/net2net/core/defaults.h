// Defaults that several parts of net2net share, declared once.
#pragma once
#include <cstdint>

namespace net2net {

// The seed of every run that is not given one (--seed, NET2NET_SEED, train.seed): the
// reference implementation's default.
constexpr uint64_t kDefaultSeed = 23;

}  // namespace net2net
