// swift-tools-version:6.0
//
// Kiln — a self-hosted VM image builder that speaks Azure VM Image Builder's template language.
// Module layout and dependency direction: see DESIGN.md (shared) and README.md.
import PackageDescription

/// Kiln's own targets build with warnings as errors, so none creeps in; dependencies keep their own settings.
let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kiln", targets: ["kiln"]),
        .executable(name: "kiln-bench", targets: ["KilnBench"]),
        .library(name: "KilnTemplates", targets: ["KilnTemplates"]),
        .library(name: "KilnSystem", targets: ["KilnSystem"]),
        .library(name: "KilnStore", targets: ["KilnStore"]),
        .library(name: "KilnBuild", targets: ["KilnBuild"]),
        .library(name: "KilnGit", targets: ["KilnGit"]),
        .library(name: "KilnDistribute", targets: ["KilnDistribute"]),
        .library(name: "KilnCore", targets: ["KilnCore"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.20.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0")
    ],
    targets: [
        // libgit2 from Debian's libgit2-dev, found through pkg-config.
        .systemLibrary(
            name: "CLibGit2",
            pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]
        ),
        // The AIB template model, decoding (JSON, YAML, ARM deployment templates), validation, content hash.
        .target(
            name: "KilnTemplates",
            dependencies: [
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto")
            ],
            swiftSettings: strict
        ),
        // Host utilities every layer below the core shares: processes (posix_spawn), disk tools (qemu-img), paths,
        // background processes.
        .target(
            name: "KilnSystem",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // Persistence: SQLite through GRDB (WAL).
        .target(
            name: "KilnStore",
            dependencies: [
                "KilnTemplates",
                .product(name: "GRDB", package: "GRDB.swift")
            ],
            swiftSettings: strict
        ),
        // Source images, the build VM (QEMU, KVM or TCG), the SSH communicator, bootstrap and import.
        .target(
            name: "KilnBuild",
            dependencies: [
                "KilnSystem",
                "KilnTemplates",
                "KilnStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // Distribution: regions, managed images, the Compute Gallery (versions, replicas), fixed VHDs.
        .target(
            name: "KilnDistribute",
            dependencies: [
                "KilnSystem",
                "KilnTemplates",
                "KilnStore",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // The orchestration core: template resources, staging, runs, the worker pool, crash recovery.
        .target(
            name: "KilnCore",
            dependencies: [
                "KilnSystem",
                "KilnTemplates",
                "KilnStore",
                "KilnBuild",
                "KilnDistribute",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // A small Swift layer over libgit2.
        .target(
            name: "KilnGit",
            dependencies: ["CLibGit2", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // GitOps: desired state from a commit, the reconciler, the status writer.
        .target(
            name: "KilnGitOps",
            dependencies: [
                "KilnSystem", "KilnTemplates", "KilnStore", "KilnCore", "KilnGit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // The service configuration file (kiln --config): settings for every other module, checked with lines.
        .target(
            name: "KilnConfig",
            dependencies: [
                "KilnSystem", "KilnTemplates", "KilnBuild", "KilnCore", "KilnDistribute", "KilnGit",
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // HTTP: the AIB REST API (`kiln serve`), the controller's endpoints (webhooks, /healthz, /readyz, Prometheus /metrics).
        .target(
            name: "KilnServer",
            dependencies: [
                "KilnCore", "KilnGitOps", "KilnStore", "KilnSystem", "KilnTemplates",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // The CLI: parse, call, print.
        .executableTarget(
            name: "kiln",
            dependencies: [
                "KilnSystem",
                "KilnTemplates",
                "KilnStore",
                "KilnBuild",
                "KilnCore",
                "KilnDistribute",
                "KilnGit",
                "KilnGitOps",
                "KilnServer",
                "KilnConfig",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        // Benchmarks that need the libraries (scripts/bench-gitops).
        .executableTarget(
            name: "KilnBench",
            dependencies: [
                "KilnSystem", "KilnBuild", "KilnCore", "KilnGit", "KilnGitOps", "KilnStore", "KilnTemplates",
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnTemplatesTests",
            dependencies: ["KilnTemplates"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        // What the test targets share: the git CLI and shell, waiting helpers, a GitOps repository fixture.
        .target(
            name: "KilnTestSupport",
            dependencies: ["KilnSystem", "KilnStore", "KilnCore", "KilnGit", "KilnGitOps"],
            path: "Tests/KilnTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnGitOpsTests",
            dependencies: ["KilnTestSupport", "KilnSystem", "KilnGit", "KilnGitOps", "KilnTemplates", "KilnStore", "KilnCore", "KilnBuild"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnSystemTests",
            dependencies: ["KilnSystem"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnStoreTests",
            dependencies: ["KilnStore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnBuildTests",
            dependencies: ["KilnSystem", "KilnBuild", "KilnStore", "KilnTemplates"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnCoreTests",
            dependencies: ["KilnSystem", "KilnCore", "KilnStore", "KilnTemplates", "KilnBuild", "KilnDistribute"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnGitTests",
            dependencies: ["KilnTestSupport", "KilnSystem", "KilnGit", "KilnGitOps", "KilnTemplates", "KilnStore", "KilnCore", "KilnBuild"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnConfigTests",
            dependencies: ["KilnConfig", "KilnTemplates", "KilnBuild", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnServerTests",
            dependencies: [
                "KilnCore", "KilnSystem", "KilnServer", "KilnStore", "KilnGitOps",
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KilnCLITests",
            dependencies: ["KilnTestSupport", "KilnGit", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        )
    ]
)
