import Foundation
import KilnBuild
import KilnDistribute
import KilnStore
import KilnTemplates
import Logging
import Synchronization

/// What a run reports while it executes (for `--wait` progress and `--follow`).
public enum RunEvent: Sendable {
    /// The run entered a sub-state (Building, Customizing, …).
    case phase(RunSubState)
    /// A line of `customization.log` or `validation.log`, timestamped.
    case log(String)
}

/// Executes one claimed run: resolve the source, build (KilnBuild), record phases, outputs and the final
/// state. Owns the run's deadline (`buildTimeoutInMinutes`) and watches for a cancel request, which may come
/// from any process through the database.
public struct RunExecutor: Sendable {
    public let core: KilnCore
    public let runId: String
    public var onEvent: @Sendable (RunEvent) -> Void
    /// How often the database is asked whether the run was canceled.
    public var pollInterval: Duration = .milliseconds(500)

    public init(core: KilnCore, runId: String, onEvent: @escaping @Sendable (RunEvent) -> Void = { _ in }) {
        self.core = core
        self.runId = runId
        self.onEvent = onEvent
    }

    enum StopReason: Sendable {
        case canceled, timeout
        /// The process executing the run is stopping (a signal); the text says why.
        case ownerStopping(String)
    }

    /// Per-phase wall-clock time, in AIB's sub-state names.
    final class PhaseClock: Sendable {
        let state = Mutex<(current: RunSubState?, since: ContinuousClock.Instant, seconds: [RunSubState: Double])>((nil, .now, [:]))
        var current: RunSubState? { state.withLock { $0.current } }
        func enter(_ phase: RunSubState?) -> [RunSubState: Double] {
            state.withLock { s in
                let now = ContinuousClock.now
                if let c = s.current { s.seconds[c, default: 0] += (now - s.since).seconds }
                s.current = phase
                s.since = now
                return s.seconds
            }
        }
    }

