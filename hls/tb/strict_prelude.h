// Strict compile of the kernels with g++: included first (g++ -include tb/strict_prelude.h,
// see `make -C hls strict`), it makes the heap and the STL containers unusable in
// everything that follows, so hls/include and hls/src keep to what Vitis HLS synthesizes.
//
// What the kernels may use is included before the poison: the ap_types headers (they use
// std::string and iostreams in their C-simulation code, which is fine: that code is
// already compiled when the poison takes effect, and poison applies to tokens read after
// it) and the small standard headers that allocate nothing.
//
// After it:
// - malloc, calloc, realloc, free, alloca, new and delete are poisoned identifiers;
// - vector, deque, queue, string, basic_string are poisoned (the ap_types and hls_stream
//   headers already declared those containers, so they must be refused by name);
// - every other container (map, set, list, unordered_*, ...) is absent, and its header
//   cannot be included any more: all of them use new/delete (= delete members), so the
//   include itself fails. Variables named map or list stay allowed.
// Recursion is not caught here (g++ has no such check); the kernel rules forbid it.
#ifndef TRILEVEL_STRICT_PRELUDE_H
#define TRILEVEL_STRICT_PRELUDE_H

#include <ap_fixed.h>
#include <ap_int.h>
#include <hls_stream.h>
#include <stdint.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#undef alloca  // a macro of <alloca.h>: poisoned as a name below
#pragma GCC poison malloc calloc realloc free alloca __builtin_alloca new delete
#pragma GCC poison vector deque queue string basic_string

#endif
