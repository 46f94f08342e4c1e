// kiln serve: the AIB REST API, for the Azure SDKs, the Azure CLI's generic commands and curl.
import ArgumentParser
import Foundation
import KilnConfig
import KilnCore
import KilnServer
import KilnSystem
import Logging
import ServiceLifecycle

struct ServeCommand: KilnCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve Azure VM Image Builder's REST API (api-version 2025-10-01 and older) over this data directory.",
        discussion: """
            Answers imageTemplates (list, get, PUT, PATCH, DELETE, run, cancel, runOutputs), triggers and the \
            operation-status resources ARM clients poll, with bearer tokens from server.api.tokens in the \
            configuration (each a name, a file holding the token, a role — Reader or Contributor — and scopes). \
            Runs are executed by background workers, as `kiln template run` does. HTTPS with server.api.tls \
            (certificate and key files); plain HTTP on a loopback address only, unless server.api.allowPlainHTTP is true.
            """
    )
    @OptionGroup var global: GlobalOptions
    @Option(
        help: ArgumentHelp("Listen here (default: the configuration's server.api.listen).", valueName: "HOST:PORT"),
        transform: { try ListenAddress(parsing: $0) })
    var listen: ListenAddress?
    @Option(help: "Runs executed at once by the background workers (default: the configuration's, else 1).") var parallelism: Int?

    func run(_ env: KilnEnvironment) async throws {
        let settings = env.configuration?.api ?? APISettings()
        guard let listen = listen ?? settings.listen else {
            throw ValidationError("give --listen HOST:PORT (or server.api.listen in the configuration)")
        }
        let core = try await Template.core(env)
        let paths = core.paths
        let parallelism = self.parallelism ?? env.configuration?.parallelism ?? 1
        let app = try Self.application(env, settings: settings, listen: listen, core: core, label: "kiln serve", extra: "; SIGTERM stops it") {
            do { try spawnWorker(env, paths: paths, parallelism: parallelism) } catch let e as CLIError { e.report() } catch {}
        }
        let services = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "kiln.server")))
        try await services.run()
    }

    /// The API's listener over `core`, checked against the settings (a listener off loopback needs TLS or
    /// `allowPlainHTTP`; tokens are required and read now). `kiln serve` and `kiln controller` (with `server.api`
    /// configured) both serve it; `launch` starts something that executes a queued run.
    static func application(
        _ env: KilnEnvironment, settings: APISettings, listen: ListenAddress, core: KilnCore, label: String, extra: String = "",
        launch: @escaping @Sendable () -> Void
    ) throws -> any Service {
        guard settings.tls != nil || APIServer.isLoopback(listen.host) || settings.allowPlainHTTP else {
            throw CLIError.message(
                "\(listen.host) is not a loopback address: the API would take bearer tokens over plain HTTP. Configure server.api.tls (certificate, key), listen on 127.0.0.1, or set server.api.allowPlainHTTP: true (behind a TLS proxy)"
            )
        }
        guard !settings.tokens.isEmpty else {
            throw CLIError.message("no API tokens are configured: add server.api.tokens (name, file, role, scopes) to the configuration file (--config)")
        }
        let access: APIAccess
        do {
            access = try APIAccess.load(
                settings.tokens.map { t in
                    APIAccess.TokenFile(
                        name: t.name, file: t.file, role: t.role == APISettings.Role.reader ? APIToken.Role.reader : .contributor, scopes: t.scopes)
                })
        } catch { throw CLIError.message("\(error)") }
        var api = ImageTemplateAPI(core: core, logger: Logger(label: "kiln.api"), artifactPolicy: core.artifactPolicy)
        api.onRunQueued = launch
        let scheme = settings.tls == nil ? "http" : "https"
        do {
            return try APIServer.application(
                listen: listen, api: api, access: access, tls: settings.tls.map { .init(certificate: $0.certificate, key: $0.key) },
                logger: Logger(label: "kiln.server"),
                onRunning: { port in
                    printError("\(label): AIB REST API on \(scheme)://\(listen.host):\(port) (\(access.tokens.count) token(s))\(extra)")
                })
        } catch {
            throw CLIError.message("server.api.tls: cannot use the certificate or key (\(error))")
        }
    }
}
