import Foundation
import Hummingbird
import HummingbirdTesting
import KilnCore
import KilnGitOps
import KilnServer
import KilnStore
import KilnSystem
import Logging
import Synchronization
import Testing

/// The controller's routes in process (HummingbirdTesting's router framework: no socket): which requests
/// wake which repository, what is refused and how, and which listener serves what. The end-to-end tests in
/// KilnCLITests send real deliveries to a real port.
@Suite struct RouteTests {
    final class Wakes: Sendable {
        let names = Mutex<[String]>([])
        func record(_ n: String) { names.withLock { $0.append(n) } }
        var all: [String] { names.withLock { $0 } }
    }

    static func app(_ wakes: Wakes, routes: ControllerServer.Routes = .all, ready: Bool = true) throws -> some ApplicationProtocol {
        let db = try KilnDatabase()
        let metrics = ControllerMetrics(core: KilnCore(paths: KilnPaths(dataDir: NSTemporaryDirectory()), store: db), repositories: ["images", "apps", "open"])
        let repos = [
            ControllerServer.Repository(name: "images", authenticator: WebhookAuthenticator(secret: Data("s1".utf8)), wake: { wakes.record("images") }),
            ControllerServer.Repository(name: "apps", authenticator: WebhookAuthenticator(secret: Data("s2".utf8)), wake: { wakes.record("apps") }),
            ControllerServer.Repository(name: "open", authenticator: nil, wake: { wakes.record("open") })
        ]
        return try ControllerServer.application(
            listen: try ListenAddress(parsing: "127.0.0.1:0"), routes: routes, repositories: repos, metrics: metrics,
            readiness: { Readiness(storeError: ready ? nil : "database is locked", repositories: []) },
            logger: Logger(label: "test"))
    }

    static func signed(_ body: String, secret: String) -> HTTPFields {
        var h = HTTPFields()
        h[.init("X-Hub-Signature-256")!] = WebhookAuthenticator(secret: Data(secret.utf8)).signature(for: Array(body.utf8))
        h[.init("X-GitHub-Event")!] = "push"
        return h
    }

    @Test(arguments: [
        ("/hooks/git/images", "s1", HTTPResponse.Status.accepted, ["images"]),
        ("/hooks/git/IMAGES", "s1", .accepted, ["images"]),
        ("/hooks/git/images", "s2", .unauthorized, []),
        ("/hooks/git/apps", "s2", .accepted, ["apps"]),
        ("/hooks/git/open", "s1", .notFound, []),
        ("/hooks/git/nope", "s1", .notFound, []),
        ("/hooks/git", "s2", .accepted, ["apps"]),
        ("/hooks/git", "wrong", .unauthorized, [])
    ])
    func webhookDeliveries(path: String, secret: String, status: HTTPResponse.Status, woken: [String]) async throws {
        let wakes = Wakes()
        let body = #"{"ref": "refs/heads/main"}"#
        try await Self.app(wakes).test(.router) { client in
            try await client.execute(uri: path, method: .post, headers: Self.signed(body, secret: secret), body: ByteBuffer(string: body)) { response in
                #expect(response.status == status, "\(path) \(String(buffer: response.body))")
            }
        }
        #expect(wakes.all == woken)
    }

    @Test func anUnsignedDeliveryIsRefusedWithTheReason() async throws {
        let wakes = Wakes()
        try await Self.app(wakes).test(.router) { client in
            try await client.execute(uri: "/hooks/git/images", method: .post, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .unauthorized)
                #expect(String(buffer: response.body).contains("no signature"))
            }
        }
        #expect(wakes.all.isEmpty)
    }

    @Test func listenersServeWhatTheirRoutesSay() async throws {
        let wakes = Wakes()
        try await Self.app(wakes, routes: .webhooks).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .notFound) }
        }
        try await Self.app(wakes, routes: .observability, ready: false).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("database is locked"))
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("kiln_"))
            }
            try await client.execute(uri: "/hooks/git/images", method: .post, body: ByteBuffer(string: "{}")) { #expect($0.status == .notFound) }
        }
    }
}
