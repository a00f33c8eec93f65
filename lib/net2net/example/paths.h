// Paths that belong to the Fashion-MNIST example (scripts/demo.sh), not to the engine. Engine
// code that offers an example default (e.g. net2net-eval fid --features default) takes it from
// here, so that the example's layout is named in one place.
#pragma once

namespace net2net::example {

// The example's judge network (issue 6 writes it) with its feature method, as an expert path
// ts:<kJudgeFeatures>: the default FID feature network for images in net2net-eval.
inline constexpr const char* kJudgeFeatures = "out/demo/experts/judge/expert.pt:features";

}  // namespace net2net::example
