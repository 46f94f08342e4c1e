import Foundation
import Hummingbird
import KilnCore
import KilnGitOps
import KilnStore
import KilnSystem
import Logging
import ServiceLifecycle

/// The controller's HTTP side (Hummingbird):
///
/// - `POST /hooks/git/{repository}` — a webhook for one watched repository, checked against its secret;
/// - `POST /hooks/git` — a webhook for whichever repositories' secrets verify it (one URL for all of them when
///   they share a secret; the only form a single `--repo` controller needs);
/// - `GET /healthz` — the process serves;
/// - `GET /readyz` — the store answers and every repository's remote has answered at least once;
/// - `GET /metrics` — Prometheus text format (`ControllerMetrics`).
///
/// All on one listener, or split by `Routes` over two (webhooks public, readiness and metrics private).
///
/// A genuine delivery is answered 202 and wakes the repository's loop, which reconciles at once; the
/// reconcile itself is level-triggered, so a lost or repeated delivery costs nothing but a poll.
public enum ControllerServer {
    /// Largest body accepted. The signature can only be checked over the whole body, so an unauthenticated
    /// sender makes Kiln buffer and hash this much per secret: kept well under GitHub's 25 MB cap, which push
    /// events (at most 20 commits described) come nowhere near. Templates never travel in a webhook.
    public static let maxBody = 5 << 20

    /// A watched repository as the server sees it.
    public struct Repository: Sendable {
        public var name: String
        /// Nil: no webhook secret configured; deliveries for it are refused.
        public var authenticator: WebhookAuthenticator?
        public var wake: @Sendable () async -> Void

        public init(name: String, authenticator: WebhookAuthenticator?, wake: @escaping @Sendable () async -> Void) {
            self.name = name
            self.authenticator = authenticator
            self.wake = wake
        }
    }

    /// What one listener serves. The controller serves everything on one port, or — with a separate metrics
    /// address — webhooks on the public port and readiness and metrics on the private one: `/readyz` names hosts
    /// and paths in its errors, which a webhook port open to a git host need not show.
    public struct Routes: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// `POST /hooks/git`, `POST /hooks/git/NAME`.
        public static let webhooks = Routes(rawValue: 1)
        /// `GET /readyz`, `GET /metrics`.
        public static let observability = Routes(rawValue: 2)
        public static let all: Routes = [.webhooks, .observability]

