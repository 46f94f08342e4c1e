import Foundation
import Testing

/// `kiln template trigger` through the real binary: a catalog version published by `kiln images import`
/// fires a template's trigger once; no VM runs (the run is canceled while queued).
@Suite struct TriggerCLITests {
    @Test func aNewCatalogVersionFiresTheTriggerOnce() throws {
        let data = try ImagesCLITests.dataDir()
        defer { try? FileManager.default.removeItem(atPath: data) }
        let raw = data + "/small.raw"
        try Data(count: 4 << 20).write(to: URL(fileURLWithPath: raw))
        func publish(_ version: String) throws {
            let r = try CLITests.kiln(
                "images", "import", raw, "--publisher", "Test", "--offer", "small", "--sku", "raw", "--version", version, "--data-dir", data)
            try #require(r.status == 0, "\(r.stderr)")
        }
        func k(_ args: String...) throws -> CLITests.Result { try CLITests.kiln(args + ["--data-dir", data]) }
        try publish("1.0.0")
        let template = """
            {"type": "Microsoft.VirtualMachineImages/imageTemplates", "apiVersion": "2025-10-01", "name": "watched", "location": "westeurope",
             "identity": {"type": "None"},
             "properties": {"source": {"type": "PlatformImage", "publisher": "Test", "offer": "small", "sku": "raw", "version": "latest"},
                            "distribute": [{"type": "VHD", "runOutputName": "vhd"}]}}
            """
        try template.write(toFile: data + "/watched.json", atomically: true, encoding: .utf8)
        #expect(try k("template", "create", data + "/watched.json").status == 0)

        let created = try k("template", "trigger", "create", "watched", "--output", "json")
        #expect(created.status == 0, "\(created.stderr)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])
        #expect(doc["type"] as? String == "Microsoft.VirtualMachineImages/imageTemplates/triggers" && doc["name"] as? String == "source")
        let props = try #require(doc["properties"] as? [String: Any])
        #expect(props["kind"] as? String == "SourceImage" && (props["status"] as? [String: Any])?["code"] as? String == "Healthy")
        #expect((doc["kiln"] as? [String: Any])?["baseline"] as? String == "Test:small:raw:1.0.0")
        #expect(try k("template", "trigger", "poll").stdout.contains("no trigger fired"))

        try publish("1.0.1")
        let fired = try k("template", "trigger", "poll")
        #expect(fired.stdout.contains("of watched queued"), "\(fired.stdout)\(fired.stderr)")
        #expect(try k("template", "trigger", "poll").stdout.contains("no trigger fired"))
        let shown = try k("template", "trigger", "show", "watched")
        #expect(shown.stdout.contains("started run") && shown.stdout.contains("source Test:small:raw:1.0.1 replaces Test:small:raw:1.0.0"), "\(shown.stdout)")
        #expect(try k("template", "cancel", "watched").status == 0)
        let runs = try k("template", "runs", "watched", "--output", "json")
        #expect((try JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [String: Any])?["value"].map { ($0 as? [Any])?.count } == 1)

        // Deleted: a new version fires nothing.
        #expect(try k("template", "trigger", "delete", "watched").status == 0)
        try publish("1.0.2")
        #expect(try k("template", "trigger", "poll").stdout.contains("no trigger fired"))
        #expect(try k("template", "trigger", "list").stderr.contains("no triggers"))

        // A bad trigger file: where and what.
        try """
        {"type": "Microsoft.VirtualMachineImages/imageTemplates/triggers", "name": "watched/source",
         "properties": {
           "kind": "Nightly"}}
        """.write(toFile: data + "/bad.trigger.json", atomically: true, encoding: .utf8)
        let bad = try k("template", "trigger", "create", "--file", data + "/bad.trigger.json")
        #expect(bad.status == 1 && bad.stderr.contains("bad.trigger.json:3") && bad.stderr.contains("$.properties.kind"), "\(bad.stderr)")
        // AIB's one trigger per template.
        #expect(try k("template", "trigger", "create", "watched").status == 0)
        let second = try k("template", "trigger", "create", "watched", "--name", "another")
        #expect(second.status == 1 && second.stderr.contains("has a trigger already"), "\(second.stderr)")
    }
}
