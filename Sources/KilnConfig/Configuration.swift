import Foundation
import KilnSystem
import KilnBuild
import KilnCore
import KilnDistribute
import KilnGit
import KilnTemplates

/// Kiln's one configuration file (`--config FILE`, env `KILN_CONFIG`): everything the flags set, for running
/// Kiln as a service. Flags given on the command line override it.
///
/// ```yaml
/// dataDir: /var/lib/kiln
/// parallelism: 2
/// logging: { format: logfmt, level: info }        # text | logfmt | json
/// author: Kiln <kiln@example.com>                   # status commits and notes
/// regions: { westeurope: /srv/kiln/westeurope }     # region → storage directory
/// allowOnlyRegions: [westeurope, northeurope]
/// identities:                                       # credentials for artifact URLs (see IdentityConfig)
///   - name: aibBuilderIdentity
///     credentials: [{ urlPrefix: https://artifacts.example.com/, tokenFile: /etc/kiln/artifacts.token }]
/// repositories:
///   - name: images
///     url: https://git.example.com/platform/images.git
///     branch: main
///     path: templates
///     interval: 60s
///     timeout: 60s                                    # a fetch/ls-remote/push without progress for this long is given up
///     statusBranch: kiln/status
///     credentials: { tokenFile: /etc/kiln/git.token }   # or tokenEnv, or sshKeyFile (+ knownHosts)
///     webhookSecretFile: /etc/kiln/webhook.secret
/// server: { listen: 0.0.0.0:8080, metricsListen: 127.0.0.1:9090 }   # metricsListen optional
///   api: { listen: 127.0.0.1:8443, tokens: [{name: ci, file: /etc/kiln/ci.token, role: Contributor, scopes: [/subscriptions/S]}] }
/// retention: { runImages: 2, galleryVersions: 5 }   # kept per template / per gallery image definition (kiln gc)
/// triggers: { pollInterval: 60s }                    # how often the controller polls SourceImage triggers
/// images: { refreshInterval: 24h }                   # kiln images refresh debian-12 on a schedule (+ mirror,
///                                                    #   securityMirror, extraSources: [deb line], include: [pkg])
/// ```
public struct KilnConfiguration: Sendable {
    public enum LogFormat: String, Sendable, CaseIterable { case text, logfmt, json }
    public enum LogLevel: String, Sendable, CaseIterable { case trace, debug, info, notice, warning, error, critical }

    public struct Repository: Sendable {
        public var name: String
        public var url: String
        public var branch = "main"
        public var path: String?
        public var intervalSeconds: Double = 60
        public var timeoutSeconds: Double = 60
        public var statusBranch = "kiln/status"
        public var tokenFile: String?
        public var tokenEnv: String?
        public var sshKeyFile: String?
        public var knownHosts: String?
        public var webhookSecretFile: String?
    }

    public var file: String?
    public var dataDir: String?
    public var parallelism = 1
    public var logFormat = LogFormat.text
    public var logLevel = LogLevel.warning
    public var author: GitSignature?
    public var regions: [String: String] = [:]
    public var allowOnlyRegions: [String]?
    public var identities = IdentityConfig()
    public var repositories: [Repository] = []
    public var listen: ListenAddress?
    /// Where `/readyz` and `/metrics` are served instead of `listen` (kept off a public webhook port).
    public var metricsListen: ListenAddress?
    /// `server.api`: the REST API (`kiln serve`).
    public var api = APISettings()
    /// What templates' artifact references may reach (`artifacts` and `distribution`); closed by default.
    public var artifactPolicy = ArtifactPolicy.untrusted
    /// Build VMs' network (`build.network`, `build.allowNetworks`): isolated from the host by default.
    public var buildNetwork = BuildNetworkPolicy.automatic()
    /// How often `kiln controller` polls SourceImage triggers (`triggers.pollInterval`).
    public var triggerPollSeconds: Double = 60
    /// `retention.runImages` (per template) and `retention.galleryVersions` (per definition).
    public var retentionRunImages = 2
    public var retentionGalleryVersions = 5
    /// `images.refreshInterval`: the controller refreshes the Debian 12 base this often (off without it).
    public var imageRefreshSeconds: Double?
    /// Where refreshes take packages from (`images.mirror`, `securityMirror`, `extraSources`, `include`).
    public var debianSources = DebianSources()

