import Foundation
import KilnGit
import KilnStore
import KilnTemplates

/// One line of a plan: what the reconciler will do to one template (or one broken file), and why.
public struct PlanItem: Sendable {
    /// The change, with exactly the records it needs: no optional whose meaning depends on the action.
    public indirect enum Change: Sendable {
        /// New in the repository.
        case create(DesiredTemplate)
        /// Content changed: delete, then create (templates are immutable).
        case recreate(old: ManagedTemplateSummary, new: DesiredTemplate)
        /// Same id, same content, another file: only the record's origin follows the file; nothing is rebuilt.
        case rebind(ManagedTemplateSummary, to: DesiredTemplate)
        /// The same content under a new id (a rename): the old is deleted, the new created.
        case move(from: ManagedTemplateSummary, to: DesiredTemplate)
        /// Gone from the repository: deleted, with its staging area.
        case delete(ManagedTemplateSummary)
        /// Queue a run of the template as it is: created but never run, or its source now resolves to an image
        /// other than the one its last run used (a producer in the repository published a new version).
        case run(ManagedTemplateSummary, DesiredTemplate)
        /// Unchanged, but the image its source follows is being rebuilt (by this plan or a run in progress):
        /// nothing to apply now; it is run once its producers are done (`run` in that later plan).
        case rebuild(ManagedTemplateSummary, DesiredTemplate)
        case unchanged(ManagedTemplateSummary, DesiredTemplate)
        /// The file does not load; the template it used to describe (if any) is kept as it was.
        case invalid(file: String, diagnostics: [Diagnostic], kept: ManagedTemplateSummary?)
        /// The change waits for a run in progress to end (`onChangeDuringRun: wait`): the reconcile is requeued.
        case wait(run: String, pending: Change)
        /// The run in progress is canceled first (`onChangeDuringRun: cancel`); the change follows once it stopped.
        case cancelFirst(run: String, then: Change)
    }

    /// The verb a plan prints for a change.
    public enum Action: String, Sendable, Hashable {
        case create, recreate, move, delete, run, rebuild, unchanged, invalid, wait
    }

    public var change: Change
    /// Why, as a person reads it: "scripts/setup.sh changed".
    public var reason: String?
    /// The templates of the repository that publish this one's source and are being rebuilt: a create,
    /// recreate or move is applied, but its run is left to a later plan, once they are done.
    public var waitsFor: [String] = []

    public init(_ change: Change, reason: String? = nil) {
        self.change = change
        self.reason = reason
    }

    public var action: Action {
        switch change {
        case .create: return .create
        case .recreate: return .recreate
        case .rebind, .move: return .move
        case .delete: return .delete
        case .run: return .run
        case .rebuild: return .rebuild
        case .unchanged: return .unchanged
        case .invalid: return .invalid
        case .wait: return .wait
        case .cancelFirst(_, let then): return PlanItem(then).action
        }
    }

    /// The desired template, when the repository defines one.
    public var desired: DesiredTemplate? {
        switch change {
        case .create(let d), .recreate(_, let d), .rebind(_, let d), .move(_, let d), .run(_, let d), .rebuild(_, let d), .unchanged(_, let d):
            return d
        case .delete, .invalid: return nil
        case .wait(_, let c), .cancelFirst(_, let c): return PlanItem(c).desired
        }
    }

    /// The recorded template with this item's id (the one replaced, deleted or kept).
    public var recorded: ManagedTemplateSummary? {
        switch change {
        case .create, .move: return nil
        case .recreate(let r, _), .rebind(let r, _), .delete(let r), .run(let r, _), .rebuild(let r, _), .unchanged(let r, _): return r
        case .invalid(_, _, let kept): return kept
        case .wait(_, let c), .cancelFirst(_, let c): return PlanItem(c).recorded
        }
    }

    /// For a move or rebind: the template it replaces.
    public var previous: ManagedTemplateSummary? {
        switch change {
        case .move(let r, _), .rebind(let r, _): return r
        case .wait(_, let c), .cancelFirst(_, let c): return PlanItem(c).previous
        default: return nil
        }
    }

    /// The template whose run is in the way (the old one for a move).
    var affected: ManagedTemplateSummary? { previous ?? recorded }

