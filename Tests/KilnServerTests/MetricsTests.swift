import Foundation
import KilnCore
import KilnGitOps
import KilnServer
import KilnStore
import KilnSystem
import KilnTemplates
import Testing

/// The scrape-time metrics over a real SQLite store.
@Suite struct MetricsTests {
    static func template(_ db: KilnDatabase, _ name: String, state: ProvisioningState) async throws -> String {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/\(name)"
        try await db.insertTemplate(
            TemplateRecord(
                id: id, subscription: "s", resourceGroup: "rg", name: name, location: "westeurope",
                document: "{}", contentHash: name, sourceFile: nil, sourceCommit: nil,
                provisioningState: state, stagingDirectory: "/tmp/\(name)", stagingResourceGroup: "rg", createdAt: Date()))
        return id
    }

    static func finishedRun(_ db: KilnDatabase, template: String, id: String, state: RunState, end: Date, phases: [RunSubState: Double]) async throws {
        var run = RunRecord(
            id: id, templateId: template, queuedAt: end.addingTimeInterval(-600), timeoutMinutes: 60,
            workDirectory: "/tmp/w", logDirectory: "/tmp/l")
        run.runState = state
        run.runSubState = nil
        run.startTime = end.addingTimeInterval(-500)
        run.endTime = end
        run.phaseSeconds = phases
        try await db.insertRun(run)
    }

    static func sample(_ text: String, _ series: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    @Test func finishedRunsAreRecordedOnceAndStatesCounted() async throws {
        let db = try KilnDatabase()
        let start = Date()
        let t = try await Self.template(db, "a", state: .succeeded)
        _ = try await Self.template(db, "b", state: .failed)
        let c = try await Self.template(db, "c", state: .succeeded)
        // Ended before the process started: not in the histograms (it was counted by the previous process).
        try await Self.finishedRun(db, template: t, id: "old", state: .succeeded, end: start.addingTimeInterval(-3600), phases: [.customizing: 1000])
        let metrics = ControllerMetrics(core: KilnCore(paths: KilnPaths(dataDir: NSTemporaryDirectory()), store: db), repositories: ["images"], since: start)

        try await Self.finishedRun(db, template: t, id: "r1", state: .succeeded, end: start.addingTimeInterval(1), phases: [.building: 42, .customizing: 7])
        try await Self.finishedRun(db, template: t, id: "r2", state: .failed, end: start.addingTimeInterval(1), phases: [.building: 3])
        var queued = RunRecord(id: "q", templateId: c, queuedAt: Date(), timeoutMinutes: 60, workDirectory: "/tmp/w", logDirectory: "/tmp/l")
        queued.runSubState = .queued
        try await db.insertRun(queued)

        let first = try await metrics.scrape()
        #expect(Self.sample(first, #"kiln_run_phase_duration_seconds_count{phase="Building"}"#) == 2, "\(first)")
        #expect(Self.sample(first, #"kiln_run_phase_duration_seconds_bucket{phase="Building",le="5.0"}"#) == 1, "\(first)")
        #expect(Self.sample(first, #"kiln_run_phase_duration_seconds_bucket{phase="Building",le="60.0"}"#) == 2, "\(first)")
        #expect(Self.sample(first, #"kiln_run_phase_duration_seconds_count{phase="Customizing"}"#) == 1, "the old run is not counted: \(first)")
        #expect(Self.sample(first, #"kiln_run_duration_seconds_count{state="Failed"}"#) == 1, "\(first)")
        #expect(Self.sample(first, #"kiln_templates{state="Succeeded"}"#) == 2)
        #expect(Self.sample(first, #"kiln_templates{state="Failed"}"#) == 1)
        #expect(Self.sample(first, #"kiln_runs{state="Succeeded"}"#) == 2)
        #expect(Self.sample(first, #"kiln_runs{state="Running"}"#) == 1)
        #expect(Self.sample(first, "kiln_run_queue_depth") == 1)
        #expect(Self.sample(first, #"kiln_repository_last_sync_timestamp_seconds{repository="images"}"#) == 0)

        // Scraped again: nothing recorded twice (r1 and r2 end exactly at the watermark), a new run is.
        try await Self.finishedRun(db, template: t, id: "r3", state: .succeeded, end: start.addingTimeInterval(1), phases: [.building: 100])
        _ = try await db.updateRun(id: "q") {
            $0.runState = .canceled; $0.runSubState = nil
        }
        metrics.synced(repository: "images", at: Date(timeIntervalSince1970: 1_800_000_000))
        metrics.reconciled(repository: "images", duration: .milliseconds(30), result: .problems)
        metrics.gitFailed(repository: "images", operation: .push)
        let second = try await metrics.scrape()
        #expect(Self.sample(second, #"kiln_run_phase_duration_seconds_count{phase="Building"}"#) == 3, "\(second)")
        #expect(Self.sample(second, #"kiln_run_phase_duration_seconds_count{phase="Customizing"}"#) == 1)
        #expect(Self.sample(second, "kiln_run_queue_depth") == 0)
        #expect(Self.sample(second, #"kiln_runs{state="Running"}"#) == 0, "a state that emptied reads 0, not its last value")
        #expect(Self.sample(second, #"kiln_repository_last_sync_timestamp_seconds{repository="images"}"#) == 1_800_000_000)
        #expect(Self.sample(second, #"kiln_reconciles_total{repository="images",result="problems"}"#) == 1)
        #expect(Self.sample(second, #"kiln_reconcile_duration_seconds_count{repository="images"}"#) == 1)
        #expect(Self.sample(second, #"kiln_git_errors_total{repository="images",operation="push"}"#) == 1)

        // Runs ending a millisecond apart, and scrapes overlapping: each run still counts once.
        for i in 0..<5 {
            let t = try await Self.template(db, "m\(i)", state: .succeeded)
            try await Self.finishedRun(
                db, template: t, id: "m\(i)", state: .succeeded, end: start.addingTimeInterval(2 + Double(i) / 1000), phases: [.building: 1])
        }
        let texts = await withTaskGroup(of: String.self) { group in
            for _ in 0..<6 { group.addTask { (try? await metrics.scrape()) ?? "" } }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        for text in texts { #expect(!text.isEmpty) }
        let third = try await metrics.scrape()
        #expect(Self.sample(third, #"kiln_run_phase_duration_seconds_count{phase="Building"}"#) == 8, "\(third)")
    }
}
