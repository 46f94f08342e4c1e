// Test support: waiting for a condition without fixed sleeps.
import Foundation

/// Waits, polling every 20 ms on this thread, until `condition` holds or `limit` passes.
public func waitUntil(_ limit: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    let end = ContinuousClock.now + limit
    while ContinuousClock.now < end {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes; how long it took, or nil.
public func eventually(_ timeout: Duration, _ condition: () async throws -> Bool) async rethrows -> Duration? {
    let start = ContinuousClock.now
    while ContinuousClock.now - start < timeout {
        if try await condition() { return ContinuousClock.now - start }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return nil
}