    public init() {}

    /// Reads and checks a configuration file; every problem is reported, each with the key's path and line.
    public static func load(path: String) throws(ConfigError) -> KilnConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(problems: [.init(file: path, line: 0, path: "$", message: "cannot read the configuration file")])
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> KilnConfiguration {
        let root: SourceNode
        do {
            root = try YAMLSourceParser.parse(text)
        } catch {
            throw ConfigError(problems: [.init(file: file, line: error.position.line, path: "$", message: error.message)])
        }
        var reader = ConfigReader(file: file)
        let config = reader.configuration(root)
        if !reader.problems.isEmpty { throw ConfigError(problems: reader.problems) }
        return config
    }

    /// The region map this configuration describes, for `dataDir`'s default region root.
    public func regionMap(defaultRoot: String) -> RegionMap {
        RegionMap(defaultRoot: defaultRoot, overrides: regions, allowOnly: allowOnlyRegions.map(Set.init), source: file)
    }

    /// The effective settings, secrets masked: what `kiln config check` prints. Token values never appear;
    /// files and environment variable names do (they are where secrets are, not secrets).
    public func effective(dataDir resolved: String) -> JSONValue {
        var out: [String: JSONValue] = [
            "dataDir": .string(resolved),
            "parallelism": .number(Double(parallelism)),
            "logging": .object(["format": .string(logFormat.rawValue), "level": .string(logLevel.rawValue)]),
            "regions": .object(regions.mapValues(JSONValue.string)),
            "triggers": .object([
                "pollInterval": .string(triggerPollSeconds == triggerPollSeconds.rounded() ? "\(Int(triggerPollSeconds))s" : "\(triggerPollSeconds)s")
            ])
        ]
        if let file { out["file"] = .string(file) }
        if let author { out["author"] = .string("\(author.name) <\(author.email)>") }
        if let allowOnlyRegions { out["allowOnlyRegions"] = .array(allowOnlyRegions.map(JSONValue.string)) }
        var server: [String: JSONValue] = [:]
        if let listen { server["listen"] = .string(listen.text) }
        if let metricsListen { server["metricsListen"] = .string(metricsListen.text) }
        if api.listen != nil || !api.tokens.isEmpty {
            var a: [String: JSONValue] = ["allowPlainHTTP": .bool(api.allowPlainHTTP)]
            if let l = api.listen { a["listen"] = .string(l.text) }
            if let t = api.tls { a["tls"] = .object(["certificate": .string(t.certificate), "key": .string(t.key)]) }
            a["tokens"] = .array(
                api.tokens.map { t in
                    .object([
                        "name": .string(t.name), "file": .string(t.file), "role": .string(t.role.rawValue), "scopes": .array(t.scopes.map(JSONValue.string))
                    ])
                })
            server["api"] = .object(a)
        }
        if !server.isEmpty { out["server"] = .object(server) }
        out["identities"] = .array(
            identities.identities.map { i in
                .object([
                    "name": .string(i.name),
                    "credentials": .array(
                        i.credentials.map { c in
                            var j: [String: JSONValue] = ["urlPrefix": .string(c.urlPrefix), "header": .string(c.header)]
                            switch c.secret {
                            case .literal: j["token"] = .string("****")
                            case .file(let p): j["tokenFile"] = .string(p)
                            case .environment(let n): j["tokenEnv"] = .string(n)
                            }
                            return .object(j)
                        })
                ])
            })
        out["repositories"] = .array(repositories.map(Self.effective))
        out["artifacts"] = .object([
            "allowedFileRoots": .array(artifactPolicy.fileRoots.map(JSONValue.string)),
            "allowedHosts": .array((artifactPolicy.allowedNetworks.map(\.description) + artifactPolicy.allowedHostNames).map(JSONValue.string))
        ])
        var images: [String: JSONValue] = [
            "mirror": .string(GitRepository.redact(debianSources.mirror)), "securityMirror": .string(GitRepository.redact(debianSources.securityMirror)),
            "extraSources": .array(debianSources.extra.map { .string($0.relocated(to: GitRepository.redact($0.uri)).description) }),
            "include": .array(debianSources.include.map(JSONValue.string))
        ]
        if let r = imageRefreshSeconds { images["refreshInterval"] = .string(r == r.rounded() ? "\(Int(r))s" : "\(r)s") }
        out["images"] = .object(images)
        out["distribution"] = .object(["allowedVhdRoots": .array(artifactPolicy.vhdRoots.map(JSONValue.string))])
        switch buildNetwork {
        case .isolated(let allow): out["build"] = .object(["network": .string("isolated"), "allowNetworks": .array(allow.map(JSONValue.string))])
        case .host: out["build"] = .object(["network": .string("host")])
        }
        return .object(out)
    }

