import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1

/// Where repository-relative artifact paths (`scripts/harden.sh`) are read from: a directory on disk for a
/// template created from a file, or the tree of a commit for a template from a GitOps repository.
public protocol RelativeArtifactSource: Sendable {
    /// The file's bytes, or nil when there is no such file. `path` is already normalised and inside the root.
    func read(_ path: String) async throws -> Data?
    /// For messages: where relative paths are looked up.
    var description: String { get }
}

/// Looks a relative path up in each directory in order (the template's own directory, then the
/// repository root, the directory holding the nearest `kiln.yaml`).
public struct DirectoryArtifactSource: RelativeArtifactSource {
    public var roots: [String]
    public init(roots: [String]) { self.roots = roots }

    public func read(_ path: String) async throws -> Data? {
        for root in roots {
            let full = (root as NSString).appendingPathComponent(path)
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue {
                guard let d = FileManager.default.contents(atPath: full) else { throw FetchError("cannot read \(full)") }
                return d
            }
        }
        return nil
    }

    public var description: String { roots.joined(separator: " or ") }
}

public struct FetchError: Error, Sendable, CustomStringConvertible {
    public var description: String
    /// The server answered 401 or 403.
    public var unauthorized = false
    public init(_ d: String, unauthorized: Bool = false) {
        description = d
        self.unauthorized = unauthorized
    }
}

/// Fetches one customization artifact: `https://` / `http://` (retried, with the identity's credentials),
/// `file://` (an absolute local path) or a path relative to the template.
public struct ArtifactFetcher: Sendable {
    public var identity: IdentityConfig.Identity?
    public var relative: RelativeArtifactSource?
    /// Attempts for a URL: transport errors, 5xx and 429 are retried with backoff; other 4xx are not.
    public var attempts = 4
    public var backoff: Duration = .milliseconds(500)
    /// AIB means File customizers for small files; scripts are small. Anything bigger is refused.
    public var maxBytes = 256 << 20
    public var timeout: Duration = .seconds(120)

    public init(identity: IdentityConfig.Identity?, relative: RelativeArtifactSource?) {
        self.identity = identity
        self.relative = relative
    }

    public enum Kind: Sendable, Equatable { case http, file, relative }

    /// A URL as messages and logs show it: without its query, where signed URLs (an Azure SAS `sig=`, a
    /// pre-signed S3 `X-Amz-Signature=`) carry their secret. The template itself holds the full URL.
    public static func shown(_ reference: String) -> String {
        guard reference.contains("://"), let q = reference.firstIndex(of: "?") else { return reference }
        return String(reference[..<q]) + "?…"
    }

    /// What a reference is, or why it is not one Kiln can fetch.
    public static func classify(_ reference: String) -> Result<Kind, FetchError> {
        let lower = reference.lowercased()
        if lower.hasPrefix("https://") || lower.hasPrefix("http://") {
            guard let u = URL(string: reference), u.host != nil else { return .failure(FetchError("\(shown(reference)) is not a valid URL")) }
            return .success(.http)
        }
        if lower.hasPrefix("file://") {
            guard let u = URL(string: reference), u.path.hasPrefix("/"), u.host == nil || u.host == "" || u.host == "localhost" else {
                return .failure(FetchError("\(reference): a file:// URI needs an absolute path (file:///path/to/file)"))
            }
            return .success(.file)
        }
        if reference.contains("://") {
            return .failure(FetchError("\(shown(reference)): only https://, http://, file:// and paths relative to the template are supported"))
        }
        if reference.hasPrefix("/") {
            return .failure(FetchError("\(reference): an absolute path must be written as a file:// URI (file://\(reference))"))
        }
        guard normalizedRelative(reference) != nil else {
            return .failure(FetchError("\(reference): a relative path must stay inside the repository (no leading '..')"))
        }
        return .success(.relative)
    }

    /// `a/./b/../c` → `a/c`; nil when the path climbs out of its root.
    public static func normalizedRelative(_ path: String) -> String? {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." {
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
            } else {
                parts.append(c)
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    public func fetch(_ reference: String) async throws(FetchError) -> Data {
        switch Self.classify(reference) {
        case .failure(let e): throw e
        case .success(.file):
            let path = URL(string: reference)!.path
            guard FileManager.default.fileExists(atPath: path) else { throw FetchError("\(path) does not exist") }
            guard let d = FileManager.default.contents(atPath: path) else { throw FetchError("cannot read \(path)") }
            guard d.count <= maxBytes else { throw FetchError("\(path) is \(d.count >> 20) MiB; artifacts are limited to \(maxBytes >> 20) MiB") }
            return d
        case .success(.relative):
            guard let relative else {
                throw FetchError("\(reference) is a relative path, but this template has no directory or repository to resolve it against")
            }
            let path = Self.normalizedRelative(reference)!
            let data: Data?
            do { data = try await relative.read(path) } catch { throw FetchError("\(reference): \(error)") }
            guard let data else { throw FetchError("\(reference) was not found in \(relative.description)") }
            return data
        case .success(.http):
            return try await fetchHTTP(reference)
        }
    }

    func fetchHTTP(_ reference: String) async throws(FetchError) -> Data {
        var request = HTTPClientRequest(url: reference)
        request.method = .GET
        if let cred = identity?.credentials.filter({ reference.hasPrefix($0.urlPrefix) }).max(by: { $0.urlPrefix.count < $1.urlPrefix.count }) {
            do { request.headers.add(name: cred.header, value: try cred.headerValue()) } catch {
                throw FetchError("\(Self.shown(reference)): the credentials of identity \(identity!.name) cannot be read: \(error)")
            }
        }
        var last = FetchError("\(Self.shown(reference)): not fetched")
        for attempt in 1...max(1, attempts) {
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(Int64(timeout.components.seconds)))
                let status = response.status.code
                if status == 200 {
                    let body = try await response.body.collect(upTo: maxBytes)
                    return Data(body.readableBytesView)
                }
                // Drain an error body (bounded) so the connection is released, not left half-read.
                _ = try? await response.body.collect(upTo: 1 << 20)
                let retryable = status >= 500 || status == 429
                last = FetchError("\(Self.shown(reference)): HTTP \(status) \(response.status.reasonPhrase)" + authHint(status), unauthorized: status == 401 || status == 403)
                if !retryable { throw last }
            } catch let e as FetchError {
                throw e
            } catch let e as NIOTooManyBytesError {
                throw FetchError("\(Self.shown(reference)): larger than the \(maxBytes >> 20) MiB limit for artifacts (\(e))")
            } catch {
                last = FetchError("\(Self.shown(reference)): \(error)")
            }
            if attempt < attempts {
                try? await Task.sleep(for: backoff * (1 << (attempt - 1)))
            }
        }
        last.description += " (after \(attempts) attempts)"
        throw last
    }

    func authHint(_ status: UInt) -> String {
        guard status == 401 || status == 403 else { return "" }
        if let identity { return "; the credentials of identity \(identity.name) were \(identity.credentials.isEmpty ? "empty" : "refused or do not cover this URL")" }
        return "; the template has no identity with credentials configured for this URL"
    }

    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
