import CLibGit2
import Foundation

/// How to authenticate to a remote. Secrets stay in memory and are never part of a description.
public enum GitCredentials: Sendable, Hashable, CustomStringConvertible {
    case none
    /// HTTPS: a token as the password (the user name is what the URL says, else `x-access-token`).
    case token(String)
    /// SSH: a private key file (public key derived by libssh2 when `publicKeyPath` is nil).
    case sshKeyFile(privateKeyPath: String, publicKeyPath: String?, passphrase: String?)
    /// SSH: a private key held in memory.
    case sshKeyMemory(privateKey: String, passphrase: String?)

    public var description: String {
        switch self {
        case .none: return "none"
        case .token: return "token ****"
        case .sshKeyFile(let p, _, _): return "ssh key \(p)"
        case .sshKeyMemory: return "ssh key (in memory) ****"
        }
    }
}

/// A branch head as the remote advertises it.
public struct RemoteHead: Sendable, Hashable {
    public var name: String
    public var id: ObjectID
}

/// What a push did.
public enum PushError: Error, Sendable, CustomStringConvertible {
    /// The remote branch has commits the pushed one does not (libgit2 refuses client-side).
    case nonFastForward(String)
    /// The server refused the reference (a hook, branch protection); libgit2 reports the call itself as a
    /// success, so the per-reference status is what tells.
    case rejected(ref: String, reason: String)
    case failed(GitError)

    public var description: String {
        switch self {
        case .nonFastForward(let m): return "push rejected, not a fast-forward: \(m)"
        case .rejected(let ref, let reason): return "the remote rejected \(ref): \(reason)"
        case .failed(let e): return e.description
        }
    }

    /// Both rejection kinds mean: fetch, rebuild on the new tip, retry.
    public var isRejection: Bool {
        switch self {
        case .nonFastForward, .rejected: return true
        case .failed: return false
        }
    }
}

/// State shared with libgit2's C callbacks through their payload pointer.
final class CallbackState {
    let credentials: GitCredentials
    let maxAttempts: Int
    var attempts = 0
    var rejections: [(String, String)] = []
    var knownHosts: KnownHosts?
    var hostKeyProblem: String?
    /// The stall watch of the call in progress; every callback counts as progress.
    var watch: NetworkWatch?

    init(credentials: GitCredentials, maxAttempts: Int, knownHosts: KnownHosts?) {
        self.credentials = credentials
        self.maxAttempts = maxAttempts
        self.knownHosts = knownHosts
    }
}

/// The credential callback: answers with the configured credentials, and gives up after a bounded number of
/// attempts (libgit2 calls it again after every rejection and would otherwise loop).
private let credentialCallback: git_credential_acquire_cb = { out, url, usernameFromURL, allowed, payload in
    guard let payload, let out else { return -1 }
    let state = Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue()
    state.watch?.touch()
    state.attempts += 1
    guard state.attempts <= state.maxAttempts else { return GIT_EAUTH.rawValue }
    let user = usernameFromURL.map { String(cString: $0) }
    switch state.credentials {
    case .none:
        return GIT_PASSTHROUGH.rawValue
    case .token(let token):
        guard allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0 else { return GIT_PASSTHROUGH.rawValue }
        return git_credential_userpass_plaintext_new(out, user ?? "x-access-token", token)
    case .sshKeyFile(let priv, let pub, let pass):
        guard allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 else { return GIT_PASSTHROUGH.rawValue }
        return git_credential_ssh_key_new(out, user ?? "git", pub, priv, pass)
    case .sshKeyMemory(let key, let pass):
        guard allowed & GIT_CREDENTIAL_SSH_MEMORY.rawValue != 0 || allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 else { return GIT_PASSTHROUGH.rawValue }
        return git_credential_ssh_key_memory_new(out, user ?? "git", nil, key, pass)
    }
}

/// Per-reference push status: non-NULL `status` is the server's rejection.
private let pushUpdateCallback: git_push_update_reference_cb = { refname, status, payload in
    guard let payload, let status else { return 0 }
    let state = Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue()
    state.rejections.append((refname.map { String(cString: $0) } ?? "?", String(cString: status)))
    return 0
}

