import Foundation
@testable import KilnGitOps
import KilnBuild
@testable import KilnCore
import KilnGit
import KilnStore
import KilnSystem
import KilnTemplates
import KilnTestSupport
import Testing

@Suite(.serialized) struct ReconcilerTests {
    /// Triggers as files of the repository: created with their template, made again when it is recreated,
    /// pruned with their file; one for a template the repository does not define is an invalid file.
    @Test func triggersInTheRepositoryFollowTheirTemplates() async throws {
        let f = try GitOpsFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("kiln.yaml", GitOpsFixture.kilnYAML)
        try f.write("scripts/setup.sh", "#!/bin/sh\necho one\n")
        try f.write("templates/alpha.json", GitOpsFixture.template("alpha"))
        let trigger =
            #"{"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "apiVersion": "2022-07-01", "name": "source", "properties": {"kind": "SourceImage"}}"#
        try f.write("templates/alpha.trigger.json", trigger)
        try f.push("a template and its trigger")
        let r1 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r1.report.triggerResults.map(\.summary) == ["create trigger alpha/source [templates/alpha.trigger.json]"], "\(r1.report.triggerResults)")
        #expect(!r1.report.hasProblems)
        let made = try #require(try await f.core.triggers().first)
        #expect(made.id.hasSuffix("/resourceGroups/rg-gitops/providers/Microsoft.VirtualMachineImages/imageTemplates/alpha/triggers/source"))
        #expect(made.sourceFile == "templates/alpha.trigger.json" && made.managedBy != nil)

