import Foundation
import KilnCore
import KilnGit
import KilnTemplates

/// A template as the repository wants it at a commit.
public struct DesiredTemplate: Sendable {
    public var loaded: LoadedTemplate
    /// The file it came from, repository-relative.
    public var file: String
    /// Repository files the template references (scriptUri/sourceUri), path → `git:<blob id>`.
    public var referencedFiles: [String: String]
    /// The content hash over the template and those files: what decides "changed".
    public var contentHash: String

    public var id: String { loaded.resourceId.description }
}

/// A template file that does not load, with its diagnostics (path, line, code).
public struct InvalidTemplateFile: Sendable {
    public var file: String
    public var diagnostics: [Diagnostic]
}

/// Everything the repository declares at one commit.
public struct DesiredState: Sendable {
    public var commit: ObjectID
    public var config: RepositoryConfig
    public var templates: [DesiredTemplate]
    public var invalid: [InvalidTemplateFile]
    public var galleries: [GalleryImageDefinition]
}

/// Parsed files by content, kept between reads so a commit that changes one file of ten thousand parses one.
/// Used by one reconciler at a time (not shared across tasks).
public final class DesiredStateCache: @unchecked Sendable {
    struct Entry {
        var loaded: LoadedFile
        /// Content hash per (template index, referenced files).
        var hashes: [String: String] = [:]
    }
    var entries: [String: Entry] = [:]
    public internal(set) var hits = 0
    public internal(set) var misses = 0
    public init() {}
    public var count: Int { entries.count }
}

/// Reads the desired state from a commit's tree, without a work tree.
public enum DesiredStateReader {
    /// - Parameters:
    ///   - cache: parsed files from earlier reads, reused when a file, its parameters file and `kiln.yaml` have
    ///     the same blobs; entries for files that are gone are dropped.
    ///   - excluding: path prefixes never read as templates (the controller's own `status/` files).
    public static func read(_ repo: GitRepository, at commit: ObjectID, cache: DesiredStateCache? = nil,
                            excluding: [String] = [], templatesPath: String? = nil) async throws(GitError) -> DesiredState {
        let files = try await repo.files(at: commit)
        let byPath = Dictionary(files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var config = RepositoryConfig()
        var configDiagnostics: [Diagnostic] = []
        var configKey = ""
        for name in ["kiln.yaml", "kiln.yml"] {
            if let f = byPath[name] {
                let loaded = TemplateLoader.load(text: String(decoding: try await repo.blob(f.blob), as: UTF8.self), path: name)
                if let c = loaded.repositoryConfig { config = c }
                configDiagnostics = loaded.errors
                configKey = f.blob.hex
                break
            }
        }
        if let templatesPath { config.templatesPath = templatesPath }
        let options = config.applied(to: LoadOptions())

        let templatesRoot = config.templatesPath.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let galleriesRoot = config.galleriesPath.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        var state = DesiredState(commit: commit, config: config, templates: [], invalid: [], galleries: [])
        if !configDiagnostics.isEmpty { state.invalid.append(InvalidTemplateFile(file: "kiln.yaml", diagnostics: configDiagnostics)) }
        var used: [String: DesiredStateCache.Entry] = [:]

        for f in files.sorted(by: { $0.path < $1.path }) where TemplateLoader.format(forPath: f.path) != nil {
            if excluding.contains(where: { f.path.hasPrefix($0) }) || f.path == "kiln.yaml" || f.path == "kiln.yml" { continue }
            let under = { (root: String) in root.isEmpty || f.path.hasPrefix(root + "/") }
            let isGallery = under(galleriesRoot)
            guard isGallery || (under(templatesRoot) && !TemplateLoader.isParametersFileName(f.path)) else { continue }
            let sibling = TemplateLoader.siblingParametersPath(for: f.path)
            let parametersFile = isGallery ? nil : byPath[sibling]
            let key = "\(f.path)\u{0}\(f.blob.hex)\u{0}\(parametersFile?.blob.hex ?? "")\u{0}\(configKey)"
            var entry: DesiredStateCache.Entry
            if let hit = cache?.entries[key] ?? used[key] {
                entry = hit
                cache?.hits += 1
            } else {
                cache?.misses += 1
                var parameters: (path: String, text: String)?
                if let p = parametersFile { parameters = (sibling, String(decoding: try await repo.blob(p.blob), as: UTF8.self)) }
                let text = String(decoding: try await repo.blob(f.blob), as: UTF8.self)
                entry = DesiredStateCache.Entry(loaded: TemplateLoader.load(text: text, path: f.path, options: options, parameters: parameters))
            }
            defer { used[key] = entry }
            let loaded = entry.loaded
            if isGallery {
                state.galleries += loaded.galleryDefinitions
                if !loaded.isValid { state.invalid.append(InvalidTemplateFile(file: f.path, diagnostics: loaded.errors)) }
                continue
            }
            guard loaded.isValid else {
                state.invalid.append(InvalidTemplateFile(file: f.path, diagnostics: loaded.errors))
                continue
            }
            for (n, t) in loaded.templates.enumerated() {
                var refs: [String: String] = [:]
                for r in ArtifactReference.all(in: t.template) {
                    guard case .success(.relative) = ArtifactFetcher.classify(r.reference),
                          let path = resolve(r.reference, from: f.path, in: byPath) else { continue }
                    refs[path] = "git:\(byPath[path]!.blob.hex)"
                }
                let hashKey = "\(n)\u{0}" + refs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\u{0}")
                let hash: String
                if let h = entry.hashes[hashKey] { hash = h } else {
                    hash = ContentHash.of(t.template, referencedFiles: refs)
                    entry.hashes[hashKey] = hash
                }
                state.templates.append(DesiredTemplate(loaded: t, file: f.path, referencedFiles: refs, contentHash: hash))
            }
        }
        cache?.entries = used
        return state
    }

    /// A relative reference, looked up next to the template file, then from the repository root.
    static func resolve(_ reference: String, from file: String, in tree: [String: TreeFile]) -> String? {
        let dir = (file as NSString).deletingLastPathComponent
        for base in [dir, ""] {
            let joined = base.isEmpty ? reference : base + "/" + reference
            if let p = ArtifactFetcher.normalizedRelative(joined), tree[p] != nil { return p }
        }
        return nil
    }
}

/// Relative artifacts of a template from a repository, read at the commit the template came from.
public struct CommitArtifactSource: RelativeArtifactSource {
    public let repo: GitRepository
    public let commit: ObjectID
    /// The template file's directory, then the repository root.
    public let roots: [String]

    public init(repo: GitRepository, commit: ObjectID, templateFile: String) {
        self.repo = repo
        self.commit = commit
        let dir = (templateFile as NSString).deletingLastPathComponent
        roots = dir.isEmpty ? [""] : [dir, ""]
    }

    public func read(_ path: String) async throws -> Data? {
        for root in roots {
            guard let p = ArtifactFetcher.normalizedRelative(root.isEmpty ? path : root + "/" + path) else { continue }
            if let d = try await repo.file(p, at: commit) { return d }
        }
        return nil
    }

    public var description: String { "the repository at \(commit.short)" }
}