    static func effective(_ r: Repository) -> JSONValue {
        func seconds(_ s: Double) -> JSONValue { .string(s == s.rounded() ? "\(Int(s))s" : "\(s)s") }
        var j: [String: JSONValue] = [
            "name": .string(r.name), "url": .string(GitRepository.redact(r.url)), "branch": .string(r.branch),
            "interval": seconds(r.intervalSeconds), "timeout": seconds(r.timeoutSeconds), "statusBranch": .string(r.statusBranch)
        ]
        let optional: [(String, String?)] = [
            ("path", r.path), ("tokenFile", r.tokenFile), ("tokenEnv", r.tokenEnv), ("sshKeyFile", r.sshKeyFile),
            ("knownHosts", r.knownHosts), ("webhookSecretFile", r.webhookSecretFile)
        ]
        for (k, v) in optional { if let v { j[k] = .string(v) } }
        return .object(j)
    }
}

/// Every problem in a configuration file, each naming the file, line and key.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public struct Problem: Sendable, Hashable, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var path: String
        public var message: String
        public var description: String { "\(file):\(line): \(path): \(message)" }
    }
    public var problems: [Problem]
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Reads the configuration tree, collecting problems instead of stopping at the first.
struct ConfigReader {
    let file: String
    var problems: [ConfigError.Problem] = []

    init(file: String) { self.file = file }

    mutating func problem(_ node: SourceNode?, _ path: String, _ message: String, line: Int? = nil) {
        problems.append(.init(file: file, line: line ?? node?.position.line ?? 0, path: path, message: message))
    }

    /// The members of a mapping, with unknown keys reported.
    mutating func members(_ node: SourceNode, _ path: String, allowed: Set<String>) -> [String: (SourceNode, Int)] {
        guard let members = node.members else {
            problem(node, path, "expected a mapping, found \(node.kindName)")
            return [:]
        }
        var out: [String: (SourceNode, Int)] = [:]
        for m in members {
            if !allowed.contains(m.key) {
                let close = allowed.sorted().first { Self.distance($0.lowercased(), m.key.lowercased()) <= 2 }
                let suggestion = close.map { "; did you mean '\($0)'?" } ?? "; known keys: \(allowed.sorted().joined(separator: ", "))"
                problem(m.value, "\(path).\(m.key)", "unknown key\(suggestion)", line: m.keyPosition.line)
                continue
            }
            out[m.key] = (m.value, m.keyPosition.line)
        }
        return out
    }

    mutating func string(_ m: [String: (SourceNode, Int)], _ key: String, _ path: String, required: Bool = false) -> String? {
        guard let (node, line) = m[key] else {
            if required { problem(nil, "\(path).\(key)", "required", line: 0) }
            return nil
        }
        guard let s = node.stringValue ?? node.yamlText, !s.isEmpty else {
            problem(node, "\(path).\(key)", "expected a non-empty string, found \(node.kindName)", line: line)
            return nil
        }
        return s
    }

    mutating func absolutePath(_ m: [String: (SourceNode, Int)], _ key: String, _ path: String) -> String? {
        guard let s = string(m, key, path) else { return nil }
        guard s.hasPrefix("/") else {
            problem(m[key]?.0, "\(path).\(key)", "expected an absolute path, found '\(s)'", line: m[key]?.1)
            return nil
        }
        return s
    }

