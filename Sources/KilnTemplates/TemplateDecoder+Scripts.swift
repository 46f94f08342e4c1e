// Decodes the script and file steps customizers and validators share, and checks their URIs and checksums.
import Foundation

extension TemplateDecoder {
    /// `scriptUri` xor `inline`, plus an optional checksum.
    private func script(_ r: ObjectReader, noScript: ErrorCode, bad: ErrorCode) -> (ScriptSource, String?)? {
        let uri = r.string("scriptUri", code: bad)
        let inline = r.stringArray("inline", code: bad)
        let checksum = checksum(r, bad)
        let uriNode = r.value("scriptUri"), inlineNode = r.value("inline")
        if uriNode != nil && inlineNode != nil {
            ctx.error(bad, "give either scriptUri or inline, not both", r.path / "inline", inlineNode!.node.position)
            return nil
        }
        if let uri {
            if uri.isEmpty {
                ctx.error(noScript, "scriptUri is empty", r.path / "scriptUri", uriNode!.node.position)
                return nil
            }
            if case .failure = checksum { return nil }
            guard checkURI(uri, uriNode!, bad, "scriptUri", checksum: try? checksum.get()) else { return nil }
            return (.uri(uri), try? checksum.get())
        }
        if let inline {
            if inline.isEmpty {
                ctx.error(noScript, "inline has no commands", r.path / "inline", inlineNode!.node.position)
                return nil
            }
            if case .failure = checksum { return nil }
            if case .success(.some) = checksum {
                ctx.warning(
                    bad, "sha256Checksum applies to scriptUri only and is ignored with inline", r.path / "sha256Checksum",
                    r.value("sha256Checksum")!.node.position)
            }
            return (.inline(inline), nil)
        }
        if uriNode == nil && inlineNode == nil {
            ctx.error(noScript, "a script is required: give scriptUri or inline", r.path / "scriptUri", r.position)
        }
        return nil
    }

    /// A value that failed a check that was already reported.
    struct Invalid: Error {}

    /// The normalised (lower-case) checksum, nil when absent, or a failure already reported.
    func checksum(_ r: ObjectReader, _ code: ErrorCode) -> Result<String?, Invalid> {
        guard let (n, p) = r.value("sha256Checksum") else { return .success(nil) }
        guard let s = ObjectReader.string(n, path: p, ctx: ctx, code: code) else { return .failure(Invalid()) }
        if s.isEmpty { return .success(nil) }
        guard s.count == 64, s.allSatisfy({ $0.isHexDigit && $0.isASCII }) else {
            ctx.error(code, "sha256Checksum must be 64 hexadecimal characters, found \(s.count) characters '\(s.prefix(70))'", p, n.position)
            return .failure(Invalid())
        }
        return .success(s.lowercased())
    }

    /// Accepts `https://`, `http://`, `file://` URIs and relative paths (resolved in a GitOps repository
    /// against the template's directory, then the repository root), then judges what the reference may reach
    /// under the context's `ArtifactPolicy`: nothing is read yet, so a refused reference costs nothing.
    func checkURI(_ s: String, _ at: (node: SourceNode, path: JSONPath), _ code: ErrorCode, _ what: String, checksum: String?) -> Bool {
        if ctx.isSuppressed(at.node) { return false }
        if let problem = ArtifactReference.problem(with: s) ?? reachProblem(s, checksum: checksum) {
            ctx.error(code, "\(what) '\(ArtifactReference.shown(s))': \(problem)", at.path, at.node.position)
            return false
        }
        ctx.artifactLines[at.path.description] = at.node.position.line
        return true
    }

    /// Why the policy refuses a syntactically valid reference, or nil.
    private func reachProblem(_ s: String, checksum: String?) -> String? {
        switch ArtifactReference(s) {
        case .file(let path)?:
            return ctx.policy?.fileProblem(path)
        case .relative(let r)?:
            guard let dir = ctx.templateDirectory, RepositoryPath.candidates(r, templateDirectory: dir).isEmpty else { return nil }
            return "the path climbs out of the repository (from \(dir.isEmpty ? "the repository root" : dir + "/"))"
        case .http(let u)?:
            guard let policy = ctx.policy else { return nil }
            if checksum == nil { return "plain http:// needs a sha256Checksum (nothing else proves what arrived); use https://" }
            return URL(string: u)?.host.flatMap(policy.hostProblem)
        case .https(let u)?:
            return URL(string: u)?.host.flatMap { h in ctx.policy?.hostProblem(h) }
        case nil:
            return nil
        }
    }

    func shellScript(_ r: ObjectReader, name: String?, noScript: ErrorCode, bad: ErrorCode) -> ShellScript? {
        guard let (script, checksum) = script(r, noScript: noScript, bad: bad) else { return nil }
        return ShellScript(name: name, script: script, sha256Checksum: checksum)
    }

