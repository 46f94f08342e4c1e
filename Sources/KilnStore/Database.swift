import Foundation
import GRDB
import KilnTemplates

/// Errors of the persistence layer.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    /// The database could not be opened or migrated.
    case open(path: String, underlying: String)
    /// A row that must be unique exists already.
    case conflict(String)
    /// A row that was expected is not there.
    case notFound(String)
    /// The operation is not allowed in the row's current state.
    case refused(Refusal)
    /// Any other SQLite failure.
    case database(String)

    public var description: String {
        switch self {
        case .open(let path, let e): return "cannot open the database \(path): \(e)"
        case .conflict(let what): return "\(what) exists already"
        case .notFound(let what): return "\(what) not found"
        case .refused(let why): return why.description
        case .database(let e): return "database error: \(e)"
        }
    }
}

/// Why the store refused a change: the state that forbids it, for the core to word and to suggest a remedy.
public enum Refusal: Sendable, Hashable, CustomStringConvertible {
    /// A template with a run in progress cannot be deleted (or run again).
    case runActive(template: String, runId: String, state: RunState, subState: RunSubState?)
    /// Only a template whose create succeeded can run.
    case templateNotRunnable(template: String, state: ProvisioningState)

    public var description: String {
        switch self {
        case .runActive(let t, let id, let state, let sub):
            return "run \(id) of \(t) is still \(state.rawValue)\(sub.map { " (\($0.rawValue))" } ?? "")"
        case .templateNotRunnable(let t, let state):
            return "image template \(t) is \(state.rawValue), not Succeeded; only a successfully created template can run"
        }
    }
}

/// Kiln's SQLite database (`<data>/kiln.db`, WAL mode), opened once per process and shared.
///
/// GRDB's `DatabasePool` is safe to use from any thread: readers run concurrently with the single writer,
/// which is what a controller reconciling while builds update their runs needs.
public final class KilnDatabase: Sendable {
    let writer: any DatabaseWriter
    public let path: String

    /// Opens (creating and migrating as needed) the database at `path`. Its directory (the data directory) is
    /// made private to Kiln's user: it holds staged artifacts, build logs, keys and captured images.
    public init(path: String) throws(StoreError) {
        self.path = path
        do {
            let dir = (path as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir)
            var config = Configuration()
            config.busyMode = .timeout(10)
            let pool = try DatabasePool(path: path, configuration: config)
            try Self.migrator.migrate(pool)
            writer = pool
        } catch {
            throw .open(path: path, underlying: "\(error)")
        }
    }

    /// An in-memory database with the same schema (tests of pure logic against real SQLite).
    public init(inMemory: Void = ()) throws(StoreError) {
        path = ":memory:"
        do {
            let queue = try DatabaseQueue()
            try Self.migrator.migrate(queue)
            writer = queue
        } catch {
            throw .open(path: ":memory:", underlying: "\(error)")
        }
    }

    func write<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws(StoreError) -> T {
        do {
            return try await writer.write(body)
        } catch let e as StoreError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_CONSTRAINT {
            throw .conflict(e.message ?? "row")
        } catch {
            throw .database("\(error)")
        }
    }

    func read<T: Sendable>(_ body: @Sendable @escaping (Database) throws -> T) async throws(StoreError) -> T {
        do {
            return try await writer.read(body)
        } catch let e as StoreError {
            throw e
        } catch {
            throw .database("\(error)")
        }
    }
}
