import Foundation
import Testing
@testable import KilnBuild

/// The pure parts of `kiln images refresh`: APT source lines, release files, archive fingerprints, the
/// package diff. The refresh itself (a real upgrade in a chroot) is in ImagesCLITests.
@Suite struct DebianArchiveTests {
    @Test func sourceLinesParseAndPrintBack() throws {
        let line = "deb [trusted=yes arch=amd64] file:/srv/repo ./"
        let flat = try AptSource.parse(line).get()
        #expect(flat.isFlat && flat.options == ["trusted=yes", "arch=amd64"] && flat.uri == "file:/srv/repo" && flat.components.isEmpty)
        #expect(flat.description == line)
        #expect(flat.releasePaths == ["InRelease", "Release"] && flat.flatPackagesPath == "Packages")
        let suite = try AptSource.parse("deb http://deb.debian.org/debian bookworm main contrib").get()
        #expect(suite.releasePaths == ["dists/bookworm/InRelease", "dists/bookworm/Release"] && suite.components == ["main", "contrib"])
    }

    @Test(arguments: [
        ("deb-src http://x/debian bookworm main", "must start with 'deb '"),
        ("deb [trusted=yes file:/srv ./", "is not closed"),
        ("deb http://x/debian", "needs a URI and a suite"),
        ("deb ftp://x/debian bookworm main", "http:, https: or file:"),
        ("deb file:relative ./", "absolute path"),
        ("deb http://x/debian ../../etc main", "characters a suite cannot have"),
        ("deb file:/srv ./ main", "takes no components"),
        ("deb http://x/debian bookworm", "at least one component")
    ])
    func badSourceLinesSayWhy(line: String, reason: String) {
        guard case .failure(.badSource(let l, let why)) = AptSource.parse(line) else {
            Issue.record("\(line) parsed")
            return
        }
        #expect(l == line && why.contains(reason), "\(why)")
    }

    static let release = """
        -----BEGIN PGP SIGNED MESSAGE-----
        Hash: SHA512

        Origin: Debian
        Suite: stable-security
        Date: Tue, 01 Dec 2026 10:00:00 UTC
        MD5Sum:
         0123 100 main/binary-amd64/Packages
        SHA256:
         aaaa 100 main/binary-amd64/Packages
         bbbb 40 main/binary-amd64/Packages.xz
         cccc 20 main/binary-arm64/Packages.xz
         dddd 30 main/binary-all/Packages.gz
         eeee 10 main/i18n/Translation-en.bz2
         ffff 10 main/source/Sources.xz
        -----BEGIN PGP SIGNATURE-----
        """

    @Test func releaseFilesCountOnlyThePackageListsKilnInstallsFrom() {
        let index = ReleaseIndex.parse(Self.release)
        #expect(
            index.packageLists == [
                "main/binary-amd64/Packages": "aaaa", "main/binary-amd64/Packages.xz": "bbbb", "main/binary-all/Packages.gz": "dddd"
            ])
        // Re-signed with a new date, same lists: the same fingerprint.
        let resigned = Self.release.replacingOccurrences(of: "Tue, 01 Dec 2026", with: "Wed, 02 Dec 2026")
        #expect(ReleaseIndex.parse(resigned).fingerprint == index.fingerprint)
        let updated = Self.release.replacingOccurrences(of: "bbbb 40", with: "bbbc 41")
        #expect(ReleaseIndex.parse(updated).fingerprint != index.fingerprint)
    }

    /// Flat file: repositories are read directly: a Release when there is one, else the Packages list.
    @Test func flatRepositoriesAreFingerprintedByTheirPackageList() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-flat-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try AptSource.parse("deb [trusted=yes] file:\(dir) ./").get()
        await #expect(throws: ArchiveError.noRelease(source.description)) { try await ArchiveState.probe([source], fetcher: nil) }
        try Data("Package: kiln-canary\nVersion: 1.0\n".utf8).write(to: URL(fileURLWithPath: dir + "/Packages"))
        let first = try await ArchiveState.probe([source], fetcher: nil)
        #expect(try await ArchiveState.probe([source], fetcher: nil).digest == first.digest)
        try Data("Package: kiln-canary\nVersion: 1.1\n".utf8).write(to: URL(fileURLWithPath: dir + "/Packages"))
        let second = try await ArchiveState.probe([source], fetcher: nil)
        #expect(second.digest != first.digest && second.sources[0].fingerprint.hasPrefix("Packages="))
        // An http source needs a fetcher.
        let remote = try AptSource.parse("deb http://deb.debian.org/debian bookworm main").get()
        await #expect(throws: ArchiveError.self) { try await ArchiveState.probe([remote], fetcher: nil) }
    }

    @Test func debianSourcesDefaultToTheThreeBookwormSuites() {
        let s = DebianSources(mirror: "http://mirror.internal/debian/")
        #expect(s.securityMirror == "http://mirror.internal/debian-security")
        #expect(
            s.imageSourcesList == """
                deb http://mirror.internal/debian/ bookworm main
                deb http://mirror.internal/debian/ bookworm-updates main
                deb http://mirror.internal/debian-security bookworm-security main

                """)
        #expect(DebianSources.isPackageName("libssl3") && DebianSources.isPackageName("g++") && !DebianSources.isPackageName("Foo"))
        #expect(!DebianSources.isPackageName("a;rm") && !DebianSources.isPackageName("-x"))
    }

    @Test func packageChangesNameEachPackageOnce() {
        let old = ["libssl3 3.0.15-1~deb12u1 amd64", "kiln-canary 1.0 all", "gone 1 all"]
        let new = ["libssl3 3.0.17-1~deb12u2 amd64", "kiln-canary 1.0 all", "fresh 2 all"]
        #expect(
            ImageService.changes(from: old, to: new) == [
                "fresh (new) 2", "gone (removed) 1", "libssl3 3.0.15-1~deb12u1 → 3.0.17-1~deb12u2"
            ])
    }
}
