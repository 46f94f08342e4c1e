import Foundation
import KilnCore
import KilnGit
import KilnStore
import KilnTemplates
import Logging

/// What one reconcile did, item by item.
public struct ReconcileReport: Sendable {
    public struct Outcome: Sendable {
        public var item: PlanItem
        /// What happened, as a person reads it ("created, run 1a2b queued").
        public var result: String
        public var ok: Bool
        public var runId: String?
        /// The change could not be applied yet (a canceled run is still stopping).
        public var requeue = false
    }
    public var plan: Plan
    public var outcomes: [Outcome] = []
    public var galleryResults: [String] = []
    /// What was done to each trigger that changed.
    public struct TriggerOutcome: Sendable {
        public var summary: String
        public var result: String
        public var ok: Bool
    }
    public var triggerResults: [TriggerOutcome] = []

    /// A change waits for a run to end (or for a canceled run to stop): reconcile this commit again soon
    /// instead of waiting here (level-triggered, like controller-runtime's requeue).
    public var requeue = false

    public var failed: [Outcome] { outcomes.filter { !$0.ok } }
    public var queuedRuns: [String] { outcomes.compactMap(\.runId) }
    /// Whether any template is invalid or could not be applied: `kiln reconcile --once` exits non-zero.
    public var hasProblems: Bool { !failed.isEmpty || !plan.invalid.isEmpty || triggerResults.contains { !$0.ok } }

    /// For the status writer: recorded templates whose file currently fails to load (by lower-cased id), and
    /// invalid files that describe none.
    public var sourceErrors: SourceErrors { SourceErrors(plan) }
}

/// What fails to load at a commit, as the status writer reports it.
public struct SourceErrors: Sendable {
    public var byTemplate: [String: [Diagnostic]] = [:]
    public var files: [InvalidTemplateFile] = []

    public init() {}

    init(_ plan: Plan) {
        for item in plan.items {
            guard case .invalid(let file, let diagnostics, let kept) = item.change else { continue }
            if let kept { byTemplate[kept.id.lowercased()] = diagnostics } else { files.append(InvalidTemplateFile(file: file, diagnostics: diagnostics)) }
        }
    }
}

