import Foundation
import KilnBuild
@testable import KilnCore
import KilnTemplates
import Testing

/// A real HTTP server on loopback (Python's http.server) that wants a bearer token and fails on purpose.
final class ArtifactServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    static let token = "s3cret-token-value"

    init() async throws {
        port = try #require(SSHClient.freeLoopbackPort())
        let script = """
            import http.server, sys, urllib.parse
            hits = {}
            class H(http.server.BaseHTTPRequestHandler):
                def log_message(self, *a): pass
                def do_GET(self):
                    hits[self.path] = hits.get(self.path, 0) + 1
                    if self.path.startswith("/redirect?to="):
                        self.send_response(302)
                        self.send_header("Location", urllib.parse.unquote(self.path[len("/redirect?to="):]))
                        self.send_header("Content-Length", "0")
                        self.end_headers(); return
                    if self.path == "/public.sh":
                        body = b"echo public\\n"
                    elif self.path == "/private/setup.sh":
                        if self.headers.get("Authorization") != "Bearer \(Self.token)":
                            self.send_response(401); self.end_headers(); return
                        body = b"echo private\\n"
                    elif self.path == "/flaky.sh":
                        if hits[self.path] < 3:
                            self.send_response(503); self.end_headers(); return
                        body = b"echo flaky\\n"
                    elif self.path == "/hits":
                        body = repr(hits).encode()
                    else:
                        self.send_response(404); self.end_headers(); return
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
            s = http.server.HTTPServer(("127.0.0.1", \(port)), H)
            s.serve_forever()
            """
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script]
        try process.run()
        // Ready when it answers.
        for _ in 0..<100 {
            if (try? await ArtifactFetcher(identity: nil, relative: nil, policy: Self.loopback).fetch("\(base)/hits")) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the artifact server did not start")
    }

    var base: String { "http://127.0.0.1:\(port)" }
    /// A policy that admits this server (loopback is refused by default).
    static let loopback = ArtifactPolicy(allowedNetworks: [AddressRange("127.0.0.1")!])
    /// SIGKILL: a child of a Swift process may inherit a mask that blocks SIGTERM.
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

@Suite struct FetchTests {
    @Test func identityCredentialsAreSentAndTransientErrorsRetried() async throws {
        let server = try await ArtifactServer()
        defer { server.stop() }
        try #require(server.port > 0)
        let identityId = "/subscriptions/0/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/builder"
        let config = try IdentityConfig.parse(
            [
                "identities": [
                    [
                        "name": "builder",
                        "credentials": [
                            ["urlPrefix": .string(server.base + "/private/"), "tokenEnv": "KILN_TEST_UNSET_VAR"]
                        ]
                    ]
                ]
            ], source: "test")
        // A token from an unset variable is an error that names the variable, not a silent anonymous fetch.
        let unset = ArtifactFetcher(identity: config.identity(for: identityId), relative: nil, policy: ArtifactServer.loopback)
        await #expect(throws: FetchError.self) { try await unset.fetch(server.base + "/private/setup.sh") }

        let good = IdentityConfig(identities: [
            .init(
                name: "builder",
                credentials: [
                    .init(urlPrefix: server.base + "/private/", secret: .literal(ArtifactServer.token))
                ])
        ])
        var fetcher = ArtifactFetcher(identity: good.identity(for: identityId), relative: nil, policy: ArtifactServer.loopback)
        fetcher.backoff = .milliseconds(50)
        #expect(String(decoding: try await fetcher.fetch(server.base + "/private/setup.sh"), as: UTF8.self) == "echo private\n")
        #expect(String(decoding: try await fetcher.fetch(server.base + "/flaky.sh"), as: UTF8.self) == "echo flaky\n")
        // Without the identity: 401, not retried, and the message says what is missing.
        var anonymous = ArtifactFetcher(identity: nil, relative: nil, policy: ArtifactServer.loopback)
        anonymous.backoff = .milliseconds(50)
        do {
            _ = try await anonymous.fetch(server.base + "/private/setup.sh")
            Issue.record("fetched without credentials")
        } catch {
            #expect(error.unauthorized)
            #expect(error.description.contains("HTTP 401"))
            #expect(error.description.contains("no identity with credentials"))
            #expect(!error.description.contains(ArtifactServer.token))
        }
        // A 404 is not retried either.
        do {
            _ = try await anonymous.fetch(server.base + "/missing.sh")
            Issue.record("fetched a missing file")
        } catch {
            #expect(error.description.contains("HTTP 404"))
            #expect(!error.description.contains("attempts"))
        }
    }

    @Test func aTemplateWithAnIdentityStagesPrivateArtifacts() async throws {
        let server = try await ArtifactServer()
        defer { server.stop() }
        let s = try Scratch(
            identities: IdentityConfig(identities: [
                .init(
                    name: "builder",
                    credentials: [
                        .init(urlPrefix: server.base + "/private/", secret: .literal(ArtifactServer.token))
                    ])
            ]))
        defer { s.cleanup() }
        let json = templateJSON(customize: #"[{"type": "Shell", "name": "p", "scriptUri": "\#(server.base)/private/setup.sh"}]"#)
            .replacingOccurrences(
                of: #""identity": {"type": "None"}"#,
                with:
                    #""identity": {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/0/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/builder": {}}}"#
            )
        let r = try await s.core.create(try load(json))
        #expect(r.record.provisioningState == .succeeded, "\(r.record.provisioningErrorMessage ?? "")")
        let staged = try #require(r.record.artifacts.first)
        #expect(FileManager.default.contents(atPath: staged.path) == Data("echo private\n".utf8))
        // The token is nowhere in the data directory.
        let grep = Process()
        grep.executableURL = URL(fileURLWithPath: "/bin/grep")
        grep.arguments = ["-r", "-a", "-q", ArtifactServer.token, s.core.paths.dataDir]
        try grep.run()
        grep.waitUntilExit()
        #expect(grep.terminationStatus == 1, "the token was found under the data directory")
    }

    @Test func identityFileErrorsNameTheKey() {
        #expect(throws: IdentityError.self) { try IdentityConfig.parse(["identities": [["credentials": []]]], source: "ids.yaml") }
        do {
            _ = try IdentityConfig.parse(["identities": [["name": "x", "credentials": [["urlPrefix": "ftp://x", "token": "t"]]]]], source: "ids.yaml")
        } catch {
            #expect(error.description.contains("ids.yaml: $.identities[0].credentials[0].urlPrefix"))
        }
        let masked = IdentityConfig.Secret.literal("hunter2").description
        #expect(!masked.contains("hunter2"))
    }

    @Test func aSignedURLsQueryStaysOutOfMessages() async throws {
        let sas = "https://acct.blob.core.windows.net/scripts/setup.sh?sv=2024-01-01&sig=SECRETSIGNATURE%3D"
        #expect(ArtifactFetcher.shown(sas) == "https://acct.blob.core.windows.net/scripts/setup.sh?…")
        var fetcher = ArtifactFetcher(identity: nil, relative: nil, policy: ArtifactServer.loopback)
        fetcher.attempts = 1
        do {
            _ = try await fetcher.fetch("http://127.0.0.1:9/setup.sh?sig=SECRETSIGNATURE")
            Issue.record("port 9 answered")
        } catch {
            #expect(!error.description.contains("SECRETSIGNATURE") && error.description.contains("127.0.0.1:9/setup.sh?…"), "\(error)")
        }
    }
}
