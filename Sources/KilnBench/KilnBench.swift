// kiln-bench: figures for the GitOps controller on a generated repository (issue 6).
//
//   swift run -c release kiln-bench [--templates 10000] [--dir /tmp/kiln-bench-gitops]
//
// Prints: the initial apply, the unchanged poll (ls-remote + compare, median of 25), fetch + plan after one
// template changes, fetch + plan after all change, and the process's peak and current RSS after each.
import Foundation
import KilnBuild
import KilnCore
import KilnGit
import KilnGitOps
import KilnStore
import KilnSystem
import Logging

@main
struct Bench {
    /// The generated repository and the controller's pieces over it.
    struct Setup {
        var count: Int
        var work: String
        var core: KilnCore
        var mirror: RepositoryMirror
        var reconciler: Reconciler
    }

    static func main() async throws {
        var count = 10_000
        var dir = NSTemporaryDirectory() + "kiln-bench-gitops"
        var args = CommandLine.arguments.dropFirst()
        while let a = args.popFirst() {
            switch a {
            case "--templates": count = Int(args.popFirst() ?? "") ?? count
            case "--dir": dir = args.popFirst() ?? dir
            case "--arm":
                // The ARM evaluator on deployment templates (scripts/bench-arm): no repository, no controller.
                armEvaluation(Array(args))
                return
            default:
                print("usage: kiln-bench [--templates N] [--dir DIR] | --arm FILE...")
                exit(2)
            }
        }
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .error
            return h
        }
        let setup = try generate(count, in: dir)
        let head = try await initialApply(setup)
        try await unchangedPolls(setup, head: head)
        try await oneChange(setup, from: head)
        try await allChange(setup)
        print("peak RSS goal ≤ 150 MB")
    }

    /// A repository of `count` templates sharing one script, pushed to a bare remote, and a controller over it.
    static func generate(_ count: Int, in dir: String) throws -> Setup {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let remote = dir + "/remote.git", work = dir + "/work"
        try sh("git init -q --bare -b main \(remote) && git clone -q \(remote) \(work) 2>/dev/null")
        try FileManager.default.createDirectory(atPath: work + "/templates", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work + "/scripts", withIntermediateDirectories: true)
        try "subscription: 11111111-2222-3333-4444-555555555555\nresourceGroup: bench\nlocation: westeurope\n"
            .write(toFile: work + "/kiln.yaml", atomically: true, encoding: .utf8)
        try "#!/bin/sh\necho setup\n".write(toFile: work + "/scripts/setup.sh", atomically: true, encoding: .utf8)
        let t = ContinuousClock.now
        for i in 0..<count { try template(i, marker: 0).write(toFile: work + "/templates/\(name(i)).json", atomically: false, encoding: .utf8) }
        try commitAndPush(work, "\(count) templates")
        print("repository: \(count) templates generated and pushed in \(fmt(ContinuousClock.now - t))")
        let paths = KilnPaths(dataDir: dir + "/data")
        let core = KilnCore(paths: paths, store: try KilnDatabase(path: paths.database))
        let mirror = try RepositoryMirror.open(dataDir: paths.dataDir, source: GitSource(url: remote))
        return Setup(count: count, work: work, core: core, mirror: mirror, reconciler: Reconciler(core: core, mirror: mirror))
    }

    /// The first fetch, plan and apply (every template created). The plan and report are not kept, as in the
    /// controller.
    static func initialApply(_ s: Setup) async throws -> ObjectID {
        var t = ContinuousClock.now
        guard let head = try await s.mirror.refresh() else { fatalError("no branch") }
        let fetched = ContinuousClock.now - t
        t = ContinuousClock.now
        let initialPlan = try await s.reconciler.plan(at: head)
        let planned = ContinuousClock.now - t
        t = ContinuousClock.now
        let report = await s.reconciler.apply(initialPlan)
        let applied = ContinuousClock.now - t
        precondition(report.failed.isEmpty, "\(report.failed.prefix(3).map(\.result))")
        print("initial: fetch \(fmt(fetched)), plan \(fmt(planned)) (\(initialPlan.changes.count) creates), apply \(fmt(applied))  \(memory())")
        return head
    }

    /// The unchanged poll: what the controller does every interval when nothing moved.
    static func unchangedPolls(_ s: Setup, head: ObjectID) async throws {
        var polls: [Duration] = []
        var last: ObjectID? = head
        for _ in 0..<25 {
            let t = ContinuousClock.now
            let h = try await s.mirror.refresh()
            let c = try await s.mirror.effectiveCommit(h!)
            let changed = c != last
            polls.append(ContinuousClock.now - t)
            precondition(!changed)
            last = c
        }
        polls.sort()
        print("unchanged poll (ls-remote + compare, file:// remote): median \(fmt(polls[polls.count / 2])), max \(fmt(polls.last!))  goal ≤ 10 ms")
    }

    /// One template changes: fetch and plan, and where the plan's time goes.
    static func oneChange(_ s: Setup, from head: ObjectID) async throws {
        try template(s.count / 2, marker: 1).write(toFile: s.work + "/templates/\(name(s.count / 2)).json", atomically: false, encoding: .utf8)
        try commitAndPush(s.work, "one change")
        var t = ContinuousClock.now
        let h1 = try await s.mirror.refresh()!
        let fetch1 = ContinuousClock.now - t
        if ProcessInfo.processInfo.environment["KILN_BENCH_COLD"] != nil { try await coldDesired(s, at: h1) }
        t = ContinuousClock.now
        let plan1 = try await s.reconciler.plan(at: h1)
        let plan1Time = ContinuousClock.now - t
        precondition(plan1.changes.count == 1, "\(plan1.changes.count) changes")
        try await planBreakdown(s, from: head, to: h1)
        if let loops = ProcessInfo.processInfo.environment["KILN_BENCH_PLAN_LOOPS"].flatMap(Int.init) {
            print("PLAN-LOOP-START")
            fflush(nil)
            for _ in 0..<loops { _ = try await s.reconciler.plan(at: h1) }
        }
        print("one template changed: fetch \(fmt(fetch1)), plan \(fmt(plan1Time)) → \(plan1.changes[0].summary)  goal ≤ 200 ms  \(memory())")
    }

    /// KILN_BENCH_COLD: the desired state read cold (tree listing, then every file), then warm.
    static func coldDesired(_ s: Setup, at h1: ObjectID) async throws {
        var c = ContinuousClock.now
        _ = try await s.mirror.repo.files(at: h1)
        let cf = ContinuousClock.now - c
        c = ContinuousClock.now
        _ = try await s.reconciler.desired(at: h1)
        let cd = ContinuousClock.now - c
        c = ContinuousClock.now
        _ = try await s.reconciler.desired(at: h1)
        let wd = ContinuousClock.now - c
        print("  cold: files \(fmt(cf)), desired \(fmt(cd)); warm desired \(fmt(wd))")
    }

    /// Where a plan's time goes (the same commit again: the cache is warm, as it is for the next poll).
    static func planBreakdown(_ s: Setup, from old: ObjectID, to h1: ObjectID) async throws {
        var t = ContinuousClock.now
        let files = try await s.mirror.repo.files(at: h1)
        let tFiles = ContinuousClock.now - t
        t = ContinuousClock.now
        _ = try await s.reconciler.desired(at: h1)
        let tDesired = ContinuousClock.now - t
        t = ContinuousClock.now
        _ = try await s.core.managedTemplates(by: s.mirror.source.key)
        let tRecorded = ContinuousClock.now - t
        t = ContinuousClock.now
        _ = try await s.mirror.repo.changes(from: old, to: h1)
        let tDiff = ContinuousClock.now - t
        print("  diff of the two commits \(fmt(tDiff))")
        print(
            "  plan breakdown: tree listing \(fmt(tFiles)) (\(files.count) files), desired state (incl. listing) \(fmt(tDesired)), recorded state \(fmt(tRecorded))"
        )
    }

    /// Every template changes (a script they all reference).
    static func allChange(_ s: Setup) async throws {
        try "#!/bin/sh\necho setup v2\n".write(toFile: s.work + "/scripts/setup.sh", atomically: true, encoding: .utf8)
        try commitAndPush(s.work, "all change")
        var t = ContinuousClock.now
        let h2 = try await s.mirror.refresh()!
        let fetch2 = ContinuousClock.now - t
        t = ContinuousClock.now
        let plan2 = try await s.reconciler.plan(at: h2)
        let plan2Time = ContinuousClock.now - t
        print("all \(s.count) changed (shared script): fetch \(fmt(fetch2)), plan \(fmt(plan2Time)) → \(plan2.changes.count) recreates  \(memory())")
    }

    static func require0<T>(_ v: T?) throws -> T { guard let v else { throw NSError(domain: "bench", code: 1) }; return v }

    static func name(_ i: Int) -> String { String(format: "t%05d", i) }

    static func template(_ i: Int, marker: Int) -> String {
        """
        {
          "type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01",
          "name": "\(name(i))", "location": "westeurope", "tags": {"kiln.run": "manual", "team": "team-\(i % 40)"},
          "identity": {"type": "None"},
          "properties": {
            "buildTimeoutInMinutes": 60,
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12", "sku": "12-gen2", "version": "latest"},
            "customize": [
              {"type": "Shell", "name": "setup", "scriptUri": "scripts/setup.sh"},
              {"type": "Shell", "name": "inline", "inline": ["echo template \(i) revision \(marker)", "sudo apt-get -y update"]}
            ],
            "distribute": [{"type": "VHD", "runOutputName": "\(name(i))-vhd"}]
          }
        }
        """
    }

    static func commitAndPush(_ work: String, _ message: String) throws {
        try sh("cd \(work) && git add -A && git -c user.name=Bench -c user.email=bench@example.com commit -q -m '\(message)' && git push -q origin HEAD:main")
    }

    static func sh(_ command: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NSError(domain: "bench", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: command]) }
    }

    static func fmt(_ d: Duration) -> String {
        let s = d.inSeconds
        return s < 1 ? String(format: "%.1f ms", s * 1000) : String(format: "%.2f s", s)
    }

    /// Peak and current resident set size of this process.
    static func memory() -> String {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func kb(_ key: String) -> Int {
            Int(status.split(separator: "\n").first { $0.hasPrefix(key) }?.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
        return "[RSS peak \(kb("VmHWM:") / 1024) MB, now \(kb("VmRSS:") / 1024) MB]"
    }
}
