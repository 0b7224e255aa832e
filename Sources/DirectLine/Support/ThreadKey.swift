#if canImport(Glibc)
import Glibc
#endif

/// A thread-specific slot holding one pointer-sized word (no destructor);
/// nil if the process has run out of keys.
func makeThreadKey() -> pthread_key_t? {
    var key = pthread_key_t()
    return pthread_key_create(&key, nil) == 0 ? key : nil
}
