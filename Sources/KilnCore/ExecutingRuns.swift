import Foundation
import Synchronization

/// The runs this process is executing, so that stopping the process (SIGTERM, SIGINT) cancels them: their VMs
/// are stopped and each run ends Canceled with the reason, instead of a VM outliving the process that owns it
/// until some later command recovers it.
public final class ExecutingRuns: Sendable {
    public static let shared = ExecutingRuns()

    private let stops = Mutex<[String: @Sendable (String) -> Void]>([:])
    private let stopping = Atomic<Bool>(false)

    /// Set by `stopAll`: the process is stopping, so no new run is claimed here.
    public var isStopping: Bool { stopping.load(ordering: .acquiring) }

    init() {}

    /// Called by `RunExecutor` while it executes `runId`; `stop` cancels the build with a reason.
    func register(_ runId: String, stop: @escaping @Sendable (String) -> Void) {
        stops.withLock { $0[runId] = stop }
    }

    func unregister(_ runId: String) {
        _ = stops.withLock { $0.removeValue(forKey: runId) }
    }

    /// The runs in progress here.
    public var runIds: [String] { stops.withLock { Array($0.keys).sorted() } }

    /// Cancels every run this process executes, with `reason` (for the run's message). Returns their ids.
    @discardableResult
    public func stopAll(reason: String) -> [String] {
        stopping.store(true, ordering: .releasing)
        let all = stops.withLock { $0 }
        for (_, stop) in all { stop(reason) }
        return all.keys.sorted()
    }

    /// Waits until no run executes here any more, at most `timeout`; whether they all ended.
    public func waitUntilIdle(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if runIds.isEmpty { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return runIds.isEmpty
    }
}
