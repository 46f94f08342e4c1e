import Foundation
import GRDB
import KilnTemplates

/// The SQL spelling of the active run states, for filters.
private let activeRunStates = RunState.active.map(\.rawValue)

/// Template resources and their runs. Every check-then-act (create on a free id, refuse a delete while a run
/// is active, claim a queued run under the parallelism limit) happens inside one write transaction, so
/// several processes sharing the database (the CLI, a worker, the controller) cannot interleave them.
extension KilnDatabase {
    // MARK: Templates

    /// Inserts a new template; an id that exists is a conflict (templates are immutable: PUT never updates).
    public func insertTemplate(_ record: TemplateRecord) async throws(StoreError) {
        try await write { db in
            if try TemplateRecord.fetchOne(db, key: record.idKey) != nil { throw StoreError.conflict("image template \(record.id)") }
            try record.insert(db)
        }
    }

    public func template(id: String) async throws(StoreError) -> TemplateRecord? {
        try await read { db in try TemplateRecord.fetchOne(db, key: id.lowercased()) }
    }

    /// Templates whose name is `name` (ignoring case), in any subscription and group.
    public func templates(named name: String) async throws(StoreError) -> [TemplateRecord] {
        try await read { db in
            try TemplateRecord.filter(sql: "name = ? COLLATE NOCASE", arguments: [name]).order(Column("idKey")).fetchAll(db)
        }
    }

    /// All templates, optionally of one subscription and resource group (compared ignoring case).
    public func templates(subscription: String? = nil, resourceGroup: String? = nil) async throws(StoreError) -> [TemplateRecord] {
        try await read { db in
            var q = TemplateRecord.all()
            if let subscription { q = q.filter(sql: "subscription = ? COLLATE NOCASE", arguments: [subscription]) }
            if let resourceGroup { q = q.filter(sql: "resourceGroup = ? COLLATE NOCASE", arguments: [resourceGroup]) }
            return try q.order(Column("idKey")).fetchAll(db)
        }
    }

    /// Changes a template in place; returns the new record.
    @discardableResult
    public func updateTemplate(id: String, _ change: @Sendable @escaping (inout TemplateRecord) throws -> Void) async throws(StoreError) -> TemplateRecord {
        try await write { db in
            guard var record = try TemplateRecord.fetchOne(db, key: id.lowercased()) else { throw StoreError.notFound("image template \(id)") }
            try change(&record)
            record.updatedAt = Date()
            try record.update(db)
            return record
        }
    }

    /// Marks a template Deleting, refused while one of its runs is Running or Canceling. The caller removes
    /// the staging area and then calls `removeTemplate`.
    @discardableResult
    public func beginDeleteTemplate(id: String) async throws(StoreError) -> TemplateRecord {
        try await write { db in
            guard var record = try TemplateRecord.fetchOne(db, key: id.lowercased()) else { throw StoreError.notFound("image template \(id)") }
            if let run = try Self.activeRun(db, templateKey: record.idKey) {
                throw StoreError.refused(.runActive(template: record.name, runId: run.id, state: run.runState, subState: run.runSubState))
            }
            record.provisioningState = .deleting
            record.updatedAt = Date()
            try record.update(db)
            return record
        }
    }

    /// Removes the template row and, with it, its runs.
    public func removeTemplate(id: String) async throws(StoreError) {
        try await write { db in _ = try TemplateRecord.deleteOne(db, key: id.lowercased()) }
    }

    // MARK: Runs

    static func activeRun(_ db: Database, templateKey: String) throws -> RunRecord? {
        try RunRecord.filter(Column("templateKey") == templateKey && activeRunStates.contains(Column("runState"))).fetchOne(db)
    }

    /// Queues a run; refused while another run of the template is active or the template is not Succeeded.
    public func insertRun(_ run: RunRecord) async throws(StoreError) {
        try await write { db in try Self.insertRun(db, run) }
    }

    /// The checks and the insert of `insertRun`, inside a caller's transaction.
    static func insertRun(_ db: Database, _ run: RunRecord) throws {
        guard let t = try TemplateRecord.fetchOne(db, key: run.templateKey) else { throw StoreError.notFound("image template \(run.templateId)") }
        guard t.provisioningState == .succeeded else {
            throw StoreError.refused(.templateNotRunnable(template: t.name, state: t.provisioningState))
        }
        if let active = try Self.activeRun(db, templateKey: run.templateKey) {
            throw StoreError.refused(.runActive(template: t.name, runId: active.id, state: active.runState, subState: active.runSubState))
        }
        try run.insert(db)
    }

