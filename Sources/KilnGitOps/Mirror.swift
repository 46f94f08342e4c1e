import Crypto
import Foundation
import KilnGit

/// A watched repository: where it is, which branch holds templates, where status goes, how to authenticate.
public struct GitSource: Sendable, Hashable {
    public var url: String
    public var branch: String
    public var statusBranch: String
    public var notesRef: String
    public var credentials: GitCredentials
    public var knownHosts: KnownHosts?
    /// Who status commits and notes are by; also how the controller recognises its own commits.
    public var author: GitSignature
    /// How long a fetch, ls-remote or push may go without progress before it is given up (Flux's `timeout`).
    public var timeout: Duration

    public init(
        url: String, branch: String = "main", statusBranch: String = "kiln/status", notesRef: String = "refs/notes/kiln",
        credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil,
        author: GitSignature = GitSignature(name: "Kiln", email: "kiln@localhost"), timeout: Duration = defaultGitTimeout
    ) {
        self.url = GitSource.normalize(url)
        self.branch = branch
        self.statusBranch = statusBranch
        self.notesRef = notesRef
        self.credentials = credentials
        self.knownHosts = knownHosts
        self.author = author
        self.timeout = timeout
    }

    /// A local path becomes absolute (libgit2 takes it as a file remote); URLs stay as written.
    static func normalize(_ url: String) -> String {
        if url.contains("://") || url.contains("@") && url.contains(":") { return url }
        let abs = url.hasPrefix("/") ? url : FileManager.default.currentDirectoryPath + "/" + url
        return URL(fileURLWithPath: abs).standardizedFileURL.path
    }

    /// What the store records as the owner of the templates this source manages (no secrets in it).
    public var key: String { "git:\(GitRepository.redact(url))#\(branch)" }

    public var watchedRef: String { "refs/heads/\(branch)" }
    public var statusRef: String { "refs/heads/\(statusBranch)" }
}

/// What the remote advertised in one `ls-remote`.
public struct RemoteState: Sendable, Hashable {
    public var watched: ObjectID?
    public var status: ObjectID?
    public var notes: ObjectID?
}

/// A bare mirror of a watched repository under `<data>/git/`. The watched branch is fetched to
/// `refs/kiln/watched`; the status branch and the notes ref are kept equal to the remote's (forced on fetch),
/// since the controller rebuilds its own commits on whatever tip the remote has.
public struct RepositoryMirror: Sendable {
    public let source: GitSource
    public let repo: GitRepository
    public static let watchedRef = "refs/kiln/watched"

    public static func open(dataDir: String, source: GitSource) throws(GitError) -> RepositoryMirror {
        let dir = (dataDir as NSString).appendingPathComponent("git")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // One mirror per URL and branch: two branches of one repository watched at once would otherwise share
        // `refs/kiln/watched` and write one bare repository from two threads.
        let digest = SHA256.hash(data: Data("\(source.url)#\(source.branch)".utf8)).prefix(6).map { String(format: "%02x", $0) }.joined()
        let base = ((GitRepository.redact(source.url) as NSString).lastPathComponent as NSString).deletingPathExtension
        let safe = String(base.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(40))
        let path = (dir as NSString).appendingPathComponent("\(safe.isEmpty ? "repo" : safe)-\(digest).git")
        return RepositoryMirror(source: source, repo: try GitRepository.initBare(path))
    }

    /// One `ls-remote`: the heads Kiln cares about. Cheap; nothing is downloaded.
    public func remoteState() async throws(GitError) -> RemoteState {
        let heads = try await repo.remoteHeads(source.url, credentials: source.credentials, knownHosts: source.knownHosts, timeout: source.timeout)
        var s = RemoteState()
        for h in heads {
            if h.name == source.watchedRef { s.watched = h.id }
            if h.name == source.statusRef { s.status = h.id }
            if h.name == source.notesRef { s.notes = h.id }
        }
        return s
    }

    /// Fetches what moved since the last fetch (compared with `remote`), and returns the watched head.
    @discardableResult
    public func sync(_ remote: RemoteState) async throws(GitError) -> ObjectID? {
        var specs: [String] = []
        if let w = remote.watched, try await repo.resolve(Self.watchedRef) != w { specs.append("+\(source.watchedRef):\(Self.watchedRef)") }
        if source.statusBranch != source.branch, let s = remote.status, try await repo.resolve(source.statusRef) != s {
            specs.append("+\(source.statusRef):\(source.statusRef)")
        }
        if let n = remote.notes, try await repo.resolve(source.notesRef) != n { specs.append("+\(source.notesRef):\(source.notesRef)") }
        if !specs.isEmpty {
            try await repo.fetch(source.url, refspecs: specs, credentials: source.credentials, knownHosts: source.knownHosts, timeout: source.timeout)
        }
        if source.statusBranch == source.branch, let w = remote.watched { try await repo.setReference(source.statusRef, to: w) }
        return remote.watched
    }

    /// ls-remote, then fetch only if something moved.
    @discardableResult
    public func refresh() async throws(GitError) -> ObjectID? {
        try await sync(try await remoteState())
    }

    /// The newest commit on the watched branch that is not one of Kiln's own status commits: what the
    /// desired state is read from, so status commits on the watched branch never trigger anything.
    public func effectiveCommit(_ head: ObjectID) async throws(GitError) -> ObjectID {
        var id = head
        for _ in 0..<10_000 {
            let info = try await repo.commitInfo(id)
            guard StatusWriter.isStatusCommit(info, by: source.author), let parent = info.parents.first else { return id }
            id = parent
        }
        return id
    }
}
