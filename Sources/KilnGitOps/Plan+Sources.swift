// The planner's second pass: templates built on images other templates of the repository publish.
import Foundation
import KilnStore
import KilnTemplates

extension Planner {
    /// The desired state with every template of a build-order cycle taken out as an invalid file (a cycle
    /// can never build: each waits for the other), with a diagnostic at each member's source naming the loop.
    static func withoutCycles(_ desired: DesiredState) -> DesiredState {
        let graph = LineageGraph(desired.templates.map(\.lineage))
        let cycles = graph.cycles()
        guard !cycles.isEmpty else { return desired }
        var problems: [String: [Diagnostic]] = [:]
        for cycle in cycles {
            let names = cycle.map { "\(desired.templates[$0].name) (\(desired.templates[$0].file))" }
            let loop = (names + [desired.templates[cycle[0]].name]).joined(separator: " → ")
            for n in cycle {
                let t = desired.templates[n]
                let at = t.loaded.resourcePath / "properties" / "source"
                problems[t.file, default: []].append(
                    Diagnostic(
                        file: t.file, position: SourcePosition(line: t.loaded.artifactLines[at.description] ?? t.loaded.line, column: 1), path: at,
                        code: .invalidTemplate, message: "build order cycle: \(loop); each source is an image another of them publishes"))
            }
        }
        var out = desired
        out.templates = desired.templates.filter { problems[$0.file] == nil }
        out.invalid += problems.keys.sorted().map { InvalidTemplateFile(file: $0, diagnostics: problems[$0]!) }
        return out
    }

    /// For each template whose source another template of the repository publishes, in build order:
    /// - while a producer is rebuilt (in this plan, or by a run in progress), a create/recreate/move is applied
    ///   but not run yet (`waitsFor`), and an unchanged template that follows it becomes `rebuild`;
    /// - once its producers are idle, an unchanged template whose source now resolves to an image other than
    ///   the one its last run used is run again (level-triggered: whoever published the new version, a plan, a
    ///   trigger or a manual run). A template whose last run failed on a source that did not resolve is run
    ///   once it does.
    /// `rebuildOnSourceChange: false` in kiln.yaml, or the tag `kiln.rebuildOnSourceChange: false`, keeps the
    /// order but never rebuilds.
    static func followSources(_ items: inout [PlanItem], desired: DesiredState, graph: LineageGraph, sources: [String: BuiltSource]) {
        for n in graph.order() where !graph.producers[n].isEmpty {
            let busy = graph.producers[n].filter { isBeingRebuilt(items[$0]) }
            let d = desired.templates[n]
            let rebuilds = graph.follows[n] && followsItsSource(d, desired.config)
            if !busy.isEmpty {
                let names = busy.map { desired.templates[$0].name }
                let after = "after \(names.joined(separator: ", "))"
                switch items[n].change {
                case .create, .recreate, .move, .cancelFirst:
                    items[n].waitsFor = names
                    items[n].reason = (items[n].reason.map { $0 + "; " } ?? "") + "its run follows, \(after)"
                case .run(let r, let d):
                    items[n] = PlanItem(.rebuild(r, d), reason: (items[n].reason ?? "due") + ", \(after)")
                    items[n].waitsFor = names
                case .unchanged(let r, let d) where rebuilds:
                    items[n] = PlanItem(.rebuild(r, d), reason: "its source is rebuilt first: \(names.joined(separator: ", "))")
                    items[n].waitsFor = names
                default:
                    break
                }
                continue
            }
            guard rebuilds, case .unchanged(let r, let d) = items[n].change, let now = sources[d.key], let why = outdated(r, now: now) else { continue }
            items[n] = PlanItem(.run(r, d), reason: why)
        }
    }

    /// Whether a producer's image is about to change: its item runs it (or will, once a run it waits for ends),
    /// or a run of it is in progress.
    static func isBeingRebuilt(_ item: PlanItem) -> Bool {
        switch item.action {
        case .create, .recreate, .move, .run, .rebuild, .wait: return true
        case .delete, .unchanged, .invalid: return item.recorded?.lastRunState?.isActive ?? false
        }
    }

    /// Why a recorded template is outdated against what its source resolves to now, or nil if it is not.
    static func outdated(_ r: ManagedTemplateSummary, now: BuiltSource) -> String? {
        guard r.lastRunId != nil, !(r.lastRunState?.isActive ?? false) else { return nil }
        if let last = r.lastAttemptSource {
            guard !last.isSameImage(as: now) else { return nil }
            return "its source is now \(now.shown); last built from \(last.shown)"
        }
        // No run of it ever resolved its source: rebuilt when the last one failed (not when it was canceled).
        guard r.lastRunState == .failed else { return nil }
        return "its source now resolves, to \(now.shown); its last run failed before it did"
    }

    static func followsItsSource(_ d: DesiredTemplate, _ config: RepositoryConfig) -> Bool {
        guard config.rebuildOnSourceChange, RunPolicy(d.loaded.template) != .manual else { return false }
        let tag = d.loaded.template.tags.first { $0.key.lowercased() == "kiln.rebuildonsourcechange" }?.value.lowercased()
        return tag != "false"
    }
}