    public func run(id: String) async throws(StoreError) -> RunRecord? {
        try await read { db in try RunRecord.fetchOne(db, key: id) }
    }

    /// A template's runs, newest first.
    public func runs(templateId: String) async throws(StoreError) -> [RunRecord] {
        try await read { db in
            try RunRecord.filter(Column("templateKey") == templateId.lowercased()).order(Column("queuedAt").desc, Column("id")).fetchAll(db)
        }
    }

    public func latestRun(templateId: String) async throws(StoreError) -> RunRecord? {
        try await read { db in
            try RunRecord.filter(Column("templateKey") == templateId.lowercased()).order(Column("queuedAt").desc).fetchOne(db)
        }
    }

    /// Every run that has not finished, of every template.
    public func activeRuns() async throws(StoreError) -> [RunRecord] {
        try await read { db in
            try RunRecord.filter(activeRunStates.contains(Column("runState"))).order(Column("queuedAt")).fetchAll(db)
        }
    }

    /// The unfinished runs of the templates one GitOps source manages.
    public func activeRuns(managedBy: String) async throws(StoreError) -> [RunRecord] {
        try await read { db in
            try RunRecord.fetchAll(
                db,
                sql: """
                    SELECT templateRun.* FROM templateRun JOIN imageTemplate ON imageTemplate.idKey = templateRun.templateKey
                    WHERE templateRun.runState IN (\(activeRunStates.map { "'\($0)'" }.joined(separator: ", "))) AND imageTemplate.managedBy = ?
                    ORDER BY templateRun.queuedAt
                    """, arguments: [managedBy])
        }
    }

    /// Changes a run in place; returns the new record.
    @discardableResult
    public func updateRun(id: String, _ change: @Sendable @escaping (inout RunRecord) throws -> Void) async throws(StoreError) -> RunRecord {
        try await write { db in
            guard var run = try RunRecord.fetchOne(db, key: id) else { throw StoreError.notFound("run \(id)") }
            try change(&run)
            try run.update(db)
            return run
        }
    }

    /// Applies `claim` (the core's claim transition) to a queued, unowned run (the oldest, or `runId`) if fewer
    /// than `parallelism` runs are being executed across all processes. Nil when there is none or no slot is free.
    public func claimQueuedRun(
        parallelism: Int, runId: String? = nil,
        claim: @Sendable @escaping (inout RunRecord) throws -> Void
    ) async throws(StoreError) -> RunRecord? {
        try await write { db in
            let executing = try RunRecord.filter(activeRunStates.contains(Column("runState")) && Column("owner") != nil).fetchCount(db)
            guard executing < parallelism else { return nil }
            var q = RunRecord.filter(
                Column("runState") == RunState.running.rawValue && Column("runSubState") == RunSubState.queued.rawValue
                    && Column("owner") == nil)
            if let runId { q = q.filter(Column("id") == runId) }
            guard var run = try q.order(Column("queuedAt")).fetchOne(db) else { return nil }
            try claim(&run)
            try run.update(db)
            return run
        }
    }
}

/// What the metrics endpoint reports about the store, read in one transaction.
public struct StoreCounts: Sendable, Hashable {
    /// Templates by `provisioningState`.
    public var templatesByState: [ProvisioningState: Int]
    /// Runs by AIB `runState`.
    public var runsByState: [RunState: Int]
    /// Runs waiting for a worker: queued and not yet claimed.
    public var queued: Int
}

extension KilnDatabase {
    /// A trivial read: the store opens and answers (for `/readyz`, probed every few seconds).
    public func ping() async throws(StoreError) {
        _ = try await read { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    public func counts() async throws(StoreError) -> StoreCounts {
        try await read { db in
            var templates: [ProvisioningState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT provisioningState, COUNT(*) FROM imageTemplate GROUP BY provisioningState") {
                templates[try state(row[0], column: "imageTemplate.provisioningState")] = row[1]
            }
            var runs: [RunState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT runState, COUNT(*) FROM templateRun GROUP BY runState") {
                runs[try state(row[0], column: "templateRun.runState")] = row[1]
            }
            let queued =
                try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM templateRun WHERE runState = ? AND runSubState = ? AND owner IS NULL",
                    arguments: [RunState.running.rawValue, RunSubState.queued.rawValue]) ?? 0
            return StoreCounts(templatesByState: templates, runsByState: runs, queued: queued)
        }
    }

    /// Runs that ended at or after `date`, oldest first.
    public func runsEnded(since date: Date) async throws(StoreError) -> [RunRecord] {
        try await read { db in
            try RunRecord.filter(Column("endTime") >= date).order(Column("endTime")).fetchAll(db)
        }
    }
}

/// The columns the reconciler compares, without the template document: cheap to load for many templates.
public struct ManagedTemplateSummary: Sendable, Hashable {
    public var id: String
    public var name: String
    public var resourceGroup: String
    public var sourceFile: String?
    public var sourceCommit: String?
    public var contentHash: String
    public var provisioningState: ProvisioningState
    /// The newest run's state and id, if any.
    public var lastRunState: RunState?
    public var lastRunSubState: RunSubState?
    public var lastRunId: String?
    /// What the newest run that resolved its source was built from, whatever its end (a run that keeps
    /// failing on one source is not retried for it on every reconcile).
    public var lastAttemptSource: BuiltSource?