    /// The template name (for an invalid file that never loaded, the file).
    public var name: String {
        if let d = desired { return d.name }
        if let r = recorded { return r.name }
        if case .invalid(let file, _, _) = change { return file }
        return "?"
    }

    /// The resource id this item is about (the new one for a move).
    public var id: String? { desired?.id ?? recorded?.id }

    public var file: String? {
        if case .invalid(let file, _, _) = change { return file }
        return desired?.file ?? recorded?.sourceFile
    }

    /// The run in progress a change cancels first.
    public var cancelRun: String? {
        if case .cancelFirst(let run, _) = change { return run }
        return nil
    }

    /// For a wait: the action that waits.
    public var pending: Action? {
        if case .wait(_, let c) = change { return PlanItem(c).action }
        return nil
    }

    public var diagnostics: [Diagnostic] {
        if case .invalid(_, let d, _) = change { return d }
        return []
    }

    /// Whether applying this item changes anything now.
    public var isChange: Bool { ![.unchanged, .invalid, .wait, .rebuild].contains(action) }

    /// "recreate ubuntu-base (scripts/setup.sh changed)".
    public var summary: String {
        var s: String
        switch action {
        case .move: s = "move \(previous?.name ?? "?") → \(name)"
        case .wait: s = "wait \(name)"
        default: s = "\(action.rawValue) \(name)"
        }
        if let file, action != .invalid || diagnostics.isEmpty { s += " [\(file)]" }
        if let reason { s += " (\(reason))" }
        return s
    }
}

/// What the reconciler will do for one commit.
public struct Plan: Sendable {
    public var commit: ObjectID
    public var items: [PlanItem]
    public var galleries: [GalleryImageDefinition]
    /// The triggers the repository declares (applied after the templates), and what the plan does to them.
    public var desiredTriggers: [DesiredTrigger] = []
    public var triggers: [TriggerPlanItem] = []

    public var changes: [PlanItem] { items.filter(\.isChange) }
    public var hasChanges: Bool { items.contains(where: \.isChange) || triggers.contains(where: \.isChange) }
    public var invalid: [PlanItem] { items.filter { $0.action == .invalid } }
}

