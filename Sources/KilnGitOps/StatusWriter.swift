import Foundation
import KilnCore
import KilnGit
import KilnStore
import KilnTemplates
import Logging

/// What decides "a transition happened" for one template's status file: a commit is written when this
/// changes, and never otherwise (timestamps and messages ride along but do not trigger commits).
struct StatusKey: Hashable, Sendable {
    var provisioningState: ProvisioningState
    var sourceCommit: String
    var contentHash: String
    var runId: String
    var runState: RunState?
    /// Only while Running: a Canceling or ended run's sub-state is not a transition of its own.
    var runSubState: RunSubState?
    var sourceError: Bool

    init(_ s: ManagedTemplateSummary, sourceError: Bool) {
        provisioningState = s.provisioningState
        sourceCommit = s.sourceCommit ?? ""
        contentHash = s.contentHash
        runId = s.lastRunId ?? ""
        runState = s.lastRunState
        runSubState = s.lastRunState == .running ? s.lastRunSubState : nil
        self.sourceError = sourceError
    }

    init?(document d: TemplateStatusDocument) {
        guard let p = d.provisioningState else { return nil }
        provisioningState = p
        sourceCommit = d.sourceCommit ?? ""
        contentHash = d.contentHash ?? ""
        runId = d.runId ?? ""
        runState = d.lastRunStatus?.runState
        runSubState = runState == .running ? d.lastRunStatus?.runSubState : nil
        sourceError = d.sourceError != nil
    }

    /// The words of the commit subject and `kiln status`: see `TemplateStatusLabel`.
    var label: String {
        TemplateStatusLabel(provisioningState: provisioningState, runState: runState, runSubState: runSubState, sourceInvalid: sourceError).text
    }
}

