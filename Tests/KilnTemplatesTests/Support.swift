import Foundation
@testable import KilnTemplates

/// Paths of test fixtures, found next to this file so tests run from any working directory.
enum Fixtures {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ rel: String) -> String { root.appendingPathComponent(rel).path }

    static func files(in dir: String, extensions: Set<String>) -> [String] {
        let d = root.appendingPathComponent(dir)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: d.path)) ?? []
        return names.filter { extensions.contains(($0 as NSString).pathExtension) && !$0.contains(".parameters.") }
            .sorted().map { d.appendingPathComponent($0).path }
    }
}

/// Loads text as a template file with a given name.
func load(_ text: String, path: String = "t.json", parameters: (String, String)? = nil, options: LoadOptions = LoadOptions()) -> LoadedFile {
    TemplateLoader.load(text: text, path: path, options: options, parameters: parameters.map { (path: $0.0, text: $0.1) })
}

extension LoadedFile {
    /// `CODE PATH` of each error, for comparisons.
    var errorKeys: [String] { errors.map { "\($0.code) \($0.path)" } }
}
