// Triggers in a repository: planned beside the templates, applied after them.
import Foundation
import KilnStore
import KilnTemplates

/// One line of a plan about a trigger.
public struct TriggerPlanItem: Sendable {
    public enum Change: Sendable {
        case create(DesiredTrigger)
        /// Its kind changed, or its template is recreated (a template's deletion takes its trigger): made again.
        case recreate(old: TriggerRecord, new: DesiredTrigger)
        /// Gone from the repository.
        case delete(TriggerRecord)
        case unchanged(TriggerRecord, DesiredTrigger)
    }

    public var change: Change
    public var reason: String?

    public var isChange: Bool {
        if case .unchanged = change { return false }
        return true
    }

    /// `template/name`.
    public var name: String {
        switch change {
        case .create(let d), .recreate(_, let d), .unchanged(_, let d): return "\(d.resource.templateName)/\(d.resource.name)"
        case .delete(let r):
            let template = ResourceID.parse(String(r.id.dropLast("/triggers/\(r.name)".count)))?.name ?? r.templateKey
            return "\(template)/\(r.name)"
        }
    }

    /// "create trigger debian-12-app/source [templates/debian-12-app.trigger.json]".
    public var summary: String {
        var s: String
        var file: String?
        switch change {
        case .create(let d): (s, file) = ("create", d.file)
        case .recreate(_, let d): (s, file) = ("recreate", d.file)
        case .delete(let r): (s, file) = ("delete", r.sourceFile)
        case .unchanged(_, let d): (s, file) = ("unchanged", d.file)
        }
        s += " trigger \(name)"
        if let file { s += " [\(file)]" }
        if let reason { s += " (\(reason))" }
        return s
    }
}

extension Planner {
    /// The desired state with every file whose trigger names a template the repository does not define
    /// taken out as invalid (with the trigger's `name`, path and line).
    static func withKnownTriggerTemplates(_ desired: DesiredState) -> DesiredState {
        let templates = Set(desired.templates.map(\.key))
        var problems: [String: [Diagnostic]] = [:]
        for t in desired.triggers where !templates.contains(t.templateKey) {
            problems[t.file, default: []].append(
                Diagnostic(
                    file: t.file, position: SourcePosition(line: t.resource.line, column: 1), path: t.resource.resourcePath / "name",
                    code: .invalidParameter,
                    message: "the trigger \(t.resource.name) is for the template \(t.resource.templateName), which the repository does not define"))
        }
        guard !problems.isEmpty else { return desired }
        var out = desired
        out.templates = desired.templates.filter { problems[$0.file] == nil }
        out.triggers = desired.triggers.filter { problems[$0.file] == nil }
        out.invalid += problems.keys.sorted().map { InvalidTemplateFile(file: $0, diagnostics: problems[$0]!) }
        return out
    }

    /// Desired triggers against the recorded ones this repository owns. `recreatedTemplates` (lower-cased
    /// ids) are templates the plan deletes and creates again: their triggers go with them and are made again.
    public static func planTriggers(_ desired: [DesiredTrigger], recorded: [TriggerRecord], recreatedTemplates: Set<String> = []) -> [TriggerPlanItem] {
        var byKey = Dictionary(recorded.map { ($0.idKey, $0) }, uniquingKeysWith: { a, _ in a })
        var items: [TriggerPlanItem] = []
        for d in desired {
            guard let r = byKey.removeValue(forKey: d.key) else {
                items.append(TriggerPlanItem(change: .create(d)))
                continue
            }
            if r.kind != d.resource.kind {
                items.append(TriggerPlanItem(change: .recreate(old: r, new: d), reason: "kind \(r.kind) → \(d.resource.kind)"))
            } else if recreatedTemplates.contains(d.templateKey) {
                items.append(TriggerPlanItem(change: .recreate(old: r, new: d), reason: "its template is recreated"))
            } else {
                items.append(TriggerPlanItem(change: .unchanged(r, d)))
            }
        }
        for r in byKey.values.sorted(by: { $0.idKey < $1.idKey }) {
            items.append(TriggerPlanItem(change: .delete(r), reason: r.sourceFile.map { "\($0) no longer defines it" } ?? "no longer in the repository"))
        }
        return items
    }
}
