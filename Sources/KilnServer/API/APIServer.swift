import Foundation
import Hummingbird
import KilnCore
import KilnSystem
import Logging
import ServiceLifecycle

/// `kiln serve`: the AIB REST API on its own listener, with `/healthz`.
public enum APIServer {
    /// Whether `host` is a loopback address (plain HTTP is allowed there without asking).
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public static func application(
        listen: ListenAddress, api: ImageTemplateAPI, access: APIAccess, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: APIMiddleware(api: api, access: access, scheme: "http"))
        router.get("/healthz") { _, _ in "ok\n" }
        return Application(
            router: router, configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "kiln"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }
}