        /// The paths, for the "serving" line.
        public var paths: String {
            (["/healthz"] + (contains(.observability) ? ["/readyz", "/metrics"] : []) + (contains(.webhooks) ? ["/hooks/git"] : []))
                .joined(separator: " ")
        }
    }

    /// Hummingbird's bind address (the text was checked where it was read: `ListenAddress`).
    static func address(_ listen: ListenAddress) -> BindAddress { .hostname(listen.host, port: listen.port) }

    /// `/healthz` always; the rest as `routes` says.
    public static func application(
        listen: ListenAddress, routes: Routes = .all, repositories: [Repository], metrics: ControllerMetrics,
        readiness: @escaping @Sendable () async -> Readiness, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let router = Router()
        router.get("/healthz") { _, _ in "ok\n" }
        if routes.contains(.observability) { observabilityRoutes(router, metrics: metrics, readiness: readiness, logger: logger) }
        if routes.contains(.webhooks) { webhookRoutes(router, repositories: repositories, metrics: metrics, logger: logger) }
        return Application(
            router: router, configuration: .init(address: address(listen), serverName: "kiln"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    /// One application per listener (`address`, `routes`), ready for `serve`. `onRunning` gets the listener and
    /// the port it bound (useful with port 0).
    public static func applications(
        _ listeners: [(address: ListenAddress, routes: Routes)], repositories: [Repository], metrics: ControllerMetrics,
        readiness: @escaping @Sendable () async -> Readiness, logger: Logger,
        onRunning: @escaping @Sendable (ListenAddress, Routes, Int) async -> Void
    ) throws -> [any Service] {
        try listeners.map { listener -> any Service in
            try application(
                listen: listener.address, routes: listener.routes, repositories: repositories, metrics: metrics,
                readiness: readiness, logger: logger, onRunning: { port in await onRunning(listener.address, listener.routes, port) })
        }
    }

    static func observabilityRoutes(
        _ router: Router<BasicRequestContext>, metrics: ControllerMetrics,
        readiness: @escaping @Sendable () async -> Readiness, logger: Logger
    ) {
        router.get("/readyz") { _, _ -> Response in
            let r = await readiness()
            return Response(
                status: r.ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: r.json + "\n")))
        }
        router.get("/metrics") { _, _ -> Response in
            do {
                let text = try await metrics.scrape()
                return Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(string: text)))
            } catch {
                logger.error("metrics: the store did not answer", metadata: ["error": "\(error)"])
                return Response(status: .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: "store unavailable\n")))
            }
        }
    }

    static func webhookRoutes(_ router: Router<BasicRequestContext>, repositories: [Repository], metrics: ControllerMetrics, logger: Logger) {
        router.post("/hooks/git") { request, _ -> Response in
            let (headers, body) = try await read(request)
            let candidates = repositories.filter { $0.authenticator != nil }
            guard !candidates.isEmpty else {
                metrics.webhookCounter("-", "unknown").increment()
                return json(.notFound, .error("no repository has a webhook secret"))
            }
            var woken: [String] = []
            var reason = "no signature"
            for repo in candidates {
                switch repo.authenticator!.verify(headers: headers, body: body) {
                case .accepted:
                    woken.append(repo.name)
                case .rejected(let why):
                    reason = why
                }
            }
            guard !woken.isEmpty else {
                metrics.webhookCounter("-", "rejected").increment()
                logger.warning("webhook rejected", metadata: ["reason": "\(reason)"])
                return json(.unauthorized, .error(reason))
            }
            for name in woken {
                metrics.webhookCounter(name, "accepted").increment()
                logger.info("webhook accepted; reconciling now", metadata: ["repo": "\(name)", "event": "\(event(headers))"])
                await repositories.first { $0.name == name }!.wake()
            }
            return json(.accepted, .triggered(woken))
        }
        router.post("/hooks/git/:repository") { request, context -> Response in
            let (headers, body) = try await read(request)
            let name = context.parameters.get("repository") ?? ""
            guard let repo = repositories.first(where: { $0.name.caseInsensitiveCompare(name) == .orderedSame }) else {
                metrics.webhookCounter("-", "unknown").increment()
                return json(.notFound, .error("no watched repository is named \(name.prefix(100))"))
            }
            guard let auth = repo.authenticator else {
                metrics.webhookCounter(repo.name, "rejected").increment()
                return json(.notFound, .error("repository \(repo.name) has no webhook secret configured"))
            }
            switch auth.verify(headers: headers, body: body) {
            case .accepted(let sender):
                metrics.webhookCounter(repo.name, "accepted").increment()
                logger.info("webhook accepted; reconciling now", metadata: ["repo": "\(repo.name)", "sender": "\(sender)", "event": "\(event(headers))"])
                await repo.wake()
                return json(.accepted, .triggered([repo.name]))
            case .rejected(let why):
                metrics.webhookCounter(repo.name, "rejected").increment()
                logger.warning("webhook rejected", metadata: ["repo": "\(repo.name)", "reason": "\(why)"])
                return json(.unauthorized, .error(why))
            }
        }
    }

    /// Serves `app` while `work` runs, then shuts the server down gracefully (requests in flight finish):
    /// cancelling it instead would log a CancellationError at error level on every clean stop. If the server
    /// fails (the port is taken), `stop` ends the work and the error is thrown.
    public static func serve(
        _ apps: [any Service], while work: @escaping @Sendable () async -> Void,
        stop: @escaping @Sendable () async -> Void, logger: Logger
    ) async throws {
        let services = ServiceGroup(configuration: .init(services: apps, logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do { try await services.run() } catch {
                    await stop()
                    throw error
                }
            }
            await work()
            await services.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }

    static func read(_ request: Request) async throws -> ([String: String], [UInt8]) {
        let body = try await request.body.collect(upTo: maxBody)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        return (headers, body.getBytes(at: body.readerIndex, length: body.readableBytes) ?? [])
    }

    static func event(_ headers: [String: String]) -> String {
        headers["x-github-event"] ?? headers["x-gitlab-event"] ?? "-"
    }

    static func json(_ status: HTTPResponse.Status, _ reply: WebhookReply) -> Response {
        let data = (try? KilnJSON.encoder().encode(reply)) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: Array(data) + [0x0A])))
    }
}

/// What `/readyz` answers.
public struct Readiness: Sendable {
    public var storeError: String?
    public var repositories: [RepositoryHealth]

    public init(storeError: String?, repositories: [RepositoryHealth]) {
        self.storeError = storeError
        self.repositories = repositories
    }

    public var ready: Bool { storeError == nil && repositories.allSatisfy { $0.lastSync != nil } }

    public var json: String {
        let data = (try? KilnJSON.encoder().encode(ReadinessDocument(self))) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// Readiness of a controller group over the core's store: the store must answer a trivial read.
    public static func check(_ group: ControllerGroup, core: KilnCore) async -> Readiness {
        var storeError: String?
        do { try await core.ping() } catch { storeError = "\(error)" }
        return Readiness(storeError: storeError, repositories: await group.health())
    }
}

/// `/readyz`'s body.
struct ReadinessDocument: Encodable {
    struct Repository: Encodable {
        var name: String
        var synced: Bool
        var lastSync: String?
        var lastError: String?
    }
    var ready: Bool
    var store: String
    var repositories: [Repository]

    init(_ r: Readiness) {
        let f = ISO8601DateFormatter()
        ready = r.ready
        store = r.storeError ?? "ok"
        repositories = r.repositories.map {
            Repository(name: $0.name, synced: $0.lastSync != nil, lastSync: $0.lastSync.map(f.string), lastError: $0.lastError)
        }
    }
}

/// What a webhook request is answered with.
enum WebhookReply: Encodable {
    case error(String)
    /// A reconcile was triggered for these repositories.
    case triggered([String])

    enum CodingKeys: String, CodingKey { case error, reconcile, repositories }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .error(let m): try c.encode(m, forKey: .error)
        case .triggered(let names):
            try c.encode("triggered", forKey: .reconcile)
            try c.encode(names.joined(separator: ","), forKey: .repositories)
        }
    }
}
