// How compute_layer's worker threads share one layer: units of (channels, block positions).
#pragma once
#include <vector>

#include "libess/engine.h"

namespace ess {

struct WorkUnit {
  long first_item = 0, items = 0;  // (batch, channel) items, flattened
  int pos_begin = 0, pos_end = 0;  // positions in the index list
};

// Channels go in groups of `group` (the structured engine runs a layer's channels in SIMD lanes).
// With fewer groups than threads, each group's blocks are cut into chunks of about equal cost so
// no thread idles (--threads inside a channel): the structured and dense engines compute every
// block independently of the others, and a chunk's values are bit-identical to the whole run's.
// The sweep engine carries state from block to block and is never cut.
std::vector<WorkUnit> plan_work(long items, int group, const std::vector<int>& indices, int seq_len, int threads,
                                EngineKind engine);

}  // namespace ess
