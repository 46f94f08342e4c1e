// The configuration's `server.api` section: the AIB REST API that `kiln serve` answers.
import Foundation
import KilnSystem
import KilnTemplates

/// `server.api`: where the REST API listens and who may call it.
public struct APISettings: Sendable, Hashable {
    /// ARM's built-in roles, as far as image templates go.
    public enum Role: String, Sendable, Hashable, CaseIterable {
        case reader = "Reader", contributor = "Contributor"
    }
    /// A bearer token kept in a file (the file holds the token; the configuration only names it).
    public struct Token: Sendable, Hashable {
        public var name: String
        public var file: String
        public var role: Role
        /// Resource id prefixes the token reaches; empty: everything.
        public var scopes: [String]
    }

    /// TLS: a PEM certificate chain and its PEM private key.
    public struct TLS: Sendable, Hashable {
        public var certificate: String
        public var key: String
    }

    public var listen: ListenAddress?
    public var tokens: [Token] = []
    /// HTTPS with this certificate; without it plain HTTP, on loopback only unless `allowPlainHTTP`.
    public var tls: TLS?
    /// Plain HTTP on an address other than loopback (behind a TLS proxy).
    public var allowPlainHTTP = false

    public init() {}
}

extension ConfigReader {
    /// `api: { listen: HOST:PORT, tls: {certificate, key}, allowPlainHTTP: bool, tokens: [{name, file, role, scopes: [id…]}] }`
    /// under `server`.
    mutating func api(_ node: SourceNode, into c: inout KilnConfiguration) {
        let p = "$.server.api"
        let m = members(node, p, allowed: ["listen", "tls", "allowPlainHTTP", "tokens"])
        var api = APISettings()
        if let (node, _) = m["tls"] {
            let t = members(node, "\(p).tls", allowed: ["certificate", "key"])
            let cert = absolutePath(t, "certificate", "\(p).tls")
            let key = absolutePath(t, "key", "\(p).tls")
            for (k, v) in [("certificate", cert), ("key", key)] where v == nil && t[k] == nil { problem(node, "\(p).tls.\(k)", "required: a PEM file") }
            if let cert, let key { api.tls = APISettings.TLS(certificate: cert, key: key) }
        }
        if let l = string(m, "listen", p) {
            do { api.listen = try ListenAddress(parsing: l) } catch { problem(m["listen"]?.0, "\(p).listen", "\(error)", line: m["listen"]?.1) }
        }
        if let (node, line) = m["allowPlainHTTP"] {
            if case .bool(let b) = node.value { api.allowPlainHTTP = b } else { problem(node, "\(p).allowPlainHTTP", "expected true or false", line: line) }
        }
        if let (node, line) = m["tokens"] {
            guard let items = node.elements else {
                problem(node, "\(p).tokens", "expected a list of {name, file, role, scopes}", line: line)
                c.api = api
                return
            }
            for (i, item) in items.enumerated() {
                if let t = token(item, "\(p).tokens[\(i)]") {
                    if api.tokens.contains(where: { $0.name == t.name }) {
                        problem(item, "\(p).tokens[\(i)].name", "a token named '\(t.name)' is listed already")
                    } else {
                        api.tokens.append(t)
                    }
                }
            }
        }
        c.api = api
    }

    private mutating func token(_ node: SourceNode, _ p: String) -> APISettings.Token? {
        let m = members(node, p, allowed: ["name", "file", "role", "scopes"])
        let name = string(m, "name", p, required: true)
        let file = absolutePath(m, "file", p)
        if m["file"] == nil { problem(node, "\(p).file", "required: the file that holds the token") }
        var role: APISettings.Role?
        if let r = string(m, "role", p, required: true) {
            role = APISettings.Role.allCases.first { $0.rawValue.caseInsensitiveCompare(r) == .orderedSame }
            if role == nil { problem(m["role"]?.0, "\(p).role", "expected Reader or Contributor; found '\(r)'", line: m["role"]?.1) }
        }
        var scopes: [String] = []
        if let (node, line) = m["scopes"] {
            if let items = node.elements {
                for (i, item) in items.enumerated() {
                    guard let s = item.stringValue, Self.isScope(s) else {
                        problem(item, "\(p).scopes[\(i)]", "expected /subscriptions/ID or /subscriptions/ID/resourceGroups/NAME")
                        continue
                    }
                    scopes.append(s)
                }
            } else {
                problem(node, "\(p).scopes", "expected a list of resource id prefixes", line: line)
            }
        }
        guard let name, let file, let role else { return nil }
        return APISettings.Token(name: name, file: file, role: role, scopes: scopes)
    }

    /// `/subscriptions/S` or `/subscriptions/S/resourceGroups/G`.
    static func isScope(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.first == "", parts.count == 3 || parts.count == 5, parts[1].lowercased() == "subscriptions", !parts[2].isEmpty else { return false }
        return parts.count == 3 || (parts[3].lowercased() == "resourcegroups" && !parts[4].isEmpty)
    }
}
