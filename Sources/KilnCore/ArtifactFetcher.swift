import AsyncHTTPClient
import Crypto
import Foundation
import KilnTemplates
import NIOCore
import NIOHTTP1

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
/// `file://` (an absolute host path) or a path relative to the template, each within the `ArtifactPolicy` of
/// whoever wrote the template. The policy was applied when the template was decoded; it is applied again
/// here on what is really opened: the file after symlinks, every address a name resolves to, every redirect.
public struct ArtifactFetcher: Sendable {
    public var identity: IdentityConfig.Identity?
    public var relative: RelativeArtifactSource?
    public var policy: ArtifactPolicy
    /// Attempts for a URL: transport errors, 5xx and 429 are retried with backoff; other 4xx are not.
    public var attempts = 4
    public var backoff: Duration = .milliseconds(500)
    /// AIB means File customizers for small files; scripts are small. Anything bigger is refused.
    public var maxBytes = 256 << 20
    public var timeout: Duration = .seconds(120)
    /// Redirects followed per fetch (each one checked like the first URL).
    public var maxRedirects = 5
    /// Name resolution for the address check. The connection then goes to the address checked, not to a
    /// second lookup, so a name cannot answer a public address to the check and an internal one to the
    /// connect (DNS rebinding). Replaceable so a test can give a name the system resolver does not know.
    public var resolve: @Sendable (_ host: String, _ port: Int) async -> Result<[IPAddress], FetchError> = { host, port in
        await AddressResolver.addresses(of: host, port: port)
    }

    public init(identity: IdentityConfig.Identity?, relative: RelativeArtifactSource?, policy: ArtifactPolicy = .untrusted) {
        self.identity = identity
        self.relative = relative
        self.policy = policy
    }

    /// A URL as messages and logs show it: without its query (see `ArtifactReference.shown`).
    public static func shown(_ reference: String) -> String { ArtifactReference.shown(reference) }

    /// The reference parsed (`ArtifactReference`, the one syntax), or why it is not one Kiln can fetch. Syntax
    /// only; the policy is checked on what is opened.
    public static func parse(_ reference: String) -> Result<ArtifactReference, FetchError> {
        if let problem = ArtifactReference.problem(with: reference) { return .failure(FetchError("\(shown(reference)): \(problem)")) }
        guard let parsed = ArtifactReference(reference) else { return .failure(FetchError("\(shown(reference)): not a reference Kiln can fetch")) }
        if case .https = parsed, URL(string: reference)?.host == nil { return .failure(FetchError("\(shown(reference)) is not a valid URL")) }
        if case .http = parsed, URL(string: reference)?.host == nil { return .failure(FetchError("\(shown(reference)) is not a valid URL")) }
        return .success(parsed)
    }

    public func fetch(_ reference: String) async throws(FetchError) -> Data {
        switch Self.parse(reference) {
        case .failure(let e): throw e
        case .success(.file(let path)):
            if let problem = policy.fileProblem(path) { throw FetchError(problem) }
            return try LocalFile.read(DirectoryArtifactSource.resolved(path), shown: path, maxBytes: maxBytes)
        case .success(.relative):
            guard let relative else {
                throw FetchError("\(reference) is a relative path, but this template has no directory or repository to resolve it against")
            }
            guard let data = try await relative.read(reference) else { throw FetchError("\(reference) was not found in \(relative.description)") }
            return data
        case .success(.https), .success(.http):
            return try await fetchHTTP(reference)
        }
    }

    /// GET with retries; redirects are followed here, not by the client, so that each hop is checked.
    func fetchHTTP(_ reference: String) async throws(FetchError) -> Data {
        var url = reference
        for _ in 0...maxRedirects {
            switch try await fetchOnce(url, original: reference) {
            case .body(let data): return data
            case .redirect(let next):
                if url.lowercased().hasPrefix("https://") && next.lowercased().hasPrefix("http://") {
                    throw FetchError("\(Self.shown(reference)): redirected from https to plain http (\(Self.shown(next))); refused")
                }
                url = next
            }
        }
        throw FetchError("\(Self.shown(reference)): more than \(maxRedirects) redirects")
    }

    enum Answer { case body(Data), redirect(String) }

    func fetchOnce(_ url: String, original: String) async throws(FetchError) -> Answer {
        let hop = url == original ? "" : " (redirected to \(Self.shown(url)))"
        guard let parsed = URL(string: url), let host = parsed.host, !host.isEmpty else { throw FetchError("\(Self.shown(url)) is not a valid URL") }
        if let problem = policy.hostProblem(host) { throw FetchError("\(Self.shown(original))\(hop): \(problem)") }
        var pinned: IPAddress?
        if !policy.admitsName(host) {
            let addresses = try await resolve(host, parsed.port ?? (parsed.scheme == "http" ? 80 : 443)).get()
            for address in addresses {
                if let problem = policy.addressProblem(address, host: host) { throw FetchError("\(Self.shown(original))\(hop): \(problem)") }
            }
            if IPAddress(host) == nil { pinned = addresses.first }
        }
        // A name is connected to at the address that was checked (TLS still asks for and verifies the name:
        // AsyncHTTPClient's dnsOverride keeps it as the SNI). A client per pinned hop; artifacts are few.
        let client = pinned.map { ArtifactHTTP.pinnedClient(host: host, to: $0) } ?? ArtifactHTTP.client
        let answer = await fetchOnce(url, original: original, parsed: parsed, hop: hop, client: client)
        if pinned != nil { try? await client.shutdown() }
        return try answer.get()
    }

