import ArgumentParser
import Foundation
import KilnCore

/// The `kiln` command. Thin: parse, call the library, print.
@main
struct Kiln: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Build golden VM images from Azure VM Image Builder templates, on your own machines.",
        discussion: """
            Kiln speaks AIB's image template language (api-version 2025-10-01 and older), builds in QEMU \
            VMs over SSH, and reconciles templates from a git repository.
            """,
        version: version,
        subcommands: [
            Validate.self, Template.self, Images.self, Gallery.self, PlanCommand.self, Reconcile.self, ControllerCommand.self,
            ServeCommand.self, StatusCommand.self, HistoryCommand.self, GCCommand.self, Config.self, Version.self
        ]
    )

    /// Runs the command with Kiln's exit-code convention: usage errors exit 2 (not sysexits' 64). A `KilnCommand`
    /// runs in the environment made here, once; the `CLIError` it ends with is printed here, and exits 1.
    static func main() async {
        // Everything Kiln writes (staged artifacts, logs, keys, disks, VHDs) is for Kiln's user alone unless
        // made otherwise on purpose; workers and QEMU inherit this.
        umask(0o077)
        do {
            var command = try parseAsRoot()
            if let kilnCommand = command as? any KilnCommand {
                let env = try KilnEnvironment(kilnCommand.global, checkConfiguration: type(of: kilnCommand).checksConfiguration)
                try await kilnCommand.run(env)
            } else if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            // A command's error, printed once here.
            error.report()
            Foundation.exit(error.status)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Kiln's data directory.", valueName: "DIR"))
    var dataDir: String?

    @Option(name: .customLong("config"), help: ArgumentHelp("Kiln's configuration file (else KILN_CONFIG); flags override it.", valueName: "FILE"))
    var config: String?

    @Option(name: .long, help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(name: .long, help: "Print more detail.")
    var verbose = false
}

/// Writes a line to standard error.
func printError(_ s: String) {
    fflush(nil)  // print() buffers stdout; keep the summary after the lines it sums up
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// Encodes a value as pretty JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    FileHandle.standardOutput.write(try KilnJSON.encoder(pretty: true).encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}
