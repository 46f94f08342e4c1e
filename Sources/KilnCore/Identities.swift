import Foundation
import KilnTemplates
import Yams

/// Credentials for fetching customization artifacts, standing in for a template's managed identity.
///
/// AIB fetches `scriptUri`/`sourceUri` with the template's user-assigned identity. Kiln has no Azure AD, so a
/// locally configured identity with the same name carries a token or header per URL prefix:
///
/// ```yaml
/// identities:
///   - name: aibBuilderIdentity          # the last segment of the template's identity id, or the whole id
///     credentials:
///       - urlPrefix: https://artifacts.example.com/images/
///         tokenFile: /etc/kiln/artifacts.token     # or token: …, or tokenEnv: VAR
///         header: Authorization                   # default; the value is "Bearer <token>"
/// ```
///
/// Secrets never leave this type: `description` masks them and nothing logs a header value.
public struct IdentityConfig: Sendable, Hashable {
    public struct Credential: Sendable, Hashable {
        public var urlPrefix: String
        public var header: String
        /// Where the secret comes from (read when a request is made, so a rotated file is picked up).
        public var secret: Secret

        public init(urlPrefix: String, header: String = "Authorization", secret: Secret) {
            self.urlPrefix = urlPrefix
            self.header = header
            self.secret = secret
        }

        /// The header value: `Bearer <token>` for Authorization, the token itself for any other header.
        public func headerValue() throws -> String {
            let token = try secret.value()
            return header.caseInsensitiveCompare("Authorization") == .orderedSame ? "Bearer \(token)" : token
        }
    }

    public enum Secret: Sendable, Hashable, CustomStringConvertible {
        case literal(String)
        case file(String)
        case environment(String)

        public func value() throws -> String {
            switch self {
            case .literal(let s): return s
            case .file(let path):
                guard let d = FileManager.default.contents(atPath: path) else { throw IdentityError("cannot read the token file \(path)") }
                return String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            case .environment(let name):
                guard let v = ProcessInfo.processInfo.environment[name], !v.isEmpty else { throw IdentityError("the environment variable \(name) is not set") }
                return v
            }
        }

        public var description: String {
            switch self {
            case .literal: return "token ****"
            case .file(let p): return "tokenFile \(p)"
            case .environment(let n): return "tokenEnv \(n)"
            }
        }
    }

    public struct Identity: Sendable, Hashable {
        public var name: String
        public var credentials: [Credential]
        public init(name: String, credentials: [Credential]) {
            self.name = name
            self.credentials = credentials
        }
    }

    public var identities: [Identity]
    /// The file the identities came from (for messages).
    public var source: String?

    public init(identities: [Identity] = [], source: String? = nil) {
        self.identities = identities
        self.source = source
    }

    /// The identity for a template's identity resource id: matched by the whole id or its last segment.
    public func identity(for resourceId: String) -> Identity? {
        let last = resourceId.split(separator: "/").last.map(String.init) ?? resourceId
        return identities.first {
            $0.name.caseInsensitiveCompare(resourceId) == .orderedSame || $0.name.caseInsensitiveCompare(last) == .orderedSame
        }
    }

    /// Loads `identities:` from a YAML file; a missing file is an empty configuration.
    public static func load(path: String) throws(IdentityError) -> IdentityConfig {
        guard let data = FileManager.default.contents(atPath: path) else { return IdentityConfig(source: path) }
        let text = String(decoding: data, as: UTF8.self)
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return IdentityConfig(source: path) }
        let root: JSONValue
        do { root = try YAMLDecoder().decode(JSONValue.self, from: text) } catch { throw IdentityError("\(path): cannot parse YAML: \(error)") }
        return try parse(root, source: path)
    }

    static func parse(_ root: JSONValue, source: String) throws(IdentityError) -> IdentityConfig {
        guard let top = root.object else {
            if root == .null { return IdentityConfig(source: source) }
            throw IdentityError("\(source): $: expected a mapping with 'identities'")
        }
        guard let list = top["identities"] else { return IdentityConfig(source: source) }
        guard let items = list.array else { throw IdentityError("\(source): $.identities: expected a list") }
        var out: [Identity] = []
        for (i, item) in items.enumerated() {
            let p = "$.identities[\(i)]"
            guard let m = item.object else { throw IdentityError("\(source): \(p): expected a mapping") }
            guard let name = m["name"]?.string, !name.isEmpty else { throw IdentityError("\(source): \(p).name: required") }
            var creds: [Credential] = []
            for (j, c) in (m["credentials"]?.array ?? []).enumerated() {
                let cp = "\(p).credentials[\(j)]"
                guard let cm = c.object else { throw IdentityError("\(source): \(cp): expected a mapping") }
                guard let prefix = cm["urlPrefix"]?.string, prefix.hasPrefix("https://") || prefix.hasPrefix("http://") else {
                    throw IdentityError("\(source): \(cp).urlPrefix: required, an http:// or https:// URL prefix")
                }
                let sources = [("token", cm["token"]), ("tokenFile", cm["tokenFile"]), ("tokenEnv", cm["tokenEnv"])].filter { $0.1 != nil }
                guard sources.count == 1, let value = sources[0].1?.string, !value.isEmpty else {
                    throw IdentityError("\(source): \(cp): exactly one of token, tokenFile, tokenEnv is required")
                }
                let secret: Secret = sources[0].0 == "token" ? .literal(value) : sources[0].0 == "tokenFile" ? .file(value) : .environment(value)
                let header = cm["header"]?.string ?? "Authorization"
                guard !header.isEmpty, header.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                    throw IdentityError("\(source): \(cp).header: not a valid header name")
                }
                creds.append(Credential(urlPrefix: prefix, header: header, secret: secret))
            }
            out.append(Identity(name: name, credentials: creds))
        }
        return IdentityConfig(identities: out, source: source)
    }
}

public struct IdentityError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
