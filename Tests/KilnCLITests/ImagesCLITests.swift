import Foundation
import Testing

/// `kiln images` through the real binary, on a throwaway data directory (no VM, no root needed).
@Suite struct ImagesCLITests {
    static func dataDir() throws -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-images-cli-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test func importListShowDelete() throws {
        let data = try Self.dataDir()
        defer { try? FileManager.default.removeItem(atPath: data) }
        let empty = try CLITests.kiln("images", "list", "--data-dir", data)
        #expect(empty.status == 0 && empty.stdout.contains("the catalog is empty"))

        // A small raw disk with recognisable content.
        let raw = (data as NSString).appendingPathComponent("small.raw")
        var bytes = Data(count: 4 << 20)
        bytes.replaceSubrange(0..<12, with: Data("kiln-import!".utf8))
        try bytes.write(to: URL(fileURLWithPath: raw))
        let imported = try CLITests.kiln(
            "images", "import", raw, "--publisher", "Test", "--offer", "small", "--sku", "raw",
            "--version", "1.0.0", "--data-dir", data)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("imported Test:small:raw:1.0.0 from raw"))

        let list = try CLITests.kiln("images", "list", "--output", "json", "--data-dir", data)
        let arr = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(arr.count == 1)
        #expect(arr.first?["format"] as? String == "qcow2")
        #expect(arr.first?["version"] as? String == "1.0.0")

        let show = try CLITests.kiln("images", "show", "Test:small:raw:latest", "--data-dir", data)
        #expect(show.status == 0 && show.stdout.contains("provenance:   imported from"))

        let dup = try CLITests.kiln(
            "images", "import", raw, "--publisher", "Test", "--offer", "small", "--sku", "raw",
            "--version", "1.0.0", "--data-dir", data)
        #expect(dup.status == 1 && dup.stderr.contains("in the catalog already"))

        let missing = try CLITests.kiln("images", "show", "Test:small:raw:2.0.0", "--data-dir", data)
        #expect(missing.status == 1 && missing.stderr.contains("versions of Test:small:raw: 1.0.0"))

        let del = try CLITests.kiln("images", "delete", "Test:small:raw:1.0.0", "--data-dir", data)
        #expect(del.status == 0 && del.stdout.contains("deleted Test:small:raw:1.0.0"))
        #expect(!FileManager.default.fileExists(atPath: (data as NSString).appendingPathComponent("images/Test/small/raw/1.0.0/disk.qcow2")))
    }

    @Test func badArgumentsAreUsageErrors() throws {
        let data = try Self.dataDir()
        defer { try? FileManager.default.removeItem(atPath: data) }
        #expect(try CLITests.kiln("images", "bootstrap", "ubuntu-24", "--data-dir", data).status == 2)
        #expect(
            try CLITests.kiln("images", "import", "/nonexistent", "--publisher", "a", "--offer", "b", "--sku", "c", "--version", "1.0", "--data-dir", data)
                .status == 2)
        let notThere = try CLITests.kiln(
            "images", "import", "/nonexistent.raw", "--publisher", "a", "--offer", "b", "--sku", "c", "--version", "1.0.0", "--data-dir", data)
        #expect(notThere.status == 1 && notThere.stderr.contains("cannot read /nonexistent.raw"))
    }
}