    func fetchOnce(_ url: String, original: String, parsed: URL, hop: String, client: HTTPClient) async -> Result<Answer, FetchError> {
        do throws(FetchError) {
            return .success(try await attempt(url, original: original, parsed: parsed, hop: hop, client: client))
        } catch {
            return .failure(error)
        }
    }

    func attempt(_ url: String, original: String, parsed: URL, hop: String, client: HTTPClient) async throws(FetchError) -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        if let cred = credential(for: parsed, url: url) {
            do { request.headers.add(name: cred.header, value: try cred.headerValue()) } catch {
                throw FetchError("\(Self.shown(url)): the credentials of identity \(identity!.name) cannot be read: \(error)")
            }
        }
        var last = FetchError("\(Self.shown(original)): not fetched")
        for attempt in 1...max(1, attempts) {
            do {
                let response = try await client.execute(request, timeout: .seconds(Int64(timeout.components.seconds)))
                let status = response.status.code
                if status == 200 {
                    let body = try await response.body.collect(upTo: maxBytes)
                    return .body(Data(body.readableBytesView))
                }
                // Drain an error body (bounded) so the connection is released, not left half-read.
                _ = try? await response.body.collect(upTo: 1 << 20)
                if [301, 302, 303, 307, 308].contains(status), let location = response.headers.first(name: "location"),
                    let next = URL(string: location, relativeTo: parsed)?.absoluteString
                {
                    return .redirect(next)
                }
                let retryable = status >= 500 || status == 429
                last = FetchError(
                    "\(Self.shown(original))\(hop): HTTP \(status) \(response.status.reasonPhrase)" + authHint(status),
                    unauthorized: status == 401 || status == 403)
                if !retryable { throw last }
            } catch let e as FetchError {
                throw e
            } catch let e as NIOTooManyBytesError {
                throw FetchError("\(Self.shown(original)): larger than the \(maxBytes >> 20) MiB limit for artifacts (\(e))")
            } catch {
                last = FetchError("\(Self.shown(original))\(hop): \(error)")
            }
            if attempt < attempts {
                try? await Task.sleep(for: backoff * (1 << (attempt - 1)))
            }
        }
        last.description += " (after \(attempts) attempts)"
        throw last
    }

    /// The identity's credential for this URL: the longest `urlPrefix` that the URL starts with and whose
    /// scheme, host and port are the URL's own, so a token never goes to another host (`https://a.example`
    /// does not cover `https://a.example.evil.test`, nor a redirect elsewhere).
    func credential(for parsed: URL, url: String) -> IdentityConfig.Credential? {
        identity?.credentials.filter { c in
            guard url.hasPrefix(c.urlPrefix), let p = URL(string: c.urlPrefix) else { return false }
            return p.scheme?.lowercased() == parsed.scheme?.lowercased() && p.host?.lowercased() == parsed.host?.lowercased() && p.port == parsed.port
        }.max(by: { $0.urlPrefix.count < $1.urlPrefix.count })
    }

    func authHint(_ status: UInt) -> String {
        guard status == 401 || status == 403 else { return "" }
        if let identity {
            return "; the credentials of identity \(identity.name) were \(identity.credentials.isEmpty ? "empty" : "refused or do not cover this URL")"
        }
        return "; the template has no identity with credentials configured for this URL"
    }

    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}

/// The HTTP client artifacts are fetched with: redirects are not followed by the client (the fetcher checks
/// each hop), and a refused connection fails at once instead of being retried by the pool until the request's
/// deadline (the fetcher has its own retries, with backoff). It lives as long as the process, like
/// `HTTPClient.shared`.
enum ArtifactHTTP {
    static let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration())

    /// A client that connects to `address` whenever a URL names `host`, and to nothing else by that name.
    static func pinnedClient(host: String, to address: IPAddress) -> HTTPClient {
        var config = configuration()
        for name in Set([host, host.lowercased()]) { config.dnsOverride[name] = address.description }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    static func configuration() -> HTTPClient.Configuration {
        var config = HTTPClient.Configuration(timeout: .init(connect: .seconds(10), read: .seconds(90)))
        config.redirectConfiguration = .disallow
        config.connectionPool.retryConnectionEstablishment = false
        return config
    }
}

/// Name resolution for the address check (getaddrinfo on a thread of its own: it blocks).
enum AddressResolver {
    static func addresses(of host: String, port: Int) async -> Result<[IPAddress], FetchError> {
        if let literal = IPAddress(host) { return .success([literal]) }
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: lookup(host, port: port)) }
        }
    }

    static func lookup(_ host: String, port: Int) -> Result<[IPAddress], FetchError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else { return .failure(FetchError("\(host): cannot resolve the name (\(String(cString: gai_strerror(rc))))")) }
        defer { freeaddrinfo(first) }
        var out: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            if ai.pointee.ai_family == AF_INET, let a = ai.pointee.ai_addr {
                let bytes = a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in withUnsafeBytes(of: p.pointee.sin_addr) { Array($0) } }
                if let ip = IPAddress(bytes: bytes) { out.append(ip) }
            } else if ai.pointee.ai_family == AF_INET6, let a = ai.pointee.ai_addr {
                let bytes = a.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in withUnsafeBytes(of: p.pointee.sin6_addr) { Array($0) } }
                if let ip = IPAddress(bytes: bytes) { out.append(ip) }
            }
            cursor = ai.pointee.ai_next
        }
        return out.isEmpty ? .failure(FetchError("\(host): the name has no address")) : .success(out)
    }
}
