// What every command starts from, made once per invocation: the configuration, the paths, the output settings,
// logging; and the error a command ends with, printed once by `Kiln.main`.
import ArgumentParser
import Foundation
import KilnConfig
import KilnCore
import KilnSystem
import Logging

/// The configuration file (parsed once), the data directory, the output format and logging, for one invocation.
/// `Kiln.main` makes it before the command runs; a command that needs the store opens it from here
/// (`KilnContext`, `Template.core`).
struct KilnEnvironment: Sendable {
    /// The configuration named by --config or KILN_CONFIG; nil when neither is given.
    let configuration: KilnConfiguration?
    /// --data-dir, else KILN_DATA_DIR, else the configuration's dataDir, else the default.
    let paths: KilnPaths
    let output: GlobalOptions.OutputFormat
    let verbose: Bool
    /// --config as given (a background worker reads the same file; KILN_CONFIG it inherits).
    let configFile: String?

    /// Loads the configuration and starts logging. A configuration file that does not check throws its problems,
    /// one line each, unless `checkConfiguration` is false: then it is ignored, as for logging.
    init(_ global: GlobalOptions, checkConfiguration: Bool = true) throws(CLIError) {
        let loaded: KilnConfiguration?
        let problems: CLIError?
        do {
            loaded = try global.loadConfiguration()
            problems = nil
        } catch {
            loaded = nil
            problems = error
        }
        Self.bootstrapLogging(loaded, verbose: global.verbose)
        if checkConfiguration, let problems { throw problems }
        configuration = loaded
        paths = global.resolvePaths(loaded)
        output = global.output
        verbose = global.verbose
        configFile = global.config
    }

    /// Logs go to standard error in the configuration file's format and level (text and warning without one);
    /// `--verbose` means debug. Once per process: the logging system takes one bootstrap.
    static func bootstrapLogging(_ config: KilnConfiguration?, verbose: Bool) {
        guard !loggingStarted.testAndSet() else { return }
        let format = config?.logFormat ?? .text
        let level: Logger.Level = verbose ? .debug : (config?.logLevel.loggerLevel ?? .warning)
        LoggingSystem.bootstrap { label in KilnLogHandler(label: label, format: format, level: level) }
    }
}

/// Set by the first `KilnEnvironment.bootstrapLogging`.
private let loggingStarted = ManagedAtomicFlag()

/// A command that runs in a `KilnEnvironment`: `Kiln.main` makes the environment from `global` and calls
/// `run(_:)`.
protocol KilnCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    /// Whether a configuration file that does not check stops the command (the default), or is ignored.
    static var checksConfiguration: Bool { get }
    func run(_ env: KilnEnvironment) async throws
}

extension KilnCommand {
    static var checksConfiguration: Bool { true }
}

/// The error a command ends with. `Kiln.main` prints it once, to standard error, and exits with `status`.
enum CLIError: Error, Sendable {
    /// `kiln: MESSAGE`.
    case message(String)
    /// A core error: `kiln: CODE: message`, then the remedy in kiln's own commands.
    case core(CoreError)
    /// Lines printed as they are (a configuration file's problems, a message with its own prefix).
    case lines([String], status: Int32 = 1)

    /// One line printed as it is.
    static func line(_ text: String, status: Int32 = 1) -> CLIError { .lines([text], status: status) }

    /// What goes to standard error.
    var rendered: [String] {
        switch self {
        case .message(let m): return ["kiln: \(m)"]
        case .core(let e): return ["kiln: \(render(e))"]
        case .lines(let lines, _): return lines
        }
    }

    var status: Int32 {
        switch self {
        case .message, .core: return 1
        case .lines(_, let status): return status
        }
    }

    /// Prints the error to standard error.
    func report() {
        for line in rendered { printError(line) }
    }
}
