import Foundation
import Hummingbird
import KilnGitOps
import Logging

/// The HTTP side of the controller: `POST /hooks/git` (any of the signatures `WebhookAuthenticator` knows)
/// wakes the reconcile loop; `GET /healthz` answers while the process serves. Issue 7 adds the AIB REST API
/// and /metrics to this target.
public enum WebhookServer {
    /// Largest body accepted: GitHub caps payloads at 25 MB; templates never travel in a webhook.
    public static let maxBody = 25 << 20

    /// `host:port` → Hummingbird's bind address; validated at the edge.
    public static func address(_ listen: String) throws -> BindAddress {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw WebhookError.invalid("--webhook-listen \(listen): write it as HOST:PORT, like 0.0.0.0:8080")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return .hostname(host.isEmpty ? "0.0.0.0" : host, port: port)
    }

    /// An application that calls `onValid` for each genuine delivery (after answering 202).
    public static func application(listen: String, authenticator: WebhookAuthenticator, logger: Logger,
                                   onValid: @escaping @Sendable (String) async -> Void,
                                   onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let router = Router()
        router.get("/healthz") { _, _ in "ok\n" }
        router.post("/hooks/git") { request, _ -> Response in
            let body = try await request.body.collect(upTo: maxBody)
            let bytes = body.getBytes(at: body.readerIndex, length: body.readableBytes) ?? []
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName] = field.value }
            switch authenticator.verify(headers: headers, body: bytes) {
            case .accepted(let sender):
                logger.info("webhook accepted; reconciling now", metadata: ["sender": "\(sender)", "event": "\(headers["x-github-event"] ?? headers["x-gitlab-event"] ?? "-")"])
                await onValid(sender)
                return Response(status: .accepted, body: .init(byteBuffer: ByteBuffer(string: "{\"reconcile\":\"triggered\"}\n")))
            case .rejected(let why):
                logger.warning("webhook rejected", metadata: ["reason": "\(why)"])
                return Response(status: .unauthorized, body: .init(byteBuffer: ByteBuffer(string: "{\"error\":\"\(why)\"}\n")))
            }
        }
        return Application(router: router, configuration: .init(address: try address(listen), serverName: "kiln"),
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }
}
