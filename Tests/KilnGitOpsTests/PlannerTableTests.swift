import Foundation
import KilnGit
@testable import KilnGitOps
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

/// The planner's decision for one template, case by case: what the repository wants against what is
/// recorded (its hash, its last run) and the repository's onChangeDuringRun.
@Suite struct PlannerTableTests {
    enum Recorded: Sendable { case none, same, changed }

    struct Case: Sendable, CustomTestStringConvertible {
        var wanted = true
        var recorded: Recorded
        var run: RunState?
        var onChange: RepositoryConfig.OnChangeDuringRun = .wait
        var expected: PlanItem.Action
        var testDescription: String { "wanted \(wanted), recorded \(recorded), run \(run.map { "\($0)" } ?? "none"), \(onChange) → \(expected)" }
    }

    static let cases: [Case] = [
        Case(recorded: .none, expected: .create),
        Case(recorded: .same, run: .succeeded, expected: .unchanged),
        Case(recorded: .same, expected: .unchanged),  // never run, but manual
        Case(recorded: .same, run: .failed, expected: .unchanged),  // a failed run is not retried for the same content
        Case(recorded: .changed, run: .succeeded, expected: .recreate),
        Case(recorded: .changed, run: .failed, expected: .recreate),
        Case(recorded: .changed, expected: .recreate),
        Case(recorded: .changed, run: .running, expected: .wait),
        Case(recorded: .changed, run: .running, onChange: .cancel, expected: .recreate),
        Case(recorded: .same, run: .running, onChange: .cancel, expected: .unchanged),
        Case(wanted: false, recorded: .same, run: .succeeded, expected: .delete),
        Case(wanted: false, recorded: .same, run: .running, expected: .wait)  // a running template is deleted after its run, as AIB refuses the DELETE
    ]

    @Test(arguments: cases)
    func decision(_ c: Case) throws {
        let file = "templates/a.json"
        let loaded = TemplateLoader.load(text: GitOpsFixture.template("a"), path: file, format: .json).templates[0]
        let refs = ["scripts/setup.sh": "git:1"]
        let d = DesiredTemplate(loaded: loaded, file: file, referencedFiles: refs, contentHash: ContentHash.of(loaded.template, referencedFiles: refs))
        var state = DesiredState(
            commit: try #require(ObjectID(hex: String(repeating: "a", count: 40))), config: RepositoryConfig(),
            templates: c.wanted ? [d] : [], invalid: [], galleries: [])
        state.config.onChangeDuringRun = c.onChange
        let recorded: [ManagedTemplateSummary] =
            c.recorded == .none
            ? []
            : [
                ManagedTemplateSummary(
                    id: d.id, name: "a", resourceGroup: "kiln", sourceFile: file, sourceCommit: "c0",
                    contentHash: c.recorded == .same ? d.contentHash : "sha256:old", provisioningState: .succeeded,
                    lastRunState: c.run, lastRunSubState: nil, lastRunId: c.run == nil ? nil : "r1")
            ]
        let plan = Planner.plan(desired: state, recorded: recorded)
        #expect(plan.items.map(\.action) == [c.expected], "\(plan.items.map(\.summary))")
    }
}