/// Desired (from the repository) against recorded (the store): a pure function, so it is unit-tested without
/// git or a database, and cheap enough to run on every poll that saw a new commit.
public enum Planner {
    /// - Parameters:
    ///   - changedPaths: for each recorded source commit, the files changed from it to `desired.commit`;
    ///     only used to say *why* something is recreated.
    ///   - sources: what the source of each template built on another template of the repository resolves to
    ///     now, by template key (see `LineageGraph`); a source that moved since the template's last run
    ///     rebuilds it.
    public static func plan(
        desired all: DesiredState, recorded: [ManagedTemplateSummary], changedPaths: [String: Set<String>] = [:],
        sources: [String: BuiltSource] = [:]
    ) -> Plan {
        let desired = withoutCycles(withKnownTriggerTemplates(all))
        var items: [PlanItem] = []
        var recordedByKey = Dictionary(recorded.map { ($0.id.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        let desiredKeys = Set(desired.templates.map(\.key))
        let invalidFiles = Dictionary(desired.invalid.map { ($0.file, $0) }, uniquingKeysWith: { a, _ in a })
        let onChange = desired.config.onChangeDuringRun

        // Recorded templates that leave: candidates for a move (same content hash under a new id).
        var leaving: [String: [ManagedTemplateSummary]] = [:]
        for r in recorded where !desiredKeys.contains(r.id.lowercased()) {
            if let f = r.sourceFile, invalidFiles[f] != nil { continue }
            leaving[r.contentHash, default: []].append(r)
        }
        var movedAway = Set<String>()

        for d in desired.templates {
            let key = d.key
            var item = PlanItem(.create(d))
            if let r = recordedByKey.removeValue(forKey: key) {
                item = PlanItem(.unchanged(r, d))
                if r.contentHash != d.contentHash {
                    item = PlanItem(.recreate(old: r, new: d), reason: why(d, r, changedPaths[r.sourceCommit ?? ""]))
                } else if r.sourceFile != d.file {
                    // Same id, same content, another file: the resource does not change; only where it comes from.
                    item = PlanItem(.rebind(r, to: d), reason: "\(r.sourceFile ?? "?") renamed to \(d.file); same content, not rebuilt")
                } else if r.provisioningState == .failed, r.sourceCommit != desired.commit.hex {
                    item = PlanItem(.recreate(old: r, new: d), reason: "its create failed; retried at the new commit")
                } else if r.provisioningState == .succeeded, r.lastRunId == nil, RunPolicy(d.loaded.template) != .manual {
                    item = PlanItem(.run(r, d), reason: "created but never run")
                }
            } else if var candidates = leaving[d.contentHash], !candidates.isEmpty {
                let r = candidates.removeFirst()
                leaving[d.contentHash] = candidates
                movedAway.insert(r.id.lowercased())
                recordedByKey.removeValue(forKey: r.id.lowercased())
                item = PlanItem(
                    .move(from: r, to: d), reason: r.sourceFile == d.file ? "renamed from \(r.name)" : "\(r.sourceFile ?? r.name) → \(d.file), same content")
            }
            items.append(guardRun(item, onChange))
        }
        // One item per desired template so far, in the same order: follow the sources, then order by them.
        let graph = LineageGraph(desired.templates.map(\.lineage))
        followSources(&items, desired: desired, graph: graph, sources: sources)
        items = graph.order().map { items[$0] }

        for r in recordedByKey.values.sorted(by: { $0.id < $1.id }) where !movedAway.contains(r.id.lowercased()) {
            if let f = r.sourceFile, let bad = invalidFiles[f] {
                items.append(PlanItem(.invalid(file: f, diagnostics: bad.diagnostics, kept: r), reason: "\(f) does not load; the last good template is kept"))
                continue
            }
            let item = PlanItem(.delete(r), reason: r.sourceFile.map { "\($0) no longer defines it" } ?? "no longer in the repository")
            items.append(guardRun(item, onChange))
        }

        let described = Set(recorded.compactMap(\.sourceFile))
        for bad in desired.invalid where !described.contains(bad.file) {
            items.append(
                PlanItem(
                    .invalid(file: bad.file, diagnostics: bad.diagnostics, kept: nil),
                    reason: bad.diagnostics.first.map { "\($0.path): \($0.message)" }))
        }
        var plan = Plan(commit: desired.commit, items: items, galleries: desired.galleries)
        plan.desiredTriggers = desired.triggers
        return plan
    }

    /// A change that would delete a template under a running build waits for it, or cancels it first.
    static func guardRun(_ item: PlanItem, _ onChange: RepositoryConfig.OnChangeDuringRun) -> PlanItem {
        // Called for every template on every plan: the common case (nothing replaced) returns before any work.
        let affected: ManagedTemplateSummary
        switch item.change {
        case .recreate(let r, _), .delete(let r), .move(let r, _): affected = r
        default: return item
        }
        guard let state = affected.lastRunState, state.isActive, let run = affected.lastRunId else { return item }
        let because = item.reason.map { $0 + "; " } ?? ""
        // A run already canceling can only be waited for.
        if onChange == .cancel, state == .running {
            return PlanItem(.cancelFirst(run: run, then: item.change), reason: because + "cancels run \(run) first")
        }
        return PlanItem(.wait(run: run, pending: item.change), reason: because + "waits for run \(run) to finish")
    }

    /// Which inputs changed, in words: the template file, or the scripts it references.
    static func why(_ d: DesiredTemplate, _ r: ManagedTemplateSummary, _ changed: Set<String>?) -> String {
        guard let changed else { return "content changed" }
        var parts: [String] = []
        if changed.contains(d.file) || r.sourceFile != d.file { parts.append(d.file) }
        parts += d.referencedFiles.keys.sorted().filter { changed.contains($0) }
        // A script the template no longer references also changes the hash.
        return parts.isEmpty ? "content changed" : parts.joined(separator: ", ") + " changed"
    }
}

/// Whether the reconciler triggers a run after creating a template: yes unless the template is tagged
/// `kiln.run: manual`. (A template with `autoRun` enabled is run by the core itself.)
public enum RunPolicy: Sendable, Hashable {
    case auto, manual, autoRunByCore

    public init(_ t: ImageTemplate) {
        if t.properties.autoRun.state == .enabled { self = .autoRunByCore; return }
        let tag = t.tags.first { $0.key.lowercased() == "kiln.run" }?.value.lowercased()
        self = tag == "manual" ? .manual : .auto
    }
}
