// Helpers the GitOps commands share: printing plans and reconcile reports.
import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnGit
import KilnGitOps
import KilnServer
import Logging
import KilnStore
import KilnSystem
import KilnTemplates

func printPlan(_ plan: Plan, verbose: Bool) {
    let counts = Dictionary(grouping: plan.items, by: \.action).mapValues(\.count)
    let order: [PlanItem.Action] = [.create, .recreate, .move, .delete, .run, .rebuild, .wait, .invalid, .unchanged]
    let words: [PlanItem.Action: String] = [.unchanged: "unchanged", .invalid: "invalid", .wait: "waiting", .rebuild: "to rebuild after their source"]
    let summary = order.compactMap { a in counts[a].map { "\($0) \(words[a] ?? "to \(a.rawValue)")" } }
    print("plan at \(plan.commit.short): " + (summary.isEmpty ? "no templates" : summary.joined(separator: ", ")))
    let marks: [PlanItem.Action: String] = [
        .create: "+", .recreate: "~", .move: ">", .delete: "-", .run: "^", .rebuild: "^", .wait: "…", .invalid: "!", .unchanged: "="
    ]
    for item in plan.items where verbose || item.action != .unchanged {
        print("  \(marks[item.action]!) \(item.summary)")
        for d in item.diagnostics { print("      \(d.description)") }
    }
    for t in plan.triggers where verbose || t.isChange { print("  \(t.isChange ? "*" : "=") \(t.summary)") }
}

func printReport(_ report: ReconcileReport) {
    for g in report.galleryResults { printError("  \(g)") }
    for o in report.outcomes { printError("  \(o.ok ? "✓" : "✗") \(o.item.summary): \(o.result)") }
    for t in report.triggerResults { printError("  \(t.ok ? "✓" : "✗") \(t.summary)\(t.ok ? "" : ": \(t.result)")") }
    for item in report.plan.items where [.invalid, .wait, .rebuild].contains(item.action) {
        printError("  \(item.action == .invalid ? "!" : "…") \(item.summary)")
        for d in item.diagnostics { printError("      \(d.description)") }
    }
    let unchanged = report.plan.items.filter { $0.action == .unchanged }.count
    if report.outcomes.isEmpty, report.triggerResults.isEmpty, report.plan.invalid.isEmpty {
        printError("  nothing to do at \(report.plan.commit.short) (\(unchanged) unchanged)")
    }
}
