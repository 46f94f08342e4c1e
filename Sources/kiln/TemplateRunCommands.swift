// kiln template run, cancel and worker: queue, execute, follow and cancel runs; start the background worker.
import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnDistribute
import KilnStore
import KilnSystem
import KilnTemplates

extension Template {
    // MARK: run / cancel

    struct Run: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a template: build, customize, validate and capture an image.",
            discussion: """
                Without --wait the run is queued and a background worker executes it; follow it with \
                `kiln template logs NAME --follow`. With --wait this process executes it (or follows the process \
                that does) and prints each step; the exit status is 0 when the run Succeeded, 1 otherwise.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Flag(help: "Wait for the run to finish, showing progress.") var wait = false
        @Flag(help: "With --wait, print every log line, not only the steps.") var follow = false
        @Flag(help: "Build even when an earlier run captured an image from the same inputs (which is otherwise reused).") var force = false
        @Option(help: "Runs executed at once by the background worker (across processes).") var parallelism = 1

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let queued: RunRecord
            do { queued = try await core.queueRun(name, force: force) } catch { throw CLIError.core(error) }
            guard wait else {
                try spawnWorker(env, paths: core.paths, parallelism: parallelism)
                switch env.output {
                case .json: try printJSON(RunDocument(queued))
                case .text:
                    print("queued run \(queued.id) of \(name)")
                    print("follow it with: kiln template logs \(name) --follow")
                }
                return
            }
            let finished = try await waitForRun(core: core, runId: queued.id, env: env, follow: follow || env.verbose, parallelism: parallelism)
            if finished.runState != .succeeded { throw ExitCode(1) }
        }
    }

    struct Cancel: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a template's run in progress.",
            discussion: "The run moves to Canceling; its VM is stopped and it ends Canceled, normally within a few seconds. Waits for that unless --no-wait."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Template name or resource id.") var name: String
        @Flag(name: .customLong("no-wait"), help: "Return once the cancel is requested.") var noWait = false

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            var run: RunRecord
            do { run = try await core.cancel(name) } catch { throw CLIError.core(error) }
            let start = ContinuousClock.now
            while !noWait, run.isActive, ContinuousClock.now - start < .seconds(60) {
                try await Task.sleep(for: .milliseconds(250))
                await core.recoverAbandonedRuns()
                run = (try? await core.run(id: run.id)) ?? run
            }
            switch env.output {
            case .json: try printJSON(RunDocument(run))
            case .text: print("run \(run.id): \(run.runState)\(run.isActive ? "" : " after \(formatDuration(ContinuousClock.now - start))")")
            }
        }
    }

    // MARK: worker

    struct Worker: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Execute queued runs until none is left (started in the background by `kiln template run`).",
            shouldDisplay: false
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "Runs executed at once (across processes).") var parallelism = 1
        @Flag(help: "Keep polling for new runs instead of exiting when the queue is empty.") var forever = false

        func run(_ env: KilnEnvironment) async throws {
            let core = try await Template.core(env)
            let signals = StopSignals.cancelRunsOnSignal()
            defer { signals.forEach { $0.cancel() } }
            await WorkerPool(core: core, parallelism: parallelism).run(forever: forever) { runId, event in
                if case .phase(let p) = event { print("\(Date()) run \(runId): \(p.rawValue)"); fflush(nil) }
            }
        }
    }
}

// MARK: - Helpers

/// Executes or follows a run to its end, printing progress; returns the finished run.
func waitForRun(core: KilnCore, runId: String, env: KilnEnvironment, follow: Bool, parallelism: Int) async throws -> RunRecord {
    let start = ContinuousClock.now
    let text = env.output == .text
    if text { printError("run \(runId): queued") }
    let finished: RunRecord
    let signals = StopSignals.cancelRunsOnSignal()
    defer { signals.forEach { $0.cancel() } }
    do {
        finished = try await WorkerPool(core: core, parallelism: parallelism).runToCompletion(runId) { event in
            guard text else { return }
            switch event {
            case .phase(let p): printError("[\(formatDuration(ContinuousClock.now - start))] \(p.rawValue)")
            case .log(let l):
                if follow {
                    printError(l)
                } else if let r = l.range(of: "==> ") {
                    printError("    \(l[r.upperBound...])")
                }
            }
        }
    } catch {
        throw CLIError.core(error)
    }
    switch env.output {
    case .json: try printJSON(RunDocument(finished))
    case .text:
        print("run \(finished.id): \(finished.runState) in \(formatDuration(ContinuousClock.now - start))")
        printRun(finished, header: false)
    }
    return finished
}

func printRun(_ r: RunRecord, header: Bool = true) {
    if header { print("  last run           \(r.id): \(r.runState.rawValue)\(r.runSubState.map { " (\($0.rawValue))" } ?? "")") }
    let phases = RunSubState.allCases.compactMap { p in r.phaseSeconds[p].map { "\(p.rawValue) \(formatDuration(.seconds($0)))" } }
    if !phases.isEmpty { print("  phases             \(phases.joined(separator: ", "))") }
    if let s = r.sourceReference { print("  source image       \(s)") }
    if let a = r.artifactPath { print("  image              \(a)") }
    print("  log                \((r.logDirectory as NSString).appendingPathComponent("customization.log"))")
    if let m = r.message, !m.isEmpty {
        print("  message            " + m.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n                     "))
    }
}

/// Starts `kiln template worker` in its own session, detached from this terminal, so that a queued run is
/// executed after this command exits. Its output goes to `<data>/logs/worker.log`, rotated at 16 MiB (three
/// old files kept: `worker.log.1` … `.3`).
func spawnWorker(_ env: KilnEnvironment, paths: KilnPaths, parallelism: Int = 1) throws {
    let logs = (paths.dataDir as NSString).appendingPathComponent("logs")
    try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
    let logFile = (logs as NSString).appendingPathComponent("worker.log")
    LogRotation.rotate(logFile, maxBytes: 16 << 20, keep: 3)
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    do {
        // The worker reads the same configuration file (regions, identities, logging) as the process that starts it.
        var args = ["template", "worker", "--data-dir", paths.dataDir, "--parallelism", String(parallelism)]
        if let config = env.configFile { args += ["--config", URL(fileURLWithPath: config).standardizedFileURL.path] }
        let pid = try BackgroundProcess.spawn(
            exe, args,
            output: logFile, append: true, detach: .session)
        BackgroundProcess.reapOnExit(pid)
    } catch {
        throw CLIError.message("cannot start the background worker (\(error)); run `kiln template worker` yourself")
    }
}
