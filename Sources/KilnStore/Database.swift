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

    /// Opens (creating and migrating as needed) the database at `path`.
    public init(path: String) throws(StoreError) {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
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

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-images") { db in
            try db.create(table: "catalogImage") { t in
                // Azure compares publisher, offer and sku ignoring case.
                t.column("publisher", .text).notNull().collate(.nocase)
                t.column("offer", .text).notNull().collate(.nocase)
                t.column("sku", .text).notNull().collate(.nocase)
                t.column("version", .text).notNull()
                t.column("versionMajor", .integer).notNull()
                t.column("versionMinor", .integer).notNull()
                t.column("versionPatch", .integer).notNull()
                t.column("osType", .text).notNull()
                t.column("hyperVGeneration", .text).notNull()
                t.column("architecture", .text).notNull()
                t.column("format", .text).notNull()
                t.column("virtualSize", .integer).notNull()
                t.column("fileSize", .integer).notNull()
                t.column("sha256", .text).notNull()
                t.column("path", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("provenance", .text).notNull()
                t.primaryKey(["publisher", "offer", "sku", "version"])
            }
            try db.create(table: "managedImage") { t in
                t.column("idKey", .text).primaryKey()
                t.column("id", .text).notNull()
                t.column("location", .text).notNull()
                t.column("osType", .text).notNull()
                t.column("hyperVGeneration", .text).notNull()
                t.column("path", .text).notNull()
                t.column("sha256", .text).notNull()
                t.column("virtualSize", .integer).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("metadata", .text).notNull()
            }
            try db.create(table: "galleryImageDefinition") { t in
                t.column("idKey", .text).primaryKey()
                t.column("id", .text).notNull()
                t.column("osType", .text).notNull()
                t.column("osState", .text).notNull()
                t.column("hyperVGeneration", .text).notNull()
                t.column("publisher", .text).notNull()
                t.column("offer", .text).notNull()
                t.column("sku", .text).notNull()
                t.column("description", .text)
                t.column("endOfLifeDate", .text)
                t.column("createdAt", .datetime).notNull()
            }
            try db.create(table: "galleryImageVersion") { t in
                t.column("definitionKey", .text).notNull().references("galleryImageDefinition", onDelete: .cascade)
                t.column("version", .text).notNull()
                t.column("versionMajor", .integer).notNull()
                t.column("versionMinor", .integer).notNull()
                t.column("versionPatch", .integer).notNull()
                t.column("excludeFromLatest", .boolean).notNull()
                t.column("path", .text).notNull()
                t.column("sha256", .text).notNull()
                t.column("virtualSize", .integer).notNull()
                t.column("regions", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("metadata", .text).notNull()
                t.primaryKey(["definitionKey", "version"])
            }
        }
        m.registerMigration("v2-templates") { db in
            try db.create(table: "imageTemplate") { t in
                t.column("idKey", .text).primaryKey()
                t.column("id", .text).notNull()
                t.column("subscription", .text).notNull()
                t.column("resourceGroup", .text).notNull()
                t.column("name", .text).notNull()
                t.column("location", .text).notNull()
                t.column("document", .text).notNull()
                t.column("contentHash", .text).notNull()
                t.column("sourceFile", .text)
                t.column("sourceCommit", .text)
                t.column("provisioningState", .text).notNull()
                t.column("provisioningErrorCode", .text)
                t.column("provisioningErrorMessage", .text)
                t.column("stagingDirectory", .text).notNull()
                t.column("stagingResourceGroup", .text).notNull()
                t.column("artifacts", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
            }
            try db.create(table: "templateRun") { t in
                t.column("id", .text).primaryKey()
                t.column("templateKey", .text).notNull().indexed().references("imageTemplate", onDelete: .cascade)
                t.column("templateId", .text).notNull()
                t.column("runState", .text).notNull()
                t.column("runSubState", .text)
                t.column("message", .text)
                t.column("queuedAt", .datetime).notNull()
                t.column("startTime", .datetime)
                t.column("endTime", .datetime)
                t.column("owner", .text)
                t.column("cancelRequested", .boolean).notNull()
                t.column("timeoutMinutes", .integer).notNull()
                t.column("workDirectory", .text).notNull()
                t.column("logDirectory", .text).notNull()
                t.column("phaseSeconds", .text).notNull()
                t.column("sourceReference", .text)
                t.column("sourceExactVersion", .text)
                t.column("artifactPath", .text)
                t.column("artifactSha256", .text)
                t.column("artifactSize", .integer)
                t.column("outputs", .text).notNull()
            }
        }
        m.registerMigration("v3-gitops") { db in
            try db.alter(table: "imageTemplate") { t in t.add(column: "managedBy", .text) }
            try db.create(index: "imageTemplate_managedBy", on: "imageTemplate", columns: ["managedBy"])
        }
        m.registerMigration("v4-managed-covering-index") { db in
            // The reconciler reads these columns of every managed template on each plan; template documents make
            // table rows large, so an index holding exactly these columns keeps that read off the table.
            try db.drop(index: "imageTemplate_managedBy")
            try db.create(index: "imageTemplate_managed", on: "imageTemplate",
                          columns: ["managedBy", "idKey", "id", "name", "resourceGroup", "sourceFile", "sourceCommit", "contentHash", "provisioningState"])
        }
        m.registerMigration("v5-run-metrics") { db in
            // /metrics reads the runs that ended since its last scrape, and counts runs by state, on every scrape.
            try db.create(index: "templateRun_endTime", on: "templateRun", columns: ["endTime"])
            try db.create(index: "templateRun_state", on: "templateRun", columns: ["runState", "runSubState", "owner"])
        }
        return m
    }
}
