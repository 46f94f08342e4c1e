// The repository options every GitOps command takes, completed from the configuration file into a git source.
import ArgumentParser
import Foundation
import KilnBuild
import KilnConfig
import KilnCore
import KilnGit
import KilnGitOps
import KilnServer
import Logging
import KilnStore
import KilnSystem
import KilnTemplates

/// The repository options every GitOps command takes.
struct RepoOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "The repository: https://, ssh://, file:// URL, user@host:path, a local path, or the name of a repository in the configuration file (default: the configuration's only repository).",
            valueName: "URL|NAME"))
    var repo: String?

    @Option(help: "The branch that holds the templates.")
    var branch = "main"

    @Option(name: .customLong("status-branch"), help: "Where status commits go (may be the watched branch).")
    var statusBranch = "kiln/status"

    @Option(help: ArgumentHelp("Where templates live in the repository, overriding kiln.yaml's paths.templates.", valueName: "DIR"))
    var path: String?

    @Option(name: .customLong("ssh-key"), help: ArgumentHelp("SSH private key for ssh:// remotes.", valueName: "FILE"))
    var sshKey: String?

    @Option(name: .customLong("known-hosts"), help: ArgumentHelp("known_hosts checked for ssh:// remotes (default ~/.ssh/known_hosts).", valueName: "FILE"))
    var knownHosts: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("A file holding an HTTPS token.", valueName: "FILE"))
    var tokenFile: String?

    @Option(name: .customLong("token-env"), help: ArgumentHelp("An environment variable holding an HTTPS token.", valueName: "NAME"))
    var tokenEnv: String?

    @Option(
        name: .customLong("author"),
        help: ArgumentHelp("Author of status commits and notes (default: the configuration's, else Kiln <kiln@localhost>).", valueName: "NAME <EMAIL>"),
        transform: { try Author(parsing: $0) })
    var author: Author?

    @Option(
        name: .customLong("git-timeout"),
        help: ArgumentHelp(
            "Give up a fetch, ls-remote or push after this long without progress: 30s, 2m (default: the configured repository's, else 60s).",
            valueName: "DURATION"),
        transform: { try Duration.parseArgument($0, atLeast: .seconds(1), hint: "give a duration of at least 1s, like 30s or 2m") })
    var gitTimeout: Duration?

    /// The configured repository's interval, when `--repo` named one.
    var configuredInterval: Double?
    /// The configured repository's git timeout, when `--repo` named one.
    var configuredTimeout: Double?
    /// The configured repository's name and webhook secret file, when `--repo` named one.
    var configuredName: String?
    var configuredWebhookSecretFile: String?

    /// The URL, once `resolved` has filled it in.
    var url: String { repo ?? "" }

    /// The flags that describe one repository; without `--repo` they have nothing to apply to.
    var givenRepositoryFlags: [String] {
        var out: [String] = []
        if branch != "main" { out.append("--branch") }
        if statusBranch != "kiln/status" { out.append("--status-branch") }
        if path != nil { out.append("--path") }
        if sshKey != nil { out.append("--ssh-key") }
        if knownHosts != nil { out.append("--known-hosts") }
        if tokenFile != nil { out.append("--token-file") }
        if tokenEnv != nil { out.append("--token-env") }
        return out
    }

    func validate() throws {
        for (flag, b) in [("--branch", branch), ("--status-branch", statusBranch)] where !Self.isValidBranch(b) {
            throw ValidationError("\(flag) \(b): not a valid branch name")
        }
        if let path, path.contains("..") { throw ValidationError("--path \(path): may not contain '..'") }
        if sshKey != nil && (tokenFile != nil || tokenEnv != nil) { throw ValidationError("give an SSH key or a token, not both") }
    }

    /// Untrusted input is checked here, before libgit2 sees it: only the transports Kiln supports.
    static func checkURL(_ url: String) throws {
        if url.contains("::") { throw ValidationError("--repo \(url): transport helpers (x::…) are not supported") }
        if let scheme = url.range(of: "://").map({ String(url[..<$0.lowerBound]).lowercased() }) {
            guard ["https", "http", "ssh", "file", "git"].contains(scheme) else {
                throw ValidationError("--repo \(GitRepository.redact(url)): unsupported scheme \(scheme); use https, ssh, file or a local path")
            }
            if let c = URLComponents(string: url), c.password != nil || (scheme.hasPrefix("http") && c.user != nil) {
                throw ValidationError("--repo \(GitRepository.redact(url)): the URL carries credentials; give the token with --token-file or --token-env")
            }
            return
        }
        if url.range(of: #"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:"#, options: .regularExpression) != nil { return }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--repo \(url): no such directory, and not a URL")
        }
    }

    static func isValidBranch(_ b: String) -> Bool { BranchName.isValid(b) }

    /// These options completed from the configuration file: `--repo NAME` picks a configured repository (its
    /// url, branch, path, status branch and credentials, each overridden by a flag given here); no `--repo`
    /// picks the configuration's only repository. The configuration's author applies when `--author` is not
    /// given. The URL is checked here, at the edge.
    func resolved(_ config: KilnConfiguration?) throws -> RepoOptions {
        guard let repo else {
            let configured = config?.repositories ?? []
            guard configured.count == 1 else {
                throw ValidationError(
                    configured.isEmpty
                        ? "give --repo URL (or a configuration file with a repository: --config FILE)"
                        : "give --repo NAME: the configuration has \(configured.count) repositories (\(configured.map(\.name).joined(separator: ", ")))")
            }
            var named = self
            named.repo = configured[0].name
            return try named.resolved(config)
        }
        var out = self
        if let r = config?.repositories.first(where: { $0.name.caseInsensitiveCompare(repo) == .orderedSame }) {
            out.repo = r.url
            if branch == "main" { out.branch = r.branch }
            if statusBranch == "kiln/status" { out.statusBranch = r.statusBranch }
            out.path = path ?? r.path
            if sshKey == nil, tokenFile == nil, tokenEnv == nil {
                out.sshKey = r.sshKeyFile
                out.tokenFile = r.tokenFile
                out.tokenEnv = r.tokenEnv
            }
            out.knownHosts = knownHosts ?? r.knownHosts
            out.configuredInterval = r.intervalSeconds
            out.configuredTimeout = r.timeoutSeconds
            out.configuredName = r.name
            out.configuredWebhookSecretFile = r.webhookSecretFile
        }
        if out.author == nil, let a = config?.author { out.author = Author(a) }
        try Self.checkURL(out.url)
        return out
    }

    /// Every repository the configuration lists, each resolved as `--repo NAME` would be (for the controller
    /// without `--repo`).
    func resolvedAll(_ config: KilnConfiguration?) throws -> [RepoOptions] {
        if repo != nil { return [try resolved(config)] }
        let flags = givenRepositoryFlags
        guard flags.isEmpty else { throw ValidationError("\(flags.joined(separator: ", ")) apply to one repository: give --repo too") }
        let configured = config?.repositories ?? []
        guard !configured.isEmpty else { throw ValidationError("give --repo URL, or a configuration file (--config FILE) that lists repositories") }
        return try configured.map { r in
            var named = self
            named.repo = r.name
            return try named.resolved(config)
        }
    }

    /// `--author`, else the configuration's, else Kiln <kiln@localhost>.
    func parsedAuthor() throws -> GitSignature {
        try (author ?? .kiln).signature()
    }

    func source() throws -> GitSource {
        var credentials = GitCredentials.none
        if let sshKey { credentials = .sshKeyFile(privateKeyPath: sshKey, publicKeyPath: nil, passphrase: nil) }
        if let tokenFile {
            guard let t = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { throw ValidationError("--token-file \(tokenFile): cannot read it") }
            credentials = .token(t.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        if let tokenEnv {
            guard let t = ProcessInfo.processInfo.environment[tokenEnv], !t.isEmpty else {
                throw ValidationError("--token-env \(tokenEnv): the variable is not set")
            }
            credentials = .token(t)
        }
        var hosts: KnownHosts?
        if url.hasPrefix("ssh://") || url.range(of: #"^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:"#, options: .regularExpression) != nil {
            let file = knownHosts ?? (NSHomeDirectory() as NSString).appendingPathComponent(".ssh/known_hosts")
            do { hosts = try KnownHosts(path: file) } catch { throw ValidationError("--known-hosts \(file): \(error)") }
        }
        let timeout = gitTimeout ?? configuredTimeout.map { Duration.milliseconds(Int($0 * 1000)) } ?? defaultGitTimeout
        return GitSource(
            url: url, branch: branch, statusBranch: statusBranch, credentials: credentials, knownHosts: hosts,
            author: try parsedAuthor(), timeout: timeout)
    }

    /// The core, the data directory's controller lock, and the mirror: what a command that applies needs.
    func openForWriting(_ env: KilnEnvironment) async throws -> (KilnCore, ControllerLock, RepositoryMirror) {
        let core = try await Template.core(env)
        let lock: ControllerLock
        do { lock = try ControllerLock(dataDir: core.paths.dataDir) } catch { throw CLIError.core(error) }
        return (core, lock, try mirror(core.paths))
    }

    func mirror(_ paths: KilnPaths) throws -> RepositoryMirror {
        do {
            return try RepositoryMirror.open(dataDir: paths.dataDir, source: try source())
        } catch let e as GitError {
            throw CLIError.message("cannot open the mirror of \(GitRepository.redact(url)): \(e)")
        }
    }
}