/// SSH host keys are checked against a known_hosts file (SHA-256 of the key blob).
private let certificateCallback: git_transport_certificate_check_cb = { cert, valid, host, payload in
    guard let payload, let cert else { return -1 }
    let state = Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue()
    state.watch?.touch()
    guard cert.pointee.cert_type == GIT_CERT_HOSTKEY_LIBSSH2 else { return valid != 0 ? 0 : GIT_PASSTHROUGH.rawValue }
    guard let known = state.knownHosts else { return GIT_PASSTHROUGH.rawValue }
    let hostkey = UnsafeRawPointer(cert).assumingMemoryBound(to: git_cert_hostkey.self).pointee
    let hostname = host.map { String(cString: $0) } ?? ""
    guard hostkey.type.rawValue & GIT_CERT_SSH_SHA256.rawValue != 0 else {
        state.hostKeyProblem = "the SSH server of \(hostname) offered no SHA-256 host key fingerprint"
        return GIT_ECERTIFICATE.rawValue
    }
    let fp = withUnsafeBytes(of: hostkey.hash_sha256) { Data($0) }
    if known.matches(host: hostname, sha256: fp) { return 0 }
    state.hostKeyProblem = "the host key of \(hostname) is not in \(known.path)"
    return GIT_ECERTIFICATE.rawValue
}

/// Progress callbacks: they only tell the stall watch that data is moving.
private let transferProgressCallback: git_indexer_progress_cb = { _, payload in
    if let payload { Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue().watch?.touch() }
    return 0
}
private let sidebandCallback: git_transport_message_cb = { _, _, payload in
    if let payload { Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue().watch?.touch() }
    return 0
}
private let pushProgressCallback: git_push_transfer_progress_cb = { _, _, _, payload in
    if let payload { Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue().watch?.touch() }
    return 0
}
private let packProgressCallback: git_packbuilder_progress = { _, _, _, payload in
    if let payload { Unmanaged<CallbackState>.fromOpaque(payload).takeUnretainedValue().watch?.touch() }
    return 0
}

/// How long a network call may go without progress before Kiln gives up on it (Flux's default for
/// `GitRepository.spec.timeout`).
public let defaultGitTimeout: Duration = .seconds(60)

extension GitRepository {
    /// Callbacks wired to `state` (which must outlive the operation).
    nonisolated func callbacks(_ state: CallbackState) -> git_remote_callbacks {
        var cb = git_remote_callbacks()
        git_remote_init_callbacks(&cb, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
        cb.credentials = credentialCallback
        cb.push_update_reference = pushUpdateCallback
        cb.certificate_check = certificateCallback
        cb.transfer_progress = transferProgressCallback
        cb.sideband_progress = sidebandCallback
        cb.push_transfer_progress = pushProgressCallback
        cb.pack_progress = packProgressCallback
        cb.payload = Unmanaged.passUnretained(state).toOpaque()
        return cb
    }

    func anonymousRemote(_ url: String) throws(GitError) -> OpaquePointer {
        var remote: OpaquePointer?
        try check("remote \(Self.redact(url))", git_remote_create_anonymous(&remote, pointer, url))
        return remote!
    }

    /// A URL without its password, for messages.
    /// The URL without secrets, for logs, errors, metrics and the store: a password is masked, and so is an
    /// HTTP user name (`https://TOKEN@host/…` is how some hosts take a token). An SSH user (`git@`) stays.
    public nonisolated static func redact(_ url: String) -> String {
        guard var c = URLComponents(string: url) else { return url }
        let http = c.scheme.map { ["http", "https"].contains($0.lowercased()) } ?? false
        guard c.password != nil || (http && c.user != nil) else { return url }
        if c.password != nil { c.password = "****" }
        if http, c.user != nil { c.user = "****" }
        return c.string ?? url
    }

    /// The remote's branch heads (`git ls-remote`), without fetching anything: a cheap "did it move?".
    /// Each network call gives up after `timeout` without progress (see `StallWatchdog`).
    public func remoteHeads(
        _ url: String, credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil, maxAttempts: Int = 3,
        timeout: Duration = defaultGitTimeout
    ) throws(GitError) -> [RemoteHead] {
        let remote = try anonymousRemote(url)
        defer { git_remote_free(remote) }
        let state = CallbackState(credentials: credentials, maxAttempts: maxAttempts, knownHosts: knownHosts)
        let watch = StallWatchdog.shared.begin(timeout: timeout)
        defer { StallWatchdog.shared.end(watch) }
        state.watch = watch
        var cb = callbacks(state)
        let rc = withExtendedLifetime(state) { git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, nil, nil) }
        if rc < 0 { throw connectError(rc, url, state) }
        defer { git_remote_disconnect(remote) }
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        let rcList = git_remote_ls(&heads, &count, remote)
        if rcList < 0 { throw connectError(rcList, url, state, operation: "list the heads of") }
        var out: [RemoteHead] = []
        for i in 0..<count {
            guard let h = heads?[i]?.pointee else { continue }
            out.append(RemoteHead(name: String(cString: h.name), id: ObjectID(h.oid)))
        }
        return out
    }

