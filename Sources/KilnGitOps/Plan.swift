import Foundation
import KilnGit
import KilnStore
import KilnTemplates

/// One line of a plan: what the reconciler will do to one template (or one broken file), and why.
public struct PlanItem: Sendable {
    public enum Action: String, Sendable, Hashable {
        /// New in the repository.
        case create
        /// Content changed: delete, then create (templates are immutable).
        case recreate
        /// The same content under a new path or name: the old is deleted, the new created.
        case move
        /// Gone from the repository: deleted, with its staging area.
        case delete
        /// Created but never run (a run was due and never started): queue it.
        case run
        case unchanged
        /// The file does not load; a template it used to describe is kept as it was.
        case invalid
        /// A change waits for a run in progress to end (`onChangeDuringRun: wait`).
        case wait
    }

    public var action: Action
    /// The template name (for an invalid file that never loaded, the file).
    public var name: String
    /// The resource id this item is about (the new one for a move).
    public var id: String?
    public var file: String?
    /// Why, as a person reads it: "scripts/setup.sh changed".
    public var reason: String?
    public var desired: DesiredTemplate?
    public var recorded: ManagedTemplateSummary?
    /// For a move: the template it replaces. For a wait or a cancel: the change that waits.
    public var previous: ManagedTemplateSummary?
    /// The run in progress a change has to cancel first (`onChangeDuringRun: cancel`).
    public var cancelRun: String?
    /// For `invalid`: what is wrong.
    public var diagnostics: [Diagnostic] = []
    /// For `wait`: the action that waits.
    public var pending: Action?

    /// Whether applying this item changes anything.
    public var isChange: Bool { ![.unchanged, .invalid, .wait].contains(action) }

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

    public var changes: [PlanItem] { items.filter(\.isChange) }
    public var hasChanges: Bool { items.contains(where: \.isChange) }
    public var invalid: [PlanItem] { items.filter { $0.action == .invalid } }
}

/// Desired (from the repository) against recorded (the store): a pure function, so it is unit-tested without
/// git or a database, and cheap enough to run on every poll that saw a new commit.
public enum Planner {
    /// - Parameters:
    ///   - changedPaths: for each recorded source commit, the files changed from it to `desired.commit`;
    ///     only used to say *why* something is recreated.
    public static func plan(desired: DesiredState, recorded: [ManagedTemplateSummary], changedPaths: [String: Set<String>] = [:]) -> Plan {
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
            var item = PlanItem(action: .unchanged, name: d.name, id: d.id, file: d.file, desired: d)
            if let r = recordedByKey.removeValue(forKey: key) {
                item.recorded = r
                if r.contentHash != d.contentHash {
                    item.action = .recreate
                    item.reason = why(d, r, changedPaths[r.sourceCommit ?? ""])
                } else if r.sourceFile != d.file {
                    // Same id, same content, another file: the resource does not change; only where it comes from.
                    item.action = .move
                    item.previous = r
                    item.reason = "\(r.sourceFile ?? "?") renamed to \(d.file); same content, not rebuilt"
                } else if r.provisioningState == .failed, r.sourceCommit != desired.commit.hex {
                    item.action = .recreate
                    item.reason = "its create failed; retried at the new commit"
                } else if r.provisioningState == .succeeded, r.lastRunId == nil, RunPolicy(d.loaded.template) != .manual {
                    item.action = .run
                    item.reason = "created but never run"
                }
            } else if var candidates = leaving[d.contentHash], !candidates.isEmpty {
                let r = candidates.removeFirst()
                leaving[d.contentHash] = candidates
                movedAway.insert(r.id.lowercased())
                recordedByKey.removeValue(forKey: r.id.lowercased())
                item.action = .move
                item.previous = r
                item.reason = r.sourceFile == d.file ? "renamed from \(r.name)" : "\(r.sourceFile ?? r.name) → \(d.file), same content"
            } else {
                item.action = .create
            }
            items.append(guardRun(item, onChange))
        }

        for r in recordedByKey.values.sorted(by: { $0.id < $1.id }) where !movedAway.contains(r.id.lowercased()) {
            if let f = r.sourceFile, let bad = invalidFiles[f] {
                var item = PlanItem(action: .invalid, name: r.name, id: r.id, file: f, recorded: r)
                item.reason = "\(f) does not load; the last good template is kept"
                item.diagnostics = bad.diagnostics
                items.append(item)
                continue
            }
            var item = PlanItem(action: .delete, name: r.name, id: r.id, file: r.sourceFile, recorded: r)
            item.reason = r.sourceFile.map { "\($0) no longer defines it" } ?? "no longer in the repository"
            items.append(guardRun(item, onChange))
        }

        let described = Set(recorded.compactMap(\.sourceFile))
        for bad in desired.invalid where !described.contains(bad.file) {
            var item = PlanItem(action: .invalid, name: bad.file, file: bad.file)
            item.diagnostics = bad.diagnostics
            item.reason = bad.diagnostics.first.map { "\($0.path): \($0.message)" }
            items.append(item)
        }
        return Plan(commit: desired.commit, items: items, galleries: desired.galleries)
    }

    /// A change that would delete a template under a running build waits for it, or cancels it.
    static func guardRun(_ item: PlanItem, _ onChange: RepositoryConfig.OnChangeDuringRun) -> PlanItem {
        // Called for every template on every plan: the common case (nothing replaced) returns before any work.
        switch item.action {
        case .recreate, .delete: break
        case .move where item.previous?.id.lowercased() != item.id?.lowercased(): break
        default: return item
        }
        let affected = item.action == .move ? item.previous : item.recorded
        guard let r = affected, let state = r.lastRunState, state.isActive, let run = r.lastRunId else { return item }
        var out = item
        if onChange == .cancel {
            out.cancelRun = run
            out.reason = (out.reason.map { $0 + "; " } ?? "") + "cancels run \(run) first"
        } else {
            out.pending = item.action
            out.action = .wait
            out.reason = (out.reason.map { $0 + "; " } ?? "") + "waits for run \(run) to finish"
        }
        return out
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
