#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex (for every module of the package: the event layer and the
/// stores use it too).
///
/// Not `Synchronization.Mutex`: on Linux that is a futex the thread sanitizer cannot see, so it
/// reports every access the mutex protects as a race, which would hide real ones.
///
/// The value and the mutex live in one allocation (a `ManagedBuffer` whose header is the value
/// and whose single element is the mutex, at a stable address): some are created per message.
package struct Locked<Value> {
    private final class Storage: ManagedBuffer<Value, pthread_mutex_t> {
        deinit {
            _ = withUnsafeMutablePointerToElements { mutex in pthread_mutex_destroy(mutex) }
        }
    }

    private let storage: Storage

    package init(_ value: Value) {
        let buffer = Storage.create(minimumCapacity: 1) { _ in value }
        storage = unsafeDowncast(buffer, to: Storage.self)
        storage.withUnsafeMutablePointerToElements { mutex in
            mutex.initialize(to: pthread_mutex_t())
            _ = pthread_mutex_init(mutex, nil)
        }
    }

    /// Runs `body` with the value while holding the mutex.
    package func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        try storage.withUnsafeMutablePointers { value, mutex in
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return try body(&value.pointee)
        }
    }
}

// The value is read and written only inside `withLock`, which holds the mutex, so sharing a
// `Locked` between threads is safe whenever the value itself may cross threads.
extension Locked: @unchecked Sendable where Value: Sendable {}
