import Foundation
import Hummingbird
import HummingbirdTLS
import NIOSSL
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

    /// TLS for the listener: a PEM certificate chain and key.
    public struct TLSFiles: Sendable, Hashable {
        public var certificate: String
        public var key: String
        public init(certificate: String, key: String) {
            self.certificate = certificate
            self.key = key
        }
    }

    /// The server's TLS configuration, read from the files now (a missing or unreadable file fails the start).
    public static func tlsConfiguration(_ files: TLSFiles) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(files.certificate).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: files.key, format: .pem)
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
    }

    /// `/healthz` and the API, over HTTPS with `tls` (read now: a bad file fails here), else plain HTTP.
    public static func application(
        listen: ListenAddress, api: ImageTemplateAPI, access: APIAccess, tls files: TLSFiles? = nil, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let tls = try files.map(tlsConfiguration)
        let router = Router()
        router.add(middleware: APIMiddleware(api: api, access: access, scheme: tls == nil ? "http" : "https"))
        router.get("/healthz") { _, _ in "ok\n" }
        return Application(
            router: router, server: try tls.map { try .tls(.http1(), tlsConfiguration: $0) } ?? .http1(),
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "kiln"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }
}
