import Foundation
import KilnCore

/// How a reconcile ended, as metrics count it.
public enum ReconcileResult: String, Sendable, CaseIterable {
    /// Every change applied.
    case success
    /// Applied, but a file is invalid or a change failed (the report says which).
    case problems
    /// The reconcile itself failed (the store or the mirror): nothing or part of it applied; retried next poll.
    case error
}

/// The git operations whose failures are counted.
public enum GitOperation: String, Sendable, CaseIterable {
    /// ls-remote and fetch of the watched branch.
    case fetch
    /// Status commits and notes pushed back (after every retry).
    case push
}

/// What a controller reports as it works. The seam between the controller and whatever observes it: the
/// Prometheus endpoint in KilnServer, a test. Called on the controller's actor: keep it quick.
public protocol ControllerObserver: Sendable {
    /// The remote answered (ls-remote, and a fetch if the branch moved).
    func synced(repository: String, at: Date)
    func reconciled(repository: String, duration: Duration, result: ReconcileResult)
    func gitFailed(repository: String, operation: GitOperation)
}

/// One repository's health, for `/readyz`.
public struct RepositoryHealth: Sendable, Hashable {
    public var name: String
    public var lastSync: Date?
    public var lastError: String?

    public init(name: String, lastSync: Date?, lastError: String?) {
        self.name = name
        self.lastSync = lastSync
        self.lastError = lastError
    }
}

/// The controllers of one process, one per watched repository, each polling on its own: a repository that is
/// slow or broken holds back nobody else (its git calls run on its own thread, see `ThreadExecutor`, and its
/// errors stay in its own loop).
public final class ControllerGroup: Sendable {
    public let controllers: [Controller]
    /// Repositories that could not be started (their credentials could not be read): reported, never ready.
    public let unavailable: [RepositoryHealth]
    /// The process's scheduled work (the trigger poller, the catalog refresh), run beside the controllers.
    public let background: [RepeatingTask]

    public init(_ controllers: [Controller], unavailable: [RepositoryHealth] = [], background: [RepeatingTask] = []) {
        self.controllers = controllers
        self.unavailable = unavailable
        self.background = background
    }

    /// Runs every controller (and the background tasks) until `stop()`; returns when all have stopped.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for c in controllers { group.addTask { await c.run() } }
            for task in background { group.addTask { await task.run() } }
        }
    }

    public func stop() async {
        for c in controllers { await c.stop() }
        for task in background { await task.stop() }
    }

    public func health() async -> [RepositoryHealth] {
        var out = unavailable
        for c in controllers { out.append(await c.health()) }
        return out
    }
}