    mutating func configuration(_ root: SourceNode) -> KilnConfiguration {
        var c = KilnConfiguration()
        c.file = file
        let top = members(
            root, "$",
            allowed: [
                "dataDir", "parallelism", "logging", "author", "regions", "allowOnlyRegions", "identities",
                "repositories", "server", "artifacts", "distribution", "build", "triggers", "retention", "images"
            ])
        c.dataDir = absolutePath(top, "dataDir", "$")
        if let (node, line) = top["parallelism"] {
            if case .number(let n) = node.value, let v = n.int, (1...64).contains(v) {
                c.parallelism = v
            } else {
                problem(node, "$.parallelism", "expected a whole number from 1 to 64", line: line)
            }
        }
        if let (node, _) = top["logging"] { logging(node, into: &c) }
        if let a = string(top, "author", "$") {
            if let lt = a.firstIndex(of: "<"), a.hasSuffix(">"), a[a.index(after: lt)...].contains("@") {
                c.author = GitSignature(name: a[..<lt].trimmingCharacters(in: .whitespaces), email: String(a[a.index(after: lt)..<a.index(before: a.endIndex)]))
            } else {
                problem(top["author"]?.0, "$.author", "write it as 'Name <email>'", line: top["author"]?.1)
            }
        }
        if let (node, _) = top["regions"] { c.regions = regions(node) }
        if let (node, line) = top["allowOnlyRegions"] {
            if let names = node.elements?.compactMap(\.stringValue), names.count == node.elements?.count {
                c.allowOnlyRegions = names
            } else {
                problem(node, "$.allowOnlyRegions", "expected a list of region names", line: line)
            }
        }
        if let (node, _) = top["identities"] { c.identities = identities(node) }
        if let (node, _) = top["repositories"] { c.repositories = repositories(node) }
        if let (node, _) = top["server"] { server(node, into: &c) }
        if let (node, _) = top["artifacts"] { artifacts(node, into: &c.artifactPolicy) }
        if let (node, _) = top["distribution"] { distribution(node, into: &c.artifactPolicy) }
        if let (node, _) = top["build"] { c.buildNetwork = build(node) }
        if let (node, _) = top["retention"] {
            let m = members(node, "$.retention", allowed: ["runImages", "galleryVersions"])
            for key in ["runImages", "galleryVersions"] {
                guard let (n, line) = m[key] else { continue }
                guard case .number(let v) = n.value, let count = v.int, (1...1000).contains(count) else {
                    problem(n, "$.retention.\(key)", "expected a whole number from 1 to 1000", line: line)
                    continue
                }
                if key == "runImages" { c.retentionRunImages = count } else { c.retentionGalleryVersions = count }
            }
        }
        if let (node, _) = top["images"] { images(node, into: &c) }
        if let (node, _) = top["triggers"] {
            let m = members(node, "$.triggers", allowed: ["pollInterval"])
            if let i = string(m, "pollInterval", "$.triggers") {
                if let s = Self.seconds(i), s >= 1 {
                    c.triggerPollSeconds = s
                } else {
                    problem(
                        m["pollInterval"]?.0, "$.triggers.pollInterval", "expected a duration of at least 1s, like 30s or 5m; found '\(i)'",
                        line: m["pollInterval"]?.1)
                }
            }
        }
        return c
    }

    /// `logging: { format, level }`; a value that is not one of the known names leaves the default.
    mutating func logging(_ node: SourceNode, into c: inout KilnConfiguration) {
        let m = members(node, "$.logging", allowed: ["format", "level"])
        if let f = string(m, "format", "$.logging") {
            if let v = KilnConfiguration.LogFormat(rawValue: f.lowercased()) {
                c.logFormat = v
            } else {
                problem(
                    m["format"]?.0, "$.logging.format", "'\(f)' is not one of \(KilnConfiguration.LogFormat.allCases.map(\.rawValue).joined(separator: ", "))",
                    line: m["format"]?.1)
            }
        }
        if let l = string(m, "level", "$.logging") {
            if let v = KilnConfiguration.LogLevel(rawValue: l.lowercased()) {
                c.logLevel = v
            } else {
                problem(
                    m["level"]?.0, "$.logging.level", "'\(l)' is not one of \(KilnConfiguration.LogLevel.allCases.map(\.rawValue).joined(separator: ", "))",
                    line: m["level"]?.1)
            }
        }
    }

    /// `regions: { name: /dir }`: the entries that name a region and an absolute directory.
    mutating func regions(_ node: SourceNode) -> [String: String] {
        guard let members = node.members else {
            problem(node, "$.regions", "expected a mapping of region name to directory")
            return [:]
        }
        var out: [String: String] = [:]
        for m in members {
            let p = "$.regions.\(m.key)"
            guard let dir = m.value.stringValue, dir.hasPrefix("/") else { problem(m.value, p, "expected an absolute directory"); continue }
            guard (try? RegionMap(defaultRoot: "/", overrides: [:]).directory(for: m.key)) != nil else {
                problem(m.value, p, "'\(m.key)' is not a region name", line: m.keyPosition.line); continue
            }
            out[m.key] = dir
        }
        return out
    }

