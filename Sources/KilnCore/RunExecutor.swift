import Foundation
import KilnSystem
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
                if let c = s.current { s.seconds[c, default: 0] += (now - s.since).inSeconds }
                s.current = phase
                s.since = now
                return s.seconds
            }
        }
    }

    /// What one execution shares between its steps: the run as claimed, its log, and the phase clock.
    final class Execution: Sendable {
        let run: RunRecord
        let log: BuildLog
        let clock = PhaseClock()
        let meta: Logger.Metadata
        /// Time spent queued, counted from the queue to the claim.
        let queued: [RunSubState: Double]

        init(_ run: RunRecord, onEvent: @escaping @Sendable (RunEvent) -> Void) {
            self.run = run
            log = BuildLog(path: (run.logDirectory as NSString).appendingPathComponent("customization.log"), echo: { onEvent(.log($0)) })
            meta = ["template": "\(run.templateId)", "run": "\(run.id)"]
            queued = [.queued: (run.startTime ?? Date()).timeIntervalSince(run.queuedAt)]
        }

        /// The seconds per phase so far, with the current phase closed.
        func phases() -> [RunSubState: Double] { queued.merging(clock.enter(nil)) { _, n in n } }
    }

    /// What the run does once the template and its source are known: build, or distribute the image an
    /// earlier run captured from the same inputs.
    struct Prepared: Sendable {
        enum Plan: Sendable {
            case build(BuildRequest)
            case reuse(RunImageRecord)
        }
        var resource: TemplateResource
        var source: ResolvedSource
        var staging: StagingArea
        var plan: Plan
        var minutes: Int
        var inputsKey: String
    }

    public func execute() async -> RunRecord {
        guard let run = try? await core.store.run(id: runId) else {
            return RunRecord(id: runId, templateId: "", queuedAt: Date(), timeoutMinutes: 0, workDirectory: "", logDirectory: "")
        }
        let x = Execution(run, onEvent: onEvent)
        core.logger.info("run started", metadata: x.meta)
        let prepared: Prepared
        switch await prepare(x) {
        case .success(let p): prepared = p
        case .failure(let ended): return ended.run
        }
        switch prepared.plan {
        case .reuse(let image):
            return await reuse(image, prepared, x)
        case .build(let request):
            let (result, reason) = await build(prepared, request, x)
            return await conclude(result, reason, prepared, x)
        }
    }

    /// Enters a phase: reported, logged, recorded with the seconds of the phases before it.
    func enter(_ phase: RunSubState, _ x: Execution) async {
        guard x.clock.current != phase else { return }
        let secs = x.clock.enter(phase)
        onEvent(.phase(phase))
        core.logger.info("run phase", metadata: x.meta.merging(["phase": "\(phase.rawValue)"]) { _, n in n })
        _ = try? await core.store.updateRun(id: runId) { r in
            guard (try? r.apply(.enter(phase))) != nil else { return }
            r.phaseSeconds = r.phaseSeconds.merging(secs) { _, new in new }
        }
    }

    /// A run that ended before its build started.
    struct Ended: Error { var run: RunRecord }

    /// Reads the template, resolves its source, probes the accelerator and assembles the build request.
    func prepare(_ x: Execution) async -> Result<Prepared, Ended> {
        let resource: TemplateResource
        do {
            resource = try await core.template(x.run.templateId)
        } catch {
            return .failure(Ended(run: await finish(x.run, state: .failed, message: "the template cannot be read: \(error)", phases: x.queued)))
        }
        let t = resource.template
        await enter(.building, x)
        x.log.marker("Run \(runId) of \(resource.record.id)")
        let source: ResolvedSource
        do {
            source = try await SourceResolver(database: core.store, paths: core.paths).resolve(t.properties.source)
        } catch {
            x.log.line("source: \(error.description)")
            return .failure(Ended(run: await finish(x.run, state: .failed, message: "\(error.code): \(error.message)", phases: x.phases())))
        }
        let inputsKey = BuildInputs.key(t, artifacts: resource.record.artifacts, source: source)
        _ = try? await core.store.updateRun(id: runId) { r in
            r.sourceReference = source.reference
            r.sourceExactVersion = source.exactVersion
            r.sourceSha256 = source.sha256
            r.buildInputsKey = inputsKey
        }
        x.log.line("source: \(source.reference)\(source.exactVersion.map { " (exactVersion \($0))" } ?? "")")
        let staging = StagingArea(directory: resource.record.stagingDirectory, resourceGroupId: resource.record.stagingResourceGroup)
        let minutes = x.run.timeoutMinutes > 0 ? x.run.timeoutMinutes : ImageTemplateProperties.defaultBuildTimeoutInMinutes
        // Before anything starts a VM (the accelerator probe may boot one): an image from the same inputs is reused.
        if !x.run.force, !BuildInputs.alwaysBuilds(t), let image = await core.reusableImage(inputsKey) {
            x.log.line("inputs \(inputsKey.prefix(19))… are those of run \(image.runId) (\(image.templateName)): its image is reused, no VM is started")
            return .success(Prepared(resource: resource, source: source, staging: staging, plan: .reuse(image), minutes: minutes, inputsKey: inputsKey))
        }
        let (accelerator, notice) = await AcceleratorProbe(cacheDir: core.paths.cacheDir).detect()
        if let notice { x.log.line(notice) }
        var artifacts: [String: String] = [:]
        for a in resource.record.artifacts { artifacts[a.reference] = a.path }
        var request = BuildRequest(
            runId: runId, template: t, source: source, artifacts: artifacts, workDirectory: x.run.workDirectory,
            logDirectory: x.run.logDirectory, capturedDisk: core.paths.runImage(runId), accelerator: accelerator)
        request.network = core.buildNetwork
        return .success(Prepared(resource: resource, source: source, staging: staging, plan: .build(request), minutes: minutes, inputsKey: inputsKey))
    }

    /// Distributes an earlier run's image as this run's (a hard link under this run's id; a copy across file
    /// systems), without a VM.
    func reuse(_ image: RunImageRecord, _ p: Prepared, _ x: Execution) async -> RunRecord {
        let path = core.paths.runImage(runId)
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try? FileManager.default.removeItem(atPath: path)
            do { try FileManager.default.linkItem(atPath: image.path, toPath: path) } catch {
                try FileManager.default.copyItem(atPath: image.path, toPath: path)
            }
        } catch {
            return await finish(x.run, state: .failed, message: "cannot reuse the image of run \(image.runId) (\(image.path)): \(error)", phases: x.phases())
        }
        _ = try? await core.store.updateRun(id: runId) { r in r.reusedFromRunId = image.runId }
        let built = BuildResult(
            capturedDisk: path, sha256: image.sha256, virtualSize: image.virtualSize,
            notes: ["reused the image of run \(image.runId) (\(image.templateName)): the same inputs, nothing was built"])
        return await distribute(built, p, x)
    }

    /// The build, raced against the deadline, a cancel request (from any process, through the store) and this
    /// process stopping. Returns the build's result and why it was stopped, if it was.
    func build(_ p: Prepared, _ request: BuildRequest, _ x: Execution) async -> (Result<BuildResult, any Error>, StopReason?) {
        let builder = Builder(request: request, logger: core.logger, onPhase: { await enter($0, x) }, onLogLine: { onEvent(.log($0)) })
        let deadline = ContinuousClock.now + .seconds(p.minutes * 60)
        let stop = Mutex<StopReason?>(nil)
        let build = Task { () throws(BuildError) -> BuildResult in try await builder.run() }
        ExecutingRuns.shared.register(runId) { why in
            stop.withLock { $0 = $0 ?? .ownerStopping(why) }
            build.cancel()
        }
        defer { ExecutingRuns.shared.unregister(runId) }
        let store = core.store, runId = self.runId, pollInterval = self.pollInterval
        let watcher = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: pollInterval)
                if ContinuousClock.now >= deadline {
                    stop.withLock { $0 = $0 ?? .timeout }
                    build.cancel()
                    return
                }
                if let r = try? await store.run(id: runId), r.cancelRequested {
                    stop.withLock { $0 = $0 ?? .canceled }
                    build.cancel()
                    return
                }
            }
        }
        let result = await build.result
        watcher.cancel()
        return (result.mapError { $0 }, stop.withLock { $0 })
    }

    /// Ends the run from how its build ended: canceled, timed out, failed, or built and then distributed.
    func conclude(_ result: Result<BuildResult, any Error>, _ reason: StopReason?, _ p: Prepared, _ x: Execution) async -> RunRecord {
        let run = x.run
        switch (result, reason) {
        case (_, .ownerStopping(let why)?):
            cleanUp(run)
            x.log.marker("Canceled: \(why)")
            _ = try? await core.store.updateRun(id: runId) { r in try? r.apply(.requestCancel(reason: why)) }
            return await finish(run, state: .canceled, message: "\(why); the run was canceled and its build VM stopped", phases: x.phases())
        case (_, .canceled?):
            cleanUp(run)
            x.log.marker(RunState.canceled.rawValue)
            return await finish(run, state: .canceled, message: "the run was canceled; the build VM was stopped", phases: x.phases())
        case (_, .timeout?):
            cleanUp(run)
            let phase = (try? await core.store.run(id: runId))?.runSubState ?? .building
            let tail = x.log.tail(8)
            let minutes = p.minutes
            x.log.marker("Timed out after \(minutes) minutes")
            var message =
                "the build timed out after \(minutes) minute\(minutes == 1 ? "" : "s") (buildTimeoutInMinutes: \(minutes)) while \(phase.rawValue.lowercased()); the build VM was stopped. Raise buildTimeoutInMinutes (at most 960) if the build needs longer."
            if !tail.isEmpty { message += "\nlast lines of customization.log:\n" + tail.joined(separator: "\n") }
            return await finish(run, state: .failed, message: message, phases: x.phases())
        case (.failure(let error), nil):
            let e = (error as? BuildError) ?? .io("\(error)")
            var kept = false
            if case .customizerFailed(_, _, _, _, _, let k) = e, k != nil { kept = true }
            if case .validationFailed(_, let k) = e, k != nil { kept = true }
            if !kept { cleanUp(run) }
            x.log.marker("Failed: \(e.description.split(separator: "\n").first ?? "")")
            return await finish(run, state: .failed, message: e.description, phases: x.phases())
        case (.success(let built), nil):
            return await distribute(built, p, x)
        }
    }

    /// Distributing: every target, then the run's outputs and final state.
    func distribute(_ built: BuildResult, _ p: Prepared, _ x: Execution) async -> RunRecord {
        let t = p.resource.template
        await enter(.distributing, x)
        x.log.marker("Distributing to \(t.properties.distribute.count) target\(t.properties.distribute.count == 1 ? "" : "s")")
        let image = CapturedImage(
            path: built.capturedDisk, sha256: built.sha256, virtualSize: built.virtualSize, osType: p.source.osType,
            generation: p.source.generation, sourceVersion: p.source.exactVersion, sourceReference: p.source.reference,
            sourceSha256: p.source.sha256)
        let provenance = Distribution.Provenance(templateId: p.resource.record.id, runId: runId, stagingDirectory: p.staging.directory)
        let outcomes = await core.distribution.distribute(image, template: t, provenance: provenance) { x.log.line("  \($0)") }
        let outputs = outcomes.map {
            RunOutputRecord(
                name: $0.runOutputName, artifactId: $0.artifactId, artifactUri: $0.artifactUri,
                provisioningState: $0.succeeded ? .succeeded : .failed, message: $0.error, seconds: $0.seconds)
        }
        let phases = x.phases()
        var notes = built.notes
        let state = Self.finalState(outcomes.map(\.succeeded), validationFailed: built.validationFailure != nil)
        for f in outcomes where !f.succeeded { notes.append("distribution \(f.runOutputName) (\(f.kind.rawValue)) failed: \(f.error ?? "")") }
        if let v = built.validationFailure {
            notes.insert("validation failed: \(v) (continueDistributeOnFailure: the image was distributed anyway)", at: 0)
        }
        let size = built.virtualSize
        _ = try? await core.store.updateRun(id: runId) { r in
            r.artifactPath = built.capturedDisk
            r.artifactSha256 = built.sha256
            r.artifactSize = size
            r.outputs = outputs
        }
        if state == .succeeded {
            // Kept for reuse: a later run with the same inputs distributes this image instead of building.
            let record = RunImageRecord(
                runId: runId, templateId: p.resource.record.id, templateName: p.resource.name, buildInputsKey: p.inputsKey, path: built.capturedDisk,
                sha256: built.sha256, virtualSize: size, source: BuiltSource(reference: p.source.reference, sha256: p.source.sha256))
            try? await core.store.addRunImage(record)
            await core.pruneRunImages(templateKey: p.resource.record.idKey)
        }
        x.log.marker(state.rawValue)
        return await finish(x.run, state: state, message: notes.joined(separator: "\n"), phases: phases)
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
        core.logger.info(
            "run finished", metadata: ["template": "\(run.templateId)", "run": "\(run.id)", "state": "\(final?.runState.rawValue ?? state.rawValue)"])
        return final ?? run
    }
}