/// Writes build status back to git: `status/<resourceGroup>/<name>.json` on the status branch, one commit per
/// transition, and a note under `refs/notes/kiln` on each source commit. Pushes race with people and other
/// writers; on either rejection kind the commits are rebuilt on the new tip (the files are Kiln's own, so there
/// is nothing to merge) and pushed again, with jittered backoff.
public actor StatusWriter {
    public let mirror: RepositoryMirror
    public let core: KilnCore
    let logger: Logger
    public var maxAttempts = 12
    /// Statuses the remote branch has, by path (read once, then kept up to date by our own writes).
    var known: [String: StatusKey] = [:]
    var knownInvalid: Set<String> = []
    var loadedFrom: ObjectID?
    var loaded = false
    /// Notes written, by source commit → text.
    var notes: [String: String] = [:]
    /// Commits written and pushed since start (for reports and tests).
    public private(set) var commitsWritten = 0
    public private(set) var pushRetries = 0

    public init(mirror: RepositoryMirror, core: KilnCore, logger: Logger = Logger(label: "kiln.gitops.status"), maxAttempts: Int = 12) {
        self.mirror = mirror
        self.core = core
        self.logger = logger
        self.maxAttempts = maxAttempts
    }

    var source: GitSource { mirror.source }
    var repo: GitRepository { mirror.repo }

    /// `status/<resourceGroup>/<name>.json`.
    public static func path(resourceGroup: String, name: String) -> String { "status/\(resourceGroup)/\(name).json" }
    /// `status/_invalid/<file>.json`: a file that does not load and describes no recorded template.
    public static func invalidPath(file: String) -> String { "status/_invalid/\(file).json" }

    /// A commit Kiln wrote: by the configured author, with the status trailer.
    public static func isStatusCommit(_ c: CommitInfo, by author: GitSignature) -> Bool {
        c.author.email == author.email && c.trailers["Kiln-Status"] != nil
    }

    /// One pending change of the status branch.
    struct Write {
        var path: String
        var data: Data?
        var message: String
        var key: StatusKey?
        var sourceCommit: String?
    }

    /// Brings the status branch (and notes) up to date with the store. `sourceErrors`: recorded templates whose
    /// file currently fails to load (by lower-cased id), and invalid files that describe none.
    @discardableResult
    public func sync(sourceErrors: [String: [Diagnostic]] = [:], invalidFiles: [InvalidTemplateFile] = []) async throws -> Int {
        let summaries = try await core.managedTemplates(by: source.key)
        try await loadKnown()
        var writes: [Write] = []
        var live = Set<String>()
        for s in summaries {
            let path = Self.path(resourceGroup: s.resourceGroup, name: s.name)
            live.insert(path)
            let errors = sourceErrors[s.id.lowercased()]
            let key = StatusKey(s, sourceError: errors != nil)
            guard known[path] != key else { continue }
            let doc = try await document(s, errors: errors)
            writes.append(
                Write(
                    path: path, data: try doc.fileData(), message: Self.message(name: s.name, label: key.label, summary: s),
                    key: key, sourceCommit: s.sourceCommit))
        }
        for (path, _) in known where !live.contains(path) {
            let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
            writes.append(Write(path: path, data: nil, message: "\(name): Deleted\n\nKiln-Status: deleted", key: nil, sourceCommit: nil))
        }
        var invalidLive = Set<String>()
        for bad in invalidFiles {
            let path = Self.invalidPath(file: bad.file)
            invalidLive.insert(path)
            guard !knownInvalid.contains(path) else { continue }
            let doc = TemplateStatusDocument(invalidFile: bad.file, diagnostics: bad.diagnostics)
            writes.append(Write(path: path, data: try doc.fileData(), message: "\(bad.file): Invalid\n\nKiln-Status: invalid", key: nil, sourceCommit: nil))
        }
        for path in knownInvalid where !invalidLive.contains(path) {
            writes.append(
                Write(
                    path: path, data: nil, message: "\(path.dropFirst("status/_invalid/".count).dropLast(5)): Fixed or removed\n\nKiln-Status: fixed", key: nil,
                    sourceCommit: nil))
        }
        guard !writes.isEmpty else { return 0 }
        try await commitAndPush(writes)
        for w in writes {
            if w.path.hasPrefix("status/_invalid/") {
                if w.data == nil { knownInvalid.remove(w.path) } else { knownInvalid.insert(w.path) }
            } else if let k = w.key {
                known[w.path] = k
            } else {
                known.removeValue(forKey: w.path)
            }
        }
        let touched = Set(writes.compactMap(\.sourceCommit))
        if !touched.isEmpty { try await writeNotes(for: touched, summaries: summaries) }
        return writes.count
    }

    /// Reads the statuses the branch holds at its tip (once, and again after a rejected push).
    func loadKnown(force: Bool = false) async throws {
        let tip = try await repo.resolve(source.statusRef)
        if loaded, !force, tip == loadedFrom { return }
        known = [:]
        knownInvalid = []
        loaded = true
        loadedFrom = tip
        guard let tip else { return }
        for f in try await repo.files(at: tip) where f.path.hasPrefix("status/") && f.path.hasSuffix(".json") {
            if f.path.hasPrefix("status/_invalid/") { knownInvalid.insert(f.path); continue }
            guard let d = try? TemplateStatusDocument.decode(try await repo.blob(f.blob)), let key = StatusKey(document: d) else { continue }
            known[f.path] = key
        }
    }

    /// Commits each write on the status branch tip and pushes; on a rejection, fetches, drops the writes the
    /// new tip already has, rebuilds the rest and tries again.
    func commitAndPush(_ writes: [Write]) async throws {
        var attempt = 0
        while true {
            attempt += 1
            let tipBefore = try await repo.resolve(source.statusRef)
            var pending = writes
            if let tipBefore {
                // Another writer (another controller) may have written the same content already.
                var still: [Write] = []
                for w in writes {
                    let current = try await repo.file(w.path, at: tipBefore)
                    if current != w.data { still.append(w) }
                }
                pending = still
            }
            if pending.isEmpty { return }
            var parent = tipBefore
            for w in pending {
                parent = try await repo.commit(
                    files: [w.path: w.data], on: source.statusRef, message: w.message, author: source.author,
                    parent: .some(parent))
            }
            guard let e = await push(source.statusRef) else {
                commitsWritten += pending.count
                loadedFrom = parent
                return
            }
            guard e.isRejection, attempt < maxAttempts else { throw e }
            pushRetries += 1
            logger.info("status push rejected; rebuilding on the new tip", metadata: ["attempt": "\(attempt)", "reason": "\(e)"])
            try await Task.sleep(for: Self.backoff(attempt))
            try await refetchStatus(resetTo: tipBefore)
        }
    }

    /// Pushes `ref` to the same name; the error, or nil on success. (A plain function rather than a typed
    /// `catch` inside the retry loop: Swift 6.3's SIL verifier crashes on the latter.)
    func push(_ ref: String) async -> PushError? {
        do {
            try await repo.push(
                source.url, refspecs: ["\(ref):\(ref)"], credentials: source.credentials, knownHosts: source.knownHosts, timeout: source.timeout)
            return nil
        } catch {
            return error
        }
    }

    /// After a rejection: the local branch goes back to the remote's tip (our unpushed commits are dropped and
    /// rebuilt from the same writes).
    func refetchStatus(resetTo old: ObjectID?) async throws {
        let remote = try await mirror.remoteState()
        let tip = source.statusBranch == source.branch ? remote.watched : remote.status
        if tip != nil {
            try await repo.fetch(
                source.url, refspecs: ["+\(source.statusRef):\(source.statusRef)"], credentials: source.credentials,
                knownHosts: source.knownHosts, timeout: source.timeout)
        } else if let old {
            try await repo.setReference(source.statusRef, to: old)
        }
    }

    /// 50 ms doubling to 1.6 s, each with ±50 % jitter, so racing writers spread out.
    static func backoff(_ attempt: Int) -> Duration {
        let base = 0.05 * pow(2, Double(min(attempt - 1, 5)))
        return .milliseconds(Int(base * Double.random(in: 0.5...1.5) * 1000))
    }

    // MARK: Notes

    /// One note per source commit, listing the latest result of every template that commit produced.
    func writeNotes(for commits: Set<String>, summaries: [ManagedTemplateSummary]) async throws {
        var texts: [ObjectID: String] = [:]
        for c in commits.sorted() {
            guard let id = ObjectID(hex: c) else { continue }
            let lines = summaries.filter { $0.sourceCommit == c }.sorted { $0.name < $1.name }.map { s in
                let key = StatusKey(s, sourceError: false)
                return "\(s.name): \(key.label)" + (s.lastRunId.map { " (run \($0))" } ?? "")
                    + " — \(Self.path(resourceGroup: s.resourceGroup, name: s.name)) on \(source.statusBranch)"
            }
            let text = "Kiln\n" + lines.joined(separator: "\n") + "\n"
            if notes[c] == text { continue }
            texts[id] = text
        }
        guard !texts.isEmpty else { return }
        var attempt = 0
        while true {
            attempt += 1
            for (id, text) in texts where try await repo.note(on: id, notesRef: source.notesRef) != text {
                try await repo.setNote(text, on: id, notesRef: source.notesRef, author: source.author)
            }
            guard let e = await push(source.notesRef) else {
                for (id, text) in texts { notes[id.hex] = text }
                return
            }
            guard e.isRejection, attempt < maxAttempts else { throw e }
            pushRetries += 1
            try await Task.sleep(for: Self.backoff(attempt))
            try await repo.fetch(
                source.url, refspecs: ["+\(source.notesRef):\(source.notesRef)"], credentials: source.credentials,
                knownHosts: source.knownHosts, timeout: source.timeout)
        }
    }

    // MARK: Documents

    func document(_ s: ManagedTemplateSummary, errors: [Diagnostic]?) async throws -> TemplateStatusDocument {
        guard let t = try await core.templateRecord(id: s.id) else { throw CoreError.notFound("image template \(s.id) not found") }
        var run: RunRecord?
        if let id = s.lastRunId { run = try await core.runRecord(id: id) }
        return await core.statusDocument(t, lastRun: run, sourceErrors: errors)
    }

    static func message(name: String, label: String, summary s: ManagedTemplateSummary) -> String {
        var m = "\(name): \(label) (\(String((s.sourceCommit ?? "unknown").prefix(7))))\n\n"
        m += "Kiln-Status: \(label)\n"
        if let c = s.sourceCommit { m += "Kiln-Source-Commit: \(c)\n" }
        m += "Kiln-Template: \(s.id)\n"
        if let r = s.lastRunId { m += "Kiln-Run: \(r)\n" }
        return m
    }
}