    /// `repositories: [...]`: every entry that reads, with duplicate names and two entries on one branch reported.
    mutating func repositories(_ node: SourceNode) -> [KilnConfiguration.Repository] {
        guard let items = node.elements else {
            problem(node, "$.repositories", "expected a list")
            return []
        }
        var out: [KilnConfiguration.Repository] = []
        var names = Set<String>()
        var watched: [String: Int] = [:]
        for (i, item) in items.enumerated() {
            guard let r = repository(item, "$.repositories[\(i)]") else { continue }
            if !names.insert(r.name.lowercased()).inserted { problem(item, "$.repositories[\(i)].name", "'\(r.name)' is used twice; names must be unique") }
            // The branch owns the templates it creates (pruning included): two entries on one branch would
            // delete each other's templates.
            if let first = watched["\(r.url)#\(r.branch)"] {
                problem(item, "$.repositories[\(i)].branch", "repositories[\(first)] already watches branch \(r.branch) of this URL; one entry per branch")
            } else {
                watched["\(r.url)#\(r.branch)"] = i
            }
            out.append(r)
        }
        return out
    }

    /// `server: { listen, metricsListen }`, each HOST:PORT; metricsListen only alongside listen.
    mutating func server(_ node: SourceNode, into c: inout KilnConfiguration) {
        let m = members(node, "$.server", allowed: ["listen", "metricsListen", "api"])
        if let (api, _) = m["api"] { self.api(api, into: &c) }
        if let l = string(m, "listen", "$.server") {
            do { c.listen = try ListenAddress(parsing: l) } catch { problem(m["listen"]?.0, "$.server.listen", "\(error)", line: m["listen"]?.1) }
        }
        if let l = string(m, "metricsListen", "$.server") {
            do { c.metricsListen = try ListenAddress(parsing: l) } catch {
                problem(m["metricsListen"]?.0, "$.server.metricsListen", "\(error)", line: m["metricsListen"]?.1)
            }
            if m["listen"] == nil {
                problem(m["metricsListen"]?.0, "$.server.metricsListen", "needs server.listen (the webhook port) too", line: m["metricsListen"]?.1)
            }
        }
    }

