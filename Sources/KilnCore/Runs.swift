import Foundation
import KilnBuild
import KilnStore
import KilnTemplates

extension KilnCore {
    /// Queues a run (runState Running, runSubState Queued). A worker executes it.
    public func queueRun(_ resource: TemplateResource, force: Bool = false) async throws(CoreError) -> RunRecord {
        var run = newRun(resource)
        run.force = force
        let runId = run.id
        do {
            try await store.insertRun(run)
        } catch {
            throw .from(error)
        }
        logger.info("run queued", metadata: ["template": "\(resource.record.id)", "run": "\(runId)"])
        return run
    }

    /// A queued run of `resource`, not yet stored.
    func newRun(_ resource: TemplateResource) -> RunRecord {
        let runId = UUID().uuidString.lowercased()
        let staging = StagingArea(directory: resource.record.stagingDirectory, resourceGroupId: resource.record.stagingResourceGroup)
        return RunRecord(
            id: runId, templateId: resource.record.id, queuedAt: Date(), timeoutMinutes: resource.template.properties.buildTimeoutInMinutes,
            workDirectory: (paths.vms as NSString).appendingPathComponent(runId), logDirectory: staging.logs(run: runId))
    }

    public func queueRun(_ idOrName: String, force: Bool = false) async throws(CoreError) -> RunRecord {
        try await queueRun(try await template(idOrName), force: force)
    }

    /// Asks the active run of a template to stop: a queued run is Canceled at once; an executing one moves to
    /// Canceling, and its executor (in whichever process owns it) kills the VM and marks it Canceled.
    @discardableResult
    public func cancel(_ idOrName: String) async throws(CoreError) -> RunRecord {
        let resource = try await template(idOrName)
        do {
            guard let run = try await store.latestRun(templateId: resource.record.id), run.isActive else {
                throw CoreError.operationNotAllowed("\(resource.name) has no run in progress to cancel")
            }
            let updated = try await store.updateRun(id: run.id) { r in
                // A run that ended meanwhile stays as it ended.
                try? r.apply(.requestCancel(reason: "canceled before it started"))
            }
            logger.info("run cancel requested", metadata: ["template": "\(resource.record.id)", "run": "\(run.id)"])
            return updated
        } catch let e as CoreError {
            throw e
        } catch let e as StoreError {
            throw .from(e)
        } catch {
            throw .io("\(error)")
        }
    }

    /// Claims a queued run (the oldest, or `runId`) for `owner` (this process by default) when fewer than
    /// `parallelism` runs execute across all processes; nil when there is none or no slot is free.
    public func claimQueuedRun(owner: RunOwner = .current, parallelism: Int, runId: String? = nil) async throws(CoreError) -> RunRecord? {
        do {
            return try await store.claimQueuedRun(parallelism: parallelism, runId: runId) { r in try r.apply(.claim(owner)) }
        } catch {
            throw .from(error)
        }
    }

    public func runs(_ idOrName: String) async throws(CoreError) -> [RunRecord] {
        let resource = try await template(idOrName)
        do { return try await store.runs(templateId: resource.record.id) } catch { throw .from(error) }
    }

    public func run(id: String) async throws(CoreError) -> RunRecord {
        do {
            guard let r = try await store.run(id: id) else { throw CoreError.notFound("run \(id) not found") }
            return r
        } catch let e as CoreError {
            throw e
        } catch {
            throw .from(error as! StoreError)
        }
    }

    // MARK: Crash recovery

    /// Finds runs whose executing process is gone (a crash, kill -9, a reboot), stops their leftover VMs by
    /// pid file, removes their work directories and marks them Failed with a message that says so.
    /// Idempotent and cheap; every process calls it when it opens the core.
    @discardableResult
    public func recoverAbandonedRuns() async -> [RunRecord] {
        guard let active = try? await store.activeRuns() else { return [] }
        var recovered: [RunRecord] = []
        for run in active {
            guard let owner = run.owner, !owner.isAlive else { continue }
            let stopped = Leftovers.stopVMs(in: run.workDirectory, runId: run.id)
            try? FileManager.default.removeItem(atPath: run.workDirectory)
            let phase = run.runState == .canceling ? "canceling" : (run.runSubState?.rawValue ?? "running")
            var message = "the Kiln process that executed this run (\(owner)) stopped while the run was \(phase); "
            message +=
                stopped.isEmpty ? "its build VM stopped with it" : "its build VM (QEMU process \(stopped.map(String.init).joined(separator: ", "))) was stopped"
            message += " and the work directory removed. Start a new run."
            let text = message
            if let r = try? await store.updateRun(
                id: run.id,
                { r in
                    guard r.owner == owner else { return }
                    try? r.apply(.recover(message: text))
                })
            {
                logger.notice("recovered an abandoned run", metadata: ["template": "\(run.templateId)", "run": "\(run.id)", "vms": "\(stopped)"])
                recovered.append(r)
            }
        }
        return recovered
    }
}

// MARK: - AIB shapes

extension RunRecord {
    /// `lastRunStatus` exactly as AIB reports it.
    public var lastRunStatus: ImageTemplateStatus.LastRunStatus {
        var s = ImageTemplateStatus.LastRunStatus()
        s.runState = runState
        s.runSubState = runSubState
        s.message = message ?? ""
        s.startTime = queuedAt.iso8601
        s.endTime = endTime?.iso8601
        return s
    }
}

extension Date {
    /// RFC 3339 with fractional seconds, as ARM writes times.
    public var iso8601: String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: self)
    }
}
