import Foundation
import KilnGitOps
import Testing

/// Webhook authentication, request by request: GitHub's HMAC header, Kiln's own, GitLab's token, and what is
/// refused. The vectors are public: GitHub's documented example and RFC 4231 test case 2.
@Suite struct WebhookSignatureTests {
    static let github = WebhookAuthenticator(secret: Data("It's a Secret to Everybody".utf8))
    static let body = Array("Hello, World!".utf8)

    @Test(arguments: [
        // GitHub's documentation: this secret, this payload, this signature.
        (
            ["X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"],
            WebhookAuthenticator.Verdict.accepted(sender: "github")
        ),
        (["x-hub-signature-256": "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"], .accepted(sender: "github")),
        (["X-Kiln-Signature": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"], .accepted(sender: "generic")),
        (
            ["X-Hub-Signature-256": "sha256=857107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"],
            .rejected("the signature does not match the body")
        ),
        (["X-Hub-Signature-256": "sha1=757107ea0eb2509fc211221cce984b8a37570b6d"], .rejected("the signature is not sha256=<64 hex digits>")),
        (["X-Hub-Signature-256": "sha256=757107ea"], .rejected("the signature is not sha256=<64 hex digits>")),
        (
            ["X-Hub-Signature-256": "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"],
            .rejected("the signature is not sha256=<64 hex digits>")
        ),
        (["X-Gitlab-Token": "It's a Secret to Everybody"], .accepted(sender: "gitlab")),
        (["X-Gitlab-Token": "It's a secret to everybody"], .rejected("X-Gitlab-Token does not match")),
        ([:], .rejected("no signature: send X-Hub-Signature-256, X-Gitlab-Token or X-Kiln-Signature"))
    ])
    func verify(_ headers: [String: String], _ expected: WebhookAuthenticator.Verdict) {
        #expect(Self.github.verify(headers: headers, body: Self.body) == expected)
    }

    @Test func signatureIsHMACSHA256() {
        #expect(Self.github.signature(for: Self.body) == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        // RFC 4231, test case 2.
        let rfc = WebhookAuthenticator(secret: Data("Jefe".utf8))
        #expect(rfc.signature(for: Array("what do ya want for nothing?".utf8)) == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test(arguments: [("short\n", false), ("eight-ch\n", true), ("\n\n", false), ("a-long-enough-secret\r\n", true)])
    func secretFiles(_ text: String, _ accepted: Bool) throws {
        let file = NSTemporaryDirectory() + "kiln-webhook-secret-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(((try? WebhookAuthenticator(secretFile: file)) != nil) == accepted, "\(text.debugDescription)")
    }
}