    /// Fetches `refspecs` (`+refs/heads/main:refs/heads/main`) from `url`.
    public func fetch(
        _ url: String, refspecs: [String], credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil, maxAttempts: Int = 3,
        timeout: Duration = defaultGitTimeout
    ) throws(GitError) {
        let remote = try anonymousRemote(url)
        defer { git_remote_free(remote) }
        let state = CallbackState(credentials: credentials, maxAttempts: maxAttempts, knownHosts: knownHosts)
        let watch = StallWatchdog.shared.begin(timeout: timeout)
        defer { StallWatchdog.shared.end(watch) }
        state.watch = watch
        var opts = git_fetch_options()
        git_fetch_options_init(&opts, UInt32(GIT_FETCH_OPTIONS_VERSION))
        opts.callbacks = callbacks(state)
        opts.prune = GIT_FETCH_NO_PRUNE
        let rc = withStrArray(refspecs) { specs in
            withExtendedLifetime(state) { git_remote_fetch(remote, specs, &opts, "kiln: fetch") }
        }
        if rc < 0 { throw connectError(rc, url, state) }
    }

    /// Pushes `refspecs` (`refs/heads/kiln/status:refs/heads/kiln/status`), telling both kinds of rejection
    /// apart from other failures.
    public func push(
        _ url: String, refspecs: [String], credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil, maxAttempts: Int = 3,
        timeout: Duration = defaultGitTimeout
    ) throws(PushError) {
        if let path = Self.localPath(url) {
            for spec in refspecs { try pushLocal(path, spec) }
            return
        }
        try pushTransport(url, refspecs: refspecs, credentials: credentials, knownHosts: knownHosts, maxAttempts: maxAttempts, timeout: timeout)
    }

    /// The repository path of a local remote (a path or `file://`), else nil.
    nonisolated static func localPath(_ url: String) -> String? {
        if url.hasPrefix("file://") { return URL(string: url)?.path }
        if url.contains("://") || url.range(of: #"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:"#, options: .regularExpression) != nil { return nil }
        return url
    }

    /// Push to a repository on this machine with a real compare-and-swap. libgit2's local transport checks
    /// fast-forward against the refs it read at connect and then *forces* the ref, so a push by someone else
    /// in between would be overwritten. Here the objects go to a private ref first, then the branch moves with
    /// `git_reference_create_matching` (the ref lock plus "still at the value I checked"), exactly what
    /// receive-pack does; a lost race is a non-fast-forward, which callers retry.
    func pushLocal(_ path: String, _ spec: String) throws(PushError) {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].hasPrefix("+") else {
            do { try pushTransport(path, refspecs: [spec], credentials: .none, knownHosts: nil, maxAttempts: 1) } catch { throw error }
            return
        }
        let (src, dst) = (parts[0], parts[1])
        let resolved: ObjectID?
        do { resolved = try resolveReference(src) } catch { throw .failed(error) }
        guard let local = resolved else {
            throw .failed(GitError(code: GIT_ENOTFOUND.rawValue, message: "\(src) does not exist", operation: "push"))
        }
        var remoteRepo: OpaquePointer?
        let rcOpen = git_repository_open(&remoteRepo, path)
        guard rcOpen == 0, let remoteRepo else { throw .failed(GitError.last(rcOpen, "open \(path)")) }
        defer { git_repository_free(remoteRepo) }
        // What the remote has now: the value the swap will insist on.
        var current: git_oid?
        var oid = git_oid()
        let rcName = git_reference_name_to_id(&oid, remoteRepo, dst)
        if rcName == 0 { current = oid } else if rcName != GIT_ENOTFOUND.rawValue { throw .failed(GitError.last(rcName, "read \(dst) in \(path)")) }
        if var cur = current {
            var l = local.oid
            if git_oid_equal(&cur, &l) == 1 { return }
            // A fast-forward only: the remote's tip must be in our history (and so in our object store).
            if git_graph_descendant_of(pointer, &l, &cur) != 1 {
                throw .nonFastForward("\(dst) in \(path) is at \(ObjectID(cur).short), which \(local.short) does not contain")
            }
        }
        // Objects first, under a ref nobody else uses.
        let incoming = "refs/kiln/incoming/\(UUID().uuidString.lowercased())"
        try pushTransport(path, refspecs: ["+\(src):\(incoming)"], credentials: .none, knownHosts: nil, maxAttempts: 1)
        defer {
            var tmp: OpaquePointer?
            if git_reference_lookup(&tmp, remoteRepo, incoming) == 0 {
                git_reference_delete(tmp)
                git_reference_free(tmp)
            }
        }
        var out: OpaquePointer?
        var target = local.oid
        let rc: Int32
        if var cur = current {
            rc = git_reference_create_matching(&out, remoteRepo, dst, &target, 1, &cur, "kiln: push")
        } else {
            rc = git_reference_create(&out, remoteRepo, dst, &target, 0, "kiln: push")
        }
        if out != nil { git_reference_free(out) }
        if rc == GIT_EMODIFIED.rawValue || rc == GIT_EEXISTS.rawValue || rc == GIT_ELOCKED.rawValue {
            throw .nonFastForward("\(dst) in \(path) moved while pushing")
        }
        if rc != 0 { throw .failed(GitError.last(rc, "update \(dst) in \(path)")) }
    }

