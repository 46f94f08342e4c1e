import Foundation
import KilnStore
import KilnTemplates

/// Executes queued runs, at most `parallelism` at once across every process sharing the database (the
/// claim and the count happen in one transaction).
public struct WorkerPool: Sendable {
    public let core: KilnCore
    public let parallelism: Int
    public var pollInterval: Duration = .seconds(1)

    public init(core: KilnCore, parallelism: Int) {
        self.core = core
        self.parallelism = max(1, parallelism)
    }

    /// Runs slots until no queued run is left (`forever: false`, the detached CLI worker) or until the task
    /// is canceled (`forever: true`, the controller).
    public func run(forever: Bool, onEvent: @escaping @Sendable (String, RunEvent) -> Void = { _, _ in }) async {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<parallelism {
                group.addTask {
                    while !Task.isCancelled, !ExecutingRuns.shared.isStopping {
                        await core.recoverAbandonedRuns()
                        if let run = try? await core.claimQueuedRun(parallelism: parallelism) {
                            let id = run.id
                            _ = await RunExecutor(core: core, runId: id, onEvent: { onEvent(id, $0) }).execute()
                            continue
                        }
                        if !forever, await !hasWaitingRuns() { return }
                        try? await Task.sleep(for: pollInterval)
                    }
                }
            }
        }
    }

    /// Whether a queued run waits that nobody has claimed (a slot held by another process may free up).
    func hasWaitingRuns() async -> Bool {
        let active = (try? await core.store.activeRuns()) ?? []
        return active.contains(where: \.isWaiting)
    }

    /// Sees one run to its end: executes it here when a slot is free, or follows it while another process
    /// executes it. Used by `kiln template run --wait`.
    public func runToCompletion(_ runId: String, onEvent: @escaping @Sendable (RunEvent) -> Void) async throws(CoreError) -> RunRecord {
        while true {
            await core.recoverAbandonedRuns()
            if ExecutingRuns.shared.isStopping { return try await core.run(id: runId) }
            if try await core.claimQueuedRun(parallelism: parallelism, runId: runId) != nil {
                return await RunExecutor(core: core, runId: runId, onEvent: onEvent).execute()
            }
            let run = try await core.run(id: runId)
            if !run.isActive { return run }
            if run.owner != nil { return try await RunFollower(core: core, runId: runId).follow(onEvent: onEvent) }
            try? await Task.sleep(for: pollInterval)
        }
    }
}

/// Follows a run executed by another process: its log files as they grow and its sub-state changes.
public struct RunFollower: Sendable {
    public let core: KilnCore
    public let runId: String
    public var pollInterval: Duration = .milliseconds(500)

    public init(core: KilnCore, runId: String) {
        self.core = core
        self.runId = runId
    }

    /// Emits the logs from the start, then new lines until the run ends; returns the finished run.
    public func follow(onEvent: @escaping @Sendable (RunEvent) -> Void) async throws(CoreError) -> RunRecord {
        var offsets: [String: UInt64] = [:]
        var lastPhase: RunSubState?
        while true {
            let run = try await core.run(id: runId)
            if run.isActive, run.owner != nil, !(run.owner!.isAlive) { await core.recoverAbandonedRuns() }
            if let p = run.runSubState, p != lastPhase, run.isActive {
                lastPhase = p
                onEvent(.phase(p))
            }
            for name in ["customization.log", "validation.log"] {
                let path = (run.logDirectory as NSString).appendingPathComponent(name)
                for line in Self.readNew(path, offset: &offsets[path, default: 0]) { onEvent(.log(line)) }
            }
            if !run.isActive { return run }
            if Task.isCancelled { return run }
            try? await Task.sleep(for: pollInterval)
        }
    }

    /// Complete lines appended to `path` since `offset`.
    static func readNew(_ path: String, offset: inout UInt64) -> [String] {
        guard let h = FileHandle(forReadingAtPath: path) else { return [] }
        defer { try? h.close() }
        guard (try? h.seek(toOffset: offset)) != nil, let data = try? h.readToEnd(), !data.isEmpty else { return [] }
        guard let lastNewline = data.lastIndex(of: UInt8(ascii: "\n")) else { return [] }
        let complete = data[data.startIndex...lastNewline]
        offset += UInt64(complete.count)
        return String(decoding: complete, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }
}
