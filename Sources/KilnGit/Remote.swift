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

extension GitRepository {
    /// Callbacks wired to `state` (which must outlive the operation).
    nonisolated func callbacks(_ state: CallbackState) -> git_remote_callbacks {
        var cb = git_remote_callbacks()
        git_remote_init_callbacks(&cb, UInt32(GIT_REMOTE_CALLBACKS_VERSION))
        cb.credentials = credentialCallback
        cb.push_update_reference = pushUpdateCallback
        cb.certificate_check = certificateCallback
        cb.payload = Unmanaged.passUnretained(state).toOpaque()
        return cb
    }

    func anonymousRemote(_ url: String) throws(GitError) -> OpaquePointer {
        var remote: OpaquePointer?
        try check("remote \(Self.redact(url))", git_remote_create_anonymous(&remote, pointer, url))
        return remote!
    }

    /// A URL without its password, for messages.
    public nonisolated static func redact(_ url: String) -> String {
        guard var c = URLComponents(string: url), c.password != nil else { return url }
        c.password = "****"
        return c.string ?? url
    }

    /// The remote's branch heads (`git ls-remote`), without fetching anything: a cheap "did it move?".
    public func remoteHeads(_ url: String, credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil, maxAttempts: Int = 3) throws(GitError) -> [RemoteHead] {
        let remote = try anonymousRemote(url)
        defer { git_remote_free(remote) }
        let state = CallbackState(credentials: credentials, maxAttempts: maxAttempts, knownHosts: knownHosts)
        var cb = callbacks(state)
        let rc = withExtendedLifetime(state) { git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, nil, nil) }
        if rc < 0 { throw connectError(rc, url, state) }
        defer { git_remote_disconnect(remote) }
        var heads: UnsafeMutablePointer<UnsafePointer<git_remote_head>?>?
        var count = 0
        try check("list the heads of \(Self.redact(url))", git_remote_ls(&heads, &count, remote))
        var out: [RemoteHead] = []
        for i in 0..<count {
            guard let h = heads?[i]?.pointee else { continue }
            out.append(RemoteHead(name: String(cString: h.name), id: ObjectID(h.oid)))
        }
        return out
    }

    /// Fetches `refspecs` (`+refs/heads/main:refs/heads/main`) from `url`.
    public func fetch(_ url: String, refspecs: [String], credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil, maxAttempts: Int = 3) throws(GitError) {
        let remote = try anonymousRemote(url)
        defer { git_remote_free(remote) }
        let state = CallbackState(credentials: credentials, maxAttempts: maxAttempts, knownHosts: knownHosts)
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
    public func push(_ url: String, refspecs: [String], credentials: GitCredentials = .none, knownHosts: KnownHosts? = nil, maxAttempts: Int = 3) throws(PushError) {
        let remote: OpaquePointer
        do { remote = try anonymousRemote(url) } catch { throw .failed(error) }
        defer { git_remote_free(remote) }
        let state = CallbackState(credentials: credentials, maxAttempts: maxAttempts, knownHosts: knownHosts)
        var opts = git_push_options()
        git_push_options_init(&opts, UInt32(GIT_PUSH_OPTIONS_VERSION))
        opts.callbacks = callbacks(state)
        let rc = withStrArray(refspecs) { specs in
            withExtendedLifetime(state) { git_remote_push(remote, specs, &opts) }
        }
        if rc == GIT_ENONFASTFORWARD.rawValue {
            throw .nonFastForward(GitError.last(rc, "push to \(Self.redact(url))").message)
        }
        if rc < 0 { throw .failed(connectError(rc, url, state)) }
        if let (ref, reason) = state.rejections.first { throw .rejected(ref: ref, reason: reason) }
    }

    /// A network error, with what Kiln knows better than libgit2 (attempts exhausted, an unknown host key).
    func connectError(_ rc: Int32, _ url: String, _ state: CallbackState) -> GitError {
        var e = GitError.last(rc, "connect to \(Self.redact(url))")
        if let p = state.hostKeyProblem { e.message = p }
        if state.attempts > state.maxAttempts { e.message = "authentication failed after \(state.maxAttempts) attempts with \(state.credentials): \(e.message)" }
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
            e.sha256 == fingerprint && e.hosts.contains { pattern in
                pattern == host || pattern == "[\(host)]" || pattern.hasPrefix("[\(host)]:") || KnownHosts.hashedMatch(pattern, host)
            }
        }
    }

    /// `|1|salt|hash`: HMAC-SHA1(salt, host).
    static func hashedMatch(_ pattern: String, _ host: String) -> Bool {
        let parts = pattern.split(separator: "|")
        guard parts.count == 3, parts[0] == "1", let salt = Data(base64Encoded: String(parts[1])), let want = Data(base64Encoded: String(parts[2])) else { return false }
        return hmacSHA1(key: salt, message: Data(host.utf8)) == want
    }
}

import Crypto

func sha256(_ d: Data) -> Data { Data(SHA256.hash(data: d)) }
func hmacSHA1(key: Data, message: Data) -> Data {
    Data(HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key)))
}
