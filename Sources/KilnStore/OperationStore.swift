// The REST API's asynchronous operations: what `Azure-AsyncOperation` and `Location` point at.
import Foundation
import GRDB

/// One long-running operation of the REST API, kept in the store so that a client polling after a restart of
/// the server still gets its answer (ARM's operation-status resource).
///
/// A run's operation has no status of its own while it lasts: it follows the run (`runId`), and is finished here
/// when a poll sees the run end, so the answer stays the same after the run's records are pruned.
public struct OperationRecord: Sendable, Hashable, Codable {
    /// What the operation does; decides how its status is derived.
    public enum Kind: String, Sendable, Hashable, Codable {
        case createTemplate, updateTemplate, deleteTemplate, run, cancel, createTrigger, deleteTrigger
    }
    /// ARM's operation states.
    public enum Status: String, Sendable, Hashable, Codable {
        case inProgress = "InProgress", succeeded = "Succeeded", failed = "Failed", canceled = "Canceled"

        public var isTerminal: Bool { self != .inProgress }
    }

    /// A lower-case UUID: the last segment of the status URL.
    public var id: String
    public var kind: Kind
    /// The resource it acts on; a caller may poll it when it may read that resource.
    public var resourceId: String
    /// The subscription and location of the status URL (`/subscriptions/S/providers/…/locations/L/operations/ID`).
    public var subscription: String
    public var location: String
    /// `run` and `cancel`: the run whose end ends the operation.
    public var runId: String?
    public var status: Status
    public var errorCode: String?
    public var errorMessage: String?
    public var startTime: Date
    public var endTime: Date?

    public init(
        id: String = UUID().uuidString.lowercased(), kind: Kind, resourceId: String, subscription: String, location: String, runId: String? = nil,
        status: Status = .inProgress, startTime: Date = Date()
    ) {
        self.id = id
        self.kind = kind
        self.resourceId = resourceId
        self.subscription = subscription
        self.location = location
        self.runId = runId
        self.status = status
        self.startTime = startTime
        if status.isTerminal { endTime = startTime }
    }
}

extension OperationRecord: FetchableRecord, PersistableRecord {
    public static let databaseTableName = "apiOperation"
}

extension KilnDatabase {
    static func createOperationTable(_ db: Database) throws {
        try db.create(table: "apiOperation") { t in
            t.column("id", .text).primaryKey()
            t.column("kind", .text).notNull()
            t.column("resourceId", .text).notNull()
            t.column("subscription", .text).notNull()
            t.column("location", .text).notNull()
            t.column("runId", .text)
            t.column("status", .text).notNull()
            t.column("errorCode", .text)
            t.column("errorMessage", .text)
            t.column("startTime", .datetime).notNull()
            t.column("endTime", .datetime)
        }
        try db.create(index: "apiOperation_startTime", on: "apiOperation", columns: ["startTime"])
    }

    public func insertOperation(_ operation: OperationRecord) async throws(StoreError) {
        try await write { db in try operation.insert(db) }
    }

    public func operation(id: String) async throws(StoreError) -> OperationRecord? {
        try await read { db in try OperationRecord.fetchOne(db, key: id.lowercased()) }
    }

    /// Ends an operation that is still in progress (a second end is ignored: the first answer stands).
    @discardableResult
    public func finishOperation(id: String, status: OperationRecord.Status, errorCode: String?, errorMessage: String?) async throws(StoreError)
        -> OperationRecord
    {
        try await write { db in
            guard var op = try OperationRecord.fetchOne(db, key: id.lowercased()) else { throw StoreError.notFound("operation \(id)") }
            guard !op.status.isTerminal else { return op }
            op.status = status
            op.errorCode = errorCode
            op.errorMessage = errorMessage
            op.endTime = Date()
            try op.update(db)
            return op
        }
    }

    /// Forgets operations that ended before `date` (a client polls for minutes, not days).
    @discardableResult
    public func pruneOperations(endedBefore date: Date) async throws(StoreError) -> Int {
        try await write { db in try OperationRecord.filter(Column("endTime") != nil && Column("endTime") < date).deleteAll(db) }
    }
}
