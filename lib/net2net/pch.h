// Precompiled header: torch costs 10-30 s per translation unit to parse; compile it once.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <string>
#include <vector>
