// core/target_clones.h — OPENNPU_TARGET_CLONES: function multiversioning for hot loops. The
// compiler builds the function for AVX-512, AVX2 and baseline x86-64, and an ifunc resolver picks
// one from the CPU's features when the program is loaded (never assumed at compile time).
//
// Empty (baseline code only) where it cannot work:
//   - under ThreadSanitizer: the resolver runs during dynamic relocation, before the TSan runtime
//     is initialised, and its instrumented entry crashed every TSan binary at startup;
//   - on templates under clang (clang 14 cannot multiversion templates): OPENNPU_TARGET_CLONES_T.
#pragma once

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OPENNPU_NO_TARGET_CLONES 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define OPENNPU_NO_TARGET_CLONES 1
#endif

#ifdef OPENNPU_NO_TARGET_CLONES
#define OPENNPU_TARGET_CLONES
#else
#define OPENNPU_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif

#if defined(OPENNPU_NO_TARGET_CLONES) || defined(__clang__)
#define OPENNPU_TARGET_CLONES_T
#else
#define OPENNPU_TARGET_CLONES_T OPENNPU_TARGET_CLONES
#endif
