// Clang thread-safety analysis (-Wthread-safety, on in every clang build of vmm): which mutex
// guards which data, and which functions must or must not hold it. The compiler then rejects
// an access without the lock. No-ops for other compilers.
//
//   Mutex mu_;
//   int count_ VMM_GUARDED_BY(mu_);             // read/written only with mu_ held
//   void bumpLocked() VMM_REQUIRES(mu_);        // callers hold mu_
//   void publish() VMM_EXCLUDES(mu_);           // takes mu_ itself: callers must not hold it
//
// A lambda is analysed as a function of its own: one that runs under a lock its caller holds
// (a condition-variable predicate) says so with `[&]() VMM_REQUIRES(mu_) { ... }`.
// https://clang.llvm.org/docs/ThreadSafetyAnalysis.html
#pragma once

#if defined(__clang__)
#define VMM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define VMM_THREAD_ANNOTATION(x)
#endif

#define VMM_CAPABILITY(name) VMM_THREAD_ANNOTATION(capability(name))
#define VMM_SCOPED_CAPABILITY VMM_THREAD_ANNOTATION(scoped_lockable)
#define VMM_GUARDED_BY(mu) VMM_THREAD_ANNOTATION(guarded_by(mu))
#define VMM_PT_GUARDED_BY(mu) VMM_THREAD_ANNOTATION(pt_guarded_by(mu))
#define VMM_ACQUIRED_BEFORE(...) VMM_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define VMM_ACQUIRED_AFTER(...) VMM_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define VMM_REQUIRES(...) VMM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define VMM_REQUIRES_SHARED(...) VMM_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define VMM_EXCLUDES(...) VMM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define VMM_ACQUIRE(...) VMM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define VMM_ACQUIRE_SHARED(...) VMM_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define VMM_RELEASE(...) VMM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define VMM_RELEASE_SHARED(...) VMM_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define VMM_RELEASE_GENERIC(...) VMM_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define VMM_TRY_ACQUIRE(...) VMM_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define VMM_ASSERT_CAPABILITY(x) VMM_THREAD_ANNOTATION(assert_capability(x))
#define VMM_RETURN_CAPABILITY(x) VMM_THREAD_ANNOTATION(lock_returned(x))
// For the rare function the analysis cannot follow; say why next to it.
#define VMM_NO_THREAD_SAFETY_ANALYSIS VMM_THREAD_ANNOTATION(no_thread_safety_analysis)