        // Again: nothing.
        let r2 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r2.report.triggerResults.isEmpty && r2.report.outcomes.isEmpty)

        // The template is recreated (its script changed): the trigger went with it and is made again.
        try f.write("scripts/setup.sh", "#!/bin/sh\necho two\n")
        let c3 = try f.push("edit the script")
        let ctl = try f.controller()
        try await ctl.mirror.refresh()
        let plan = try await ctl.reconciler.plan(at: try #require(ObjectID(hex: c3)))
        #expect(plan.triggers.map(\.summary) == ["recreate trigger alpha/source [templates/alpha.trigger.json] (its template is recreated)"])
        let r3 = try await ctl.reconcileOnce(executeRuns: false)
        #expect(r3.report.triggerResults.map(\.ok) == [true], "\(r3.report.triggerResults)")
        #expect(try await f.core.triggers().count == 1)

        // A trigger for a template that is not there: the file is invalid, with the line and path.
        try f.write("templates/ghost.trigger.json", trigger.replacingOccurrences(of: #""name": "source""#, with: #""name": "ghost/source""#))
        let c4 = try f.push("a stray trigger")
        try await ctl.mirror.refresh()
        let bad = try await ctl.reconciler.plan(at: try #require(ObjectID(hex: c4)))
        let diagnostic = try #require(bad.invalid.first?.diagnostics.first)
        #expect(diagnostic.file == "templates/ghost.trigger.json" && diagnostic.path.description == "$.name" && diagnostic.line == 1)
        #expect(diagnostic.message.contains("which the repository does not define"))

        // Its file removed: the trigger is pruned.
        _ = try git("rm", "-q", "templates/alpha.trigger.json", "templates/ghost.trigger.json", in: f.work)
        try f.push("no triggers")
        let r5 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(
            r5.report.triggerResults.map(\.summary) == [
                "delete trigger alpha/source [templates/alpha.trigger.json] (templates/alpha.trigger.json no longer defines it)"
            ])
        #expect(try await f.core.triggers().isEmpty)
    }

    @Test func pushEditRenameDeleteBreakThroughTheReconciler() async throws {
        let f = try GitOpsFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("kiln.yaml", GitOpsFixture.kilnYAML)
        try f.write("scripts/setup.sh", "#!/bin/sh\necho one\n")
        try f.write("templates/alpha.json", GitOpsFixture.template("alpha"))
        try f.write("templates/beta.json", GitOpsFixture.template("beta"))
        let c1 = try f.push("two templates")

        // Push → created; status commits and a note on the source commit.
        let r1 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r1.report.outcomes.map(\.item.action) == [.create, .create])
        #expect(r1.report.failed.isEmpty, "\(r1.report.failed.map(\.result))")
        let alpha1 = try await f.core.template("alpha")
        #expect(alpha1.record.sourceCommit == c1)
        #expect(alpha1.record.sourceFile == "templates/alpha.json")
        #expect(f.statusLog() == ["beta: Accepted (\(c1.prefix(7)))", "alpha: Accepted (\(c1.prefix(7)))"])
        let doc = try #require(f.statusFile("status/rg-gitops/alpha.json"))
        #expect(doc.contains("\"sourceCommit\" : \"\(c1)\"") && doc.contains("\"provisioningState\" : \"Succeeded\""))
        let trailers = try git("log", "-1", "--format=%B", "kiln/status", in: f.remote)
        #expect(trailers.contains("Kiln-Source-Commit: \(c1)") && trailers.contains("Kiln-Template: /subscriptions/"))
        let note = try git("notes", "--ref=kiln", "show", c1, in: f.remote)
        #expect(note.contains("alpha: Accepted") && note.contains("beta: Accepted"))

        // The same commit again: nothing, not even a status commit.
        let r2 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r2.report.outcomes.isEmpty)
        #expect(r2.report.plan.items.allSatisfy { $0.action == .unchanged })
        #expect(f.statusLog().count == 2)

        // Edit only the referenced script → both recreated, the reason names the script; old staging removed.
        try f.write("scripts/setup.sh", "#!/bin/sh\necho two\n")
        let c2 = try f.push("edit the script")
        let ctl = try f.controller()
        try await ctl.mirror.refresh()
        let plan = try await ctl.reconciler.plan(at: try #require(ObjectID(hex: c2)))
        #expect(
            plan.changes.map(\.summary) == [
                "recreate alpha [templates/alpha.json] (scripts/setup.sh changed)",
                "recreate beta [templates/beta.json] (scripts/setup.sh changed)"
            ])
        let r3 = try await ctl.reconcileOnce(executeRuns: false)
        #expect(r3.report.outcomes.map(\.item.action) == [.recreate, .recreate])
        let alpha2 = try await f.core.template("alpha")
        #expect(alpha2.record.sourceCommit == c2 && alpha2.record.contentHash != alpha1.record.contentHash)
        #expect(!FileManager.default.fileExists(atPath: alpha1.record.stagingDirectory))
        let staged = try #require(alpha2.record.artifacts.first)
        #expect(try String(contentsOfFile: staged.path, encoding: .utf8).contains("echo two"))

        // Rename the file (same id, same content) → a move that rebuilds nothing; rename the template → a move.
        try FileManager.default.createDirectory(atPath: f.work + "/templates/renamed", withIntermediateDirectories: true)
        _ = try git("mv", "templates/beta.json", "templates/renamed/beta.json", in: f.work)
        let betaBefore = try await f.core.template("beta")
        try f.write("templates/alpha.json", GitOpsFixture.template("gamma", output: "alpha"))
        let c3 = try f.push("rename")
        let r4 = try await f.controller().reconcileOnce(executeRuns: false)
        let moves = r4.report.outcomes.filter { $0.item.action == .move }
        #expect(moves.count == 2, "\(r4.report.outcomes.map { "\($0.item.summary): \($0.result)" })")
        #expect(moves.contains { $0.item.previous?.name == "alpha" && $0.item.name == "gamma" })
        let betaAfter = try await f.core.template("beta")
        #expect(betaAfter.record.stagingDirectory == betaBefore.record.stagingDirectory)
        #expect(betaAfter.record.sourceFile == "templates/renamed/beta.json" && betaAfter.record.sourceCommit == c3)
        await #expect(throws: CoreError.self) { try await f.core.template("alpha") }
        #expect(f.statusFile("status/rg-gitops/alpha.json") == nil)
        #expect(f.statusFile("status/rg-gitops/gamma.json") != nil)

        // Delete → pruned with its staging area, its status file removed.
        _ = try git("rm", "-q", "templates/renamed/beta.json", in: f.work)
        try f.push("delete beta")
        let r5 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r5.report.outcomes.map(\.item.action) == [.delete])
        #expect(!FileManager.default.fileExists(atPath: betaAfter.record.stagingDirectory))
        #expect(f.statusFile("status/rg-gitops/beta.json") == nil)
        #expect(f.statusLog().first == "beta: Deleted")

        // A broken file: its status shows the error with path and line; a template whose file breaks is kept.
        try f.write(
            "templates/broken.json",
            "{\n  \"type\": \"Microsoft.VirtualMachineImages/imageTemplates\",\n  \"name\": \"broken\",\n  \"location\": \"westeurope\",\n  \"identity\": { \"type\": \"None\" },\n  \"properties\": { \"source\": { \"type\": \"Nope\" }, \"distribute\": [] }\n}\n"
        )
        try f.write("templates/alpha.json", "{ \"name\": \"gamma\", oops }\n")
        try f.write("templates/delta.json", GitOpsFixture.template("delta"))
        try f.push("break two, add one")
        let r6 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r6.report.hasProblems)
        #expect(r6.report.outcomes.map(\.item.summary) == ["create delta [templates/delta.json]"])
        let gamma = try await f.core.template("gamma")
        #expect(gamma.provisioningState == .succeeded)
        let gammaStatus = try #require(f.statusFile("status/rg-gitops/gamma.json"))
        #expect(gammaStatus.contains("\"sourceError\"") && gammaStatus.contains("\"line\" : 1"))
        let brokenStatus = try #require(f.statusFile("status/_invalid/templates/broken.json.json"))
        #expect(brokenStatus.contains("$.properties.source.type") && brokenStatus.contains("BadSourceType") && brokenStatus.contains("\"line\" : 6"))

        // Fixing the file with the same content as before: the kept template is unchanged, the error is cleared.
        try f.write("templates/alpha.json", GitOpsFixture.template("gamma", output: "alpha"))
        _ = try git("rm", "-q", "templates/broken.json", in: f.work)
        try f.push("fix")
        let r7 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r7.report.outcomes.isEmpty && !r7.report.hasProblems)
        #expect(f.statusFile("status/rg-gitops/gamma.json")?.contains("sourceError") == false)
        #expect(f.statusFile("status/_invalid/templates/broken.json.json") == nil)
    }

    @Test func aTemplateThatRunsWaitsOrCancelsAndIsNeverRunTwice() async throws {
        let f = try GitOpsFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        try f.write("kiln.yaml", GitOpsFixture.kilnYAML)
        try f.write("scripts/setup.sh", "#!/bin/sh\necho one\n")
        try f.write("templates/auto.json", GitOpsFixture.template("auto", manual: false))
        try f.push("auto-run template")
        let r1 = try await f.controller().reconcileOnce(executeRuns: false)
        let runId = try #require(r1.report.queuedRuns.first)
        #expect(f.statusLog().first?.hasPrefix("auto: Running/Queued") == true)

        // A queued run counts as in progress: a change waits for it (the default), and nothing is applied.
        try f.write("scripts/setup.sh", "#!/bin/sh\necho two\n")
        try f.push("edit")
        let r2 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r2.report.outcomes.isEmpty)
        #expect(r2.report.plan.items.map(\.action) == [.wait])
        #expect(r2.report.plan.items.first?.pending == .recreate)

        // onChangeDuringRun: cancel → the run is canceled, then the template recreated and run again.
        try f.write("kiln.yaml", GitOpsFixture.kilnYAML + "onChangeDuringRun: cancel\n")
        try f.push("cancel on change")
        let r3 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r3.report.outcomes.map(\.item.action) == [.recreate], "\(r3.report.outcomes.map(\.result))")
        #expect(try await f.core.store.run(id: runId) == nil)  // gone with the old template
        let newRun = try #require(r3.report.queuedRuns.first)

        // A template created but never run (the process died in between) gets its run; one with a run does not.
        try await f.core.store.updateRun(id: newRun) {
            $0.runState = .failed; $0.message = "test: the owner died"
        }
        let r4 = try await f.controller().reconcileOnce(executeRuns: false)
        #expect(r4.report.outcomes.isEmpty, "a failed run is not retried for the same content")
    }

    @Test func plannerWordsAndMoveDetection() throws {
        let options = LoadOptions()
        func desired(_ name: String, file: String, refs: [String: String] = [:], output: String? = nil) -> DesiredTemplate {
            let t = TemplateLoader.load(text: GitOpsFixture.template(name, output: output), path: file, format: .json, options: options).templates[0]
            return DesiredTemplate(loaded: t, file: file, referencedFiles: refs, contentHash: ContentHash.of(t.template, referencedFiles: refs))
        }
        let a = desired("a", file: "templates/a.json", refs: ["scripts/setup.sh": "git:1"])
        let commit = try #require(ObjectID(hex: String(repeating: "a", count: 40)))
        func recorded(_ d: DesiredTemplate, hash: String? = nil, file: String? = nil, run: RunState? = nil) -> ManagedTemplateSummary {
            ManagedTemplateSummary(
                id: d.id, name: d.loaded.template.name, resourceGroup: "kiln", sourceFile: file ?? d.file, sourceCommit: "c0",
                contentHash: hash ?? d.contentHash, provisioningState: .succeeded, lastRunState: run, lastRunSubState: nil,
                lastRunId: run == nil ? nil : "r1")
        }
        var state = DesiredState(commit: commit, config: RepositoryConfig(), templates: [a], invalid: [], galleries: [])
        // Unchanged; a template never run is run (unless manual: the fixture's templates are manual).
        #expect(Planner.plan(desired: state, recorded: [recorded(a, run: .succeeded)]).items.map(\.action) == [.unchanged])
        #expect(Planner.plan(desired: state, recorded: [recorded(a)]).items.map(\.action) == [.unchanged])
        // Changed script → recreate, with the script named.
        let p1 = Planner.plan(desired: state, recorded: [recorded(a, hash: "sha256:old", run: .succeeded)], changedPaths: ["c0": ["scripts/setup.sh"]])
        #expect(p1.items.map(\.summary) == ["recreate a [templates/a.json] (scripts/setup.sh changed)"])
        // Running → wait; with cancel → recreate that cancels first.
        let p2 = Planner.plan(desired: state, recorded: [recorded(a, hash: "sha256:old", run: .running)])
        #expect(p2.items.map(\.action) == [.wait])
        state.config.onChangeDuringRun = .cancel
        let p3 = Planner.plan(desired: state, recorded: [recorded(a, hash: "sha256:old", run: .running)])
        #expect(p3.items.map(\.action) == [.recreate] && p3.items[0].cancelRun == "r1")
        // Same content under a new name → move, not delete + create.
        let b = desired("b", file: "templates/b.json", refs: ["scripts/setup.sh": "git:1"], output: "a")
        state.templates = [b]
        let p4 = Planner.plan(desired: state, recorded: [recorded(a, run: .succeeded)])
        #expect(p4.items.map(\.action) == [.move] && p4.items[0].previous?.name == "a")
        // Gone → delete; gone because its file broke → kept.
        state.templates = []
        #expect(Planner.plan(desired: state, recorded: [recorded(a)]).items.map(\.action) == [.delete])
        state.invalid = [InvalidTemplateFile(file: "templates/a.json", diagnostics: [])]
        #expect(Planner.plan(desired: state, recorded: [recorded(a)]).items.map(\.action) == [.invalid])
    }
}
