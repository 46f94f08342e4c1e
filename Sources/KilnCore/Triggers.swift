// SourceImage triggers: a template runs once whenever its source resolves to a new image.
import Foundation
import KilnStore
import KilnTemplates

/// Where a trigger came from, as for templates: a file of a repository (which then owns it), or by hand.
public struct TriggerOrigin: Sendable, Hashable {
    public var file: String?
    public var commit: String?
    public var managedBy: String?
    public init(file: String? = nil, commit: String? = nil, managedBy: String? = nil) {
        self.file = file
        self.commit = commit
        self.managedBy = managedBy
    }
}

extension KilnCore {
    /// Makes a template's trigger. As AIB has it: one per template, and only for a source that moves by
    /// itself, a platform image or a gallery image version at `latest`. Creating it never fires it: the
    /// baseline is what the source resolves to now.
    public func createTrigger(template idOrName: String, name: String, kind: TriggerKind = .sourceImage, origin: TriggerOrigin = TriggerOrigin())
        async throws(CoreError) -> TriggerRecord
    {
        let resource = try await template(idOrName)
        guard ResourceNames.isValidTemplateName(name) else {
            throw CoreError.invalidParameter(path: "name", message: "trigger name '\(name)' must match ^[A-Za-z0-9-_.]{1,64}$")
        }
        let source = resource.template.properties.source
        guard Self.movesByItself(source) else {
            throw CoreError.invalidParameter(
                path: "properties.source",
                message:
                    "\(resource.name)'s source is \(Self.describe(source)), which never changes by itself; a SourceImage trigger needs a platform image or a gallery image version at 'latest'"
            )
        }
        let now = await currentSource(of: source)
        var record = TriggerRecord(
            templateId: resource.record.id, name: name, kind: kind, baseline: now, status: now == nil ? .unhealthy : .healthy,
            message: now.map { "watching \(Self.describe(source)): now \($0.shown)" } ?? "\(Self.describe(source)) does not resolve yet")
        record.managedBy = origin.managedBy
        record.sourceFile = origin.file
        record.sourceCommit = origin.commit
        let made = record
        do throws(StoreError) {
            try await store.insertTrigger(made)
        } catch .conflict(let what) {
            throw CoreError.conflict("\(resource.name) has a trigger already: \(what)")
        } catch {
            throw .from(error)
        }
        logger.info("trigger created", metadata: ["trigger": "\(record.id)", "baseline": "\(now?.reference ?? "none")"])
        return record
    }

    /// Every trigger, or those of one template.
    public func triggers(template idOrName: String? = nil) async throws(CoreError) -> [TriggerRecord] {
        var templateId: String?
        if let idOrName { templateId = try await template(idOrName).record.id }
        let id = templateId
        return try await stored { () async throws(StoreError) in try await store.triggers(templateId: id) }
    }

    /// A template's trigger by name (its only one when `name` is nil).
    public func trigger(template idOrName: String, name: String?) async throws(CoreError) -> TriggerRecord {
        let all = try await triggers(template: idOrName)
        guard let t = all.first(where: { name == nil || $0.name.lowercased() == name!.lowercased() }) else {
            throw CoreError.notFound("\(idOrName) has no trigger\(name.map { " named \($0)" } ?? "")")
        }
        return t
    }

    public func deleteTrigger(template idOrName: String, name: String?) async throws(CoreError) {
        try await deleteTrigger(id: try await trigger(template: idOrName, name: name).id)
    }

    /// Deletes a trigger by id; one that is gone already (its template was deleted) is not an error.
    public func deleteTrigger(id: String) async throws(CoreError) {
        do throws(StoreError) {
            try await store.removeTrigger(id: id)
        } catch .notFound {
            return
        } catch {
            throw .from(error)
        }
        logger.info("trigger deleted", metadata: ["trigger": "\(id)"])
    }

    /// One poll of every trigger: each whose template's source now resolves to an image other than its
    /// baseline queues one run of the template (a template with a run in progress is left for a later poll).
    /// Safe to run in several processes at once: firing is a compare-and-set on the baseline.
    @discardableResult
    public func pollTriggers() async -> [RunRecord] {
        guard let all = try? await store.triggers(templateId: nil) else { return [] }
        var queued: [RunRecord] = []
        for t in all {
            if let run = await poll(t) { queued.append(run) }
        }
        return queued
    }

    func poll(_ t: TriggerRecord) async -> RunRecord? {
        guard let resource = try? await template(t.templateKey) else { return nil }
        let source = resource.template.properties.source
        guard let now = await currentSource(of: source) else {
            let message = "\(Self.describe(source)) does not resolve"
            if t.statusCode != .unhealthy || t.statusMessage != message {
                try? await store.updateTrigger(id: t.id, status: .unhealthy, message: message, baseline: nil)
            }
            return nil
        }
        if let baseline = t.baseline, baseline.isSameImage(as: now) {
            if t.statusCode != .healthy {
                try? await store.updateTrigger(id: t.id, status: .healthy, message: "watching \(Self.describe(source)): now \(now.shown)", baseline: nil)
            }
            return nil
        }
        if let last = try? await store.latestRun(templateId: resource.record.id), last.isActive { return nil }
        let run = newRun(resource)
        let message = "started run \(run.id): source \(now.shown)" + (t.baseline.map { " replaces \($0.shown)" } ?? " resolves")
        do {
            guard try await store.fireTrigger(id: t.id, expected: t.baseline, seen: now, run: run, message: message) else { return nil }
        } catch {
            try? await store.updateTrigger(id: t.id, status: .unhealthy, message: "cannot start a run: \(error)", baseline: nil)
            return nil
        }
        logger.notice("trigger fired", metadata: ["trigger": "\(t.id)", "run": "\(run.id)", "source": "\(now.reference)"])
        return run
    }

    /// Whether a source can resolve to a newer image without the template changing.
    static func movesByItself(_ source: ImageSource) -> Bool {
        switch source {
        case .platformImage(let p): return p.version.lowercased() == "latest"
        case .sharedImageVersion(let s): return s.imageVersionId.lowercased().hasSuffix("/versions/latest")
        case .managedImage: return false
        }
    }

    static func describe(_ source: ImageSource) -> String {
        switch source {
        case .platformImage(let p): return "\(p.publisher):\(p.offer):\(p.sku):\(p.version)"
        case .sharedImageVersion(let s): return BuiltSource(reference: s.imageVersionId, sha256: nil).shown
        case .managedImage(let m): return "managed image \(m.imageId)"
        }
    }
}

extension RepeatingTask {
    /// Polls every trigger at an interval, for the controller (one per process; several processes polling one
    /// store are harmless, firing is a compare-and-set). Reports the runs it queued, so workers start for them.
    public static func pollingTriggers(of core: KilnCore, every interval: Duration, onQueued: @escaping @Sendable ([RunRecord]) -> Void) -> RepeatingTask {
        RepeatingTask(interval: interval) {
            let queued = await core.pollTriggers()
            if !queued.isEmpty { onQueued(queued) }
        }
    }
}