/// Desired state (a commit of the watched repository) against recorded state (the store): plan, then apply.
/// Level-triggered and idempotent: a second reconcile of the same commit plans nothing but `unchanged`.
public actor Reconciler {
    public let core: KilnCore
    public let mirror: RepositoryMirror
    /// Overrides `kiln.yaml`'s `paths.templates` (the controller's `--path`).
    public var templatesPath: String?
    let cache = DesiredStateCache()
    let logger: Logger

    public init(core: KilnCore, mirror: RepositoryMirror, templatesPath: String? = nil, logger: Logger = Logger(label: "kiln.gitops")) {
        self.core = core
        self.mirror = mirror
        self.templatesPath = templatesPath
        self.logger = logger
    }

    var source: GitSource { mirror.source }

    /// The desired state at `commit`, parsed incrementally.
    public func desired(at commit: ObjectID) async throws(GitError) -> DesiredState {
        var excluding = ["status/"]
        if source.statusBranch != source.branch { excluding = [] }
        let state = try await DesiredStateReader.read(
            mirror.repo, at: commit, cache: cache, excluding: excluding, templatesPath: templatesPath,
            policy: core.artifactPolicy)
        return state
    }

    /// The plan for `commit` against the store.
    public func plan(at commit: ObjectID) async throws -> Plan {
        let missesBefore = cache.misses
        let desired = try await desired(at: commit)
        let recorded = try await core.managedTemplates(by: source.key)
        // Why things changed: one diff per distinct recorded commit (usually one).
        var changed: [String: Set<String>] = [:]
        let recordedKeys = Set(recorded.map { $0.id.lowercased() })
        let needsDiff = desired.templates.contains { recordedKeys.contains($0.key) }
        if needsDiff {
            let byKey = Dictionary(recorded.map { ($0.id.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
            let commits = Set(
                desired.templates.compactMap { d -> String? in
                    guard let r = byKey[d.key], r.contentHash != d.contentHash else { return nil }
                    return r.sourceCommit
                })
            for c in commits {
                guard let old = ObjectID(hex: c) else { continue }
                if let diff = try? await mirror.repo.changes(from: old, to: commit) {
                    changed[c] = Set(diff.flatMap { [$0.oldPath, $0.newPath].compactMap { $0 } })
                }
            }
        }
        var plan = Planner.plan(desired: desired, recorded: recorded, changedPaths: changed, sources: await currentSources(desired))
        let recreated = Set(plan.items.filter { [.recreate, .move].contains($0.action) }.compactMap { $0.id?.lowercased() })
        plan.triggers = Planner.planTriggers(plan.desiredTriggers, recorded: try await recordedTriggers(), recreatedTemplates: recreated)
        // After reparsing many files, give the freed memory back (glibc keeps it otherwise): a controller
        // watching a large repository should not sit at its peak.
        if cache.misses - missesBefore > 500 { MemoryTrim.trim() }
        return plan
    }

    /// What the source of each template built on another template of the repository resolves to now (each
    /// distinct source resolved once; the others are not resolved at all, so a large repository of
    /// independent templates costs nothing here).
    func currentSources(_ desired: DesiredState) async -> [String: BuiltSource] {
        let graph = LineageGraph(desired.templates.map(\.lineage))
        var resolved: [ImageSource: BuiltSource?] = [:]
        var out: [String: BuiltSource] = [:]
        for (n, d) in desired.templates.enumerated() where graph.follows[n] && !graph.producers[n].isEmpty {
            let source = d.loaded.template.properties.source
            if resolved[source] == nil { resolved[source] = .some(await core.currentSource(of: source)) }
            if let now = resolved[source] ?? nil { out[d.key] = now }
        }
        return out
    }

    /// Plans and applies `commit`.
    public func reconcile(_ commit: ObjectID) async throws -> ReconcileReport {
        let plan = try await plan(at: commit)
        return await apply(plan)
    }

    /// Applies a plan: gallery definitions, cancels, deletes, creates, moves, runs. One item failing does not
    /// stop the others.
    public func apply(_ plan: Plan) async -> ReconcileReport {
        var report = ReconcileReport(plan: plan)
        for g in plan.galleries {
            do {
                let (_, change) = try await core.ensureGalleryDefinition(g)
                if change != .unchanged { report.galleryResults.append("\(change.rawValue) gallery image definition \(g.id)") }
            } catch {
                report.galleryResults.append("gallery image definition \(g.id): \(error)")
            }
        }
        // The plan lists templates in build order (producers first).
        for item in plan.items where item.isChange {
            var outcome: ReconcileReport.Outcome
            do {
                outcome = try await apply(item, item.change, commit: plan.commit)
            } catch {
                outcome = ReconcileReport.Outcome(item: item, result: "\(error)", ok: false)
                var meta: Logger.Metadata = ["template": "\(item.id ?? item.name)", "action": "\(item.action.rawValue)", "error": "\(error)"]
                if let file = item.file { meta["file"] = "\(file)" }
                if let run = item.affected?.lastRunId { meta["run"] = "\(run)" }
                logger.error("reconcile failed for a template", metadata: meta)
            }
            outcome.item = item
            if outcome.requeue { report.requeue = true }
            report.outcomes.append(outcome)
        }
        if plan.items.contains(where: { $0.action == .wait }) { report.requeue = true }
        await applyTriggers(plan, into: &report)
        return report
    }

    /// The triggers this repository made.
    func recordedTriggers() async throws(CoreError) -> [TriggerRecord] {
        try await core.triggers().filter { $0.managedBy == source.key }
    }

    /// Triggers, after the templates: planned again against what is recorded now (a recreated template took
    /// its trigger with it), then created, recreated or deleted. One failing does not stop the others.
    func applyTriggers(_ plan: Plan, into report: inout ReconcileReport) async {
        guard !plan.desiredTriggers.isEmpty || !plan.triggers.isEmpty else { return }
        let now: [TriggerRecord]
        do { now = try await recordedTriggers() } catch {
            report.triggerResults.append(.init(summary: "triggers", result: "\(error)", ok: false))
            return
        }
        let origin = { (d: DesiredTrigger) in TriggerOrigin(file: d.file, commit: plan.commit.hex, managedBy: self.source.key) }
        for item in Planner.planTriggers(plan.desiredTriggers, recorded: now) where item.isChange {
            do {
                switch item.change {
                case .create(let d):
                    _ = try await core.createTrigger(template: d.resource.templateId, name: d.resource.name, kind: d.resource.kind, origin: origin(d))
                case .recreate(let old, let d):
                    try await core.deleteTrigger(id: old.id)
                    _ = try await core.createTrigger(template: d.resource.templateId, name: d.resource.name, kind: d.resource.kind, origin: origin(d))
                case .delete(let r):
                    try await core.deleteTrigger(id: r.id)
                case .unchanged:
                    break
                }
                report.triggerResults.append(.init(summary: item.summary, result: "done", ok: true))
            } catch {
                report.triggerResults.append(.init(summary: item.summary, result: "\(error)", ok: false))
                logger.error("reconcile failed for a trigger", metadata: ["trigger": "\(item.name)", "error": "\(error)"])
            }
        }
    }

    /// Applies one change. A cancel-first cancels the run and applies the change at once only when the run
    /// ended right away (it was still queued); otherwise the outcome asks for a requeue and the next reconcile,
    /// seeing the run ended, applies it.
    func apply(_ item: PlanItem, _ change: PlanItem.Change, commit: ObjectID) async throws -> ReconcileReport.Outcome {
        var outcome = ReconcileReport.Outcome(item: item, result: "", ok: true)
        switch change {
        case .cancelFirst(let run, let then):
            guard let affected = item.affected else { return outcome }
            let canceled = try await core.cancel(affected.id)
            if canceled.isActive {
                outcome.result = "canceling run \(run) first; the change follows once it has stopped"
                outcome.requeue = true
                return outcome
            }
            return try await apply(item, then, commit: commit)
        case .delete(let r):
            try await core.delete(r.id)
            outcome.result = "deleted"
        case .recreate(let old, let new):
            try await core.delete(old.id, keepNewestImage: true)
            outcome = try await create(item, new, commit: commit, verb: "recreated")
        case .rebind(let old, let new):
            try await core.rebind(templateId: old.id, file: new.file, commit: commit.hex)
            outcome.result = "moved (\(old.sourceFile ?? "?") → \(new.file)), not rebuilt"
        case .move(let old, let new):
            try await core.delete(old.id, keepNewestImage: true)
            outcome = try await create(item, new, commit: commit, verb: "moved from \(old.name)")
        case .create(let d):
            outcome = try await create(item, d, commit: commit, verb: "created")
        case .run(let r, _):
            let run = try await core.queueRun(r.id)
            outcome.result = "run \(run.id) queued"
            outcome.runId = run.id
        case .unchanged, .invalid, .wait, .rebuild:
            break
        }
        return outcome
    }

    func create(_ item: PlanItem, _ d: DesiredTemplate, commit: ObjectID, verb: String) async throws -> ReconcileReport.Outcome {
        let origin = TemplateOrigin(
            file: d.file, commit: commit.hex,
            relativeArtifacts: CommitArtifactSource(repo: mirror.repo, commit: commit, resolved: d.resolvedReferences),
            managedBy: source.key, contentHash: d.contentHash)
        let resource: TemplateResource
        do {
            resource = try await core.create(d.loaded, origin: origin)
        } catch {
            if Self.isConflict(error) {
                throw CoreError.conflict(
                    "\(d.id) exists and was not created from this repository (\(source.key)); the controller manages it once it is deleted",
                    remedy: .delete(template: d.name))
            }
            throw error
        }
        var outcome = ReconcileReport.Outcome(item: item, result: verb, ok: true)
        guard resource.provisioningState == .succeeded else {
            outcome.ok = false
            outcome.result =
                "\(verb), but provisioning failed: \(resource.record.provisioningErrorCode ?? ""): \(resource.record.provisioningErrorMessage ?? "")"
            return outcome
        }
        if !item.waitsFor.isEmpty, RunPolicy(d.loaded.template) == .auto {
            outcome.result += "; its run follows, after \(item.waitsFor.joined(separator: ", "))"
            return outcome
        }
        switch RunPolicy(d.loaded.template) {
        case .auto:
            let run = try await core.queueRun(resource)
            outcome.result += ", run \(run.id) queued"
            outcome.runId = run.id
        case .autoRunByCore:
            if let run = try await core.latestRun(templateId: resource.record.id) {
                outcome.result += ", run \(run.id) queued (autoRun)"
                outcome.runId = run.id
            }
        case .manual:
            outcome.result += " (kiln.run: manual, not run)"
        }
        return outcome
    }

    static func isConflict(_ e: CoreError) -> Bool {
        e.kind == .conflict
    }

}

/// Returns freed heap memory to the system.
enum MemoryTrim {
    /// glibc's `malloc_trim`, looked up at run time (its header is not part of Swift's Glibc module).
    static let mallocTrim: (@convention(c) (Int) -> Int32)? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(sym, to: (@convention(c) (Int) -> Int32).self)
    }()

    static func trim() { _ = mallocTrim?(0) }
}
