import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnStore
import KilnTemplates

struct Gallery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compute Gallery image definitions and their versions.",
        discussion: """
            A definition (publisher/offer/sku, OS type, generation) must exist before a template distributes to it; \
            versions are made by runs and stored per region under <data>/regions/<region>/galleries/.
            """,
        subcommands: [CreateDefinition.self, List.self, Show.self, Versions.self, DeleteVersion.self]
    )

    struct CreateDefinition: KilnCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-definition",
            abstract: "Create a gallery image definition (or several, from a galleries/*.yaml file).",
            discussion:
                "ID is /subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/galleries/GALLERY/images/NAME. Creating one that exists with the same properties is a no-op; with different ones, an error."
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The definition's resource id.") var id: String?
        @Option(help: "A galleries/*.yaml file instead of an id and options.") var file: String?
        @Option(help: "Publisher of the image identifier.") var publisher: String?
        @Option(help: "Offer of the image identifier.") var offer: String?
        @Option(help: "SKU of the image identifier.") var sku: String?
        @Option(name: .customLong("os-type"), help: "Linux or Windows.") var osType: OSType = .linux
        @Option(help: "V1 or V2.") var generation: HyperVGeneration = .v1
        @Option(help: "A description.") var description: String?
        @Option(name: .customLong("end-of-life"), help: "End-of-life date (ISO 8601).") var endOfLife: String?

        func validate() throws {
            if file == nil {
                guard let id else { throw ValidationError("give a definition id or --file") }
                guard case .success = ResourceID.parse(id, as: ResourceID.galleryImage) else {
                    throw ValidationError("\(id) is not a gallery image definition id (…/providers/Microsoft.Compute/galleries/G/images/NAME)")
                }
                guard publisher != nil, offer != nil, sku != nil else { throw ValidationError("--publisher, --offer and --sku are required") }
            } else if id != nil {
                throw ValidationError("give either an id or --file, not both")
            }
        }

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            var defs: [GalleryImageDefinition] = []
            if let file {
                let loaded = try TemplateScanner().scan([file])
                for d in loaded.flatMap(\.diagnostics) { printError(d.description) }
                guard loaded.allSatisfy(\.isValid) else { throw ExitCode(1) }
                defs = loaded.flatMap(\.galleryDefinitions)
                guard !defs.isEmpty else {
                    throw CLIError.message("\(file) holds no gallery image definition")
                }
            } else {
                let rid = ResourceID.parse(id!)!
                defs = [
                    GalleryImageDefinition(
                        id: id!, gallery: rid.segments[0].name, name: rid.name, location: nil, osType: osType, osState: .generalized,
                        hyperVGeneration: generation, publisher: publisher!, offer: offer!, sku: sku!,
                        description: description, endOfLifeDate: endOfLife)
                ]
            }
            var out: [GalleryImageDefinitionDocument] = []
            let core = ctx.core
            for d in defs {
                let record: GalleryDefinitionRecord
                let change: KilnCore.DefinitionChange
                do {
                    (record, change) = try await core.ensureGalleryDefinition(d)
                } catch {
                    throw CLIError.message("\(error)")
                }
                if env.output == .text {
                    print(
                        change == .created
                            ? "created \(d.id) (\(d.osType.rawValue), \(d.hyperVGeneration.rawValue), \(d.publisher)/\(d.offer)/\(d.sku))" : "\(d.id): exists")
                }
                out.append(GalleryImageDefinitionDocument(record))
            }
            if env.output == .json { if out.count == 1 { try printJSON(out[0]) } else { try printJSON(ListDocument(value: out)) } }
        }
    }

    struct List: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "List gallery image definitions with their latest version.")
        @OptionGroup var global: GlobalOptions

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let defs = try await ctx.core.galleryDefinitions()
            var rows: [[String]] = []
            var json: [GalleryImageDefinitionDocument] = []
            for d in defs {
                let versions = try await ctx.core.galleryVersions(definitionId: d.id)
                let latest = versions.first { !$0.excludeFromLatest }
                rows.append([d.id, d.osType.rawValue, d.hyperVGeneration.rawValue, String(versions.count), latest?.version.description ?? "-"])
                json.append(GalleryImageDefinitionDocument(d))
            }
            switch env.output {
            case .json: try printJSON(ListDocument(value: json))
            case .text:
                if rows.isEmpty {
                    printError("no gallery image definitions; create one with: kiln gallery create-definition ID ...")
                } else {
                    printTable(["DEFINITION", "OS", "GEN", "VERSIONS", "LATEST"], rows)
                }
            }
        }
    }

    struct Show: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Show a gallery image definition and its versions.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The definition's resource id.") var id: String

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            guard let d = try await ctx.core.galleryDefinition(id: id) else {
                throw CLIError.message("ResourceNotFound: no gallery image definition \(id)")
            }
            let versions = try await ctx.core.galleryVersions(definitionId: d.id)
            switch env.output {
            case .json: try printJSON(GalleryImageDefinitionDocument(d, versions: versions))
            case .text:
                print("\(d.id)")
                print("  \(d.osType.rawValue), \(d.hyperVGeneration.rawValue), \(d.osState.rawValue); \(d.publisher)/\(d.offer)/\(d.sku)")
                if let v = d.description { print("  \(v)") }
                printVersions(versions)
            }
        }
    }

    struct Versions: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "List a definition's versions, newest first, with their regions.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The definition's resource id.") var id: String

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            guard try await ctx.core.galleryDefinition(id: id) != nil else {
                throw CLIError.message("ResourceNotFound: no gallery image definition \(id)")
            }
            let versions = try await ctx.core.galleryVersions(definitionId: id)
            switch env.output {
            case .json: try printJSON(ListDocument(value: versions.map(GalleryImageVersionDocument.init)))
            case .text: printVersions(versions)
            }
        }
    }

    struct DeleteVersion: KilnCommand {
        static let configuration = CommandConfiguration(
            commandName: "delete-version", abstract: "Delete a gallery image version and its replicas in every region.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The version's resource id (…/images/NAME/versions/x.y.z).") var id: String

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let parts = id.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count > 2, parts[parts.count - 2].lowercased() == "versions", let v = ImageVersion(String(parts.last!)) else {
                throw CLIError.message("\(id) is not a gallery image version id")
            }
            let defId = parts.dropLast(2).joined(separator: "/")
            do {
                try await ctx.core.deleteGalleryVersion(definitionId: defId, version: v)
            } catch {
                throw CLIError.message("\(error)")
            }
            if env.output == .text { print("deleted \(id)") } else { try printJSON(DeletedDocument(id)) }
        }
    }
}

func printVersions(_ versions: [GalleryVersionRecord]) {
    if versions.isEmpty {
        print("  no versions yet")
        return
    }
    printTable(
        ["VERSION", "REGIONS", "LATEST", "CREATED", "FROM RUN"],
        versions.map { v in
            [
                v.version.description, v.regions.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " "),
                v.excludeFromLatest ? "excluded" : "yes", shortDate(v.createdAt), v.metadata["runId"] ?? "-"
            ]
        })
}
