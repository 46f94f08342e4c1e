import Crypto
import Foundation

/// Decides whether a webhook delivery is genuine. Untrusted input: the signature is checked over the exact
/// body bytes with a constant-time comparison before anything else looks at the request.
///
/// - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`
/// - GitLab: `X-Gitlab-Token: <secret>`
/// - Anything else (Gitea, a CI job, curl): `X-Kiln-Signature: sha256=<hex HMAC-SHA256(secret, body)>`
public struct WebhookAuthenticator: Sendable {
    public enum Verdict: Sendable, Equatable {
        case accepted(sender: String)
        case rejected(String)
    }

    let secret: SymmetricKey
    let secretBytes: [UInt8]

    public init(secret: Data) {
        self.secret = SymmetricKey(data: secret)
        self.secretBytes = Array(secret)
    }

    /// Reads the secret from a file (trailing newline ignored); an empty secret is refused.
    public init(secretFile: String) throws {
        guard let raw = FileManager.default.contents(atPath: secretFile) else {
            throw WebhookError.invalid("cannot read the webhook secret file \(secretFile)")
        }
        var text = String(decoding: raw, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        guard text.utf8.count >= 8 else { throw WebhookError.invalid("the webhook secret in \(secretFile) is shorter than 8 bytes") }
        self.init(secret: Data(text.utf8))
    }

    /// `headers`: names in any case.
    public func verify(headers: [String: String], body: [UInt8]) -> Verdict {
        var h: [String: String] = [:]
        for (k, v) in headers { h[k.lowercased()] = v }
        if let sig = h["x-hub-signature-256"] { return checkHMAC(sig, body, sender: "github") }
        if let sig = h["x-kiln-signature"] { return checkHMAC(sig, body, sender: "generic") }
        if let token = h["x-gitlab-token"] {
            return Self.constantTimeEqual(Array(token.utf8), secretBytes) ? .accepted(sender: "gitlab") : .rejected("X-Gitlab-Token does not match")
        }
        return .rejected("no signature: send X-Hub-Signature-256, X-Gitlab-Token or X-Kiln-Signature")
    }

    func checkHMAC(_ header: String, _ body: [UInt8], sender: String) -> Verdict {
        guard header.hasPrefix("sha256="), let given = Self.hex(String(header.dropFirst(7))), given.count == 32 else {
            return .rejected("the signature is not sha256=<64 hex digits>")
        }
        let mac = Array(HMAC<SHA256>.authenticationCode(for: body, using: secret))
        return Self.constantTimeEqual(mac, given) ? .accepted(sender: sender) : .rejected("the signature does not match the body")
    }

    /// `sha256=<hex>` for `body`: what a sender puts in the header.
    public func signature(for body: [UInt8]) -> String {
        "sha256=" + HMAC<SHA256>.authenticationCode(for: body, using: secret).map { String(format: "%02x", $0) }.joined()
    }

    static func hex(_ s: String) -> [UInt8]? {
        guard s.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        var it = s.makeIterator()
        while let a = it.next(), let b = it.next() {
            guard let v = UInt8(String([a, b]), radix: 16) else { return nil }
            out.append(v)
        }
        return out
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

public enum WebhookError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case .invalid(let m): return m
        }
    }
}