    public init(
        id: String, name: String, resourceGroup: String, sourceFile: String?, sourceCommit: String?, contentHash: String,
        provisioningState: ProvisioningState, lastRunState: RunState?, lastRunSubState: RunSubState?, lastRunId: String?,
        lastAttemptSource: BuiltSource? = nil
    ) {
        self.id = id
        self.name = name
        self.resourceGroup = resourceGroup
        self.sourceFile = sourceFile
        self.sourceCommit = sourceCommit
        self.contentHash = contentHash
        self.provisioningState = provisioningState
        self.lastRunState = lastRunState
        self.lastRunSubState = lastRunSubState
        self.lastRunId = lastRunId
        self.lastAttemptSource = lastAttemptSource
    }
}

extension KilnDatabase {
    /// Every template `managedBy` owns, with its newest run, in one read transaction.
    public func managedTemplates(by managedBy: String) async throws(StoreError) -> [ManagedTemplateSummary] {
        try await read { db in
            // Plain scans joined here: cheaper than a correlated subquery per template at 10,000 templates.
            // (SQLite takes a bare column of a MAX() aggregate from the row holding the maximum.)
            var latest: [String: (id: String, state: RunState, sub: RunSubState?)] = [:]
            let runs = try Row.fetchCursor(
                db,
                sql: """
                    SELECT r.templateKey, r.id, r.runState, r.runSubState, MAX(r.queuedAt) FROM templateRun r
                    JOIN imageTemplate t ON t.idKey = r.templateKey WHERE t.managedBy = ? GROUP BY r.templateKey
                    """, arguments: [managedBy])
            while let row = try runs.next() {
                let sub: String? = row[3]
                latest[row[0]] = (row[1], try state(row[2], column: "templateRun.runState"), try sub.map { try state($0, column: "templateRun.runSubState") })
            }
            var attempted: [String: BuiltSource] = [:]
            let sources = try Row.fetchCursor(
                db,
                sql: """
                    SELECT r.templateKey, r.sourceReference, r.sourceSha256, MAX(r.queuedAt) FROM templateRun r
                    JOIN imageTemplate t ON t.idKey = r.templateKey WHERE t.managedBy = ? AND r.sourceReference IS NOT NULL
                    GROUP BY r.templateKey
                    """, arguments: [managedBy])
            while let row = try sources.next() { attempted[row[0]] = BuiltSource(reference: row[1], sha256: row[2]) }
            var out: [ManagedTemplateSummary] = []
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT idKey, id, name, resourceGroup, sourceFile, sourceCommit, contentHash, provisioningState
                    FROM imageTemplate WHERE managedBy = ? ORDER BY idKey
                    """, arguments: [managedBy])
            while let row = try rows.next() {
                let key: String = row[0]
                let run = latest[key]
                out.append(
                    ManagedTemplateSummary(
                        id: row[1], name: row[2], resourceGroup: row[3], sourceFile: row[4], sourceCommit: row[5],
                        contentHash: row[6], provisioningState: try state(row[7], column: "imageTemplate.provisioningState"),
                        lastRunState: run?.state, lastRunSubState: run?.sub, lastRunId: run?.id, lastAttemptSource: attempted[key]))
            }
            return out
        }
    }
}

/// A state column read back as its enum: a value Kiln did not write is an error, never a silent default.
func state<S: RawRepresentable<String>>(_ text: String?, column: String) throws(StoreError) -> S {
    guard let text, let value = S(rawValue: text) else {
        throw StoreError.database("\(column) holds '\(text ?? "NULL")', which is not a state Kiln writes")
    }
    return value
}
