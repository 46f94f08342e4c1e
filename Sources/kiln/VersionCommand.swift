import ArgumentParser
import KilnGit
import KilnTemplates

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Kiln's version and the linked libgit2's version and features."
    )

    @OptionGroup var global: GlobalOptions

    struct Info: Encodable {
        var kiln: String
        var templateApiVersion: String
        var libgit2: String
        var libgit2Features: [String]
    }

    func run() throws {
        let info = Info(
            kiln: Kiln.version, templateApiVersion: APIVersion.latest.description,
            libgit2: LibGit2.version.description, libgit2Features: LibGit2.features.names)
        switch global.output {
        case .json: try printJSON(info)
        case .text:
            print("kiln \(info.kiln) (image templates up to api-version \(info.templateApiVersion))")
            print("libgit2 \(info.libgit2) (\(info.libgit2Features.joined(separator: ", ")))")
        }
    }
}