    public func execute() async -> RunRecord {
        let db = core.store
        guard var run = try? await db.run(id: runId) else {
            return RunRecord(id: runId, templateId: "", queuedAt: Date(), timeoutMinutes: 0, workDirectory: "", logDirectory: "")
        }
        let meta: Logger.Metadata = ["template": "\(run.templateId)", "run": "\(runId)"]
        let log = BuildLog(path: (run.logDirectory as NSString).appendingPathComponent("customization.log"), echo: { onEvent(.log($0)) })
        let clock = PhaseClock()
        var phaseSeconds: [RunSubState: Double] = [.queued: (run.startTime ?? Date()).timeIntervalSince(run.queuedAt)]
        let setPhase: @Sendable (RunSubState) async -> Void = { phase in
            guard clock.current != phase else { return }
            let secs = clock.enter(phase)
            onEvent(.phase(phase))
            core.logger.info("run phase", metadata: meta.merging(["phase": "\(phase.rawValue)"]) { _, n in n })
            _ = try? await db.updateRun(id: runId) { r in
                guard (try? r.apply(.enter(phase))) != nil else { return }
                r.phaseSeconds = r.phaseSeconds.merging(secs) { _, new in new }
            }
        }
        core.logger.info("run started", metadata: meta)

        let resource: TemplateResource
        do {
            resource = try await core.template(run.templateId)
        } catch {
            return await finish(run, state: .failed, message: "the template cannot be read: \(error)", phases: phaseSeconds)
        }
        let t = resource.template
        await setPhase(.building)
        log.marker("Run \(runId) of \(resource.record.id)")

        // Source.
        let source: ResolvedSource
        do {
            source = try await SourceResolver(database: db, paths: core.paths).resolve(t.properties.source)
        } catch {
            log.line("source: \(error.description)")
            phaseSeconds.merge(clock.enter(nil)) { _, n in n }
            return await finish(run, state: .failed, message: "\(error.code): \(error.message)", phases: phaseSeconds)
        }
        run = (try? await db.updateRun(id: runId) { r in
            r.sourceReference = source.reference
            r.sourceExactVersion = source.exactVersion
        }) ?? run
        log.line("source: \(source.reference)\(source.exactVersion.map { " (exactVersion \($0))" } ?? "")")
        let (accelerator, notice) = await AcceleratorProbe(cacheDir: core.paths.cacheDir).detect()
        if let notice { log.line(notice) }

        let staging = StagingArea(directory: resource.record.stagingDirectory, resourceGroupId: resource.record.stagingResourceGroup)
        var artifacts: [String: String] = [:]
        for a in resource.record.artifacts { artifacts[a.reference] = a.path }
        let captured = staging.capturedDisk(run: runId)
        let request = BuildRequest(runId: runId, template: t, source: source, artifacts: artifacts, workDirectory: run.workDirectory,
                                   logDirectory: run.logDirectory, capturedDisk: captured, accelerator: accelerator)
        let builder = Builder(request: request, logger: core.logger, onPhase: { await setPhase($0) }, onLogLine: { onEvent(.log($0)) })

        // The build, raced against the deadline and a cancel request.
        let minutes = run.timeoutMinutes > 0 ? run.timeoutMinutes : ImageTemplateProperties.defaultBuildTimeoutInMinutes
        let deadline = ContinuousClock.now + .seconds(minutes * 60)
        let stop = Mutex<StopReason?>(nil)
        let build = Task { () throws(BuildError) -> BuildResult in try await builder.run() }
        ExecutingRuns.shared.register(runId) { why in
            stop.withLock { $0 = $0 ?? .ownerStopping(why) }
            build.cancel()
        }
        defer { ExecutingRuns.shared.unregister(runId) }
        let watcher = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: pollInterval)
                if ContinuousClock.now >= deadline {
                    stop.withLock { $0 = $0 ?? .timeout }
                    build.cancel()
                    return
                }
                if let r = try? await db.run(id: runId), r.cancelRequested {
                    stop.withLock { $0 = $0 ?? .canceled }
                    build.cancel()
                    return
                }
            }
        }
        let result = await build.result
        watcher.cancel()
        let reason = stop.withLock { $0 }

        switch (result, reason) {
        case (_, .ownerStopping(let why)?):
            cleanUp(run)
            log.marker("Canceled: \(why)")
            phaseSeconds.merge(clock.enter(nil)) { _, n in n }
            _ = try? await db.updateRun(id: runId) { r in try? r.apply(.requestCancel(reason: why)) }
            return await finish(run, state: .canceled, message: "\(why); the run was canceled and its build VM stopped", phases: phaseSeconds)
        case (_, .canceled?):
            cleanUp(run)
            log.marker(RunState.canceled.rawValue)
            phaseSeconds.merge(clock.enter(nil)) { _, n in n }
            return await finish(run, state: .canceled, message: "the run was canceled; the build VM was stopped", phases: phaseSeconds)
        case (_, .timeout?):
            cleanUp(run)
            let phase = (try? await db.run(id: runId))?.runSubState ?? .building
            let tail = log.tail(8)
            log.marker("Timed out after \(minutes) minutes")
            phaseSeconds.merge(clock.enter(nil)) { _, n in n }
            var message = "the build timed out after \(minutes) minute\(minutes == 1 ? "" : "s") (buildTimeoutInMinutes: \(minutes)) while \(phase.rawValue.lowercased()); the build VM was stopped. Raise buildTimeoutInMinutes (at most 960) if the build needs longer."
            if !tail.isEmpty { message += "\nlast lines of customization.log:\n" + tail.joined(separator: "\n") }
            return await finish(run, state: .failed, message: message, phases: phaseSeconds)
        case (.failure(let error), nil):
            let e = (error as? BuildError) ?? .io("\(error)")
            var kept = false
            if case .customizerFailed(_, _, _, _, _, let k) = e, k != nil { kept = true }
            if case .validationFailed(_, let k) = e, k != nil { kept = true }
            if !kept { cleanUp(run) }
            log.marker("Failed: \(e.description.split(separator: "\n").first ?? "")")
            phaseSeconds.merge(clock.enter(nil)) { _, n in n }
            return await finish(run, state: .failed, message: e.description, phases: phaseSeconds)
        case (.success(let built), nil):
            await setPhase(.distributing)
            log.marker("Distributing to \(t.properties.distribute.count) target\(t.properties.distribute.count == 1 ? "" : "s")")
            let image = CapturedImage(path: built.capturedDisk, sha256: built.sha256, virtualSize: built.virtualSize, osType: source.osType,
                                      generation: source.generation, sourceVersion: source.exactVersion, sourceReference: source.reference)
            let provenance = Distribution.Provenance(templateId: resource.record.id, runId: runId, stagingDirectory: staging.directory)
            let outcomes = await core.distribution.distribute(image, template: t, provenance: provenance) { log.line("  \($0)") }
            let outputs = outcomes.map {
                RunOutputRecord(name: $0.runOutputName, artifactId: $0.artifactId, artifactUri: $0.artifactUri,
                                provisioningState: $0.succeeded ? .succeeded : .failed, message: $0.error, seconds: $0.seconds)
            }
            phaseSeconds.merge(clock.enter(nil)) { _, n in n }
            var notes = built.notes
            let failed = outcomes.filter { !$0.succeeded }
            let state = Self.finalState(outcomes.map(\.succeeded), validationFailed: built.validationFailure != nil)
            for f in failed { notes.append("distribution \(f.runOutputName) (\(f.kind.rawValue)) failed: \(f.error ?? "")") }
            if let v = built.validationFailure {
                notes.insert("validation failed: \(v) (continueDistributeOnFailure: the image was distributed anyway)", at: 0)
            }
            let size = built.virtualSize
            _ = try? await db.updateRun(id: runId) { r in
                r.artifactPath = built.capturedDisk
                r.artifactSha256 = built.sha256
                r.artifactSize = size
                r.outputs = outputs
            }
            log.marker(state.rawValue)
            return await finish(run, state: state, message: notes.joined(separator: "\n"), phases: phaseSeconds)
        }
    }

    /// A built run's state from its distribution targets: all succeeded → Succeeded, some → PartiallySucceeded,
    /// none → Failed; a failed validation (distributed anyway) is Failed whatever distribution did.
    static func finalState(_ targets: [Bool], validationFailed: Bool) -> RunState {
        if validationFailed { return .failed }
        let ok = targets.filter { $0 }.count
        if ok == targets.count { return .succeeded }
        return ok == 0 ? .failed : .partiallySucceeded
    }

    /// Stops any VM of the run still running (a cancellation may land between two steps) and removes its
    /// work directory.
    func cleanUp(_ run: RunRecord) {
        Leftovers.stopVMs(in: run.workDirectory, runId: run.id)
        try? FileManager.default.removeItem(atPath: run.workDirectory)
    }

    /// Ends the run. A cancel that landed after the build finished turns a success into Canceled: the user
    /// asked for it, and the state machine refuses Succeeded after Canceling.
    func finish(_ run: RunRecord, state: RunState, message: String, phases: [RunSubState: Double]) async -> RunRecord {
        let final = try? await core.store.updateRun(id: run.id) { r in
            if (try? r.apply(.finish(state, message: message))) == nil {
                try? r.apply(.finish(.canceled, message: "the run was canceled after its build finished; " + message))
            }
            r.phaseSeconds = r.phaseSeconds.merging(phases) { _, new in new }
        }
        core.logger.info("run finished", metadata: ["template": "\(run.templateId)", "run": "\(run.id)", "state": "\(final?.runState.rawValue ?? state.rawValue)"])
        return final ?? run
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
