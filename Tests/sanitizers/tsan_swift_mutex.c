/* Teaches ThreadSanitizer about the slow path of Swift's Synchronization.Mutex.
 *
 * Mutex.withLock is inlined into libdirectline, so its fast path (an atomic
 * compare-exchange, acquiring on lock and releasing on unlock) is compiled
 * with -sanitize=thread and TSan sees it. Under contention it calls
 * _MutexHandle._lockSlow / _unlockSlow / _tryLockSlow in
 * libswiftSynchronization.so, which is not instrumented and hands the lock
 * over in the kernel (FUTEX_LOCK_PI / FUTEX_UNLOCK_PI): TSan then sees no
 * happens-before edge between the previous owner's critical section and the
 * next one's, and reports every access to Mutex-guarded state as a race.
 *
 * Compiled without instrumentation, linked into the TSan test program and
 * exported from it (-Wl,--export-dynamic-symbol), these definitions take
 * precedence over the library's: each calls the real function (dlsym RTLD_NEXT) and adds
 * __tsan_acquire after taking the lock and __tsan_release before handing it
 * back, on the lock word's address, the same address the inlined fast path
 * synchronises on. This removes exactly the false positives caused by the
 * uninstrumented slow path and hides nothing else: an access made without
 * holding the Mutex is still reported.
 *
 * Swift passes `self` (here the address of the lock word) in the swiftself
 * register, r13; clang's swiftcall convention with a swift_context parameter
 * is that register. The symbols are the Swift 6 ABI names (stable since
 * Swift 6.0); if a toolchain ever renames them, dlsym fails and this aborts
 * with a message instead of hiding anything. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SWIFTCALL __attribute__((swiftcall))
#define SWIFTSELF __attribute__((swift_context))

void __tsan_acquire(void *address);
void __tsan_release(void *address);

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"
#define TRY_LOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"

typedef SWIFTCALL void (*lock_slow_fn)(uint32_t self_id, void *SWIFTSELF handle);
typedef SWIFTCALL void (*unlock_slow_fn)(void *SWIFTSELF handle);
typedef SWIFTCALL bool (*try_lock_slow_fn)(void *SWIFTSELF handle);

/* The real functions, looked up before main() (so before any thread). */
static lock_slow_fn real_lock_slow;
static unlock_slow_fn real_unlock_slow;
static try_lock_slow_fn real_try_lock_slow;

static void *real(const char *name) {
    void *function = dlsym(RTLD_NEXT, name);
    if (function == NULL) {
        fprintf(stderr, "tsan_swift_mutex: %s not found: %s\n", name, dlerror());
        abort();
    }
    return function;
}

__attribute__((constructor)) static void find_real_functions(void) {
    real_lock_slow = (lock_slow_fn)real(LOCK_SLOW);
    real_unlock_slow = (unlock_slow_fn)real(UNLOCK_SLOW);
    real_try_lock_slow = (try_lock_slow_fn)real(TRY_LOCK_SLOW);
}

SWIFTCALL void dl_tsan_lock_slow(uint32_t self_id, void *SWIFTSELF handle) __asm__(LOCK_SLOW);
SWIFTCALL void dl_tsan_lock_slow(uint32_t self_id, void *SWIFTSELF handle) {
    real_lock_slow(self_id, handle);
    __tsan_acquire(handle);
}

SWIFTCALL void dl_tsan_unlock_slow(void *SWIFTSELF handle) __asm__(UNLOCK_SLOW);
SWIFTCALL void dl_tsan_unlock_slow(void *SWIFTSELF handle) {
    __tsan_release(handle);
    real_unlock_slow(handle);
}

SWIFTCALL bool dl_tsan_try_lock_slow(void *SWIFTSELF handle) __asm__(TRY_LOCK_SLOW);
SWIFTCALL bool dl_tsan_try_lock_slow(void *SWIFTSELF handle) {
    bool locked = real_try_lock_slow(handle);
    if (locked) __tsan_acquire(handle);
    return locked;
}
