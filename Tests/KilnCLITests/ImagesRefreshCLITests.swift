import Foundation
import KilnTestSupport
import Testing

/// `kiln images refresh debian-12` for real: a copy of the cached debootstrap upgraded with apt against
/// Debian's archive and a local flat repository. The archive change is made visible honestly: the test
/// publishes a new version of its own package (`kiln-canary`) in that repository, which is what a Debian
/// security update looks like to the refresh (a release file whose package lists changed, then a changed
/// installed package set). Root (chroot, mounts); it works in a cache directory of its own, so the shared
/// cache's disks are not pruned under other tests.
@Suite(.serialized) struct ImagesRefreshCLITests {
    static let root = "/tmp/kiln-cli-refresh-tests"

    /// A flat repository with kiln-canary `version` (replacing any other version).
    static func publishCanary(_ version: String, repo: String) throws {
        let pkg = root + "/pkg-\(version)"
        try sh(
            """
            set -e; rm -rf \(pkg) && mkdir -p \(pkg)/DEBIAN \(pkg)/usr/share/kiln-canary \(repo) && rm -f \(repo)/*.deb
            printf 'Package: kiln-canary\\nVersion: \(version)\\nArchitecture: all\\nMaintainer: Kiln <kiln@example.com>\\nDescription: canary\\n' > \(pkg)/DEBIAN/control
            echo \(version) > \(pkg)/usr/share/kiln-canary/version
            dpkg-deb --root-owner-group --build \(pkg) \(repo)/kiln-canary_\(version)_all.deb
            cd \(repo) && dpkg-scanpackages --multiversion . > Packages
            """)
    }

    static func refresh(cache: String, data: String, repo: String) async throws -> (CLITests.Result, [String: Any]) {
        let r = try await spawnAndWait([
            "/usr/bin/env", "KILN_CACHE_DIR=\(cache)", CLITests.binary, "images", "refresh", "debian-12", "--extra-source",
            "deb [trusted=yes] file:\(repo) ./", "--include", "kiln-canary", "--output", "json", "--data-dir", data
        ])
        let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]
        return (r, (list?.first?["outcome"] as? [String: Any]) ?? [:])
    }

    @Test(.enabled(if: geteuid() == 0, "chroot and mounts need root"))
    func refreshAddsAVersionOnlyWhenThePackagesChanged() async throws {
        try? FileManager.default.removeItem(atPath: Self.root)
        defer { try? FileManager.default.removeItem(atPath: Self.root) }
        let data = Self.root + "/data"
        // The shared cache's root file system (bootstrapped once per machine), copied into a cache of our own.
        let shared = ProcessInfo.processInfo.environment["KILN_CACHE_DIR"] ?? data + "/cache"
        let boot = try await spawnAndWait([CLITests.binary, "images", "bootstrap", "debian-12", "--data-dir", data])
        #expect(boot.status == 0, "\(boot.stderr)")
        let cache = Self.root + "/cache"
        try sh(
            "set -e; mkdir -p \(cache)/debian-12; for d in \(shared)/debian-12/rootfs-*.done; do cp -a --reflink=auto ${d%.done} $d \(cache)/debian-12/; done")

        let repo = Self.root + "/repo"
        try Self.publishCanary("1.0", repo: repo)
        let (first, one) = try await Self.refresh(cache: cache, data: data, repo: repo)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(one["change"] as? String == "added" && one["upgraded"] as? Bool == true, "\(first.stdout)")
        let added = try #require((one["image"] as? [String: Any])?["version"] as? String)
        #expect(added != ((one["previous"] as? String) ?? ""), "a new version, not the bootstrapped one")
        #expect((one["changedPackages"] as? [String])?.contains("kiln-canary (new) 1.0") == true, "\(one)")

        // No archive change: nothing is added, apt does not run.
        let (second, two) = try await Self.refresh(cache: cache, data: data, repo: repo)
        #expect(second.status == 0, "\(second.stderr)")
        #expect(two["change"] as? String == "current" && two["upgraded"] as? Bool == false, "\(second.stdout)")
        #expect((two["image"] as? [String: Any])?["version"] as? String == added)

        // kiln-canary 1.1 published: a new version, with the change named, and its package list beside the disk.
        try Self.publishCanary("1.1", repo: repo)
        let (third, three) = try await Self.refresh(cache: cache, data: data, repo: repo)
        #expect(third.status == 0, "\(third.stderr)")
        #expect(three["change"] as? String == "added" && three["previous"] as? String == added, "\(third.stdout)")
        #expect(three["changedPackages"] as? [String] == ["kiln-canary 1.0 → 1.1"], "\(three)")
        let image = try #require(three["image"] as? [String: Any])
        let packages = try String(
            contentsOfFile: data + "/" + ((image["path"] as? String ?? "") as NSString).deletingLastPathComponent + "/packages.txt", encoding: .utf8)
        #expect(packages.contains("kiln-canary 1.1 all\n"))
        #expect((image["provenance"] as? [String: Any])?["packageDigest"] as? String == three["packageDigest"] as? String)

        let list = try await spawnAndWait([CLITests.binary, "images", "list", "--output", "json", "--data-dir", data])
        let images = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]
        #expect(images?.count == 3, "bootstrapped, refreshed with 1.0, refreshed with 1.1: \(list.stdout)")

        // The extra source was for the build only: the upgraded root file system keeps Debian's apt sources,
        // and no package list of the repository.
        let key = try #require(three["upgradeKey"] as? String)
        let upgraded = cache + "/debian-12/upgraded-\(key)"
        let sources = try String(contentsOfFile: upgraded + "/etc/apt/sources.list", encoding: .utf8)
        #expect(sources.split(separator: "\n").count == 3 && !sources.contains("file:") && sources.contains("bookworm-security"), "\(sources)")
        let lists = try FileManager.default.contentsOfDirectory(atPath: upgraded + "/var/lib/apt/lists")
        #expect(!lists.contains { $0.contains("kiln-sources") }, "\(lists)")
        #expect(FileManager.default.fileExists(atPath: upgraded + "/usr/share/kiln-canary/version"))
        let keys = try FileManager.default.contentsOfDirectory(atPath: upgraded + "/etc/ssh").filter { $0.hasPrefix("ssh_host_") }
        #expect(keys.isEmpty, "host keys are made at first boot: \(keys)")
    }

    @Test func badSourcesAreUsageErrors() async throws {
        let r = try await spawnAndWait([CLITests.binary, "images", "refresh", "debian-12", "--extra-source", "deb ftp://x/debian bookworm main"])
        #expect(r.status == 2 && r.stderr.contains("its URI must be http:, https: or file:"), "\(r.stderr)")
        let p = try await spawnAndWait([CLITests.binary, "images", "refresh", "debian-12", "--include", "Bad;name"])
        #expect(p.status == 2 && p.stderr.contains("'Bad;name' is not a Debian package name"), "\(p.stderr)")
        let d = try await spawnAndWait([CLITests.binary, "images", "refresh", "ubuntu-24"])
        #expect(d.status == 2 && d.stderr.contains("only debian-12 can be refreshed"), "\(d.stderr)")
    }
}