    mutating func identities(_ node: SourceNode) -> IdentityConfig {
        guard let items = node.elements else {
            problem(node, "$.identities", "expected a list")
            return IdentityConfig(source: file)
        }
        var out: [IdentityConfig.Identity] = []
        for (i, item) in items.enumerated() {
            let p = "$.identities[\(i)]"
            let m = members(item, p, allowed: ["name", "credentials"])
            guard let name = string(m, "name", p, required: true) else { continue }
            var creds: [IdentityConfig.Credential] = []
            for (j, cnode) in (m["credentials"]?.0.elements ?? []).enumerated() {
                let cp = "\(p).credentials[\(j)]"
                let cm = members(cnode, cp, allowed: ["urlPrefix", "token", "tokenFile", "tokenEnv", "header"])
                guard let prefix = string(cm, "urlPrefix", cp, required: true) else { continue }
                guard prefix.hasPrefix("https://") || prefix.hasPrefix("http://") else {
                    problem(cm["urlPrefix"]?.0, "\(cp).urlPrefix", "expected an http:// or https:// URL prefix", line: cm["urlPrefix"]?.1)
                    continue
                }
                let given = ["token", "tokenFile", "tokenEnv"].filter { cm[$0] != nil }
                guard given.count == 1, let value = string(cm, given[0], cp) else {
                    problem(cnode, cp, "exactly one of token, tokenFile, tokenEnv is required")
                    continue
                }
                let secret: IdentityConfig.Secret = given[0] == "token" ? .literal(value) : given[0] == "tokenFile" ? .file(value) : .environment(value)
                let header = string(cm, "header", cp) ?? "Authorization"
                guard header.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                    problem(cm["header"]?.0, "\(cp).header", "not a valid header name", line: cm["header"]?.1)
                    continue
                }
                creds.append(IdentityConfig.Credential(urlPrefix: prefix, header: header, secret: secret))
            }
            out.append(IdentityConfig.Identity(name: name, credentials: creds))
        }
        return IdentityConfig(identities: out, source: file)
    }

    mutating func repository(_ node: SourceNode, _ p: String) -> KilnConfiguration.Repository? {
        let m = members(node, p, allowed: ["name", "url", "branch", "path", "interval", "timeout", "statusBranch", "credentials", "webhookSecretFile"])
        guard let url = string(m, "url", p, required: true) else { return nil }
        let lower = url.lowercased()
        if url.contains("::") || (lower.contains("://") && !["https://", "http://", "ssh://", "file://", "git://"].contains(where: lower.hasPrefix)) {
            problem(m["url"]?.0, "\(p).url", "unsupported transport in '\(GitRepository.redact(url))'; use https, ssh, file or a path", line: m["url"]?.1)
        }
        if URLComponents(string: url)?.password != nil {
            problem(m["url"]?.0, "\(p).url", "the URL carries a password; put the token in credentials.tokenFile or tokenEnv", line: m["url"]?.1)
        } else if lower.hasPrefix("http"), URLComponents(string: url)?.user != nil {
            problem(
                m["url"]?.0, "\(p).url",
                "the URL carries a user name, often a token (https://TOKEN@host/…); put the token in credentials.tokenFile or tokenEnv", line: m["url"]?.1)
        }
        let fallback = ((url as NSString).lastPathComponent as NSString).deletingPathExtension
        var r = KilnConfiguration.Repository(name: string(m, "name", p) ?? (fallback.isEmpty ? "repository" : fallback), url: url)
        for (key, value) in [("branch", string(m, "branch", p)), ("statusBranch", string(m, "statusBranch", p))] {
            guard let value else { continue }
            if !BranchName.isValid(value) {
                problem(m[key]?.0, "\(p).\(key)", "'\(value)' is not a valid branch name", line: m[key]?.1)
            } else if key == "branch" {
                r.branch = value
            } else {
                r.statusBranch = value
            }
        }
        r.path = string(m, "path", p)
        if let i = string(m, "interval", p) {
            if let s = Self.seconds(i), s >= 1 {
                r.intervalSeconds = s
            } else {
                problem(m["interval"]?.0, "\(p).interval", "expected a duration of at least 1s, like 30s or 5m; found '\(i)'", line: m["interval"]?.1)
            }
        }
        if let t = string(m, "timeout", p) {
            if let s = Self.seconds(t), s >= 1 {
                r.timeoutSeconds = s
            } else {
                problem(m["timeout"]?.0, "\(p).timeout", "expected a duration of at least 1s, like 30s or 2m; found '\(t)'", line: m["timeout"]?.1)
            }
        }
        if let (cnode, _) = m["credentials"] {
            let cm = members(cnode, "\(p).credentials", allowed: ["tokenFile", "tokenEnv", "sshKeyFile", "knownHosts", "token"])
            if cm["token"] != nil {
                problem(
                    cm["token"]?.0, "\(p).credentials.token", "a token may not be written in the configuration; use tokenFile or tokenEnv", line: cm["token"]?.1
                )
            }
            r.tokenFile = absolutePath(cm, "tokenFile", "\(p).credentials")
            r.tokenEnv = string(cm, "tokenEnv", "\(p).credentials")
            r.sshKeyFile = absolutePath(cm, "sshKeyFile", "\(p).credentials")
            r.knownHosts = absolutePath(cm, "knownHosts", "\(p).credentials")
            if [r.tokenFile, r.tokenEnv, r.sshKeyFile].compactMap({ $0 }).count > 1 {
                problem(cnode, "\(p).credentials", "give one of tokenFile, tokenEnv, sshKeyFile")
            }
        }
        r.webhookSecretFile = absolutePath(m, "webhookSecretFile", p)
        return r
    }

    /// Edit distance, for "did you mean".
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var next = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                next[j] = min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            row = next
        }
        return a.isEmpty ? b.count : b.isEmpty ? a.count : row[b.count]
    }

    /// `30s`, `5m`, `1h`, `90`.
    /// `30s`, `5m`, `1h`, `250ms`, `90` (seconds); nil for anything else, including `inf`, `nan` and more than
    /// a week (a value that would overflow where it becomes a `Duration`).
    static func seconds(_ s: String) -> Double? { Duration(text: s)?.inSeconds }
}
