import Foundation
import KilnCore
import KilnTemplates

/// A plan as `kiln plan --output json` prints it (and, next, the REST API and the dashboard).
public struct PlanDocument: Encodable, Sendable {
    public struct Item: Encodable, Sendable {
        public var action: PlanItem.Action.RawValue
        public var name: String
        public var id: String?
        public var file: String?
        public var reason: String?
        /// For a move: the id of the template it replaces.
        public var previous: String?
        /// For a wait: the change that waits.
        public var pending: PlanItem.Action.RawValue?
        public var contentHash: String?
        public var errors: [DiagnosticDocument]?

        public init(_ item: PlanItem) {
            action = item.action.rawValue
            name = item.name
            id = item.id
            file = item.file
            reason = item.reason
            previous = item.previous?.id
            pending = item.pending?.rawValue
            contentHash = item.desired?.contentHash
            errors = item.diagnostics.isEmpty ? nil : item.diagnostics.map(DiagnosticDocument.init)
        }
    }

    public var commit: String
    public var hasChanges: Bool
    public var items: [Item]

    public init(_ plan: Plan) {
        commit = plan.commit.hex
        hasChanges = plan.hasChanges
        items = plan.items.map(Item.init)
    }
}

/// `kiln reconcile --once --output json`: the plan, what applying it did, the runs it started as they ended.
public struct ReconcileDocument: Encodable, Sendable {
    public struct Outcome: Encodable, Sendable {
        public var action: String
        public var name: String
        public var result: String
        public var ok: Bool
        public var runId: String?
    }

    public var plan: PlanDocument
    public var outcomes: [Outcome]
    public var runs: [RunDocument]
    public var statusCommits: Int

    public init(_ result: Controller.OnceResult) {
        plan = PlanDocument(result.report.plan)
        outcomes = result.report.outcomes.map { Outcome(action: $0.item.action.rawValue, name: $0.item.name, result: $0.result, ok: $0.ok, runId: $0.runId) }
        runs = result.runs.map(RunDocument.init)
        statusCommits = result.statusCommits
    }

    enum CodingKeys: String, CodingKey { case outcomes, runs, statusCommits }

    /// The plan's keys at the top level, beside the outcomes, as before.
    public func encode(to encoder: any Encoder) throws {
        try plan.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(outcomes, forKey: .outcomes)
        try c.encode(runs, forKey: .runs)
        try c.encode(statusCommits, forKey: .statusCommits)
    }
}