    func powerShellScript(_ r: ObjectReader, name: String?, noScript: ErrorCode, bad: ErrorCode) -> PowerShellScript? {
        let s = script(r, noScript: noScript, bad: bad)
        let elevated = r.bool("runElevated", code: bad) ?? false
        let system = r.bool("runAsSystem", code: bad) ?? false
        var codes = r.intArray("validExitCodes", code: bad) ?? []
        if codes.isEmpty { codes = [0] }
        if system && !elevated {
            ctx.error(bad, "runAsSystem requires runElevated to be true", r.path / "runAsSystem", r.value("runAsSystem")!.node.position)
            return nil
        }
        guard let (script, checksum) = s else { return nil }
        return PowerShellScript(name: name, script: script, sha256Checksum: checksum, runElevated: elevated, runAsSystem: system, validExitCodes: codes)
    }

    func fileCopy(_ r: ObjectReader, name: String?, noSource: ErrorCode, bad: ErrorCode) -> FileCopy? {
        let source = r.string("sourceUri", code: bad)
        let destination = r.string("destination", code: bad, required: true)
        let checksum = checksum(r, bad)
        var ok = true
        if let source {
            if source.isEmpty {
                ctx.error(noSource, "sourceUri is empty", r.path / "sourceUri", r.value("sourceUri")!.node.position)
                ok = false
            } else if !checkURI(source, r.value("sourceUri")!, bad, "sourceUri", checksum: (try? checksum.get()) ?? nil) {
                ok = false
            }
        } else if r.value("sourceUri") == nil {
            ctx.error(noSource, "the property 'sourceUri' is required", r.path / "sourceUri", r.position)
            ok = false
        } else {
            ok = false
        }
        if let destination, let (n, p) = r.value("destination"), !ctx.isSuppressed(n), !Self.isAbsoluteGuestPath(destination) {
            ctx.error(bad, "destination '\(destination)' must be an absolute path (/path on Linux, C:\\path on Windows)", p, n.position)
            ok = false
        }
        guard ok, let source, let destination, case .success(let sum) = checksum else { return nil }
        return FileCopy(name: name, sourceUri: source, destination: destination, sha256Checksum: sum)
    }

    static func isAbsoluteGuestPath(_ s: String) -> Bool {
        if s.hasPrefix("/") { return true }
        let c = Array(s)
        if c.count >= 3, c[0].isLetter, c[0].isASCII, c[1] == ":", c[2] == "\\" || c[2] == "/" { return true }
        return s.hasPrefix("\\\\")
    }
}

/// Where an artifact (script, file) comes from.
public enum ArtifactReference: Sendable, Hashable {
    case https(String)
    case http(String)
    case file(String)
    /// A path relative to the template file or the repository root.
    case relative(String)

    public init?(_ s: String) {
        let lower = s.lowercased()
        if lower.hasPrefix("https://") {
            self = .https(s)
        } else if lower.hasPrefix("http://") {
            self = .http(s)
        } else if lower.hasPrefix("file://") {
            // The path as the fetcher will open it: percent-escapes decoded (file:///etc/%73hadow is /etc/shadow).
            self = .file(URL(string: s)?.path ?? String(s.dropFirst("file://".count)))
        } else if Self.problem(with: s) == nil {
            self = .relative(s)
        } else {
            return nil
        }
    }

    /// A reference as messages and logs show it: without its query, where signed URLs (an Azure SAS `sig=`, a
    /// pre-signed S3 `X-Amz-Signature=`) carry their secret. The template itself holds the full URL.
    public static func shown(_ reference: String) -> String {
        guard reference.contains("://"), let q = reference.firstIndex(of: "?") else { return reference }
        return String(reference[..<q]) + "?…"
    }

    /// Why `s` cannot be used as a script or file source, or nil.
    public static func problem(with s: String) -> String? {
        let lower = s.lowercased()
        if lower.hasPrefix("https://") || lower.hasPrefix("http://") {
            let rest = s.drop(while: { $0 != "/" }).dropFirst(2)
            return rest.isEmpty || rest.hasPrefix("/") ? "the URL has no host" : nil
        }
        if lower.hasPrefix("file://") {
            let path = s.dropFirst("file://".count)
            return path.hasPrefix("/") ? nil : "a file:// URI needs an absolute path (file:///path/to/file)"
        }
        if let colon = s.firstIndex(of: ":"), let slash = s.firstIndex(of: "/"), colon < slash {
            return "unsupported URI scheme '\(s[..<colon])'; use https://, http://, file:// or a path relative to the template"
        }
        if s.hasPrefix("/") {
            return "an absolute path is ambiguous; use file://\(s) for a file on the build host or a path relative to the template"
        }
        if s.contains("\\") { return "use forward slashes in relative paths" }
        return nil
    }

    /// Why `s` cannot be a VHD destination, or nil. https:// is accepted here (AIB accepts it); whether it
    /// can be written to is decided when distributing.
    static func vhdTargetProblem(_ s: String) -> String? {
        let lower = s.lowercased()
        if lower.hasPrefix("https://") || lower.hasPrefix("http://") { return problem(with: s) }
        if lower.hasPrefix("file://") { return problem(with: s) }
        if s.hasPrefix("/") { return nil }
        return "expected an https:// URL, a file:// URI or an absolute path"
    }

    /// The host path a local VHD target names (`/srv/vhds/a.vhd` or `file:///srv/vhds/a.vhd`), or nil for a URL.
    public static func vhdLocalPath(_ s: String) -> String? {
        if s.lowercased().hasPrefix("file://") { return URL(string: s)?.path }
        return s.hasPrefix("/") ? s : nil
    }
}