    func resolveReference(_ name: String) throws(GitError) -> ObjectID? {
        var oid = git_oid()
        let rc = git_reference_name_to_id(&oid, pointer, name)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check("read \(name)", rc)
        return ObjectID(oid)
    }

    func pushTransport(
        _ url: String, refspecs: [String], credentials: GitCredentials, knownHosts: KnownHosts?, maxAttempts: Int,
        timeout: Duration = defaultGitTimeout
    ) throws(PushError) {
        let remote: OpaquePointer
        do { remote = try anonymousRemote(url) } catch { throw .failed(error) }
        defer { git_remote_free(remote) }
        let state = CallbackState(credentials: credentials, maxAttempts: maxAttempts, knownHosts: knownHosts)
        let watch = StallWatchdog.shared.begin(timeout: timeout)
        defer { StallWatchdog.shared.end(watch) }
        state.watch = watch
        var opts = git_push_options()
        git_push_options_init(&opts, UInt32(GIT_PUSH_OPTIONS_VERSION))
        opts.callbacks = callbacks(state)
        let rc = withStrArray(refspecs) { specs in
            withExtendedLifetime(state) { git_remote_push(remote, specs, &opts) }
        }
        if rc == GIT_ENONFASTFORWARD.rawValue && !watch.fired {
            throw .nonFastForward(GitError.last(rc, "push to \(Self.redact(url))").message)
        }
        if rc < 0 { throw .failed(connectError(rc, url, state)) }
        if let (ref, reason) = state.rejections.first { throw .rejected(ref: ref, reason: reason) }
    }

    /// A network error, with what Kiln knows better than libgit2 (attempts exhausted, an unknown host key, a
    /// connection cut for want of progress).
    func connectError(_ rc: Int32, _ url: String, _ state: CallbackState, operation: String = "connect to") -> GitError {
        var e = GitError.last(rc, "\(operation) \(Self.redact(url))")
        if let p = state.hostKeyProblem { e.message = p }
        if state.attempts > state.maxAttempts {
            e.message = "authentication failed after \(state.maxAttempts) attempts with \(state.credentials): \(e.message)"
        }
        if let watch = state.watch, watch.fired {
            let traffic = watch.firedDespiteTraffic ? " (the connection moved only a trickle of bytes for \(watch.timeout * 10))" : ""
            e.message = "timed out: no progress for \(watch.timeout)\(traffic), connection closed (\(e.message))"
            e.timedOut = true
        }
        return e
    }
}

/// Runs `body` with a `git_strarray` of `strings`.
func withStrArray<T>(_ strings: [String], _ body: (UnsafePointer<git_strarray>) -> T) -> T {
    var cstrings: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { for s in cstrings { free(s) } }
    return cstrings.withUnsafeMutableBufferPointer { buf in
        var arr = git_strarray(strings: buf.baseAddress, count: strings.count)
        return body(&arr)
    }
}

/// An OpenSSH known_hosts file (plain host names; hashed entries `|1|...` are matched too).
public struct KnownHosts: Sendable, Hashable {
    public var path: String
    /// host pattern → SHA-256 digests of its keys.
    var entries: [(hosts: [String], sha256: Data)]

    public static func == (a: KnownHosts, b: KnownHosts) -> Bool { a.path == b.path }
    public func hash(into h: inout Hasher) { h.combine(path) }

    public init(path: String) throws {
        self.path = path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        entries = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 3, let blob = Data(base64Encoded: String(parts[2])) else { continue }
            entries.append((parts[0].split(separator: ",").map(String.init), sha256(blob)))
        }
    }

    func matches(host: String, sha256 fingerprint: Data) -> Bool {
        entries.contains { e in
            e.sha256 == fingerprint
                && e.hosts.contains { pattern in
                    pattern == host || pattern == "[\(host)]" || pattern.hasPrefix("[\(host)]:") || KnownHosts.hashedMatch(pattern, host)
                }
        }
    }

    /// `|1|salt|hash`: HMAC-SHA1(salt, host).
    static func hashedMatch(_ pattern: String, _ host: String) -> Bool {
        let parts = pattern.split(separator: "|")
        guard parts.count == 3, parts[0] == "1", let salt = Data(base64Encoded: String(parts[1])), let want = Data(base64Encoded: String(parts[2])) else {
            return false
        }
        return hmacSHA1(key: salt, message: Data(host.utf8)) == want
    }
}

import Crypto

func sha256(_ d: Data) -> Data { Data(SHA256.hash(data: d)) }
func hmacSHA1(key: Data, message: Data) -> Data {
    Data(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key)))
}
