import ArgumentParser
import Foundation
import KilnBuild
import KilnConfig
import KilnCore
import KilnStore
import KilnSystem
import KilnTemplates

/// What a command needs to touch Kiln's state: paths and the open store, reached through the core.
struct KilnContext {
    let paths: KilnPaths
    /// The store behind the core (SQLite in the data directory); commands go through `core`.
    let store: any ResourceStore

    let configuration: KilnConfiguration?

    /// Opens the store in the environment's data directory.
    init(_ env: KilnEnvironment) throws(CLIError) {
        configuration = env.configuration
        paths = env.paths
        do {
            store = try KilnDatabase(path: paths.database)
        } catch {
            throw CLIError.message("\(error)")
        }
    }

    /// The core over this context's store, with default identities and regions (commands that build read the
    /// configured ones: `Template.core`).
    var core: KilnCore {
        KilnCore(
            paths: paths, store: store, artifactPolicy: configuration?.artifactPolicy ?? .untrusted,
            buildNetwork: configuration?.buildNetwork ?? .automatic(), retention: retention)
    }

    /// The configuration's `retention`, else the defaults.
    var retention: RetentionSettings {
        guard let c = configuration else { return RetentionSettings() }
        return RetentionSettings(runImages: c.retentionRunImages, galleryVersions: c.retentionGalleryVersions)
    }
}

/// `1m32s`, `14.8s`.
func formatDuration(_ d: Duration) -> String {
    let s = d.inSeconds
    if s < 60 { return String(format: "%.1fs", s) }
    return "\(Int(s) / 60)m\(String(format: "%02d", Int(s) % 60))s"
}

func seconds(_ d: Duration) -> Double {
    d.inSeconds
}

extension HyperVGeneration: ExpressibleByArgument {
    public init?(argument: String) { self.init(caseInsensitiveArgument: argument) }
}
extension OSType: ExpressibleByArgument {
    public init?(argument: String) { self.init(caseInsensitiveArgument: argument) }
}

extension AIBEnum {
    /// Command-line values match case-insensitively (`v2`, `V2`, `linux`).
    init?(caseInsensitiveArgument argument: String) {
        guard let v = Self.matching(argument) else { return nil }
        self = v
    }
}
