import ArgumentParser
import Foundation
import KilnTemplates
import KilnBuild
import KilnConfig
import KilnSystem

/// `kiln config check`: the configuration file as Kiln reads it.
struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check Kiln's configuration file.",
        subcommands: [Check.self]
    )

    struct Check: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration and print the effective settings, secrets masked.",
            discussion: """
                Reads --config (or KILN_CONFIG). Every problem is printed as FILE:LINE: $.key.path: message and the \
                exit status is 1. Files the settings point at (token files, keys, webhook secrets) are checked for \
                readability; a missing one is a warning.
                """
        )
        @OptionGroup var global: GlobalOptions

        func run(_ env: KilnEnvironment) async throws {
            guard let config = env.configuration else {
                throw CLIError.message("no configuration file: give --config FILE or set KILN_CONFIG")
            }
            let effective = config.effective(dataDir: env.paths.dataDir)
            var warnings: [String] = []
            for identity in config.identities.identities {
                for c in identity.credentials {
                    if case .file(let p) = c.secret, !FileManager.default.isReadableFile(atPath: p) {
                        warnings.append("identity \(identity.name): tokenFile \(p) is not readable")
                    }
                    if case .environment(let n) = c.secret, ProcessInfo.processInfo.environment[n] == nil {
                        warnings.append("identity \(identity.name): tokenEnv \(n) is not set")
                    }
                }
            }
            for r in config.repositories {
                for (what, p) in [
                    ("tokenFile", r.tokenFile), ("sshKeyFile", r.sshKeyFile), ("knownHosts", r.knownHosts), ("webhookSecretFile", r.webhookSecretFile)
                ] {
                    if let p, !FileManager.default.isReadableFile(atPath: p) { warnings.append("repository \(r.name): \(what) \(p) is not readable") }
                }
                if let n = r.tokenEnv, ProcessInfo.processInfo.environment[n] == nil { warnings.append("repository \(r.name): tokenEnv \(n) is not set") }
            }
            switch env.output {
            case .json:
                var j = effective.object ?? [:]
                j["warnings"] = .array(warnings.map(JSONValue.string))
                try printJSON(JSONValue.object(j))
            case .text:
                print("\(config.file ?? "?"): valid")
                printSettings(effective.object ?? [:], indent: "  ")
                for w in warnings { printError("warning: \(w)") }
            }
        }

        /// The settings as an indented tree: `key: value`, lists of objects as `- first: value` with the rest
        /// under it.
        func printSettings(_ value: [String: JSONValue], indent: String) {
            for key in value.keys.sorted() {
                switch value[key]! {
                case .object(let d):
                    if d.isEmpty { print("\(indent)\(key): {}"); continue }
                    print("\(indent)\(key):")
                    printSettings(d, indent: indent + "  ")
                case .array(let list) where list.allSatisfy({ $0.object != nil }):
                    print("\(indent)\(key):\(list.isEmpty ? " []" : "")")
                    for item in list.compactMap(\.object) { printListItem(item, indent: indent) }
                case .array(let list):
                    print("\(indent)\(key): [\(list.map(\.scalarText).joined(separator: ", "))]")
                case let scalar:
                    print("\(indent)\(key): \(scalar.scalarText)")
                }
            }
        }

        func printListItem(_ item: [String: JSONValue], indent: String) {
            let keys = item.keys.sorted()
            guard let first = keys.first else { return }
            switch item[first]! {
            case .object, .array:
                print("\(indent)  -")
                printSettings(item, indent: indent + "    ")
            case let scalar:
                print("\(indent)  - \(first): \(scalar.scalarText)")
                printSettings(item.filter { $0.key != first }, indent: indent + "    ")
            }
        }
    }
}

extension GlobalOptions {
    /// The configuration file named by --config or KILN_CONFIG, or nil when neither is given. A file that
    /// does not check throws every problem, one line each (`KilnEnvironment` loads it, once).
    func loadConfiguration() throws(CLIError) -> KilnConfiguration? {
        guard let path = config ?? ProcessInfo.processInfo.environment["KILN_CONFIG"].flatMap({ $0.isEmpty ? nil : $0 }) else { return nil }
        do {
            return try KilnConfiguration.load(path: path)
        } catch {
            throw CLIError.lines(error.problems.map(\.description))
        }
    }

    /// The data directory: --data-dir, else KILN_DATA_DIR, else the configuration's dataDir, else the default.
    func resolvePaths(_ config: KilnConfiguration?) -> KilnPaths {
        if dataDir == nil, ProcessInfo.processInfo.environment["KILN_DATA_DIR"]?.isEmpty ?? true, let d = config?.dataDir {
            return KilnPaths.resolve(dataDir: d)
        }
        return KilnPaths.resolve(dataDir: dataDir)
    }
}
