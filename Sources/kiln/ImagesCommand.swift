import ArgumentParser
import Foundation
import KilnCore
import KilnBuild
import KilnStore
import KilnSystem
import KilnTemplates

struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the local image catalog (the source images templates build from).",
        subcommands: [Bootstrap.self, Refresh.self, Import.self, List.self, Show.self, Delete.self, Boot.self, Managed.self, Lineage.self]
    )
}

extension Images {
    struct Bootstrap: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a bootable Debian 12 image from Debian's packages and add it to the catalog.",
            discussion: """
                Publisher Debian, offer debian-12, sku 12 (Gen1, BIOS) or 12-gen2 (Gen2, UEFI); the version comes \
                from the build date (YYYY.MMDD.N). The same inputs reuse the cached build unless --force. Needs root.
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The distribution to bootstrap (only debian-12).") var distribution: String
        @Option(help: "V1 (BIOS) or V2 (UEFI).") var generation: HyperVGeneration = .v1
        @Option(help: "Catalog version (x.y.z) instead of the date-derived one.") var version: String?
        @Flag(help: "Rebuild even when a cached build with the same inputs exists.") var force = false
        @Option(help: "Debian mirror (default: \(DebianRecipe.defaultMirror)).") var mirror: String?

        func validate() throws {
            guard distribution == "debian-12" else { throw ValidationError("only debian-12 can be bootstrapped") }
            if let version, ImageVersion(version) == nil { throw ValidationError("--version must be x.y.z") }
        }

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let service = ctx.core.images
            let start = ContinuousClock.now
            let quiet = env.output == .json
            do {
                let outcome = try await service.bootstrapDebian12(
                    generation: generation, version: version.flatMap(ImageVersion.init), force: force,
                    mirror: mirror
                ) { line in if !quiet { printError("==> \(line)") } }
                let took = ContinuousClock.now - start
                switch env.output {
                case .json:
                    struct Out: Encodable { var image: CatalogImage; var seconds: Double; var reusedCache: Bool; var alreadyInCatalog: Bool }
                    try printJSON(
                        Out(image: outcome.image, seconds: seconds(took), reusedCache: outcome.reusedCache, alreadyInCatalog: outcome.alreadyInCatalog))
                case .text:
                    let how = outcome.alreadyInCatalog ? "already in the catalog" : (outcome.reusedCache ? "from the bootstrap cache" : "built")
                    print("\(outcome.image.urn) (\(outcome.image.hyperVGeneration.rawValue)) \(how) in \(formatDuration(took))")
                }
            } catch {
                throw CLIError.line("kiln images bootstrap: \(error)")
            }
        }
    }

    struct Import: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Import a qcow2, raw or VHD disk into the catalog (stored as qcow2).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The disk image file.") var file: String
        @Option var publisher: String
        @Option var offer: String
        @Option var sku: String
        @Option(help: "x.y.z") var version: String
        @Option(name: .customLong("os-type"), help: "Linux or Windows.") var osType: OSType = .linux
        @Option(help: "V1 (BIOS) or V2 (UEFI).") var generation: HyperVGeneration = .v1

        func validate() throws {
            if ImageVersion(version) == nil { throw ValidationError("--version must be x.y.z (three numbers)") }
        }

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let service = ctx.core.images
            let start = ContinuousClock.now
            do {
                let image = try await service.importImage(
                    file: file, publisher: publisher, offer: offer, sku: sku, version: ImageVersion(version)!,
                    osType: osType, generation: generation)
                switch env.output {
                case .json: try printJSON(image)
                case .text: print("imported \(image.urn) from \(image.provenance.originalFormat ?? "?") in \(formatDuration(ContinuousClock.now - start))")
                }
            } catch {
                throw CLIError.line("kiln images import: \(error)")
            }
        }
    }

    struct List: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "List the catalog.")
        @OptionGroup var global: GlobalOptions

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let images = try await ctx.core.images.list()
            switch env.output {
            case .json: try printJSON(images)
            case .text:
                if images.isEmpty {
                    print("the catalog is empty; add an image with `kiln images bootstrap debian-12` or `kiln images import`")
                    return
                }
                let rows = images.map {
                    [
                        $0.publisher, $0.offer, $0.sku, $0.version.description, $0.osType.rawValue, $0.hyperVGeneration.rawValue,
                        "\($0.virtualSize >> 30) GiB", "\($0.fileSize >> 20) MiB", $0.provenance.kind.rawValue
                    ]
                }
                printTable(["PUBLISHER", "OFFER", "SKU", "VERSION", "OS", "GEN", "SIZE", "ON DISK", "FROM"], rows)
            }
        }
    }

    struct Show: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Show one image (publisher:offer:sku:version, version may be latest).")
        @OptionGroup var global: GlobalOptions
        @Argument var urn: String

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            do {
                let image = try await ctx.core.images.find(urn: urn)
                switch env.output {
                case .json: try printJSON(image)
                case .text:
                    print(
                        """
                        image:        \(image.urn)
                        os:           \(image.osType.rawValue), \(image.hyperVGeneration.rawValue), \(image.architecture)
                        disk:         \(ctx.paths.absolute(image.path)) (\(image.format), \(image.virtualSize >> 20) MiB virtual, \(image.fileSize >> 20) MiB on disk)
                        sha256:       \(image.sha256)
                        created:      \(ISO8601DateFormatter().string(from: image.createdAt))
                        provenance:   \(image.provenance.kind.rawValue)\(image.provenance.importedFrom.map { " from \($0) (\(image.provenance.originalFormat ?? ""))" } ?? "")\(image.provenance.packages.map { " \(image.provenance.suite ?? "") from \(image.provenance.mirror ?? ""): \($0.joined(separator: " "))" } ?? "")
                        """)
                }
            } catch {
                throw CLIError.line("kiln images show: \(error)")
            }
        }
    }

    struct Delete: KilnCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an image from the catalog and delete its disk.")
        @OptionGroup var global: GlobalOptions
        @Argument var urn: String

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            do {
                let image = try await ctx.core.images.delete(urn: urn)
                switch env.output {
                case .json: try printJSON(image)
                case .text: print("deleted \(image.urn)")
                }
            } catch {
                throw CLIError.line("kiln images delete: \(error)")
            }
        }
    }

    struct Boot: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot an image in a throwaway VM, log in over SSH with a fresh key and run a command.",
            discussion: """
                Boots a catalog image by URN, or any qcow2 disk with --disk (a run's captured image, say). Prints the                 boot-to-SSH time. The image itself is not modified (the VM writes to an overlay).
                """
        )
        @OptionGroup var global: GlobalOptions
        @Argument(help: "publisher:offer:sku:version (version may be latest).") var urn: String?
        @Option(help: "A qcow2 disk to boot instead of a catalog image.") var disk: String?
        @Option(help: "With --disk: V1 (BIOS) or V2 (UEFI).") var generation: HyperVGeneration = .v1
        @Option(help: "The command to run over SSH.") var command = "uname -a"

        func validate() throws {
            guard (urn == nil) != (disk == nil) else { throw ValidationError("give either an image URN or --disk PATH") }
        }

        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            do {
                let (path, gen, label): (String, HyperVGeneration, String)
                if let urn {
                    let image = try await ctx.core.images.find(urn: urn)
                    (path, gen, label) = (ctx.paths.absolute(image.path), image.hyperVGeneration, image.urn)
                } else {
                    let d = URL(fileURLWithPath: disk!).standardizedFileURL.path
                    guard FileManager.default.fileExists(atPath: d) else {
                        throw CLIError.line("kiln images boot: \(d): no such file")
                    }
                    (path, gen, label) = (d, generation, d)
                }
                let outcome = try await BootCheck(paths: ctx.paths).run(disk: path, generation: gen, command: command)
                if let notice = outcome.acceleratorNotice { printError(notice) }
                switch env.output {
                case .json:
                    struct Out: Encodable { var image: String; var accelerator: String; var bootToSSHSeconds: Double; var status: Int32; var output: String }
                    try printJSON(
                        Out(
                            image: label, accelerator: outcome.accelerator.rawValue, bootToSSHSeconds: seconds(outcome.bootToSSH),
                            status: outcome.status, output: outcome.output))
                case .text:
                    print(outcome.output, terminator: outcome.output.hasSuffix("\n") ? "" : "\n")
                    printError("\(label): SSH after \(formatDuration(outcome.bootToSSH)) (\(outcome.accelerator.rawValue))")
                }
                if outcome.status != 0 { throw ExitCode(outcome.status) }
            } catch let e as ExitCode {
                throw e
            } catch let e as CLIError {
                throw e
            } catch {
                throw CLIError.line("kiln images boot: \(error)")
            }
        }
    }
}

/// A plain aligned table.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
    }
    print(line(header))
    for r in rows { print(line(r)) }
}

extension Images {
    struct Managed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Managed images made by ManagedImage distribution (usable as ManagedImage sources).",
            subcommands: [ManagedList.self, ManagedShow.self]
        )
    }

    struct ManagedList: KilnCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List managed images.")
        @OptionGroup var global: GlobalOptions
        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let all = try await ctx.core.managedImages()
            switch env.output {
            case .json: try printJSON(ListDocument(value: all.map { ManagedImageDocument($0, paths: ctx.paths) }))
            case .text:
                if all.isEmpty {
                    printError("no managed images")
                } else {
                    printTable(
                        ["ID", "LOCATION", "OS", "GEN", "CREATED"],
                        all.map { [$0.id, $0.location, $0.osType.rawValue, $0.hyperVGeneration.rawValue, shortDate($0.createdAt)] })
                }
            }
        }
    }

    struct ManagedShow: KilnCommand {
        static let configuration = CommandConfiguration(
            commandName: "show", abstract: "Show a managed image, its metadata and the history of what it replaced.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The managed image id.") var id: String
        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            guard let m = try await ctx.core.managedImage(id: id) else {
                throw CLIError.message("ResourceNotFound: no managed image \(id)")
            }
            try printJSON(ManagedImageDocument(m, paths: ctx.paths))
        }
    }

    struct Lineage: KilnCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print what an image was built from, back to the catalog.",
            discussion: """
                ID is a gallery image version id (…/versions/latest resolves first), a managed image id, a catalog URN, \
                or a template (name or id): its newest successful run's first output. Prints the chain newest first: \
                debian-12-web 1.0.3 ← debian-12-base 1.0.7 ← Debian:debian-12:12-gen2:2026.1208.0, an image that is \
                gone marked (deleted). --output json lists each link with its sha256, template and run.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "An image id, a catalog URN or a template.") var id: String
        func run(_ env: KilnEnvironment) async throws {
            let ctx = try KilnContext(env)
            let chain: LineageChain
            do { chain = try await ctx.core.lineage(of: id) } catch { throw CLIError.core(error) }
            switch env.output {
            case .json: try printJSON(chain)
            case .text:
                print(chain.text)
                if env.verbose {
                    for l in chain.links {
                        let built = l.template.map { " built by \(ResourceID.parse($0)?.name ?? $0), run \(l.runId ?? "?")" } ?? ""
                        print("  \(l.name): \(l.kind.rawValue) \(l.id)\(l.sha256.map { " sha256 \($0)" } ?? "")\(built)")
                    }
                }
            }
        }
    }
}
