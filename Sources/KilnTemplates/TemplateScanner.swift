import Foundation

/// Finds template files under paths and loads each with the right defaults.
///
/// Directories are walked recursively (hidden entries and `.build` skipped); `.json`, `.yaml` and `.yml`
/// files are loaded. A deployment template's `NAME.parameters.json` is read with it, not on its own.
/// The nearest `kiln.yaml` above a file supplies subscription, resource group and location defaults, as
/// it will when the controller reads the same repository.
public struct TemplateScanner {
    public var options: LoadOptions
    /// Set when the caller gave subscription/group/location explicitly: they win over kiln.yaml.
    public var explicitScope: Bool

    public init(options: LoadOptions = LoadOptions(), explicitScope: Bool = false) {
        self.options = options
        self.explicitScope = explicitScope
    }

    public enum ScanError: Error, Sendable, CustomStringConvertible {
        case notFound(String)
        public var description: String {
            switch self {
            case .notFound(let p): return "no such file or directory: \(p)"
            }
        }
    }

    /// Every file to load under `paths`, in a stable order. Throws for a path that does not exist.
    public func files(under paths: [String]) throws(ScanError) -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for path in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else { throw .notFound(path) }
            if !isDir.boolValue {
                out.append(path)
                continue
            }
            var found: [String] = []
            if let e = fm.enumerator(atPath: path) {
                while let rel = e.nextObject() as? String {
                    let name = (rel as NSString).lastPathComponent
                    if name.hasPrefix(".") || name == "node_modules" {
                        e.skipDescendants()
                        continue
                    }
                    if TemplateLoader.format(forPath: rel) != nil {
                        found.append((path as NSString).appendingPathComponent(rel))
                    }
                }
            }
            out.append(contentsOf: found.sorted())
        }
        return out
    }

    /// Loads every file under `paths`.
    public func scan(_ paths: [String]) throws(ScanError) -> [LoadedFile] {
        let all = try files(under: paths)
        let set = Set(all)
        var results: [LoadedFile] = []
        var configCache: [String: RepositoryConfig?] = [:]
        for path in all {
            if TemplateLoader.isParametersFileName(path) {
                // Read with its template; an orphan gets a warning.
                let stem = String(path.dropLast(".parameters.json".count))
                let owners = [stem + ".json", stem + ".yaml", stem + ".yml"]
                if owners.contains(where: { set.contains($0) || FileManager.default.fileExists(atPath: $0) }) { continue }
                var f = TemplateLoader.loadFile(path, options: options)
                f.diagnostics.append(
                    Diagnostic(
                        severity: .warning, file: path, position: SourcePosition(line: 1, column: 1), path: .root,
                        code: .invalidTemplate,
                        message: "parameters file without a deployment template next to it (expected \((stem as NSString).lastPathComponent).json)"))
                results.append(f)
                continue
            }
            var opts = options
            if !explicitScope, !TemplateLoader.isRepositoryConfigName(path), let cfg = nearestConfig(for: path, cache: &configCache) {
                opts = cfg.applied(to: opts)
            }
            results.append(TemplateLoader.loadFile(path, options: opts))
        }
        return results
    }

    private func nearestConfig(for path: String, cache: inout [String: RepositoryConfig?]) -> RepositoryConfig? {
        let absolute = path.hasPrefix("/") ? path : (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(path)
        var dir = ((absolute as NSString).deletingLastPathComponent as NSString).standardizingPath
        var visited: [String] = []
        var result: RepositoryConfig?
        while true {
            if let cached = cache[dir] { result = cached; break }
            visited.append(dir)
            let candidate = (dir as NSString).appendingPathComponent("kiln.yaml")
            if FileManager.default.fileExists(atPath: candidate) {
                result = TemplateLoader.loadFile(candidate).repositoryConfig
                break
            }
            if FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(".git")) { break }
            let parent = (dir as NSString).deletingLastPathComponent
            if parent == dir || parent.isEmpty { break }
            dir = parent
        }
        for v in visited { cache[v] = result }
        return result
    }
}
