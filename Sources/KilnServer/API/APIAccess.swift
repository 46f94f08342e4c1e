import Crypto
import Foundation

/// A bearer token the REST API accepts: whose it is, what it may do, and where.
public struct APIToken: Sendable {
    /// ARM's built-in roles, as far as image templates go.
    public enum Role: String, Sendable, Hashable, CaseIterable {
        /// GETs only.
        case reader = "Reader"
        /// Everything.
        case contributor = "Contributor"
    }

    /// Shown in `systemData.createdBy` and in 403 messages; never the token itself.
    public var name: String
    public var role: Role
    /// Resource id prefixes (`/subscriptions/S`, `/subscriptions/S/resourceGroups/G`), compared ignoring case.
    /// Empty: every subscription.
    public var scopes: [String]
    /// SHA-256 of the token: the token itself is not kept in memory longer than reading it takes.
    let digest: [UInt8]

    public init(name: String, token: String, role: Role, scopes: [String]) {
        self.name = name
        self.role = role
        self.scopes = scopes.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        digest = Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// Whether `resourceId` lies inside one of the scopes.
    public func covers(_ resourceId: String) -> Bool {
        if scopes.isEmpty { return true }
        let id = resourceId.lowercased()
        return scopes.contains { scope in
            let s = scope.lowercased()
            return id == s || id.hasPrefix(s + "/")
        }
    }
}

/// Why the token configuration cannot be used.
public enum APIAccessError: Error, Sendable, Hashable, CustomStringConvertible {
    case unreadable(name: String, file: String)
    case empty(name: String, file: String)
    case duplicateToken(String, String)

    public var description: String {
        switch self {
        case .unreadable(let n, let f): return "token \(n): cannot read \(f)"
        case .empty(let n, let f): return "token \(n): \(f) is empty"
        case .duplicateToken(let a, let b): return "tokens \(a) and \(b) are the same token"
        }
    }
}

/// Who may call the REST API: bearer tokens, each with a role and scopes. A request without a known token is
/// answered 401; a known token outside its role or scopes 403.
public struct APIAccess: Sendable {
    public var tokens: [APIToken]

    public init(tokens: [APIToken]) { self.tokens = tokens }

    /// A token configured by file: the file holds the token (surrounding white space ignored).
    public struct TokenFile: Sendable, Hashable {
        public var name: String
        public var file: String
        public var role: APIToken.Role
        public var scopes: [String]

        public init(name: String, file: String, role: APIToken.Role, scopes: [String]) {
            self.name = name
            self.file = file
            self.role = role
            self.scopes = scopes
        }
    }

    /// Reads every token file.
    public static func load(_ files: [TokenFile]) throws(APIAccessError) -> APIAccess {
        var tokens: [APIToken] = []
        for f in files {
            guard let data = FileManager.default.contents(atPath: f.file) else { throw .unreadable(name: f.name, file: f.file) }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw .empty(name: f.name, file: f.file) }
            let t = APIToken(name: f.name, token: token, role: f.role, scopes: f.scopes)
            if let other = tokens.first(where: { $0.digest == t.digest }) { throw .duplicateToken(other.name, f.name) }
            tokens.append(t)
        }
        return APIAccess(tokens: tokens)
    }

    /// The token an `Authorization: Bearer …` header presents, or the 401 to answer.
    public func authenticate(_ authorization: String?) -> Result<APIToken, ARMError> {
        guard let authorization, !authorization.isEmpty else {
            return .failure(.authenticationFailed("Authentication failed. The 'Authorization' header is missing."))
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].caseInsensitiveCompare("Bearer") == .orderedSame else {
            return .failure(.authenticationFailed("Authentication failed. The 'Authorization' header is provided in an invalid format."))
        }
        let digest = Array(SHA256.hash(data: Data(parts[1].trimmingCharacters(in: .whitespaces).utf8)))
        guard let token = tokens.first(where: { Self.equal($0.digest, digest) }) else {
            return .failure(.authenticationFailed("Authentication failed. The access token is not valid for this server."))
        }
        return .success(token)
    }

    /// Nil when `token` may do `action` on `resourceId`; else the 403. `write`: anything but a read.
    public func authorize(_ token: APIToken, write: Bool, resourceId: String, action: String) -> ARMError? {
        if (write && token.role != .contributor) || !token.covers(resourceId) {
            return .authorizationFailed(client: token.name, action: action, scope: resourceId)
        }
        return nil
    }

    /// Compares digests without an early exit.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
